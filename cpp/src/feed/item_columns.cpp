#include "recserve/feed/item_columns.hpp"

#include <mutex>

namespace recserve::feed {
namespace {

std::size_t hash(std::uint64_t key) { return static_cast<std::size_t>((key * 0x9E3779B97F4A7C15ULL) >> 17); }

}  // namespace

std::size_t ItemColumns::find(std::uint64_t key) const {
    const std::size_t mask = slots_.size() - 1;
    for (std::size_t j = hash(key) & mask;; j = (j + 1) & mask)
        if (slots_[j].key == key || slots_[j].key == kEmpty) return j;
}

void ItemColumns::grow() {
    std::vector<Slot> old = std::move(slots_);
    slots_.assign(old.empty() ? 1024 : 2 * old.size(), Slot{kEmpty, {}});
    for (const Slot& s : old)
        if (s.key != kEmpty) slots_[find(s.key)] = s;
}

void ItemColumns::set(const std::uint64_t* keys, const double* created_at_s, const std::int64_t* creators,
                      std::size_t n) {
    std::unique_lock lock(mu_);
    for (std::size_t i = 0; i < n; ++i) {
        const ItemColumn column{true, created_at_s[i], creators[i]};
        if (keys[i] == kEmpty) {
            has_empty_key_ = true;
            empty_key_column_ = column;
            continue;
        }
        if (2 * (used_ + 1) > slots_.size()) grow();  // load factor at most 1/2
        Slot& s = slots_[find(keys[i])];
        if (s.key == kEmpty) s.key = keys[i], ++used_;
        s.column = column;
    }
}

void ItemColumns::take_down(const std::uint64_t* keys, std::size_t n) {
    std::unique_lock lock(mu_);
    for (std::size_t i = 0; i < n; ++i) {
        if (keys[i] == kEmpty) {
            empty_key_column_.live = false;
            continue;
        }
        if (slots_.empty()) continue;
        Slot& s = slots_[find(keys[i])];
        if (s.key == keys[i]) s.column.live = false;
    }
}

void ItemColumns::lookup(const std::uint64_t* keys, std::size_t n, ItemColumn* out) const {
    std::shared_lock lock(mu_);
    for (std::size_t i = 0; i < n; ++i) {
        if (keys[i] == kEmpty) {
            out[i] = has_empty_key_ ? empty_key_column_ : ItemColumn{};
        } else if (slots_.empty()) {
            out[i] = ItemColumn{};
        } else {
            const Slot& s = slots_[find(keys[i])];
            out[i] = s.key == keys[i] ? s.column : ItemColumn{};
        }
    }
}

std::size_t ItemColumns::size() const {
    std::shared_lock lock(mu_);
    return used_ + (has_empty_key_ ? 1 : 0);
}

void ItemColumns::clear() {
    std::unique_lock lock(mu_);
    slots_.clear();
    used_ = 0;
    has_empty_key_ = false;
}

}  // namespace recserve::feed
