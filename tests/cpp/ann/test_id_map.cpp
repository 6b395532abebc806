// IdMap (id_map.hpp): the writer's external-id -> slot table, checked against
// std::unordered_map under seeded random operations. Backward-shift deletion is the part
// that is easy to get wrong: a small key space makes long probe runs that wrap around the
// table end, and erases in the middle of them.
#include "recserve/ann/id_map.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <unordered_map>

namespace recserve::ann {
namespace {

TEST(IdMap, EmptyMapFindsNothing) {
    IdMap map;
    EXPECT_EQ(map.size(), 0u);
    EXPECT_FALSE(map.find(0).has_value());
    EXPECT_FALSE(map.erase(0));
}

TEST(IdMap, FindsWhatWasInsertedAndOverwrites) {
    IdMap map;
    map.insert_or_assign(0, 10);
    map.insert_or_assign(~std::uint64_t{0} - 1, 11);
    map.insert_or_assign(42, 12);
    EXPECT_EQ(map.size(), 3u);
    EXPECT_EQ(map.find(0), 10u);
    EXPECT_EQ(map.find(~std::uint64_t{0} - 1), 11u);
    EXPECT_EQ(map.find(42), 12u);
    EXPECT_FALSE(map.find(43).has_value());

    map.insert_or_assign(42, 99);  // assign: same size, new slot
    EXPECT_EQ(map.size(), 3u);
    EXPECT_EQ(map.find(42), 99u);
}

TEST(IdMap, EraseRemovesOnlyThatId) {
    IdMap map;
    for (std::uint64_t id = 0; id < 100; ++id) map.insert_or_assign(id, static_cast<std::uint32_t>(id + 1000));
    EXPECT_TRUE(map.erase(50));
    EXPECT_FALSE(map.erase(50));
    EXPECT_FALSE(map.erase(1000));
    EXPECT_EQ(map.size(), 99u);
    for (std::uint64_t id = 0; id < 100; ++id) {
        if (id == 50) {
            EXPECT_FALSE(map.find(id).has_value());
        } else {
            EXPECT_EQ(map.find(id), id + 1000) << id;
        }
    }
}

TEST(IdMap, SequentialIdsSurviveGrowth) {
    IdMap map;
    constexpr std::uint64_t kIds = 100'000;
    for (std::uint64_t id = 0; id < kIds; ++id) map.insert_or_assign(id, static_cast<std::uint32_t>(id));
    EXPECT_EQ(map.size(), kIds);
    for (std::uint64_t id = 0; id < kIds; ++id) ASSERT_EQ(map.find(id), id);
    EXPECT_FALSE(map.find(kIds).has_value());
    EXPECT_GT(map.memory_bytes(), 0u);
}

TEST(IdMap, ClearEmptiesTheMap) {
    IdMap map;
    for (std::uint64_t id = 0; id < 20; ++id) map.insert_or_assign(id, 1);
    map.clear();
    EXPECT_EQ(map.size(), 0u);
    EXPECT_FALSE(map.find(3).has_value());
    map.insert_or_assign(3, 7);
    EXPECT_EQ(map.find(3), 7u);
}

TEST(IdMap, MatchesUnorderedMapUnderRandomOperations) {
    // Key spaces from tiny (every probe run collides and wraps) to wide, and the full 64-bit
    // range; the map is checked in full every few hundred operations.
    for (const std::uint64_t key_space : {std::uint64_t{8}, std::uint64_t{64}, std::uint64_t{5000}, std::uint64_t{0}}) {
        SCOPED_TRACE("key space " + std::to_string(key_space));
        std::mt19937_64 rng(key_space + 1);
        const auto draw_key = [&] { return key_space == 0 ? rng() % (~std::uint64_t{0}) : rng() % key_space; };
        IdMap map;
        std::unordered_map<std::uint64_t, std::uint32_t> reference;
        std::vector<std::uint64_t> seen;
        for (int op = 0; op < 60'000; ++op) {
            const std::uint64_t roll = rng() % 10;
            // With the full range, erase and find mostly keys that exist.
            const std::uint64_t key = (key_space == 0 && roll >= 5 && !seen.empty()) ? seen[rng() % seen.size()] : draw_key();
            if (roll < 5) {
                const auto slot = static_cast<std::uint32_t>(rng());
                map.insert_or_assign(key, slot);
                reference[key] = slot;
                if (key_space == 0) seen.push_back(key);
            } else if (roll < 8) {
                ASSERT_EQ(map.erase(key), reference.erase(key) == 1) << "op " << op << " key " << key;
            } else {
                const auto it = reference.find(key);
                const auto got = map.find(key);
                ASSERT_EQ(got.has_value(), it != reference.end()) << "op " << op << " key " << key;
                if (got) {
                    ASSERT_EQ(*got, it->second) << "op " << op << " key " << key;
                }
            }
            ASSERT_EQ(map.size(), reference.size()) << "op " << op;
            if (op % 500 == 0) {
                for (const auto& [k, v] : reference) ASSERT_EQ(map.find(k), v) << "op " << op << " key " << k;
            }
        }
        for (const auto& [k, v] : reference) ASSERT_EQ(map.find(k), v) << "key " << k;
    }
}

}  // namespace
}  // namespace recserve::ann
