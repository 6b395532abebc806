// A collisionless embedding table: uint64 key -> one row of `dims` floats, never shared by two
// keys (unlike hashed embedding tables, where ids collide).
//
// Concurrency: any number of readers, lock-free, while writers update. Keys are spread over
// shards; one writer at a time per shard (a per-shard mutex serialises writers, readers never
// take it). A reader never sees a half-written row: each row carries a sequence lock (odd while
// its writer copies, bumped twice per write) and readers retry a copy that overlapped a write.
//
//   shard = top bits of mix(key)
//   index: open addressing, linear probing   slot = {atomic key, atomic row}   (grows x2)
//   rows:  chunks of kChunkRows rows, allocated as the shard fills, never moved
//          row = {atomic seq, atomic key, atomic updated_ns, LRU links, dims floats, words uint64s}
//
// Rows may carry `words` uint64 values beside the floats (counters, timestamps, sequence
// numbers), read and written under the same sequence lock, so a reader sees a row's floats
// and words from one and the same write. update() is a read-modify-write of one row under its
// shard's writer lock: what the event-update rules use.
//
// Bounded memory: at most `capacity` rows (split evenly over the shards); a set of a new key in
// a full shard evicts that shard's least recently updated row (exact LRU per shard, so close to
// LRU over the table). Optional TTL: rows not updated for `ttl_seconds` read as missing and are
// the first to go. Optional admission (as Monolith does): a new key gets a row only once it has
// been set `admit_after` times, counted in a per-shard count-min sketch.
//
// Index growth publishes a new index with an atomic pointer; readers still probing the old one
// stay correct (rows are shared and each row names its key, which readers check), and old
// indexes are kept until the table is destroyed (at most the size of the current one in all).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "recserve/base/status.hpp"

namespace recserve::embed {

inline constexpr std::uint64_t kInvalidKey = ~std::uint64_t{0};  // reserved: the empty marker

struct TableOptions {
    std::size_t dims = 0;
    std::size_t capacity = 0;        // rows in all
    std::size_t shards = 16;         // a power of two
    double ttl_seconds = 0.0;        // 0: rows never expire
    std::uint32_t admit_after = 0;   // 0 or 1: every key is admitted at once
    std::size_t words = 0;           // uint64 values per row beside the floats
    // Called under the shard's writer lock with each row the table drops by itself (LRU or
    // TTL) before it goes, so an owner can drop what it keeps beside the row.
    void (*on_evict)(void* context, std::uint64_t key) = nullptr;
    void* evict_context = nullptr;
};

// One row as update() hands it to its function: a private copy, published only if the
// function returns true. `existed` is false for a key without a row (all zeros then).
struct RowView {
    float* vector;
    std::uint64_t* words;
    bool existed;
};
using UpdateFn = bool (*)(void* context, const RowView& row);
using VisitFn = void (*)(void* context, std::uint64_t key, const float* vector, const std::uint64_t* words);

struct TableStats {
    std::size_t rows = 0;
    std::size_t capacity = 0;
    std::uint64_t evictions = 0;       // rows dropped to make room (LRU) or because they expired
    std::uint64_t not_admitted = 0;    // sets dropped by admission
    std::size_t memory_bytes = 0;
};

class Table {
  public:
    static Result<std::unique_ptr<Table>> create(const TableOptions& options);
    ~Table();
    Table(const Table&) = delete;
    Table& operator=(const Table&) = delete;

    const TableOptions& options() const { return options_; }

    // Writes n rows (keys[i] -> vectors[i * dims ...]). Checks everything first: a NaN, an
    // infinity or kInvalidKey is kInvalidArgument and nothing is written.
    Status set(const std::uint64_t* keys, const float* vectors, std::size_t n);

    // Reads n rows into out (n x dims); found[i] says whether keys[i] has a row (missing rows
    // are zeros). Lock-free; safe during writes.
    void get(const std::uint64_t* keys, std::size_t n, float* out, bool* found) const {
        read(keys, n, out, nullptr, found);
    }

    // get() that also copies each row's words into words_out (n x words; zeros where missing).
    // Either output may be null.
    void read(const std::uint64_t* keys, std::size_t n, float* out, std::uint64_t* words_out, bool* found) const;

    // Read-modify-write of key's row (created if missing, subject to admission and eviction)
    // under its shard's writer lock: fn edits a copy, and the row changes only if it returns
    // true. Returns whether the row now holds fn's result. key must not be kInvalidKey, and
    // fn must leave the floats finite.
    bool update(std::uint64_t key, UpdateFn fn, void* context);
    // update() of the words alone (fn sees a null vector): the floats are neither copied nor
    // rewritten, so a counter bump costs the words' cache lines, not the row's. A new row's
    // floats are zeros.
    bool update_words(std::uint64_t key, UpdateFn fn, void* context);

    // Cache hints for a key about to be read or updated: prefetch() its index slot; some
    // time later, prefetch_row() its row (found through that slot). A batch that runs a few
    // keys ahead overlaps the cache misses of many keys instead of queueing them.
    void prefetch(std::uint64_t key) const;
    void prefetch_row(std::uint64_t key) const;
    // Later still, for the writer: the rows beside key's in the LRU list, which an update relinks.
    void prefetch_links(std::uint64_t key) const;
    // One word of key's row (0 when key has none), read without the sequence lock: a hint for
    // the writer about rows it alone writes, never data for readers.
    std::uint64_t peek_word(std::uint64_t key, std::size_t index) const;
    // key's row copied without the sequence lock (either output may be null); false if none.
    // Only for a caller that no other thread's writes can overlap (the table's sole writer).
    bool peek(std::uint64_t key, float* vector, std::uint64_t* words) const;

    // Calls fn for every live row, shard by shard, each under its writer lock (a consistent
    // view of each shard; writes to other shards may go on meanwhile).
    void for_each(VisitFn fn, void* context) const;

    // Removes the keys that have rows; returns how many did.
    std::size_t remove(const std::uint64_t* keys, std::size_t n);

    // Drops rows until at most `keep` remain, calling fn on each before it goes: the least
    // recently updated row of the shard that holds the most rows, so shards stay level and
    // each gives up its own LRU rows (rows carry no clock without a TTL, so this is LRU per
    // shard, close to LRU over the table). Counted as evictions; returns how many.
    std::size_t evict(std::size_t keep, VisitFn fn, void* context);

    // Drops expired rows now (they already read as missing); returns how many.
    std::size_t expire();

    std::size_t size() const;
    TableStats stats() const;

    struct Shard;  // table.cpp

  private:
    explicit Table(const TableOptions& options);
    std::size_t shard_index(std::uint64_t hash) const;  // hash = mix(key)
    Shard& shard_of(std::uint64_t key) const;
    std::uint64_t now_ns() const;
    // The shard of key and key's row there (kNoRow inside the table when it has none).
    std::pair<Shard*, std::uint32_t> locate(std::uint64_t key) const;
    bool update_row(std::uint64_t key, UpdateFn fn, void* context, bool with_floats);

    TableOptions options_;
    unsigned shard_shift_ = 0;
    std::vector<std::unique_ptr<Shard>> shards_;
};

}  // namespace recserve::embed
