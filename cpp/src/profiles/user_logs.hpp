// Per-user bookkeeping beside the vectors: the seen-set and the window of recent event keys.
// Private to profiles: sharded maps, each behind a reader-writer lock.
#pragma once

#include <algorithm>
#include <cstdint>
#include <shared_mutex>
#include <unordered_map>
#include <vector>

#include "recserve/profiles/profiles.hpp"
#include "recserve/profiles/seen_set.hpp"

namespace recserve::profiles {

struct UserLog {
    SeenSet seen;
    std::vector<std::uint64_t> keys;  // ring of the latest event keys
    std::uint32_t keys_head = 0;

    bool has_key(std::uint64_t key) const { return std::find(keys.begin(), keys.end(), key) != keys.end(); }
    void add_key(std::uint64_t key, std::uint32_t window) {
        if (keys.size() < window) {
            keys.push_back(key);
            return;
        }
        keys[keys_head] = key;
        keys_head = (keys_head + 1) % window;
    }
};

struct Profiles::UserLogs {
    static constexpr unsigned kShardBits = 6;
    struct Shard {
        mutable std::shared_mutex lock;
        std::unordered_map<std::uint64_t, UserLog> logs;
    };
    Shard shards[1u << kShardBits];

    Shard& of(std::uint64_t user) { return shards[(user * 0x9e3779b97f4a7c15ull) >> (64 - kShardBits)]; }
    const Shard& of(std::uint64_t user) const { return shards[(user * 0x9e3779b97f4a7c15ull) >> (64 - kShardBits)]; }
};

}  // namespace recserve::profiles
