// recserve::ann::Index — a graph index over item embeddings that a live feed can use:
// inserts, updates and deletes while searches run.
//
// Thread safety: any number of threads may search() at once, concurrently with one writer
// calling add() / remove() / compact() / save() (writers are serialised by a mutex, and a
// background thread may compact). Readers never block on the writer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "recserve/ann/metric.hpp"
#include "recserve/base/status.hpp"

namespace recserve::ann {

// Returned in place of a result when fewer than k eligible items exist.
inline constexpr std::uint64_t kMissingId = ~std::uint64_t{0};

struct IndexOptions {
    std::size_t dims = 0;
    Metric metric = Metric::kCosine;
    Dtype dtype = Dtype::kInt8;
    std::size_t M = 16;                 // links per node (2·M at level 0)
    std::size_t ef_construction = 128;  // beam width while inserting
    bool rerank = false;                // int8: keep float32 copies and re-rank the short list exactly
    std::uint64_t seed = 0;             // levels are drawn from this seed
    // Tombstones are repaired in the background once they reach this fraction of live items;
    // 0 turns the background thread off (compact() still works on demand).
    double compact_threshold = 0.1;
};

// A per-call predicate over item ids, asked inside the graph walk: a rejected item still routes
// the walk but is never returned, so no id list is hashed per call. Asked from the searching
// thread only, possibly many times per id.
class SearchFilter {
  public:
    virtual ~SearchFilter() = default;
    virtual bool rejects(std::uint64_t id) const = 0;
};

// Per-call knobs: concurrent requests never interfere through index state.
struct SearchParams {
    std::size_t ef = 64;
    const std::uint64_t* exclude = nullptr;  // ids never to return (seen, taken down)
    std::size_t exclude_count = 0;
    const SearchFilter* filter = nullptr;  // and, besides those, ids it rejects
};

struct IndexStats {
    std::size_t live = 0;        // searchable items
    std::size_t slots = 0;       // slots handed out (live + tombstones + free)
    std::size_t tombstones = 0;  // removed or replaced, not yet repaired out of the graph
    std::size_t free_slots = 0;  // repaired and waiting to be reused
    int levels = 0;              // levels of the graph (top level + 1)
    std::size_t memory_bytes = 0;
    std::string isa;             // kernel variant the index searches with
};

class Index {
  public:
    static Result<std::unique_ptr<Index>> create(const IndexOptions& options);
    // The saved compact_threshold applies unless one is given here.
    static Result<std::unique_ptr<Index>> load(const std::string& path,
                                               std::optional<double> compact_threshold = std::nullopt);
    virtual ~Index() = default;

    // Adds or updates n items. Rejects the whole batch (changing nothing) on non-finite values,
    // an id repeated within the batch, or the reserved id kMissingId. threads = 0: all cores.
    virtual Status add(const std::uint64_t* ids, const float* vectors, std::size_t n, std::size_t threads) = 0;

    // For each of nq queries writes k ids and distances (ascending); kMissingId / +inf fill the
    // rest when fewer than k eligible items exist.
    virtual Status search(const float* queries, std::size_t nq, std::size_t k, const SearchParams& params,
                          std::uint64_t* ids, float* distances) const = 0;

    // Removes ids at once from every later search; unknown ids are appended to `missing`.
    // Returns how many were removed.
    virtual std::size_t remove(const std::uint64_t* ids, std::size_t n, std::vector<std::uint64_t>* missing) = 0;

    // Repairs the graph around tombstones now and frees their slots for reuse.
    virtual std::size_t compact() = 0;

    // Writes atomically (temporary file, fsync, rename).
    virtual Status save(const std::string& path) const = 0;

    virtual bool contains(std::uint64_t id) const = 0;
    virtual std::size_t size() const = 0;
    virtual const IndexOptions& options() const = 0;
    virtual IndexStats stats() const = 0;
};

}  // namespace recserve::ann
