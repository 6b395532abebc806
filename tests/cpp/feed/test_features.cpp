#include "recserve/feed/features.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace recserve::feed {
namespace {

FeatureLayout layout(std::size_t dims, int version) {
    FeatureLayout l;
    l.dims = dims;
    l.version = version;
    for (std::size_t o = 0; o < kOutcomes; ++o) l.prior_mean[o] = 0.1 * static_cast<double>(o + 1), l.prior_strength[o] = 20.0;
    return l;
}

TEST(FeatureRows, WriteEachColumnAsTheLayoutDefinesIt) {
    const FeatureLayout l = layout(2, 2);
    ASSERT_EQ(l.width(), 3 * 2 + 16 + 3u);
    const float long_term[] = {1.0f, 2.0f}, session[] = {0.5f, -1.0f}, vector[] = {3.0f, 4.0f};
    UserInputs user{long_term, session, 9.0, 4.0, 10.0, 5.0, 2.0};
    ItemInputs item;
    item.vector = vector;
    item.impressions = 30.0;
    item.outcomes = {6, 1, 2, 0, 0, 0, 12};
    item.created_at_s = 1000.0;
    std::vector<float> row(l.width());
    write_row(l, user, item, 1000.0 + 7200.0, 3.0, {0.25f, 0.5f, 2.0f}, row.data());
    EXPECT_EQ(row[0], 1.0f);
    EXPECT_EQ(row[5], 4.0f);
    EXPECT_FLOAT_EQ(row[6], 11.0f);                                  // <long, item>
    EXPECT_FLOAT_EQ(row[7], -2.5f);                                  // <session, item>
    EXPECT_FLOAT_EQ(row[8], static_cast<float>((6 + 0.1 * 20) / (30 + 20.0)));  // complete rate
    EXPECT_FLOAT_EQ(row[15], static_cast<float>(std::log1p(30.0)));  // log impressions
    EXPECT_FLOAT_EQ(row[16], static_cast<float>(std::log1p(2.0)));   // log age in hours
    EXPECT_FLOAT_EQ(row[17], static_cast<float>(std::log1p(9.0)));   // log events
    EXPECT_FLOAT_EQ(row[19], static_cast<float>((5 + 0.1 * 20) / (10 + 20.0)));  // user complete rate
    EXPECT_FLOAT_EQ(row[20], static_cast<float>((2 + 0.7 * 20) / (10 + 20.0)));  // user skip rate
    EXPECT_EQ(row[21], 3.0f);                                        // position
    EXPECT_EQ(row[22], 0.25f);
    EXPECT_EQ(row[23], 0.5f);
    EXPECT_FLOAT_EQ(row[24], static_cast<float>(std::log1p(2.0)));
}

TEST(FeatureRows, VersionOneStopsBeforeTheAffinityColumnsAndNormalises) {
    FeatureLayout l = layout(1, 1);
    ASSERT_EQ(l.width(), 3 + 16u);
    std::vector<float> mean(l.width(), 1.0f), std(l.width(), 2.0f);
    l.mean = mean.data();
    l.std = std.data();
    const float v[] = {5.0f};
    UserInputs user{v, v};
    ItemInputs item;
    item.vector = v;
    std::vector<float> row(l.width() + 1, -7.0f);
    write_row(l, user, item, 0.0, 0.0, {}, row.data());
    EXPECT_EQ(row[0], 2.0f);  // (5 - 1) / 2
    EXPECT_EQ(row[l.width()], -7.0f) << "wrote past the row";
}

TEST(Affinity, LargestCosineAndHoursSinceTheRegionsLatestPositive) {
    const float items[] = {1, 0, 0, 1, 0, 0};                // three items, dims 2
    const float positives[] = {2, 0, 0, -3};                 // two positives
    const std::int64_t ts[] = {3'600'000, 0};
    const float centroids[] = {1, 0, 0, 1, 0, -1};           // three regions
    float similarity[3], hours[3];
    affinity(items, 3, 2, positives, ts, 2, 7'200'000.0, centroids, 3, similarity, hours);
    EXPECT_FLOAT_EQ(similarity[0], 1.0f);
    EXPECT_FLOAT_EQ(similarity[1], 0.0f);
    EXPECT_EQ(similarity[2], 0.0f);  // a zero vector has no cosine
    EXPECT_FLOAT_EQ(hours[0], 1.0f);  // region 0's positive was an hour before now
    EXPECT_EQ(hours[1], kNoPositiveHours);  // none in region 1
}

TEST(QueryVector, NoDirectionWithoutVectorsAndUnitPartsOtherwise) {
    const float zero[] = {0, 0}, long_term[] = {3, 4}, session[] = {0, 2};
    float q[2] = {9, 9};
    EXPECT_FALSE(query_vector(zero, zero, 2, 0.5f, q));
    EXPECT_EQ(q[0], 9.0f);
    ASSERT_TRUE(query_vector(long_term, session, 2, 0.5f, q));
    EXPECT_FLOAT_EQ(q[0], 0.3f);
    EXPECT_FLOAT_EQ(q[1], 0.4f + 0.5f);
}

}  // namespace
}  // namespace recserve::feed
