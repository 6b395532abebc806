#include "recserve/feed/item_columns.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

namespace recserve::feed {
namespace {

TEST(ItemColumns, UnknownKeysAreNotLiveWithNoCreator) {
    ItemColumns columns;
    const std::uint64_t key = 42;
    ItemColumn out;
    columns.lookup(&key, 1, &out);
    EXPECT_FALSE(out.live);
    EXPECT_EQ(out.creator, -1);
}

TEST(ItemColumns, SetThenTakeDownKeepsTheColumnsButNotLive) {
    ItemColumns columns;
    const std::vector<std::uint64_t> keys = {1, 2, ~std::uint64_t{0}};
    const std::vector<double> created = {10.0, 20.0, 30.0};
    const std::vector<std::int64_t> creators = {7, 8, 9};
    columns.set(keys.data(), created.data(), creators.data(), keys.size());
    EXPECT_EQ(columns.size(), 3u);
    columns.take_down(keys.data() + 1, 2);
    std::vector<ItemColumn> out(3);
    columns.lookup(keys.data(), 3, out.data());
    EXPECT_TRUE(out[0].live);
    EXPECT_FALSE(out[1].live);
    EXPECT_FALSE(out[2].live);
    EXPECT_EQ(out[1].creator, 8);
    EXPECT_DOUBLE_EQ(out[2].created_at_s, 30.0);
}

TEST(ItemColumns, GrowsPastItsFirstTableWithoutLosingAKey) {
    ItemColumns columns;
    std::vector<std::uint64_t> keys;
    std::vector<double> created;
    std::vector<std::int64_t> creators;
    for (std::uint64_t k = 0; k < 5000; ++k) {
        keys.push_back(k * 0x9E3779B97F4A7C15ULL);
        created.push_back(static_cast<double>(k));
        creators.push_back(static_cast<std::int64_t>(k % 97));
    }
    columns.set(keys.data(), created.data(), creators.data(), keys.size());
    std::vector<ItemColumn> out(keys.size());
    columns.lookup(keys.data(), keys.size(), out.data());
    for (std::size_t i = 0; i < keys.size(); ++i) {
        ASSERT_TRUE(out[i].live) << i;
        ASSERT_EQ(out[i].creator, static_cast<std::int64_t>(i % 97));
    }
}

}  // namespace
}  // namespace recserve::feed
