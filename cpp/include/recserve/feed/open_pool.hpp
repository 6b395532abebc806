// The items in open amplification tiers and the tier each is in, as a list with a position
// index: O(1) add and remove, and a seeded sample of k distinct items that the native feed
// draws without the GIL. One mutex: the amplifier writes it on tier changes, a page reads it
// twice (its sample, then its candidates' tiers).
//
// Draws are a function of the seed alone (splitmix64), so the reference pipeline in Python and
// the native one draw the same items and the same explore coin for a request.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace recserve::feed {

// The seeded stream every feed draw uses: splitmix64 (Steele, Lea, Flood 2014).
class SeededDraws {
  public:
    explicit SeededDraws(std::uint64_t seed) : state_(seed) {}
    std::uint64_t next() {
        std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        return z ^ (z >> 31);
    }
    double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)
    std::uint64_t below(std::uint64_t n) { return next() % n; }  // n > 0; bias < n / 2^64

  private:
    std::uint64_t state_;
};

// The explore slots of a page of n: whole slots of share, and the fraction as a coin flip
// drawn from seed (a client that fetches one item per swipe explores its share over swipes).
std::size_t explore_slots(double share, std::size_t n, std::uint64_t seed);

class OpenPool {
  public:
    // Adds the item, or moves it to this tier if it is in the pool.
    void add(std::uint64_t key, std::uint8_t tier = 0);
    void discard(std::uint64_t key);
    bool contains(std::uint64_t key) const;
    std::size_t size() const;
    std::vector<std::uint64_t> keys() const;
    // Each key's tier, -1 for an item not in the pool.
    void tiers(const std::uint64_t* keys, std::size_t n, std::int8_t* out) const;
    // Up to k distinct items, uniformly at random from seed, in the pool's order; all of them
    // when the pool holds k or fewer.
    void sample(std::size_t k, std::uint64_t seed, std::vector<std::uint64_t>* out) const;

  private:
    mutable std::mutex mu_;
    std::vector<std::uint64_t> keys_;
    std::vector<std::uint8_t> tiers_;  // beside keys_
    std::unordered_map<std::uint64_t, std::size_t> where_;
};

}  // namespace recserve::feed
