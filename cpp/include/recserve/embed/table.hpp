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
//          row = {atomic seq, atomic key, atomic updated_ns, dims floats}
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
};

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
    void get(const std::uint64_t* keys, std::size_t n, float* out, bool* found) const;

    // Removes the keys that have rows; returns how many did.
    std::size_t remove(const std::uint64_t* keys, std::size_t n);

    // Drops expired rows now (they already read as missing); returns how many.
    std::size_t expire();

    std::size_t size() const;
    TableStats stats() const;

    struct Shard;  // table.cpp

  private:
    explicit Table(const TableOptions& options);
    std::size_t shard_index(std::uint64_t hash) const;  // hash = mix(key)
    Shard& shard_of(std::uint64_t key) const;

    TableOptions options_;
    unsigned shard_shift_ = 0;
    std::vector<std::unique_ptr<Shard>> shards_;
};

}  // namespace recserve::embed
