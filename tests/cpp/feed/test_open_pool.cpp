#include "recserve/feed/open_pool.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <set>
#include <vector>

namespace recserve::feed {
namespace {

std::vector<std::uint64_t> sample(const OpenPool& pool, std::size_t k, std::uint64_t seed) {
    std::vector<std::uint64_t> out;
    pool.sample(k, seed, &out);
    return out;
}

TEST(OpenPool, AddDiscardAndContains) {
    OpenPool pool;
    for (std::uint64_t k = 1; k <= 5; ++k) pool.add(k);
    pool.add(3);  // twice: once in the pool
    pool.discard(2);
    pool.discard(99);
    EXPECT_EQ(pool.size(), 4u);
    EXPECT_FALSE(pool.contains(2));
    EXPECT_TRUE(pool.contains(5));
    std::vector<std::uint64_t> keys = pool.keys();
    std::sort(keys.begin(), keys.end());
    EXPECT_EQ(keys, (std::vector<std::uint64_t>{1, 3, 4, 5}));
}

TEST(OpenPool, SampleIsDistinctDeterministicPerSeedAndAllWhenSmall) {
    OpenPool pool;
    for (std::uint64_t k = 0; k < 1000; ++k) pool.add(k);
    for (std::size_t k : {1u, 16u, 100u, 999u}) {
        const auto a = sample(pool, k, 42);
        EXPECT_EQ(a.size(), k);
        EXPECT_EQ(std::set<std::uint64_t>(a.begin(), a.end()).size(), k) << "repeats at k " << k;
        EXPECT_EQ(a, sample(pool, k, 42));
    }
    EXPECT_NE(sample(pool, 16, 1), sample(pool, 16, 2));
    EXPECT_EQ(sample(pool, 5000, 7).size(), 1000u);
}

TEST(OpenPool, SampleIsUniformOverThePool) {
    OpenPool pool;
    for (std::uint64_t k = 0; k < 20; ++k) pool.add(k);
    std::map<std::uint64_t, int> counts;
    for (std::uint64_t seed = 0; seed < 20000; ++seed)
        for (std::uint64_t key : sample(pool, 4, seed)) ++counts[key];
    for (const auto& [key, count] : counts) EXPECT_NEAR(count, 4000, 300) << key;  // 20000 * 4 / 20
}

TEST(OpenPool, TiersFollowTheirItemsThroughPromotionAndRemoval) {
    OpenPool pool;
    pool.add(1);
    pool.add(2, 1);
    pool.add(3, 2);
    pool.add(1, 2);  // promoted twice: moved, not added again
    EXPECT_EQ(pool.size(), 3u);
    pool.discard(2);  // the last item moves into its place, with its tier
    const std::uint64_t keys[4] = {1, 2, 3, 9};
    std::int8_t tiers[4];
    pool.tiers(keys, 4, tiers);
    EXPECT_EQ(std::vector<int>(tiers, tiers + 4), (std::vector<int>{2, -1, 2, -1}));
}

TEST(ExploreSlots, WholeSlotsAlwaysAndTheFractionAsACoin) {
    EXPECT_EQ(explore_slots(2.0, 10, 1), 2u);
    EXPECT_EQ(explore_slots(0.0, 10, 1), 0u);
    EXPECT_EQ(explore_slots(5.0, 3, 1), 3u);  // never more than the page
    int ones = 0;
    for (std::uint64_t seed = 0; seed < 10000; ++seed) ones += static_cast<int>(explore_slots(0.2, 1, seed));
    EXPECT_NEAR(ones, 2000, 200);
}

}  // namespace
}  // namespace recserve::feed
