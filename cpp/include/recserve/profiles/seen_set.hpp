// The items a user has seen, bounded: the most recent `recent` exactly (a ring), older ones in
// a compact filter that is never wrong about an item it holds and rarely claims one it does
// not (a Bloom filter, 4 probes). The filter has two generations of `filter_items` items each;
// when the newer fills, the older is cleared and becomes the newer, so memory stays bounded
// and an item is forgotten only after 2 x filter_items newer ones have left the ring.
//
// add() skips an item already among the latest 8 additions (an item's events come together);
// one seen longer ago may take a second place in the ring, which costs room, not correctness.
//
// Not synchronised: the owner (profiles::Profiles) guards each user's set with a lock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "recserve/base/byte_io.hpp"
#include "recserve/base/status.hpp"

namespace recserve::profiles {

struct SeenOptions {
    std::uint32_t recent = 128;         // items kept exactly
    std::uint32_t filter_bits = 8192;   // per generation, a power of two
    std::uint32_t filter_items = 1024;  // per generation
};

Status validate(const SeenOptions& options);

class SeenSet {
  public:
    void add(std::uint64_t item, const SeenOptions& options);
    bool contains(std::uint64_t item) const;
    bool contains_recent(std::uint64_t item) const;
    // Only among the items older than the exact recent ones (the filter): with recent() at hand,
    // the rest of contains() without its scan of the ring.
    bool contains_older(std::uint64_t item) const { return filter_contains(item); }
    // Brings the part add() reads next into the cache.
    void prefetch() const {
        if (!ring_.empty()) __builtin_prefetch(ring_.data() + (head_ == 0 ? ring_.size() - 1 : head_ - 1));
    }
    // The exact part, newest first.
    std::vector<std::uint64_t> recent() const;
    std::uint64_t added() const { return added_; }  // additions ever, repeats skipped
    std::size_t memory_bytes() const { return (ring_.capacity() + filters_.capacity()) * sizeof(std::uint64_t); }

    void serialize(ByteWriter& w) const;
    // Fails (never overruns) on a short or inconsistent buffer.
    bool parse(ByteReader& r, const SeenOptions& options);

  private:
    void filter_add(std::uint64_t item, const SeenOptions& options);
    bool filter_contains(std::uint64_t item) const;

    std::vector<std::uint64_t> ring_;     // grows to options.recent, then wraps
    std::uint32_t head_ = 0;              // the next slot to overwrite once full
    std::vector<std::uint64_t> filters_;  // two generations of filter_bits / 64 words; empty until needed
    std::uint32_t newer_ = 0;             // which generation takes additions
    std::uint32_t in_newer_ = 0;
    std::uint64_t added_ = 0;
};

}  // namespace recserve::profiles
