// The snapshot file: the whole state of a Profiles at one log position.
//
//   header (64 bytes): magic, version, dims, lsn, body size and CRC-32C, seen options, event
//                      key window, header CRC-32C
//   body: counters; users (key, 2 x dims floats, words); items (key, dims floats, words);
//         user logs (key, seen-set, event key ring, recent positives);
//         the co-engagement index (co_engagement.cpp's section)
//
// Version 2 (items without the match_sum word, logs without recent positives, no index) still
// loads: match_sum 0, empty lists, an empty index.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <mutex>
#include <shared_mutex>

#include "recserve/base/byte_io.hpp"
#include "recserve/base/crc32c.hpp"
#include "recserve/profiles/profiles.hpp"
#include "user_logs.hpp"

namespace recserve::profiles {
namespace {

constexpr char kMagic[8] = {'R', 'S', 'P', 'R', 'O', 'F', '\0', '\1'};
constexpr std::uint32_t kVersion = 4;  // 2: users carry activity counts; 3: co-engagement, match_sum;
                                       // 4: impression_match_sum
constexpr std::uint32_t kOldestVersion = 2;

struct SnapshotHeader {
    char magic[8];
    std::uint32_t version;
    std::uint32_t dims;
    std::uint64_t lsn;
    std::uint64_t body_bytes;
    std::uint32_t body_crc;
    std::uint32_t seen_recent;
    std::uint32_t seen_filter_bits;
    std::uint32_t seen_filter_items;
    std::uint32_t event_key_window;
    std::uint8_t reserved[8];
    std::uint32_t header_crc;
};
static_assert(sizeof(SnapshotHeader) == 64 && offsetof(SnapshotHeader, header_crc) == 60,
              "header field offsets are part of the file format");

struct RowsOut {
    ByteWriter* w;
    std::size_t floats, words;
    std::size_t pointer_word;  // written as 0: an address means nothing in another process
    std::uint64_t count = 0;
};

void put_row(void* context, std::uint64_t key, const float* vector, const std::uint64_t* words) {
    auto& out = *static_cast<RowsOut*>(context);
    out.w->put(key);
    out.w->bytes(vector, out.floats * sizeof(float));
    out.w->bytes(words, out.words * sizeof(std::uint64_t));
    if (out.pointer_word < out.words) {  // patched after the copy: one copy per row, not one per word
        char* at = out.w->buffer().data() + out.w->buffer().size() - (out.words - out.pointer_word) * sizeof(std::uint64_t);
        std::memset(at, 0, sizeof(std::uint64_t));
    }
    ++out.count;
}

void put_table(ByteWriter& w, const embed::Table& t, std::size_t pointer_word) {
    const std::size_t count_at = w.buffer().size();
    w.put(std::uint64_t{0});  // patched below: rows are counted as they are visited
    RowsOut out{&w, t.options().dims, t.options().words, pointer_word};
    t.for_each(put_row, &out);
    std::memcpy(w.buffer().data() + count_at, &out.count, sizeof(out.count));
}

struct RowIn {
    const float* vector;
    const std::uint64_t* words;
    std::size_t floats, words_count;
};

bool restore_row(void* context, const embed::RowView& row) {
    const auto& in = *static_cast<const RowIn*>(context);
    std::memcpy(row.vector, in.vector, in.floats * sizeof(float));
    std::memcpy(row.words, in.words, in.words_count * sizeof(std::uint64_t));
    return true;
}

// A row of the file has file_words words; where that is fewer than the table's (an older
// version), zero words are inserted at insert_at (counters added since).
Status get_table(ByteReader& r, std::size_t body_bytes, embed::Table& t, std::size_t pointer_word,
                 const Status& truncated, const std::string& where, const char* what, std::size_t file_words,
                 std::size_t insert_at) {
    std::uint64_t count = 0;
    if (!r.get(count)) return truncated;
    const std::size_t floats = t.options().dims, words = t.options().words;
    const std::size_t row_bytes = sizeof(std::uint64_t) + floats * sizeof(float) + file_words * sizeof(std::uint64_t);
    if (count > body_bytes / row_bytes) return truncated;  // before any work: the body cannot hold them
    std::vector<float> vector(floats);
    std::vector<std::uint64_t> word_values(words);
    for (std::uint64_t i = 0; i < count; ++i) {
        std::uint64_t key = 0;
        if (!r.get(key) || !r.bytes(vector.data(), floats * sizeof(float)) ||
            !r.bytes(word_values.data(), file_words * sizeof(std::uint64_t)))
            return truncated;
        if (file_words < words) {
            std::copy_backward(word_values.begin() + static_cast<std::ptrdiff_t>(insert_at),
                               word_values.begin() + static_cast<std::ptrdiff_t>(file_words), word_values.end());
            std::fill_n(word_values.begin() + static_cast<std::ptrdiff_t>(insert_at), words - file_words, 0);
        }
        if (key == embed::kInvalidKey) return Status::corrupt(where + " has a " + what + " row with the reserved key");
        for (float v : vector) {
            if (!std::isfinite(v)) return Status::corrupt(where + " has a non-finite " + what + " vector");
        }
        if (pointer_word < words && word_values[pointer_word] != 0)
            return Status::corrupt(where + " has a " + what + " row with a stored address");
        RowIn in{vector.data(), word_values.data(), floats, words};
        if (!t.update(key, restore_row, &in))
            return Status::invalid_argument(where + " holds more " + what + "s than the configured capacity");
    }
    return Status::ok();
}

}  // namespace

std::vector<char> Profiles::snapshot(std::uint64_t lsn) const {
    ByteWriter w;
    std::lock_guard<std::mutex> lock(writer_);
    // One allocation for the tables' part (growing a buffer of gigabytes by doubling copies it).
    const auto row_bytes = [](const embed::Table& t) {
        return sizeof(std::uint64_t) + t.options().dims * sizeof(float) + t.options().words * sizeof(std::uint64_t);
    };
    w.reserve(sizeof(SnapshotHeader) + 64 + users_->size() * row_bytes(*users_) + items_->size() * row_bytes(*items_) +
              users_->size() * (64 + options_.seen.recent * sizeof(std::uint64_t)) +
              co_->stats().items * 32 + co_->stats().edges * 12);
    w.bytes(std::string(sizeof(SnapshotHeader), '\0').data(), sizeof(SnapshotHeader));  // the header goes here
    w.put(applied_.load(std::memory_order_relaxed));
    w.put(stale_.load(std::memory_order_relaxed));
    w.put(duplicate_keys_.load(std::memory_order_relaxed));
    w.put(unknown_items_.load(std::memory_order_relaxed));
    put_table(w, *users_, kUserLogWord);
    put_table(w, *items_, kItemWords);  // items have no pointer word
    std::uint64_t logs = 0;
    for (const auto& shard : logs_->shards) logs += shard.logs.size();
    w.put(logs);
    for (const auto& shard : logs_->shards) {
        for (const auto& [user, log] : shard.logs) {
            w.put(user);
            log.seen.serialize(w);
            w.put(static_cast<std::uint32_t>(log.keys.size()));
            w.put(log.keys_head);
            w.bytes(log.keys.data(), log.keys.size() * sizeof(std::uint64_t));
            put_positives(w, log.positives);
        }
    }
    co_->serialize(w);
    std::vector<char>& file = w.buffer();
    SnapshotHeader h{};
    std::memcpy(h.magic, kMagic, sizeof(kMagic));
    h.version = kVersion;
    h.dims = static_cast<std::uint32_t>(options_.dims);
    h.lsn = lsn;
    h.body_bytes = file.size() - sizeof(h);
    h.body_crc = crc32c(file.data() + sizeof(h), h.body_bytes);
    h.seen_recent = options_.seen.recent;
    h.seen_filter_bits = options_.seen.filter_bits;
    h.seen_filter_items = options_.seen.filter_items;
    h.event_key_window = options_.event_key_window;
    h.header_crc = crc32c(&h, offsetof(SnapshotHeader, header_crc));
    std::memcpy(file.data(), &h, sizeof(h));
    return std::move(file);
}

Result<std::unique_ptr<Profiles>> Profiles::load(const std::string& path, const ProfilesOptions& options,
                                                 std::uint64_t* lsn) {
    Result<std::vector<char>> file = read_whole_file(path);
    if (!file.is_ok()) return file.status();
    const std::vector<char>& bytes = file.value();
    const std::string where = "snapshot " + path;
    SnapshotHeader h{};
    if (bytes.size() < sizeof(h)) return Status::corrupt(where + " is shorter than its header");
    std::memcpy(&h, bytes.data(), sizeof(h));
    if (std::memcmp(h.magic, kMagic, sizeof(kMagic)) != 0) return Status::corrupt(where + " is not a snapshot");
    if (crc32c(&h, offsetof(SnapshotHeader, header_crc)) != h.header_crc)
        return Status::corrupt(where + " has a damaged header (checksum mismatch)");
    if (h.version < kOldestVersion || h.version > kVersion)
        return Status::corrupt(where + " has unknown version " + std::to_string(h.version));
    if (h.body_bytes != bytes.size() - sizeof(h))
        return Status::corrupt(where + " is truncated or has extra bytes (body " + std::to_string(bytes.size() - sizeof(h)) +
                               " bytes, header says " + std::to_string(h.body_bytes) + ")");
    const char* body = bytes.data() + sizeof(h);
    if (crc32c(body, h.body_bytes) != h.body_crc) return Status::corrupt(where + " has a damaged body (checksum mismatch)");
    if (h.dims != options.dims || h.seen_recent != options.seen.recent ||
        h.seen_filter_bits != options.seen.filter_bits || h.seen_filter_items != options.seen.filter_items ||
        h.event_key_window != options.event_key_window)
        return Status::invalid_argument(where + " was written with other dims or seen-set options (dims " +
                                        std::to_string(h.dims) + ", seen recent " + std::to_string(h.seen_recent) +
                                        ", filter bits " + std::to_string(h.seen_filter_bits) + ", filter items " +
                                        std::to_string(h.seen_filter_items) + ", event key window " +
                                        std::to_string(h.event_key_window) + ")");
    Result<std::unique_ptr<Profiles>> created = create(options);
    if (!created.is_ok()) return created.status();
    std::unique_ptr<Profiles> p = std::move(created).value();
    const Status truncated = Status::corrupt(where + " ends inside its body");
    ByteReader r(body, h.body_bytes);
    std::uint64_t counters[4];
    if (!r.bytes(counters, sizeof(counters))) return truncated;
    p->applied_ = counters[0];
    p->stale_ = counters[1];
    p->duplicate_keys_ = counters[2];
    p->unknown_items_ = counters[3];
    RECSERVE_RETURN_IF_ERROR(
        get_table(r, h.body_bytes, *p->users_, kUserLogWord, truncated, where, "user", kUserTableWords, 0));
    // 3 added match_sum, 4 impression_match_sum after it: older rows get zeros there
    const std::size_t item_words = h.version >= 4 ? kItemWords : h.version == 3 ? kItemWords - 1 : kItemWords - 2;
    RECSERVE_RETURN_IF_ERROR(get_table(r, h.body_bytes, *p->items_, kItemWords, truncated, where, "item", item_words,
                                       h.version == 3 ? kImpressionMatchSum : kMatchSum));
    std::uint64_t logs = 0;
    if (!r.get(logs) || logs > h.body_bytes / 8) return truncated;
    for (std::uint64_t i = 0; i < logs; ++i) {
        std::uint64_t user = 0;
        if (!r.get(user)) return truncated;
        UserLog& log = p->logs_->of(user).logs[user];
        std::uint32_t keys = 0;
        if (!log.seen.parse(r, options.seen) || !r.get(keys) || !r.get(log.keys_head)) return truncated;
        if (keys > options.event_key_window || log.keys_head >= std::max<std::uint32_t>(keys, 1))
            return Status::corrupt(where + " has an inconsistent event key window");
        log.keys.resize(keys);
        if (!r.bytes(log.keys.data(), keys * sizeof(std::uint64_t))) return truncated;
        if (h.version >= 3) {
            if (const char* problem = get_positives(r, log.positives))
                return Status::corrupt(where + " has a user log that " + problem);
        }
    }
    if (h.version >= 3) {
        const embed::Table& items = *p->items_;
        const auto in_catalogue = [&items](std::uint64_t item) {
            std::uint64_t words[kItemWords];
            return items.peek(item, nullptr, words) && (words[kItemFlags] & 1);
        };
        RECSERVE_RETURN_IF_ERROR(p->co_->parse(r, h.body_bytes, in_catalogue, where));
    }
    if (!r.at_end()) return Status::corrupt(where + " has bytes after its last section");
    *lsn = h.lsn;
    return p;
}

}  // namespace recserve::profiles
