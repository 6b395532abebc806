// The online item-to-item co-engagement index, and the per-user list of recent positives it is
// queried from (ItemCF / Swing as production feeds keep them: top-K neighbours per item).
//
// A positive is an applied event whose engagement weight is >= positive_weight, on an item with
// a vector. Each user keeps their last `history` distinct positives, newest first
// (RecentPositive: item, ts, weight); a positive on an item already there moves it to the front
// (latest ts, largest weight) and pairs with nothing, so a watch and a like of one item count
// once. A new positive j of a user pairs with every item i in their list: the edge (i, j) gains
// 1 in both directions, and j's engaged-user count n_j gains 1.
//
//   per item (sharded maps, a reader-writer lock per shard):
//     n       double   engaged users, decayed and scaled as below
//     keys    u64[<= neighbours], weights f32[<= neighbours]   the item's neighbours, any order
//
// Bounded per item by Misra-Gries (weighted): a full list that meets a new neighbour takes the
// lightest weight (at most the increment) off every entry and drops those it empties; what is
// left of the increment enters. No weight is overestimated (a newcomer never inherits weight: an
// item seen once beside a popular one cannot outrank the popular one's real partners), and each
// falls short of the truth by at most the list's total increments / (neighbours + 1). Decay (half_life_seconds > 0) runs on the events' clock: an increment at ts
// adds 2^((ts - epoch) / half_life), so every stored value is the value as of the epoch; before
// that exponent passes kRebaseHalfLives the writer multiplies everything down and moves the
// epoch (entries that underflow to zero are dropped). Events behind the epoch add less than 1.
// Reading at now divides by 2^((now - epoch) / half_life); the normalised score below divides
// that factor out of numerator and denominator alike, so it is the same at any reading time.
//
//   related: score(j) = sum_r decay^r w(i_r, j) / (n(i_r)^(1 - alpha) n(j)^alpha)
//
// over the neighbours j of the user's recent positives i_r (r = 0 newest), excluding those
// positives; alpha = 0.5 is the cosine; items with n = 0 are skipped. Top k by score, ties by key.
//
// One writer (Profiles::apply, under the Profiles writer mutex) and any number of readers
// (feed threads): readers take a shard's shared lock per list they read, the writer a shard's
// exclusive lock per list it changes; a rebase, which touches every shard, is fenced by a
// generation counter that readers check (seqlock style) and retry on.
//
// Only catalogue items get lists (remove() drops an item's list and its entries in its
// neighbours' lists; the owner pairs only items with vectors). The counts are aggregates over
// users, not per-user data: erasing a user removes their recent positives, not what their past
// positives added to the items' counts. Each process (replica) builds its index from the events
// it applies: in scale-out, the events of the stream shards that replica reads.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "recserve/base/byte_io.hpp"
#include "recserve/base/status.hpp"

namespace recserve::profiles {

inline constexpr std::size_t kMaxNeighbours = 1024;
inline constexpr std::size_t kMaxHistory = 256;
inline constexpr std::size_t kMaxRelated = 1u << 16;  // the largest k related() takes
inline constexpr double kRebaseHalfLives = 32.0;

struct CoEngagementOptions {
    std::uint32_t neighbours = 64;  // per item; 0: no index and no recent positives
    std::uint32_t history = 32;     // recent positives per user, 1..kMaxHistory
    float positive_weight = 0.5f;   // the smallest engagement weight that is a positive (> 0)
    double half_life_seconds = 0;   // of edge weights and n; 0: never decay
};
Status validate(const CoEngagementOptions& options);

// One of a user's recent positives.
struct RecentPositive {
    std::uint64_t item;
    std::int64_t ts_ms;  // of the latest positive on it
    float weight;        // the largest engagement weight of those positives
};

// Notes a positive in a list (newest first) and trims it to `history`. True if the item was not
// in the list (it is now at the front); false if it was (moved to the front, ts and weight kept
// at their largest): a refresh, which pairs with nothing.
bool note_positive(std::vector<RecentPositive>& list, std::uint64_t item, std::int64_t ts_ms, float weight,
                   std::size_t history);

struct CoEngagementStats {
    std::size_t items = 0;  // items with an entry (n or neighbours)
    std::size_t edges = 0;  // neighbour entries, over all lists (each pair counts in both)
};

class CoEngagement {
  public:
    explicit CoEngagement(const CoEngagementOptions& options);
    ~CoEngagement();
    CoEngagement(const CoEngagement&) = delete;
    CoEngagement& operator=(const CoEngagement&) = delete;

    const CoEngagementOptions& options() const { return options_; }
    bool enabled() const { return options_.neighbours > 0; }

    // Writer: a new positive on `item` at ts_ms by a user whose recent positives were
    // partners[0..n) (the item itself among them is skipped).
    void add(std::uint64_t item, const std::uint64_t* partners, std::size_t n, std::int64_t ts_ms);
    // Writer: drops the items' entries, and each from its neighbours' lists. Returns how many had one.
    std::size_t remove(const std::uint64_t* items, std::size_t n);

    // Reader: the top k (k <= kMaxRelated) related items of recent[0..n) (newest first), keys
    // and scores written to keys[0..m), scores[0..m); returns m <= k. recency_decay and alpha
    // in [0, 1] (the caller checks). Allocates nothing once a thread's scratch has grown.
    std::size_t related(const RecentPositive* recent, std::size_t n, std::int64_t now_ms, std::size_t k,
                        float recency_decay, float alpha, std::uint64_t* keys, float* scores) const;
    // Reader: an item's neighbours, heaviest first (ties by key), with weights and n decayed to
    // now_ms. False (outputs cleared) for an item without an entry.
    bool neighbours(std::uint64_t item, std::int64_t now_ms, std::vector<std::uint64_t>* keys,
                    std::vector<double>* weights, double* n) const;

    CoEngagementStats stats() const;

    // The index as a snapshot section (see snapshot.cpp); the caller excludes the writer.
    void serialize(ByteWriter& w) const;
    // Reads a section into this empty index. Lists longer than `neighbours` keep their heaviest;
    // items that keep(item) refuses are dropped (the snapshot's catalogue is the authority).
    // Damage (a count past the body, the reserved key, a non-finite or negative value) is
    // kCorrupt naming `where`; the index is then left empty.
    Status parse(ByteReader& r, std::size_t body_bytes, const std::function<bool(std::uint64_t)>& keep,
                 const std::string& where);

    struct Shards;  // co_engagement.cpp

  private:
    double increment(std::int64_t ts_ms);  // the writer's scaled 1 at ts_ms (rebases first if due)
    void rebase(std::int64_t ts_ms);
    void clear();

    CoEngagementOptions options_;
    std::unique_ptr<Shards> shards_;
    // Odd while a rebase rewrites the shards; readers retry a query that saw it change.
    std::atomic<std::uint64_t> generation_{0};
    // The time stored values are as of. Written by the writer only (release in a rebase, the
    // only write after the first event); readers load it with acquire, then check the generation.
    std::atomic<std::int64_t> epoch_ms_{0};
    bool has_epoch_ = false;  // writer only
    std::atomic<std::size_t> items_{0}, edges_{0};  // relaxed: statistics
};

}  // namespace recserve::profiles
