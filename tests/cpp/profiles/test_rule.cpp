#include "recserve/profiles/rule.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace recserve::profiles {
namespace {

TEST(UpdateRule, DefaultsAreValid) { EXPECT_TRUE(validate(UpdateRule{}).is_ok()); }

TEST(UpdateRule, ValidateRejectsBadDeclarations) {
    UpdateRule r;
    r.curve_x[1] = 0.0f;  // not increasing
    EXPECT_FALSE(validate(r).is_ok());
    r = UpdateRule{};
    r.weights[3] = std::numeric_limits<float>::quiet_NaN();
    EXPECT_FALSE(validate(r).is_ok());
    r = UpdateRule{};
    r.curve_x[2] = 0.5f;  // stops short of the cap
    EXPECT_FALSE(validate(r).is_ok());
    r = UpdateRule{};
    r.lr_long = -1;
    EXPECT_FALSE(validate(r).is_ok());
}

TEST(UpdateRule, CompletionOutweighsReplayWhichOutweighsExplicitActions) {
    const UpdateRule r;
    const float complete = engagement_weight(r, EventType::kWatch, 30000, 30000);
    const float replay = engagement_weight(r, EventType::kReplay, 0, 0);
    const float like = engagement_weight(r, EventType::kLike, 0, 0);
    EXPECT_FLOAT_EQ(complete, 1.0f);
    EXPECT_GT(complete, replay);
    EXPECT_GT(replay, like);
}

TEST(UpdateRule, WatchWeightFollowsThePiecewiseLinearCurveAndIsCapped) {
    const UpdateRule r;  // knots (0, -0.2) (0.3, 0) (1, 1)
    EXPECT_NEAR(engagement_weight(r, EventType::kWatch, 15000, 100000), -0.1f, 1e-6);
    EXPECT_NEAR(engagement_weight(r, EventType::kWatch, 65000, 100000), 0.5f, 1e-6);
    EXPECT_FLOAT_EQ(engagement_weight(r, EventType::kWatch, 300000, 100000), 1.0f);  // replays: capped
}

TEST(UpdateRule, AFastSkipIsNegativeButAShortVideoWatchedToTheEndIsNot) {
    const UpdateRule r;  // fast skip under 3 s
    EXPECT_FLOAT_EQ(engagement_weight(r, EventType::kWatch, 1500, 60000), r.fast_skip_weight);
    EXPECT_FLOAT_EQ(engagement_weight(r, EventType::kSkip, 500, 60000), r.fast_skip_weight);
    EXPECT_FLOAT_EQ(engagement_weight(r, EventType::kSkip, 5000, 60000), r.weights[7]);
    EXPECT_FLOAT_EQ(engagement_weight(r, EventType::kWatch, 1500, 1500), 1.0f);
    EXPECT_LT(engagement_weight(r, EventType::kNotInterested, 0, 0), r.fast_skip_weight);
}

TEST(UpdateRule, MovesAreConvexTowardOrAwayFromTheItem) {
    std::vector<float> v = {1.0f, 0.0f};
    const std::vector<float> x = {0.0f, 1.0f};
    move_toward(v.data(), x.data(), 2, 0.5f, 1.0f);
    EXPECT_FLOAT_EQ(v[0], 0.5f);
    EXPECT_FLOAT_EQ(v[1], 0.5f);
    move_toward(v.data(), x.data(), 2, 0.5f, -1.0f);
    EXPECT_FLOAT_EQ(v[0], 0.25f);
    EXPECT_FLOAT_EQ(v[1], -0.25f);
    move_toward(v.data(), x.data(), 2, 100.0f, 1.0f);  // a step is capped at the item itself
    EXPECT_FLOAT_EQ(v[0], 0.0f);
    EXPECT_FLOAT_EQ(v[1], 1.0f);
}

TEST(UpdateRule, SessionDecayHalvesPerHalfLifeAndEndsAtTheTimeout) {
    const UpdateRule r;  // half-life 600 s, timeout 1800 s
    EXPECT_FLOAT_EQ(session_decay(r, 0), 1.0f);
    EXPECT_FLOAT_EQ(session_decay(r, -5000), 1.0f);
    EXPECT_FLOAT_EQ(session_decay(r, 600000), 0.5f);
    EXPECT_FLOAT_EQ(session_decay(r, 1800001), 0.0f);
}

}  // namespace
}  // namespace recserve::profiles
