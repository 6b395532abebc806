#include "recserve/profiles/seen_set.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace recserve::profiles {
namespace {

TEST(SeenSet, RecentItemsAreExactAndNewestFirst) {
    const SeenOptions o{4, 1024, 64};
    SeenSet s;
    for (std::uint64_t i = 1; i <= 3; ++i) s.add(i, o);
    s.add(2, o);  // already there: no change
    EXPECT_EQ(s.recent(), (std::vector<std::uint64_t>{3, 2, 1}));
    for (std::uint64_t i = 4; i <= 6; ++i) s.add(i, o);
    EXPECT_EQ(s.recent(), (std::vector<std::uint64_t>{6, 5, 4, 3}));
    EXPECT_FALSE(s.contains_recent(1));
    EXPECT_TRUE(s.contains(1));  // moved to the filter
    EXPECT_FALSE(s.contains(100));
}

TEST(SeenSet, OlderItemsStayInTheFilterWithFewFalsePositives) {
    const SeenOptions o{128, 8192, 1024};
    SeenSet s;
    for (std::uint64_t i = 0; i < 1000; ++i) s.add(i * 7 + 1, o);
    for (std::uint64_t i = 0; i < 1000; ++i) ASSERT_TRUE(s.contains(i * 7 + 1)) << i;  // never a false negative
    int false_positives = 0;
    for (std::uint64_t i = 0; i < 10000; ++i) false_positives += s.contains(1'000'000 + i);
    EXPECT_LT(false_positives, 300);  // ~2.4 % at this load (4 probes, 8 bits per item)
}

TEST(SeenSet, MemoryStaysBoundedAndTheOldestGenerationIsForgotten) {
    const SeenOptions o{8, 1024, 16};
    SeenSet s;
    for (std::uint64_t i = 0; i < 10000; ++i) s.add(i, o);
    EXPECT_LE(s.memory_bytes(), 8 * 8 + 2 * 1024 / 8 + 64u);
    EXPECT_TRUE(s.contains(9999));
    EXPECT_TRUE(s.contains(9999 - 8 - 10));  // in the newer generations
    int remembered = 0;
    for (std::uint64_t i = 0; i < 100; ++i) remembered += s.contains(i);
    EXPECT_LT(remembered, 20);  // long gone, bar false positives
}

TEST(SeenSet, SerializeThenParseRoundTrips) {
    const SeenOptions o{8, 1024, 16};
    SeenSet s;
    for (std::uint64_t i = 0; i < 50; ++i) s.add(i * 3, o);
    ByteWriter w;
    s.serialize(w);
    ByteReader r(w.buffer().data(), w.buffer().size());
    SeenSet t;
    ASSERT_TRUE(t.parse(r, o));
    EXPECT_TRUE(r.at_end());
    EXPECT_EQ(t.recent(), s.recent());
    for (std::uint64_t i = 0; i < 200; ++i) EXPECT_EQ(t.contains(i), s.contains(i)) << i;
    for (std::size_t cut = 0; cut < w.buffer().size(); ++cut) {
        ByteReader shorter(w.buffer().data(), cut);
        SeenSet u;
        EXPECT_FALSE(u.parse(shorter, o)) << cut;
    }
}

}  // namespace
}  // namespace recserve::profiles
