// Per user, the items served lately (a ring the feed never serves again) and the impressions of
// the current session; bounded in users, the least recently served forgotten first. A cache, not
// durable state: a restart forgets it. One mutex: a page reads it once and adds to it once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace recserve::feed {

class ServedMemory {
  public:
    ServedMemory(std::size_t per_user, std::size_t users, double session_timeout_s);

    // Appends the user's ring (oldest first) to *out.
    void recent(std::uint64_t user, std::vector<std::uint64_t>* out) const;
    // Impressions served in the user's current session (0 after session_timeout_s without one).
    std::uint64_t session_length(std::uint64_t user, double now_s) const;
    // Pages served to the user while remembered: a page computed at an older version may hold
    // items served since.
    std::uint64_t version(std::uint64_t user) const;
    void add(std::uint64_t user, const std::uint64_t* keys, std::size_t n, double now_s);
    void forget(std::uint64_t user);

  private:
    struct Entry {
        std::vector<std::uint64_t> ring;  // capacity per_user; head is the oldest once full
        std::size_t head = 0;
        double session_impressions = 0.0;
        double last_served_s = 0.0;
        std::uint64_t pages = 0;
        std::list<std::uint64_t>::iterator lru;
    };
    std::size_t per_user_, users_;
    double session_timeout_s_;
    mutable std::mutex mu_;
    std::unordered_map<std::uint64_t, Entry> entries_;
    std::list<std::uint64_t> lru_;  // least recently served first
};

}  // namespace recserve::feed
