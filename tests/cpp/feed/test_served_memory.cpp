#include "recserve/feed/served_memory.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

namespace recserve::feed {
namespace {

std::vector<std::uint64_t> recent(const ServedMemory& m, std::uint64_t user) {
    std::vector<std::uint64_t> out;
    m.recent(user, &out);
    return out;
}

TEST(ServedMemory, KeepsTheLatestPerUserItemsOldestFirst) {
    ServedMemory m(3, 10, 1800.0);
    const std::uint64_t keys[] = {1, 2, 3, 4, 5};
    m.add(7, keys, 2, 0.0);
    EXPECT_EQ(recent(m, 7), (std::vector<std::uint64_t>{1, 2}));
    m.add(7, keys + 2, 3, 1.0);
    EXPECT_EQ(recent(m, 7), (std::vector<std::uint64_t>{3, 4, 5}));
    EXPECT_EQ(m.version(7), 2u);
}

TEST(ServedMemory, SessionLengthRestartsAfterTheTimeout) {
    ServedMemory m(10, 10, 60.0);
    const std::uint64_t keys[] = {1, 2, 3};
    m.add(1, keys, 3, 0.0);
    m.add(1, keys, 2, 30.0);
    EXPECT_EQ(m.session_length(1, 40.0), 5u);
    EXPECT_EQ(m.session_length(1, 100.0), 0u);  // more than 60 s after the last page
    m.add(1, keys, 1, 200.0);
    EXPECT_EQ(m.session_length(1, 200.0), 1u);
}

TEST(ServedMemory, ForgetsTheLeastRecentlyServedUserFirst) {
    ServedMemory m(4, 2, 1800.0);
    const std::uint64_t key = 9;
    m.add(1, &key, 1, 0.0);
    m.add(2, &key, 1, 0.0);
    m.add(1, &key, 1, 1.0);  // user 1 served again: user 2 is now the oldest
    m.add(3, &key, 1, 2.0);
    EXPECT_EQ(m.version(2), 0u);
    EXPECT_EQ(m.version(1), 2u);
    EXPECT_EQ(m.version(3), 1u);
    m.forget(1);
    EXPECT_TRUE(recent(m, 1).empty());
}

TEST(ServedMemory, ZeroPerUserCountsSessionsButKeepsNoItems) {
    ServedMemory m(0, 4, 1800.0);
    const std::uint64_t keys[] = {1, 2};
    m.add(5, keys, 2, 0.0);
    EXPECT_TRUE(recent(m, 5).empty());
    EXPECT_EQ(m.session_length(5, 0.0), 2u);
}

}  // namespace
}  // namespace recserve::feed
