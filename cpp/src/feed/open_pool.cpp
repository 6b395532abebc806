#include "recserve/feed/open_pool.hpp"

#include <algorithm>
#include <cmath>
#include <unordered_set>

namespace recserve::feed {

std::size_t explore_slots(double share, std::size_t n, std::uint64_t seed) {
    if (!(share > 0.0)) return 0;
    const double whole = std::floor(share);
    // A different stream from the pool's sample of the same seed.
    const bool coin = share > whole && SeededDraws(~seed).uniform() < share - whole;
    return std::min(static_cast<std::size_t>(whole) + (coin ? 1 : 0), n);
}

void OpenPool::add(std::uint64_t key, std::uint8_t tier) {
    std::lock_guard lock(mu_);
    const auto [it, added] = where_.try_emplace(key, keys_.size());
    if (added) {
        keys_.push_back(key);
        tiers_.push_back(tier);
    } else {
        tiers_[it->second] = tier;
    }
}

void OpenPool::discard(std::uint64_t key) {
    std::lock_guard lock(mu_);
    const auto it = where_.find(key);
    if (it == where_.end()) return;
    const std::size_t at = it->second;
    where_.erase(it);
    const std::uint64_t last = keys_.back();
    const std::uint8_t last_tier = tiers_.back();
    keys_.pop_back();
    tiers_.pop_back();
    if (at < keys_.size()) {
        keys_[at] = last;
        tiers_[at] = last_tier;
        where_[last] = at;
    }
}

bool OpenPool::contains(std::uint64_t key) const {
    std::lock_guard lock(mu_);
    return where_.count(key) != 0;
}

std::size_t OpenPool::size() const {
    std::lock_guard lock(mu_);
    return keys_.size();
}

std::vector<std::uint64_t> OpenPool::keys() const {
    std::lock_guard lock(mu_);
    return keys_;
}

void OpenPool::tiers(const std::uint64_t* keys, std::size_t n, std::int8_t* out) const {
    std::lock_guard lock(mu_);
    for (std::size_t i = 0; i < n; ++i) {
        const auto it = where_.find(keys[i]);
        out[i] = it == where_.end() ? std::int8_t{-1} : static_cast<std::int8_t>(std::min<std::uint8_t>(tiers_[it->second], 127));
    }
}

void OpenPool::sample(std::size_t k, std::uint64_t seed, std::vector<std::uint64_t>* out) const {
    std::lock_guard lock(mu_);
    const std::size_t n = keys_.size();
    if (n <= k) {
        out->insert(out->end(), keys_.begin(), keys_.end());
        return;
    }
    // Floyd's algorithm: k distinct positions in O(k) draws, then the pool's order.
    thread_local std::vector<std::size_t> picked;
    thread_local std::unordered_set<std::size_t> seen;  // for large k: a scan per draw is k^2
    picked.clear();
    seen.clear();
    SeededDraws draws(seed);
    for (std::size_t j = n - k; j < n; ++j) {
        const auto t = static_cast<std::size_t>(draws.below(j + 1));
        const bool taken = k <= 64 ? std::find(picked.begin(), picked.end(), t) != picked.end() : seen.count(t) != 0;
        picked.push_back(taken ? j : t);
        if (k > 64) seen.insert(picked.back());
    }
    std::sort(picked.begin(), picked.end());
    for (std::size_t at : picked) out->push_back(keys_[at]);
}

}  // namespace recserve::feed
