// Per-user bookkeeping beside the vectors: the seen-set, the window of recent event keys and the
// recent positives. Private to profiles: sharded maps, each behind a reader-writer lock.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <shared_mutex>
#include <unordered_map>
#include <vector>

#include "recserve/base/byte_io.hpp"
#include "recserve/profiles/co_engagement.hpp"
#include "recserve/profiles/profiles.hpp"
#include "recserve/profiles/seen_set.hpp"

namespace recserve::profiles {

struct UserLog {
    SeenSet seen;
    std::vector<std::uint64_t> keys;  // ring of the latest event keys
    std::uint32_t keys_head = 0;
    std::vector<RecentPositive> positives;  // newest first, distinct items (co_engagement.hpp)

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

// Recent positives in user images and snapshots: u32 count | count x (u64 item, i64 ts_ms, f32 weight).
inline void put_positives(ByteWriter& w, const std::vector<RecentPositive>& positives) {
    w.put(static_cast<std::uint32_t>(positives.size()));
    for (const RecentPositive& p : positives) {
        w.put(p.item);
        w.put(p.ts_ms);
        w.put(p.weight);
    }
}

// Null when read whole and sound; else what is wrong. Up to kMaxHistory entries are taken
// whatever the history option (a longer list is trimmed at the user's next positive), so an
// image reads back to the very bytes it was written from.
inline const char* get_positives(ByteReader& r, std::vector<RecentPositive>& out) {
    std::uint32_t count = 0;
    if (!r.get(count)) return "is truncated";
    if (count > kMaxHistory) return "has more recent positives than any history holds";
    out.resize(count);
    for (RecentPositive& p : out) {
        if (!r.get(p.item) || !r.get(p.ts_ms) || !r.get(p.weight)) return "is truncated";
        if (p.item == embed::kInvalidKey) return "has a recent positive with the reserved key";
        if (!std::isfinite(p.weight)) return "has a recent positive with a non-finite weight";
    }
    for (std::size_t i = 1; i < out.size(); ++i) {
        for (std::size_t j = 0; j < i; ++j) {
            if (out[i].item == out[j].item) return "has a recent positive twice";
        }
    }
    return nullptr;
}

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
