// Epoch-tagged visited set: clearing is one increment, not a memset per search.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

namespace recserve::ann {

class VisitedSet {
  public:
    // Starts a new search over slots [0, slots). Allocates only when the index has grown.
    void reset(std::size_t slots) {
        if (tags_.size() < slots) tags_.assign(slots + slots / 4, 0);
        if (++epoch_ == 0) {  // wrapped: old tags could collide with the new epoch
            std::memset(tags_.data(), 0, tags_.size() * sizeof(std::uint16_t));
            epoch_ = 1;
        }
    }
    // Marks the slot; returns true if it was already visited in this search. Slots beyond the
    // size at reset() (added by a concurrent writer) count as visited: they are skipped.
    bool test_and_set(std::uint32_t slot) {
        if (slot >= tags_.size()) return true;
        if (tags_[slot] == epoch_) return true;
        tags_[slot] = epoch_;
        return false;
    }
    std::size_t memory_bytes() const { return tags_.capacity() * sizeof(std::uint16_t); }

  private:
    std::vector<std::uint16_t> tags_;
    std::uint16_t epoch_ = 0;
};

}  // namespace recserve::ann
