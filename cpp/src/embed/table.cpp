#include "recserve/embed/table.hpp"

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>

namespace recserve::embed {
namespace {

constexpr std::size_t kChunkRows = 4096;
constexpr std::uint32_t kNoRow = ~std::uint32_t{0};     // an index slot whose key was removed
constexpr std::size_t kSketchWidth = 1 << 12;            // per hash row of the count-min sketch
constexpr std::size_t kSketchDepth = 4;

std::uint64_t mix(std::uint64_t x) {  // splitmix64's finaliser: every bit of x moves every bit
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

std::uint64_t steady_now_ns() {
    return static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
            .count());
}

// The fixed part of a row; its floats follow. Every field is atomic: readers copy rows while
// a writer may be rewriting them, and the sequence lock decides which copies count.
struct RowHeader {
    std::atomic<std::uint32_t> seq;         // odd while a writer is inside the row
    std::uint32_t lru_prev;                 // the LRU list: the writer's alone, readers never look
    std::atomic<std::uint64_t> key;         // kInvalidKey when the row is free
    std::atomic<std::uint64_t> updated_ns;  // steady clock, for the TTL
    std::uint32_t lru_next;                 // (in the row: an update finds its links in cache)
    std::uint32_t reserved;
};

struct IndexSlot {
    std::atomic<std::uint64_t> key{kInvalidKey};  // kInvalidKey: never used
    std::atomic<std::uint32_t> row{kNoRow};
};

struct Index {
    explicit Index(std::size_t size) : mask(size - 1), slots(new IndexSlot[size]) {}
    std::size_t mask;
    std::unique_ptr<IndexSlot[]> slots;
    std::size_t used = 0;  // slots ever given a key (live + removed); writer only
};

}  // namespace

struct Table::Shard {
    Shard(std::size_t dims_, std::size_t words_, std::size_t capacity_)
        : dims(dims_),
          words(words_),
          words_offset((sizeof(RowHeader) + dims_ * sizeof(float) + 7) / 8 * 8),
          stride((words_offset + words_ * sizeof(std::uint64_t) + 15) / 16 * 16),
          capacity(capacity_),
          chunks((capacity_ + kChunkRows - 1) / kChunkRows) {
        indexes.push_back(std::make_unique<Index>(std::bit_ceil(std::max<std::size_t>(16, 2 * kChunkRows))));
        index.store(indexes.back().get(), std::memory_order_release);
    }
    ~Shard() {
        for (auto& c : chunks) std::free(c.load(std::memory_order_relaxed));
    }

    RowHeader& header(std::uint32_t row) const {
        // acquire: pairs with the release that published the chunk (its zero-fill included).
        char* chunk = chunks[row / kChunkRows].load(std::memory_order_acquire);
        return *reinterpret_cast<RowHeader*>(chunk + (row % kChunkRows) * stride);
    }
    float* data(std::uint32_t row) const { return reinterpret_cast<float*>(&header(row) + 1); }
    std::uint64_t* words_of(std::uint32_t row) const {
        return reinterpret_cast<std::uint64_t*>(reinterpret_cast<char*>(&header(row)) + words_offset);
    }

    // Whether a row updated at `updated` is within its TTL at `now` (always, without a TTL).
    bool fresh(std::uint64_t updated, std::uint64_t now) const {
        return ttl_ns == 0 || now - std::min(now, updated) <= ttl_ns;
    }
    // For the writer: row r has not expired (an expired row reads as missing).
    bool unexpired(std::uint32_t r, std::uint64_t now) const {
        return fresh(header(r).updated_ns.load(std::memory_order_relaxed), now);
    }

    // ---- readers ---------------------------------------------------------------------------
    void prefetch_slot(std::uint64_t h) const {
        const Index* ix = index.load(std::memory_order_acquire);
        __builtin_prefetch(&ix->slots[h & ix->mask]);
    }
    void prefetch_row(std::uint32_t row) const {
        const char* p = reinterpret_cast<const char*>(&header(row));
        for (std::size_t off = 0; off < stride; off += 64) __builtin_prefetch(p + off);
    }

    // The row of key, or kNoRow. Probes whichever index is current when it starts.
    std::uint32_t find(std::uint64_t key, std::uint64_t h) const {
        const Index* ix = index.load(std::memory_order_acquire);
        for (std::size_t i = h & ix->mask;; i = (i + 1) & ix->mask) {
            // acquire: a key seen here was published after its slot's row (see insert()).
            const std::uint64_t k = ix->slots[i].key.load(std::memory_order_acquire);
            if (k == kInvalidKey) return kNoRow;
            if (k == key) return ix->slots[i].row.load(std::memory_order_acquire);
        }
    }

    // Copies the row if it still holds key (and has not expired); false otherwise.
    bool read(std::uint32_t row, std::uint64_t key, float* out, std::uint64_t* words_out, std::uint64_t now) const {
        RowHeader& h = header(row);
        float* src = data(row);
        std::uint64_t* wsrc = words_of(row);
        // Sizes in registers: the atomic accesses below keep the compiler from caching members.
        const std::size_t n_floats = out != nullptr ? dims : 0, n_words = words_out != nullptr ? words : 0;
        for (;;) {
            const std::uint32_t s1 = h.seq.load(std::memory_order_acquire);
            if (s1 & 1u) {  // a writer is inside: wait for it to leave
                std::this_thread::yield();
                continue;
            }
            // acquire loads (plain moves on x86): the re-check of seq below cannot move above
            // them, and a value written after the odd seq brings that seq with it. (Fences
            // would do too, but ThreadSanitizer does not model them.)
            const std::uint64_t k = h.key.load(std::memory_order_acquire);
            const std::uint64_t t = h.updated_ns.load(std::memory_order_acquire);
            for (std::size_t i = 0; i < n_floats; ++i) out[i] = std::atomic_ref<float>(src[i]).load(std::memory_order_acquire);
            for (std::size_t i = 0; i < n_words; ++i)
                words_out[i] = std::atomic_ref<std::uint64_t>(wsrc[i]).load(std::memory_order_acquire);
            if (h.seq.load(std::memory_order_relaxed) != s1) continue;  // overlapped a write: again
            return k == key && fresh(t, now);
        }
    }

    // ---- the writer (holds `writer`) -------------------------------------------------------
    // v or w null: zeros.
    void write(std::uint32_t row, std::uint64_t key, const float* v, const std::uint64_t* w, std::uint64_t now) {
        RowHeader& h = header(row);
        float* dst = data(row);
        std::uint64_t* wdst = words_of(row);
        const std::uint32_t s = h.seq.load(std::memory_order_relaxed);
        h.seq.store(s + 1, std::memory_order_relaxed);
        // release stores: a reader that acquires any new value also sees the odd seq.
        h.key.store(key, std::memory_order_release);
        h.updated_ns.store(now, std::memory_order_release);
        // Sizes in registers, and no per-element branch: the atomic stores below keep the
        // compiler from caching members across iterations.
        const std::size_t n_floats = dims, n_words = words;
        if (v != nullptr) {
            for (std::size_t i = 0; i < n_floats; ++i) std::atomic_ref<float>(dst[i]).store(v[i], std::memory_order_release);
        } else {
            for (std::size_t i = 0; i < n_floats; ++i) std::atomic_ref<float>(dst[i]).store(0.0f, std::memory_order_release);
        }
        for (std::size_t i = 0; i < n_words; ++i)
            std::atomic_ref<std::uint64_t>(wdst[i]).store(w != nullptr ? w[i] : 0, std::memory_order_release);
        h.seq.store(s + 2, std::memory_order_release);  // release: the bytes before the even seq
    }

    // write() of the words alone: the floats stay as they are (and their cache lines clean).
    void write_words(std::uint32_t row, const std::uint64_t* w, std::uint64_t now) {
        RowHeader& h = header(row);
        std::uint64_t* wdst = words_of(row);
        const std::uint32_t s = h.seq.load(std::memory_order_relaxed);
        h.seq.store(s + 1, std::memory_order_relaxed);
        h.updated_ns.store(now, std::memory_order_release);
        const std::size_t n_words = words;
        for (std::size_t i = 0; i < n_words; ++i) std::atomic_ref<std::uint64_t>(wdst[i]).store(w[i], std::memory_order_release);
        h.seq.store(s + 2, std::memory_order_release);
    }

    // The slot holding key, or the first reusable slot on its probe path (and where it is).
    IndexSlot* probe(Index* ix, std::uint64_t key, std::uint64_t h, IndexSlot** reusable) const {
        *reusable = nullptr;
        for (std::size_t i = h & ix->mask;; i = (i + 1) & ix->mask) {
            IndexSlot& slot = ix->slots[i];
            const std::uint64_t k = slot.key.load(std::memory_order_relaxed);
            if (k == key) return &slot;
            if (k == kInvalidKey) {
                if (*reusable == nullptr) *reusable = &slot;
                return nullptr;
            }
            if (*reusable == nullptr && slot.row.load(std::memory_order_relaxed) == kNoRow) *reusable = &slot;
        }
    }

    // Rebuilds the index (twice as large when live keys need it) and publishes it.
    void rebuild() {
        Index* old = index.load(std::memory_order_relaxed);
        std::size_t size = old->mask + 1;
        if (live.load(std::memory_order_relaxed) * 4 >= size) size *= 2;
        auto fresh = std::make_unique<Index>(size);
        for (std::size_t i = 0; i <= old->mask; ++i) {
            const std::uint64_t k = old->slots[i].key.load(std::memory_order_relaxed);
            const std::uint32_t r = old->slots[i].row.load(std::memory_order_relaxed);
            if (k == kInvalidKey || r == kNoRow) continue;
            for (std::size_t j = mix(k) & fresh->mask;; j = (j + 1) & fresh->mask) {
                if (fresh->slots[j].key.load(std::memory_order_relaxed) != kInvalidKey) continue;
                fresh->slots[j].row.store(r, std::memory_order_relaxed);
                fresh->slots[j].key.store(k, std::memory_order_relaxed);
                ++fresh->used;
                break;
            }
        }
        // release: readers that load the new index see every slot written above.
        index.store(fresh.get(), std::memory_order_release);
        indexes.push_back(std::move(fresh));
    }

    void lru_unlink(std::uint32_t r) {
        RowHeader& h = header(r);
        const std::uint32_t p = h.lru_prev, n = h.lru_next;
        (p == kNoRow ? lru_head : header(p).lru_next) = n;
        (n == kNoRow ? lru_tail : header(n).lru_prev) = p;
        h.lru_prev = h.lru_next = kNoRow;
    }
    void lru_append(std::uint32_t r) {
        header(r).lru_prev = lru_tail;
        header(r).lru_next = kNoRow;
        (lru_tail == kNoRow ? lru_head : header(lru_tail).lru_next) = r;
        lru_tail = r;
    }

    // Frees row r (which holds key): its index slot is marked removed, the row reads as empty.
    void drop(std::uint32_t r, std::uint64_t now) {
        const std::uint64_t key = header(r).key.load(std::memory_order_relaxed);
        IndexSlot* reusable = nullptr;
        IndexSlot* slot = probe(index.load(std::memory_order_relaxed), key, mix(key), &reusable);
        if (slot != nullptr) slot->row.store(kNoRow, std::memory_order_release);
        write(r, kInvalidKey, nullptr, nullptr, now);
        lru_unlink(r);
        free_rows.push_back(r);
        live.fetch_sub(1, std::memory_order_relaxed);
    }

    bool admitted(std::uint64_t h) {
        if (admit_after <= 1) return true;
        std::uint32_t least = 255;
        for (std::size_t d = 0; d < kSketchDepth; ++d) {
            std::uint8_t& c = sketch[d * kSketchWidth + (mix(h + d) & (kSketchWidth - 1))];
            if (c < 255) ++c;
            least = std::min<std::uint32_t>(least, c);
        }
        return least >= admit_after;
    }

    // A row for a new key: a free one, a new one, or the least recently updated one.
    std::uint32_t take_row(std::uint64_t now) {
        if (!free_rows.empty()) {
            const std::uint32_t r = free_rows.back();
            free_rows.pop_back();
            return r;
        }
        if (next_row < capacity) {
            const std::size_t c = next_row / kChunkRows;
            if (chunks[c].load(std::memory_order_relaxed) == nullptr) {
                const std::size_t bytes = kChunkRows * stride;
                void* mem = std::aligned_alloc(64, bytes);
                if (mem == nullptr) return kNoRow;
                std::memset(mem, 0, bytes);
                for (std::size_t i = 0; i < kChunkRows; ++i)
                    reinterpret_cast<RowHeader*>(static_cast<char*>(mem) + i * stride)->key.store(
                        kInvalidKey, std::memory_order_relaxed);
                // release: the initialised chunk before any reader that finds it.
                chunks[c].store(static_cast<char*>(mem), std::memory_order_release);
                memory_bytes += bytes;
            }
            return static_cast<std::uint32_t>(next_row++);
        }
        const std::uint32_t victim = lru_head;
        if (on_evict != nullptr) on_evict(evict_context, header(victim).key.load(std::memory_order_relaxed));
        drop(victim, now);
        evictions.fetch_add(1, std::memory_order_relaxed);
        free_rows.pop_back();
        return victim;
    }

    // Returns whether key now has a row holding (v, w).
    bool set(std::uint64_t key, const float* v, const std::uint64_t* w, std::uint64_t now) {
        const std::uint64_t h = mix(key);
        IndexSlot* reusable = nullptr;
        IndexSlot* slot = probe(index.load(std::memory_order_relaxed), key, h, &reusable);
        if (slot != nullptr) {
            const std::uint32_t r = slot->row.load(std::memory_order_relaxed);
            if (r != kNoRow) {  // an update in place
                write(r, key, v, w, now);
                lru_unlink(r);
                lru_append(r);
                return true;
            }
            reusable = slot;  // the key's own removed slot
        }
        if (!admitted(h)) {
            not_admitted.fetch_add(1, std::memory_order_relaxed);
            return false;
        }
        const std::uint32_t r = take_row(now);
        if (r == kNoRow) return false;  // out of memory: the row is not stored
        write(r, key, v, w, now);
        lru_append(r);
        live.fetch_add(1, std::memory_order_relaxed);
        Index* ix = index.load(std::memory_order_relaxed);
        if ((ix->used + 1) * 2 > ix->mask + 1) {  // keep the index at most half full
            rebuild();
            ix = index.load(std::memory_order_relaxed);
            probe(ix, key, h, &reusable);
        }
        // A never-used slot gets its row before its key; a removed slot its key before its row.
        // Either way a reader that finds the key then loads (acquire) a row that is complete,
        // or kNoRow; a reader of the slot's old key finds a row that names another key.
        if (reusable->key.load(std::memory_order_relaxed) == kInvalidKey) {
            reusable->row.store(r, std::memory_order_relaxed);
            reusable->key.store(key, std::memory_order_release);
            ++ix->used;
        } else {
            reusable->key.store(key, std::memory_order_relaxed);
            reusable->row.store(r, std::memory_order_release);
        }
        return true;
    }

    const std::size_t dims;
    const std::size_t words;
    const std::size_t words_offset;  // bytes from the row's start to its words
    const std::size_t stride;
    const std::size_t capacity;
    std::uint32_t admit_after = 0;
    std::uint64_t ttl_ns = 0;
    void (*on_evict)(void*, std::uint64_t) = nullptr;
    void* evict_context = nullptr;
    std::vector<std::atomic<char*>> chunks;
    std::atomic<Index*> index{nullptr};
    std::atomic<std::size_t> live{0};
    std::atomic<std::uint64_t> evictions{0};
    std::atomic<std::uint64_t> not_admitted{0};

    std::mutex writer;  // one writer at a time; readers never take it
    std::vector<std::unique_ptr<Index>> indexes;  // the current one last; older ones retired
    std::vector<std::uint32_t> free_rows;
    std::size_t next_row = 0;
    std::uint32_t lru_head = kNoRow, lru_tail = kNoRow;
    std::vector<std::uint8_t> sketch;
    std::size_t memory_bytes = 0;
    std::vector<float> scratch_vector;         // update()'s private copy of a row
    std::vector<std::uint64_t> scratch_words;
};

Table::Table(const TableOptions& options) : options_(options) {}

// Row times serve only the TTL: without one, no clock is read (a clock read costs as much as
// a small row update).
std::uint64_t Table::now_ns() const { return options_.ttl_seconds > 0 ? steady_now_ns() : 0; }
Table::~Table() = default;

Result<std::unique_ptr<Table>> Table::create(const TableOptions& o) {
    if (o.dims == 0 || o.dims > 65536) return Status::invalid_argument("dims must be in 1..65536");
    if (o.shards == 0 || !std::has_single_bit(o.shards) || o.shards > 1024)
        return Status::invalid_argument("shards must be a power of two in 1..1024");
    if (o.capacity < o.shards) return Status::invalid_argument("capacity must be at least the number of shards");
    if (o.capacity / o.shards >= kNoRow) return Status::invalid_argument("capacity per shard must be below 2^32 - 1");
    if (o.words > 4096) return Status::invalid_argument("words must be in 0..4096");
    if (!std::isfinite(o.ttl_seconds) || o.ttl_seconds < 0) return Status::invalid_argument("ttl_seconds must be >= 0");
    std::unique_ptr<Table> t(new Table(o));
    const unsigned bits = static_cast<unsigned>(std::countr_zero(o.shards));
    t->shard_shift_ = bits == 0 ? 0 : 64 - bits;
    const std::size_t per_shard = (o.capacity + o.shards - 1) / o.shards;
    for (std::size_t s = 0; s < o.shards; ++s) {
        auto shard = std::make_unique<Shard>(o.dims, o.words, per_shard);
        shard->admit_after = o.admit_after;
        shard->on_evict = o.on_evict;
        shard->evict_context = o.evict_context;
        shard->ttl_ns = static_cast<std::uint64_t>(o.ttl_seconds * 1e9);
        if (o.admit_after > 1) shard->sketch.assign(kSketchDepth * kSketchWidth, 0);
        t->shards_.push_back(std::move(shard));
    }
    return t;
}

std::size_t Table::shard_index(std::uint64_t hash) const { return shard_shift_ == 0 ? 0 : hash >> shard_shift_; }

Table::Shard& Table::shard_of(std::uint64_t key) const { return *shards_[shard_index(mix(key))]; }

Status Table::set(const std::uint64_t* keys, const float* vectors, std::size_t n) {
    const std::size_t dims = options_.dims;
    for (std::size_t i = 0; i < n; ++i) {
        if (keys[i] == kInvalidKey) return Status::invalid_argument("key 2^64-1 is reserved (at position " + std::to_string(i) + ")");
        for (std::size_t d = 0; d < dims; ++d) {
            if (!std::isfinite(vectors[i * dims + d]))
                return Status::invalid_argument("vectors row " + std::to_string(i) + ", column " + std::to_string(d) +
                                                " is NaN or infinite");
        }
    }
    const std::uint64_t now = now_ns();
    // Rows grouped by shard (a counting sort, stable), so each writer lock is taken once per
    // call and each shard's writes go in the caller's order. Per-thread buffers: a batch of
    // events allocates nothing once the thread has seen one of its size.
    thread_local std::vector<std::uint32_t> first, order, shard_of_row;
    const std::size_t shards = shards_.size();
    first.assign(shards + 1, 0);
    order.resize(n);
    shard_of_row.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
        shard_of_row[i] = static_cast<std::uint32_t>(shard_index(mix(keys[i])));
        ++first[shard_of_row[i] + 1];
    }
    for (std::size_t s = 0; s < shards; ++s) first[s + 1] += first[s];
    for (std::size_t i = 0; i < n; ++i) order[first[shard_of_row[i]]++] = static_cast<std::uint32_t>(i);
    // Each first[s] now points one past shard s's rows, i.e. at shard s + 1's first row.
    for (std::size_t s = 0, begin = 0; s < shards; begin = first[s++]) {
        const std::size_t end = first[s];
        if (begin == end) continue;
        Shard& shard = *shards_[s];
        std::lock_guard<std::mutex> lock(shard.writer);
        for (std::size_t j = begin; j < end; ++j) {
            if (j + 8 < end) shard.prefetch_slot(mix(keys[order[j + 8]]));  // misses overlap
            shard.set(keys[order[j]], vectors + order[j] * dims, nullptr, now);
        }
    }
    return Status::ok();
}

void Table::read(const std::uint64_t* keys, std::size_t n, float* out, std::uint64_t* words_out, bool* found) const {
    const std::uint64_t now = now_ns();
    const std::size_t dims = options_.dims;
    // Random ids miss the caches twice (index slot, then row). Batches go in groups: first
    // prefetch every group member's index slot, then find and prefetch its rows, then copy,
    // so the misses of a group overlap instead of queueing one after another.
    constexpr std::size_t kGroup = 16;
    std::uint64_t hashes[kGroup];
    const Shard* shards[kGroup];
    std::uint32_t rows[kGroup];
    for (std::size_t g = 0; g < n; g += kGroup) {
        const std::size_t m = std::min(kGroup, n - g);
        for (std::size_t i = 0; i < m; ++i) {
            hashes[i] = mix(keys[g + i]);
            shards[i] = shards_[shard_index(hashes[i])].get();
            shards[i]->prefetch_slot(hashes[i]);
        }
        for (std::size_t i = 0; i < m; ++i) {
            rows[i] = keys[g + i] == kInvalidKey ? kNoRow : shards[i]->find(keys[g + i], hashes[i]);
            if (rows[i] != kNoRow) shards[i]->prefetch_row(rows[i]);
        }
        for (std::size_t i = 0; i < m; ++i) {
            float* o = out == nullptr ? nullptr : out + (g + i) * dims;
            std::uint64_t* w = words_out == nullptr ? nullptr : words_out + (g + i) * options_.words;
            found[g + i] = rows[i] != kNoRow && shards[i]->read(rows[i], keys[g + i], o, w, now);
            if (!found[g + i]) {
                if (o != nullptr) std::fill(o, o + dims, 0.0f);
                if (w != nullptr) std::fill(w, w + options_.words, 0);
            }
        }
    }
}

bool Table::update(std::uint64_t key, UpdateFn fn, void* context) { return update_row(key, fn, context, true); }

bool Table::update_words(std::uint64_t key, UpdateFn fn, void* context) {
    return update_row(key, fn, context, false);
}

bool Table::update_row(std::uint64_t key, UpdateFn fn, void* context, bool with_floats) {
    const std::size_t dims = options_.dims, words = options_.words;
    const std::uint64_t h = mix(key);
    Shard& shard = *shards_[shard_index(h)];
    std::lock_guard<std::mutex> lock(shard.writer);
    // The writer's private copy lives in the shard, used under its lock: nothing allocated once
    // warm, and no thread-local lookups (a function call each, from a shared library).
    std::vector<float>& vector = shard.scratch_vector;
    std::vector<std::uint64_t>& word_copy = shard.scratch_words;
    vector.resize(with_floats ? dims : 0);
    word_copy.resize(words);
    const std::uint64_t now = now_ns();
    const std::uint32_t r = shard.find(key, h);
    const bool existed = r != kNoRow && shard.unexpired(r, now);  // an expired row counts as missing
    if (existed) {  // the writer owns the row: plain copies race with no other write
        std::memcpy(vector.data(), shard.data(r), vector.size() * sizeof(float));
        std::memcpy(word_copy.data(), shard.words_of(r), words * sizeof(std::uint64_t));
    } else {
        std::fill(vector.begin(), vector.end(), 0.0f);
        std::fill(word_copy.begin(), word_copy.end(), 0);
    }
    float* floats = with_floats ? vector.data() : nullptr;
    if (!fn(context, RowView{floats, word_copy.data(), existed})) return existed;
    if (!existed) return shard.set(key, floats, word_copy.data(), now);  // a new row (zero floats without them)
    // In place: the row is known, no second probe of the index.
    if (with_floats) {
        shard.write(r, key, floats, word_copy.data(), now);
    } else {
        shard.write_words(r, word_copy.data(), now);
    }
    shard.lru_unlink(r);
    shard.lru_append(r);
    return true;
}

std::pair<Table::Shard*, std::uint32_t> Table::locate(std::uint64_t key) const {
    const std::uint64_t h = mix(key);
    Shard* shard = shards_[shard_index(h)].get();
    return {shard, shard->find(key, h)};
}

void Table::prefetch(std::uint64_t key) const {
    const std::uint64_t h = mix(key);
    shards_[shard_index(h)]->prefetch_slot(h);
}

void Table::prefetch_row(std::uint64_t key) const {
    const auto [shard, r] = locate(key);
    if (r != kNoRow) shard->prefetch_row(r);
}

void Table::prefetch_links(std::uint64_t key) const {
    const auto [shard, r] = locate(key);
    if (r == kNoRow) return;
    const RowHeader& row = shard->header(r);  // writer-only fields: read by the writer alone
    if (row.lru_prev != kNoRow) __builtin_prefetch(&shard->header(row.lru_prev));
    if (row.lru_next != kNoRow) __builtin_prefetch(&shard->header(row.lru_next));
}

std::uint64_t Table::peek_word(std::uint64_t key, std::size_t index) const {
    const auto [shard, r] = locate(key);
    if (r == kNoRow || index >= shard->words) return 0;
    return std::atomic_ref<std::uint64_t>(shard->words_of(r)[index]).load(std::memory_order_relaxed);
}

bool Table::peek(std::uint64_t key, float* vector, std::uint64_t* words) const {
    const auto [shard, r] = locate(key);
    if (r == kNoRow || !shard->unexpired(r, now_ns())) return false;
    if (vector != nullptr) std::memcpy(vector, shard->data(r), shard->dims * sizeof(float));
    if (words != nullptr) std::memcpy(words, shard->words_of(r), shard->words * sizeof(std::uint64_t));
    return true;
}

void Table::for_each(VisitFn fn, void* context) const {
    const std::uint64_t now = now_ns();
    for (const auto& shard : shards_) {
        std::lock_guard<std::mutex> lock(shard->writer);
        for (std::uint32_t r = shard->lru_head; r != kNoRow; r = shard->header(r).lru_next) {
            if (!shard->unexpired(r, now)) continue;  // expired: reads as missing
            const std::uint64_t key = shard->header(r).key.load(std::memory_order_relaxed);
            fn(context, key, shard->data(r), shard->words_of(r));
        }
    }
}

std::size_t Table::remove(const std::uint64_t* keys, std::size_t n) {
    std::size_t removed = 0;
    const std::uint64_t now = now_ns();
    for (std::size_t i = 0; i < n; ++i) {
        if (keys[i] == kInvalidKey) continue;
        Shard& shard = shard_of(keys[i]);
        std::lock_guard<std::mutex> lock(shard.writer);
        const std::uint32_t row = shard.find(keys[i], mix(keys[i]));
        if (row == kNoRow) continue;
        shard.drop(row, now);
        ++removed;
    }
    return removed;
}

std::size_t Table::evict(std::size_t keep, VisitFn fn, void* context) {
    std::size_t dropped = 0;
    const std::uint64_t now = now_ns();
    while (size() > keep) {
        Shard* fullest = shards_.front().get();
        for (const auto& shard : shards_) {
            if (shard->live.load(std::memory_order_relaxed) > fullest->live.load(std::memory_order_relaxed))
                fullest = shard.get();
        }
        std::lock_guard<std::mutex> lock(fullest->writer);
        const std::uint32_t r = fullest->lru_head;
        if (r == kNoRow) break;  // emptied meanwhile by another writer
        if (fn != nullptr)
            fn(context, fullest->header(r).key.load(std::memory_order_relaxed), fullest->data(r), fullest->words_of(r));
        fullest->drop(r, now);
        fullest->evictions.fetch_add(1, std::memory_order_relaxed);
        ++dropped;
    }
    return dropped;
}

std::size_t Table::expire() {
    if (options_.ttl_seconds <= 0) return 0;
    std::size_t dropped = 0;
    const std::uint64_t now = now_ns();
    for (auto& shard : shards_) {
        std::lock_guard<std::mutex> lock(shard->writer);
        // The LRU list is in update order: expired rows are at its head.
        while (shard->lru_head != kNoRow) {
            if (shard->unexpired(shard->lru_head, now)) break;
            if (shard->on_evict != nullptr)
                shard->on_evict(shard->evict_context, shard->header(shard->lru_head).key.load(std::memory_order_relaxed));
            shard->drop(shard->lru_head, now);
            shard->evictions.fetch_add(1, std::memory_order_relaxed);
            ++dropped;
        }
    }
    return dropped;
}

std::size_t Table::size() const {
    std::size_t n = 0;
    for (const auto& shard : shards_) n += shard->live.load(std::memory_order_relaxed);
    return n;
}

TableStats Table::stats() const {
    TableStats s;
    s.capacity = options_.capacity;
    for (const auto& shard : shards_) {
        std::lock_guard<std::mutex> lock(shard->writer);
        s.rows += shard->live.load(std::memory_order_relaxed);
        s.evictions += shard->evictions.load(std::memory_order_relaxed);
        s.not_admitted += shard->not_admitted.load(std::memory_order_relaxed);
        s.memory_bytes += shard->memory_bytes + shard->sketch.size();
        for (const auto& ix : shard->indexes) s.memory_bytes += (ix->mask + 1) * sizeof(IndexSlot);
    }
    return s;
}

}  // namespace recserve::embed
