#include "recserve/ann/index.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <optional>
#include <random>
#include <thread>
#include <type_traits>

#include "recserve/ann/hnsw_graph.hpp"
#include "recserve/ann/id_map.hpp"
#include "recserve/ann/index_file.hpp"
#include "recserve/ann/vector_storage.hpp"
#include "recserve/simd/kernel_table.hpp"

namespace recserve::ann {
namespace {

bool all_finite(const float* v, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i)
        if (!std::isfinite(v[i])) return false;
    return true;
}

Status validate_options(const IndexOptions& o) {
    if (o.dims < 1 || o.dims > 65536)
        return Status::invalid_argument("dims must be in [1, 65536], got " + std::to_string(o.dims));
    if (o.M < 2 || o.M > HnswGraph<F32Storage>::kMaxM / 2)
        return Status::invalid_argument("M must be in [2, 128], got " + std::to_string(o.M));
    if (o.ef_construction < 1)
        return Status::invalid_argument("ef_construction must be >= 1, got " + std::to_string(o.ef_construction));
    if (o.rerank && o.dtype != Dtype::kInt8)
        return Status::invalid_argument("rerank applies to dtype 'int8' only (float32 distances are already exact)");
    if (!(o.compact_threshold >= 0.0) || !std::isfinite(o.compact_threshold))
        return Status::invalid_argument("compact_threshold must be a finite number >= 0");
    return Status::ok();
}

template <class Storage>
class IndexImpl final : public Index {
  public:
    IndexImpl(const IndexOptions& o, const simd::KernelTable& k)
        : options_(o), kernels_(k), graph_(o.M, o.ef_construction, o.dims, o.metric, k), rng_(o.seed),
          level_mult_(1.0 / std::log(static_cast<double>(o.M))) {
        if (o.rerank) exact_.emplace(o.dims, o.metric, k);
        if (o.compact_threshold > 0.0) compactor_ = std::thread([this] { compact_in_background(); });
    }
    ~IndexImpl() override {
        {
            std::lock_guard<std::mutex> lock(write_mu_);
            stopping_ = true;
        }
        wake_compactor_.notify_all();
        if (compactor_.joinable()) compactor_.join();
    }

    Status add(const std::uint64_t* ids, const float* vectors, std::size_t n, std::size_t threads) override {
        const std::size_t dims = options_.dims;
        if (!all_finite(vectors, n * dims)) {
            for (std::size_t i = 0; i < n; ++i)
                if (!all_finite(vectors + i * dims, dims))
                    return Status::invalid_argument("vectors[" + std::to_string(i) + "] has a NaN or infinite value");
        }
        IdMap batch;
        for (std::size_t i = 0; i < n; ++i) {
            if (ids[i] == kMissingId) return Status::invalid_argument("id 2^64-1 is reserved for missing results");
            if (batch.find(ids[i])) return Status::invalid_argument("id " + std::to_string(ids[i]) + " appears twice in one add()");
            batch.insert_or_assign(ids[i], 0);
        }

        std::lock_guard<std::mutex> lock(write_mu_);
        const std::size_t fresh = n > graph_.free_slots() ? n - graph_.free_slots() : 0;
        if (graph_.slot_count() + fresh > ChunkedArray::max_slots() || !graph_.reserve(graph_.slot_count() + fresh) ||
            (exact_ && !exact_->slots().reserve(graph_.slot_count() + fresh)))
            return Status::unavailable("out of memory growing the index to " + std::to_string(graph_.slot_count() + fresh) + " slots");

        // Plan on this thread (deterministic levels), insert on `threads`.
        std::vector<Planned> plan(n);
        std::vector<std::uint32_t> replaced;
        for (std::size_t i = 0; i < n; ++i) {
            if (auto old = ids_.find(ids[i])) replaced.push_back(*old);
            plan[i] = {graph_.take_slot(), draw_level()};
            ids_.insert_or_assign(ids[i], plan[i].slot);
        }
        std::vector<std::uint32_t> unlinked = run_parallel(n, threads, [&](std::size_t i, SearchScratch& s) {
            insert_one(plan[i].slot, ids[i], plan[i].level, vectors + i * dims, s);
        });
        // A prune may have dropped some node's last in-link: relink those and any new node.
        for (const Planned& p : plan) unlinked.push_back(p.slot);
        graph_.ensure_in_links(unlinked, *scratch_.take());
        // The old version of an updated id disappears only once the new one is searchable.
        for (std::uint32_t slot : replaced) graph_.set_state(slot, SlotState::kDeleted);
        live_.store(ids_.size(), std::memory_order_relaxed);
        tombstones_ += replaced.size();
        maybe_wake_compactor();
        return Status::ok();
    }

    Status search(const float* queries, std::size_t nq, std::size_t k, const SearchParams& params,
                  std::uint64_t* out_ids, float* out_dist) const override {
        if (k < 1) return Status::invalid_argument("k must be >= 1, got " + std::to_string(k));
        if (params.ef < 1) return Status::invalid_argument("ef must be >= 1, got " + std::to_string(params.ef));
        for (std::size_t i = 0; i < nq; ++i)
            if (!all_finite(queries + i * options_.dims, options_.dims))
                return Status::invalid_argument("queries[" + std::to_string(i) + "] has a NaN or infinite value");

        auto lease = scratch_.take();
        SearchScratch& s = *lease;
        s.exclude.assign(params.exclude, params.exclude_count);
        s.filter = params.filter;
        s.query.resize(Storage::query_bytes(options_.dims) / sizeof(float) + 1);
        if (exact_) s.exact_query.resize(options_.dims);
        const auto guard = graph_.grace().enter();
        for (std::size_t i = 0; i < nq; ++i)
            search_one(queries + i * options_.dims, k, params.ef, s, out_ids + i * k, out_dist + i * k);
        return Status::ok();
    }

    std::size_t remove(const std::uint64_t* ids, std::size_t n, std::vector<std::uint64_t>* missing) override {
        std::lock_guard<std::mutex> lock(write_mu_);
        std::size_t removed = 0;
        for (std::size_t i = 0; i < n; ++i) {
            const auto slot = ids_.find(ids[i]);
            if (!slot) {
                if (missing) missing->push_back(ids[i]);
                continue;
            }
            ids_.erase(ids[i]);
            graph_.set_state(*slot, SlotState::kDeleted);
            ++removed;
        }
        live_.store(ids_.size(), std::memory_order_relaxed);
        tombstones_ += removed;
        maybe_wake_compactor();
        return removed;
    }

    std::size_t compact() override {
        std::lock_guard<std::mutex> lock(write_mu_);
        return compact_locked();
    }

    Status save(const std::string& path) const override {
        IndexFileHeader h{};
        std::vector<char> body;
        {
            // Writers wait only for the copy into memory, not for the file's write and fsync.
            std::lock_guard<std::mutex> lock(write_mu_);
            h.slots = graph_.slot_count();
            body = serialize();
        }
        h.dims = static_cast<std::uint32_t>(options_.dims);
        h.metric = static_cast<std::uint8_t>(options_.metric);
        h.dtype = static_cast<std::uint8_t>(options_.dtype);
        h.rerank = options_.rerank ? 1 : 0;
        h.M = static_cast<std::uint32_t>(options_.M);
        h.ef_construction = static_cast<std::uint32_t>(options_.ef_construction);
        h.seed = options_.seed;
        std::memcpy(h.compact_threshold, &options_.compact_threshold, sizeof(double));
        return write_index_file(path, h, body);
    }

    // Fills a fresh index from a verified body; kCorrupt on anything inconsistent.
    Status deserialize(const IndexFileHeader& h, const std::vector<char>& body);

    bool contains(std::uint64_t id) const override {
        std::lock_guard<std::mutex> lock(write_mu_);
        return ids_.find(id).has_value();
    }
    std::size_t size() const override { return live_.load(std::memory_order_relaxed); }
    const IndexOptions& options() const override { return options_; }

    IndexStats stats() const override {
        std::lock_guard<std::mutex> lock(write_mu_);
        IndexStats st;
        st.live = ids_.size();
        st.slots = graph_.slot_count();
        st.tombstones = tombstones_;
        st.free_slots = graph_.free_slots();
        st.levels = graph_.entry().level + 1;
        st.memory_bytes = graph_.memory_bytes() + ids_.memory_bytes() + scratch_.memory_bytes() +
                          (exact_ ? exact_->slots().allocated_bytes() : 0);
        st.isa = kernels_.variant;
        return st;
    }

  private:
    struct Planned {
        std::uint32_t slot;
        int level;
    };

    int draw_level() {
        std::uniform_real_distribution<double> uniform(0.0, 1.0);
        const double u = 1.0 - uniform(rng_);  // (0, 1]
        return std::min(kMaxLevel, static_cast<int>(-std::log(u) * level_mult_));
    }

    void insert_one(std::uint32_t slot, std::uint64_t id, int level, const float* v, SearchScratch& s) {
        s.encode_tmp.resize(options_.dims);
        s.query.resize(Storage::query_bytes(options_.dims) / sizeof(float) + 1);
        store_payload(slot, v, s);
        if (exact_) exact_->store(slot, v);
        graph_.init_node(slot, id, level);
        graph_.set_state(slot, SlotState::kLive);
        graph_.insert(slot, graph_.storage().prepare(v, s.query.data()), s);
    }
    void store_payload(std::uint32_t slot, const float* v, SearchScratch& s) {
        if constexpr (std::is_same_v<Storage, I8Storage>) graph_.storage().store(slot, v, s.encode_tmp.data());
        else graph_.storage().store(slot, v);
    }

    // Runs fn(i, scratch) for i in [0, n) on `threads`; returns the nodes the inserts' prunes
    // dropped from a level-0 list (SearchScratch::unlinked of every thread).
    template <class Fn>
    std::vector<std::uint32_t> run_parallel(std::size_t n, std::size_t threads, const Fn& fn) {
        if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
        threads = std::min(threads, std::max<std::size_t>(1, n / 64));  // small batches: one thread
        std::atomic<std::size_t> next{0};
        std::vector<std::uint32_t> unlinked;
        std::mutex unlinked_mu;
        auto worker = [&] {
            auto lease = scratch_.take();
            SearchScratch& s = *lease;
            s.unlinked.clear();
            for (std::size_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < n;) fn(i, s);
            std::lock_guard<std::mutex> lock(unlinked_mu);
            unlinked.insert(unlinked.end(), s.unlinked.begin(), s.unlinked.end());
        };
        std::vector<std::thread> pool;
        for (std::size_t t = 1; t < threads; ++t) pool.emplace_back(worker);
        worker();
        for (auto& t : pool) t.join();
        return unlinked;
    }

    bool eligible(std::uint32_t slot, const SearchScratch& s) const {
        if (graph_.state(slot) != SlotState::kLive) return false;
        if (s.exclude.count() == 0 && s.filter == nullptr) return true;
        const std::uint64_t label = graph_.meta(slot).label;
        return !s.exclude.contains(label) && (s.filter == nullptr || !s.filter->rejects(label));
    }

    void search_one(const float* query, std::size_t k, std::size_t ef, SearchScratch& s, std::uint64_t* out_ids,
                    float* out_dist) const {
        std::fill(out_ids, out_ids + k, kMissingId);
        std::fill(out_dist, out_dist + k, std::numeric_limits<float>::infinity());
        const auto entry = graph_.entry();
        if (entry.slot == kNoSlot) return;
        const auto q = graph_.storage().prepare(query, s.query.data());
        const Candidate start = graph_.descend(q, 0, entry, s);
        graph_.search_level(q, start, std::max(ef, k), 0, s, [&](std::uint32_t x) { return eligible(x, s); });
        if (s.results.size() < k && size() > s.results.size()) scan_all(q, k, s);  // heavy exclusion
        if (exact_) {
            const auto eq = exact_->prepare(query, s.exact_query.data());
            for (Candidate& c : s.results) c.dist = exact_->distance(eq, c.slot);
        }
        std::sort(s.results.begin(), s.results.end(), [](auto& a, auto& b) { return a.dist < b.dist; });
        // While add() updates an id, its old and new slots are both live for a moment: a label
        // is written once, at its best distance.
        std::size_t found = 0;
        for (std::size_t i = 0; i < s.results.size() && found < k; ++i) {
            const std::uint64_t label = graph_.meta(s.results[i].slot).label;
            if (std::find(out_ids, out_ids + found, label) != out_ids + found) continue;
            out_ids[found] = label;
            out_dist[found++] = s.results[i].dist;
        }
    }

    // Exact scan of every eligible slot: the fallback when the graph walk found fewer than k
    // eligible items but more exist (most of the catalogue excluded).
    template <class Query>
    void scan_all(const Query& q, std::size_t k, SearchScratch& s) const {
        s.results.clear();
        const std::uint32_t slots = graph_.slot_count();
        for (std::uint32_t x = 0; x < slots; ++x) {
            if (!eligible(x, s)) continue;
            const float d = graph_.storage().distance(q, x);
            if (s.results.size() < k || d < s.results.front().dist) {
                s.results.push_back({d, x});
                std::push_heap(s.results.begin(), s.results.end(), FartherFirst{});
                if (s.results.size() > k) {
                    std::pop_heap(s.results.begin(), s.results.end(), FartherFirst{});
                    s.results.pop_back();
                }
            }
        }
    }

    std::size_t compact_locked() {
        auto lease = scratch_.take();
        const std::size_t freed = graph_.repair(*lease);
        tombstones_ = 0;
        return freed;
    }

    void maybe_wake_compactor() {
        if (options_.compact_threshold > 0.0 && tombstones_ > 0 &&
            static_cast<double>(tombstones_) >= options_.compact_threshold * static_cast<double>(std::max<std::size_t>(ids_.size(), 1)))
            wake_compactor_.notify_one();
    }

    void compact_in_background() {
        std::unique_lock<std::mutex> lock(write_mu_);
        for (;;) {
            wake_compactor_.wait(lock, [this] {
                return stopping_ || (tombstones_ > 0 && static_cast<double>(tombstones_) >=
                                                            options_.compact_threshold *
                                                                static_cast<double>(std::max<std::size_t>(ids_.size(), 1)));
            });
            if (stopping_) return;
            compact_locked();
        }
    }

    std::vector<char> serialize() const;

    IndexOptions options_;
    const simd::KernelTable& kernels_;
    HnswGraph<Storage> graph_;
    std::optional<F32Storage> exact_;  // float32 copies for re-ranking (int8 + rerank only)
    IdMap ids_;                        // writer-owned
    std::atomic<std::size_t> live_{0};
    std::size_t tombstones_ = 0;       // under write_mu_
    std::mt19937_64 rng_;
    double level_mult_;
    mutable ScratchPool scratch_;
    mutable std::mutex write_mu_;
    std::condition_variable wake_compactor_;
    bool stopping_ = false;
    std::thread compactor_;

    template <class S>
    friend Result<std::unique_ptr<Index>> load_as(const IndexOptions&, const simd::KernelTable&, const IndexFileHeader&,
                                                   const std::vector<char>&);
};

// ---- persistence --------------------------------------------------------------------------

template <class Storage>
std::vector<char> IndexImpl<Storage>::serialize() const {
    ByteWriter w;
    const std::uint32_t slots = graph_.slot_count();
    for (std::uint32_t s = 0; s < slots; ++s) w.put(graph_.meta(s).label);
    for (std::uint32_t s = 0; s < slots; ++s) w.put(graph_.meta(s).level);
    for (std::uint32_t s = 0; s < slots; ++s) w.put(static_cast<std::uint8_t>(graph_.state(s)));
    const std::size_t list0 = (1 + graph_.max_links(0)) * sizeof(std::uint32_t);
    for (std::uint32_t s = 0; s < slots; ++s) w.bytes(graph_.links(s, 0), list0);
    const std::size_t list = (1 + graph_.max_links(1)) * sizeof(std::uint32_t);
    for (std::uint32_t s = 0; s < slots; ++s)
        for (int l = 1; l <= graph_.meta(s).level; ++l) w.bytes(graph_.links(s, l), list);
    for (std::uint32_t s = 0; s < slots; ++s) w.bytes(graph_.storage().slots().at(s), graph_.storage().slot_bytes());
    if (exact_)
        for (std::uint32_t s = 0; s < slots; ++s) w.bytes(exact_->slots().at(s), exact_->slot_bytes());
    const auto entry = graph_.entry();
    w.put(entry.slot);
    w.put(static_cast<std::int32_t>(entry.level));
    w.put(static_cast<std::uint32_t>(graph_.free_list().size()));
    for (std::uint32_t s : graph_.free_list()) w.put(s);
    w.put(static_cast<std::uint64_t>(tombstones_));
    return std::move(w.buffer());
}

template <class Storage>
Status IndexImpl<Storage>::deserialize(const IndexFileHeader& h, const std::vector<char>& body) {
    const auto corrupt = [](const std::string& what) { return Status::corrupt("index file is corrupt: " + what); };
    std::lock_guard<std::mutex> lock(write_mu_);  // the background compactor reads this state
    const std::uint32_t slots = h.slots;
    // Check the claimed size against the body before allocating for it.
    const std::size_t per_slot = sizeof(std::uint64_t) + 2 + (1 + graph_.max_links(0)) * sizeof(std::uint32_t) +
                                 graph_.storage().slot_bytes() + (exact_ ? exact_->slot_bytes() : 0);
    if (body.size() / per_slot < slots) return corrupt("header claims " + std::to_string(slots) + " slots, body is too short");
    if (!graph_.reserve(slots) || (exact_ && !exact_->slots().reserve(slots)))
        return Status::unavailable("out of memory loading " + std::to_string(slots) + " slots");
    // Count the slots before init_node allocates their upper link lists: the destructor frees
    // the lists of counted slots, so a file refused below leaks nothing.
    graph_.restore(slots, {kNoSlot, -1}, {});
    ByteReader r(body.data(), body.size());
    std::vector<std::uint64_t> labels(slots);
    std::vector<std::uint8_t> levels(slots);
    std::vector<std::uint8_t> states(slots);
    if (!r.bytes(labels.data(), slots * sizeof(std::uint64_t)) || !r.bytes(levels.data(), slots) ||
        !r.bytes(states.data(), slots))
        return corrupt("truncated slot table");
    for (std::uint32_t s = 0; s < slots; ++s) {
        if (levels[s] > kMaxLevel) return corrupt("slot " + std::to_string(s) + " has level " + std::to_string(levels[s]));
        // A saved slot is live, deleted or free: kUnused exists only inside an add(), and
        // repair() would never unlink such a node, leaving links to the slots it frees.
        if (states[s] == static_cast<std::uint8_t>(SlotState::kUnused) || states[s] > static_cast<std::uint8_t>(SlotState::kFree))
            return corrupt("slot " + std::to_string(s) + " has a bad state");
        // repair() leaves a freed slot at level 0 with no links, and save() writes it so.
        if (states[s] == static_cast<std::uint8_t>(SlotState::kFree) && levels[s] != 0)
            return corrupt("free slot " + std::to_string(s) + " has level " + std::to_string(levels[s]));
        graph_.init_node(s, labels[s], levels[s]);
    }
    const auto check_list = [&](std::uint32_t s, int l) -> Status {
        std::uint32_t* list = graph_.links(s, l);
        if (!r.bytes(list, (1 + graph_.max_links(l)) * sizeof(std::uint32_t))) return corrupt("truncated links");
        if (list[0] > graph_.max_links(l)) return corrupt("slot " + std::to_string(s) + " has too many links");
        for (std::uint32_t i = 1; i <= list[0]; ++i)
            if (list[i] >= slots || levels[list[i]] < l || states[list[i]] == static_cast<std::uint8_t>(SlotState::kFree))
                return corrupt("slot " + std::to_string(s) + " links to a bad slot");
        return Status::ok();
    };
    for (std::uint32_t s = 0; s < slots; ++s) {
        RECSERVE_RETURN_IF_ERROR(check_list(s, 0));
        if (states[s] == static_cast<std::uint8_t>(SlotState::kFree) && graph_.links(s, 0)[0] != 0)
            return corrupt("free slot " + std::to_string(s) + " has links");
    }
    for (std::uint32_t s = 0; s < slots; ++s)
        for (int l = 1; l <= graph_.meta(s).level; ++l) RECSERVE_RETURN_IF_ERROR(check_list(s, l));
    for (std::uint32_t s = 0; s < slots; ++s)
        if (!r.bytes(graph_.storage().slots().at(s), graph_.storage().slot_bytes())) return corrupt("truncated vectors");
    if (exact_)
        for (std::uint32_t s = 0; s < slots; ++s)
            if (!r.bytes(exact_->slots().at(s), exact_->slot_bytes())) return corrupt("truncated vectors");
    std::uint32_t entry_slot = 0;
    std::int32_t entry_level = 0;
    std::uint32_t free_count = 0;
    if (!r.get(entry_slot) || !r.get(entry_level) || !r.get(free_count) || free_count > slots)
        return corrupt("truncated entry point");
    std::vector<std::uint32_t> free_list(free_count);
    std::uint64_t tombstones = 0;
    if (!r.bytes(free_list.data(), free_count * sizeof(std::uint32_t)) || !r.get(tombstones) || !r.at_end())
        return corrupt("bad free list or trailing bytes");
    // The free list names free slots, each once, and every one of them (one left off would
    // never be reused).
    std::vector<bool> listed(slots, false);
    for (std::uint32_t s : free_list) {
        if (s >= slots || states[s] != static_cast<std::uint8_t>(SlotState::kFree) || listed[s]) return corrupt("bad free list");
        listed[s] = true;
    }
    if (static_cast<std::size_t>(std::count(states.begin(), states.end(), static_cast<std::uint8_t>(SlotState::kFree))) != free_count)
        return corrupt("bad free list");
    // A search starts at the entry point: a free slot there is no node of the graph.
    if (entry_slot != kNoSlot && (entry_slot >= slots || states[entry_slot] == static_cast<std::uint8_t>(SlotState::kFree) ||
                                  entry_level != levels[entry_slot]))
        return corrupt("bad entry point");
    for (std::uint32_t s = 0; s < slots; ++s) {
        graph_.set_state(s, static_cast<SlotState>(states[s]));
        if (states[s] != static_cast<std::uint8_t>(SlotState::kLive)) continue;
        if (ids_.find(labels[s])) return corrupt("id " + std::to_string(labels[s]) + " is stored twice");
        ids_.insert_or_assign(labels[s], s);
    }
    graph_.restore(slots, {entry_slot, entry_level}, std::move(free_list));
    live_.store(ids_.size(), std::memory_order_relaxed);
    tombstones_ = tombstones;
    // Levels drawn after a load continue from a stream that depends on the seed and the size.
    rng_.seed(h.seed ^ (0x9E3779B97F4A7C15ULL * slots));
    return Status::ok();
}

template <class Storage>
Result<std::unique_ptr<Index>> load_as(const IndexOptions& o, const simd::KernelTable& k, const IndexFileHeader& h,
                                       const std::vector<char>& body) {
    auto index = std::make_unique<IndexImpl<Storage>>(o, k);
    RECSERVE_RETURN_IF_ERROR(index->deserialize(h, body));
    return std::unique_ptr<Index>(std::move(index));
}

Result<std::unique_ptr<Index>> make_index(const IndexOptions& o) {
    RECSERVE_RETURN_IF_ERROR(validate_options(o));
    auto k = simd::active_kernels();
    if (!k.is_ok()) return k.status();
    if (o.dtype == Dtype::kInt8) return std::unique_ptr<Index>(std::make_unique<IndexImpl<I8Storage>>(o, *k.value()));
    return std::unique_ptr<Index>(std::make_unique<IndexImpl<F32Storage>>(o, *k.value()));
}

}  // namespace

Result<std::unique_ptr<Index>> Index::create(const IndexOptions& options) { return make_index(options); }

Result<std::unique_ptr<Index>> Index::load(const std::string& path, std::optional<double> compact_threshold) {
    IndexFileHeader h{};
    std::vector<char> body;
    RECSERVE_RETURN_IF_ERROR(read_index_file(path, &h, &body));
    IndexOptions o;
    o.dims = h.dims;
    if (h.metric > static_cast<std::uint8_t>(Metric::kCosine) || h.dtype > static_cast<std::uint8_t>(Dtype::kInt8))
        return Status::corrupt("index file '" + path + "' has an unknown metric or dtype");
    o.metric = static_cast<Metric>(h.metric);
    o.dtype = static_cast<Dtype>(h.dtype);
    o.rerank = h.rerank != 0;
    o.M = h.M;
    o.ef_construction = h.ef_construction;
    o.seed = h.seed;
    std::memcpy(&o.compact_threshold, h.compact_threshold, sizeof(double));
    if (compact_threshold) o.compact_threshold = *compact_threshold;
    const Status valid = validate_options(o);
    if (!valid.is_ok()) return Status::corrupt("index file '" + path + "' has bad parameters: " + valid.message());
    auto k = simd::active_kernels();
    if (!k.is_ok()) return k.status();
    if (o.dtype == Dtype::kInt8) return load_as<I8Storage>(o, *k.value(), h, body);
    return load_as<F32Storage>(o, *k.value(), h, body);
}

}  // namespace recserve::ann
