// External id (uint64) -> internal slot (uint32): open addressing with linear probing and
// backward-shift deletion. Used by the single writer only; readers never touch it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

namespace recserve::ann {

class IdMap {
  public:
    std::size_t size() const { return size_; }
    std::size_t memory_bytes() const { return buckets_.capacity() * sizeof(Bucket); }

    std::optional<std::uint32_t> find(std::uint64_t id) const {
        if (buckets_.empty()) return std::nullopt;
        for (std::size_t i = home(id);; i = (i + 1) & mask()) {
            const Bucket& b = buckets_[i];
            if (!b.used) return std::nullopt;
            if (b.id == id) return b.slot;
        }
    }

    void insert_or_assign(std::uint64_t id, std::uint32_t slot) {
        if ((size_ + 1) * 4 > buckets_.size() * 3) rehash(buckets_.empty() ? 16 : buckets_.size() * 2);
        for (std::size_t i = home(id);; i = (i + 1) & mask()) {
            Bucket& b = buckets_[i];
            if (!b.used) {
                b = Bucket{id, slot, true};
                ++size_;
                return;
            }
            if (b.id == id) {
                b.slot = slot;
                return;
            }
        }
    }

    bool erase(std::uint64_t id) {
        if (buckets_.empty()) return false;
        std::size_t i = home(id);
        for (;; i = (i + 1) & mask()) {
            if (!buckets_[i].used) return false;
            if (buckets_[i].id == id) break;
        }
        // Backward shift: pull later members of the probe run into the hole.
        for (std::size_t j = (i + 1) & mask(); buckets_[j].used; j = (j + 1) & mask()) {
            const std::size_t h = home(buckets_[j].id);
            const bool movable = (i <= j) ? (h <= i || h > j) : (h <= i && h > j);
            if (movable) {
                buckets_[i] = buckets_[j];
                i = j;
            }
        }
        buckets_[i].used = false;
        --size_;
        return true;
    }

    void clear() {
        buckets_.clear();
        size_ = 0;
    }

  private:
    struct Bucket {
        std::uint64_t id = 0;
        std::uint32_t slot = 0;
        bool used = false;
    };

    std::size_t mask() const { return buckets_.size() - 1; }
    std::size_t home(std::uint64_t id) const {
        // splitmix64 finaliser: sequential ids spread over the table.
        id ^= id >> 30;
        id *= 0xbf58476d1ce4e5b9ULL;
        id ^= id >> 27;
        id *= 0x94d049bb133111ebULL;
        id ^= id >> 31;
        return static_cast<std::size_t>(id) & mask();
    }
    void rehash(std::size_t buckets) {
        std::vector<Bucket> old;
        old.swap(buckets_);
        buckets_.assign(buckets, Bucket{});
        size_ = 0;
        for (const Bucket& b : old)
            if (b.used) insert_or_assign(b.id, b.slot);
    }

    std::vector<Bucket> buckets_;
    std::size_t size_ = 0;
};

}  // namespace recserve::ann
