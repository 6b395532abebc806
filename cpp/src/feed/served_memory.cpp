#include "recserve/feed/served_memory.hpp"

#include <algorithm>

namespace recserve::feed {

ServedMemory::ServedMemory(std::size_t per_user, std::size_t users, double session_timeout_s)
    : per_user_(per_user), users_(std::max<std::size_t>(users, 1)), session_timeout_s_(session_timeout_s) {}

void ServedMemory::recent(std::uint64_t user, std::vector<std::uint64_t>* out) const {
    std::lock_guard lock(mu_);
    const auto it = entries_.find(user);
    if (it == entries_.end()) return;
    const Entry& e = it->second;
    if (e.ring.size() < per_user_) {
        out->insert(out->end(), e.ring.begin(), e.ring.end());
    } else {
        out->insert(out->end(), e.ring.begin() + static_cast<std::ptrdiff_t>(e.head), e.ring.end());
        out->insert(out->end(), e.ring.begin(), e.ring.begin() + static_cast<std::ptrdiff_t>(e.head));
    }
}

std::uint64_t ServedMemory::session_length(std::uint64_t user, double now_s) const {
    std::lock_guard lock(mu_);
    const auto it = entries_.find(user);
    if (it == entries_.end() || now_s - it->second.last_served_s > session_timeout_s_) return 0;
    return static_cast<std::uint64_t>(it->second.session_impressions);
}

std::uint64_t ServedMemory::version(std::uint64_t user) const {
    std::lock_guard lock(mu_);
    const auto it = entries_.find(user);
    return it == entries_.end() ? 0 : it->second.pages;
}

void ServedMemory::add(std::uint64_t user, const std::uint64_t* keys, std::size_t n, double now_s) {
    std::lock_guard lock(mu_);
    auto [it, fresh] = entries_.try_emplace(user);
    Entry& e = it->second;
    if (fresh) {
        e.last_served_s = now_s;
        e.lru = lru_.insert(lru_.end(), user);
        while (entries_.size() > users_) {
            entries_.erase(lru_.front());
            lru_.pop_front();
        }
    } else {
        lru_.splice(lru_.end(), lru_, e.lru);
    }
    for (std::size_t i = 0; i < n && per_user_ > 0; ++i) {
        if (e.ring.size() < per_user_) {
            e.ring.push_back(keys[i]);
        } else {
            e.ring[e.head] = keys[i];
            e.head = (e.head + 1) % per_user_;
        }
    }
    if (now_s - e.last_served_s > session_timeout_s_) e.session_impressions = 0.0;
    e.session_impressions += static_cast<double>(n);
    e.last_served_s = now_s;
    ++e.pages;
}

void ServedMemory::forget(std::uint64_t user) {
    std::lock_guard lock(mu_);
    const auto it = entries_.find(user);
    if (it == entries_.end()) return;
    lru_.erase(it->second.lru);
    entries_.erase(it);
}

}  // namespace recserve::feed
