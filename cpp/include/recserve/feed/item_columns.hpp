// The catalogue's columns the feed reads per candidate: whether the item is live (posted and
// not taken down), when it was created, and its creator (the catalogue's creator code). One
// flat open-addressing table keyed by item key; a key once posted keeps its slot (a takedown
// clears `live`), so lookups never see a slot move except while the table grows, which the
// writer does under the exclusive lock. Readers share the lock: a page's 300 lookups take it
// once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <shared_mutex>
#include <vector>

namespace recserve::feed {

struct ItemColumn {
    bool live = false;
    double created_at_s = 0.0;
    std::int64_t creator = -1;  // -1: unknown item
};

class ItemColumns {
  public:
    // Sets n items live with their columns (an item posted again is updated).
    void set(const std::uint64_t* keys, const double* created_at_s, const std::int64_t* creators, std::size_t n);
    // Marks items not live; unknown keys are ignored.
    void take_down(const std::uint64_t* keys, std::size_t n);
    // out[i]: the columns of keys[i] (not live, creator -1 for a key never posted).
    void lookup(const std::uint64_t* keys, std::size_t n, ItemColumn* out) const;
    std::size_t size() const;  // keys ever posted
    void clear();

  private:
    struct Slot {
        std::uint64_t key;
        ItemColumn column;
    };
    static constexpr std::uint64_t kEmpty = ~std::uint64_t{0};
    std::size_t find(std::uint64_t key) const;  // its slot, or the empty slot where it would go
    void grow();

    mutable std::shared_mutex mu_;
    std::vector<Slot> slots_;
    std::size_t used_ = 0;
    bool has_empty_key_ = false;  // the key kEmpty itself, kept aside
    ItemColumn empty_key_column_;
};

}  // namespace recserve::feed
