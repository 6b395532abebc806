#include "recserve/profiles/profiles.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "recserve/base/byte_io.hpp"

namespace recserve::profiles {
namespace {

constexpr std::size_t kDims = 4;

std::unique_ptr<Profiles> make(ProfilesOptions o = {}) {
    o.dims = kDims;
    o.user_capacity = o.item_capacity = 1024;
    o.shards = 4;
    Result<std::unique_ptr<Profiles>> p = Profiles::create(o);
    EXPECT_TRUE(p.is_ok()) << p.status().message();
    return std::move(p).value();
}

// Events as rows, turned into columns by batch().
struct Events {
    std::vector<std::uint64_t> users, items, seq, keys;
    std::vector<std::uint8_t> types;
    std::vector<std::uint32_t> watch, duration;
    std::vector<std::int64_t> ts;

    Events& add(std::uint64_t user, std::uint64_t item, EventType type, std::uint64_t s, std::int64_t t = 1000,
                std::uint32_t watch_ms = 0, std::uint32_t duration_ms = 10000, std::uint64_t key = 0) {
        users.push_back(user);
        items.push_back(item);
        types.push_back(static_cast<std::uint8_t>(type));
        seq.push_back(s);
        ts.push_back(t);
        watch.push_back(watch_ms);
        duration.push_back(duration_ms);
        keys.push_back(key);
        return *this;
    }
    EventBatch batch(bool with_keys = false) const {
        return {users.size(), users.data(), items.data(), types.data(), watch.data(), duration.data(),
                ts.data(),    seq.data(),   with_keys ? keys.data() : nullptr};
    }
};

struct UserState {
    std::vector<float> long_term = std::vector<float>(kDims), session = std::vector<float>(kDims);
    std::vector<std::uint64_t> words = std::vector<std::uint64_t>(kUserWords);
    bool found = false;
    bool operator==(const UserState&) const = default;
};

UserState user(const Profiles& p, std::uint64_t id, std::int64_t now_ms = 1000) {
    UserState s;
    p.user_vectors(&id, 1, now_ms, s.long_term.data(), s.session.data(), &s.found);
    bool found = false;
    p.user_words(&id, 1, s.words.data(), &found);
    return s;
}

std::vector<std::uint64_t> item_words(const Profiles& p, std::uint64_t id) {
    std::vector<std::uint64_t> w(kItemWords);
    bool found = false;
    p.items(&id, 1, nullptr, w.data(), &found);
    return w;
}

void set_item(Profiles& p, std::uint64_t id, std::vector<float> v) { ASSERT_TRUE(p.set_items(&id, v.data(), 1).is_ok()); }

TEST(Profiles, AFullWatchMovesLongTermSlowlyAndSessionFastTowardTheItem) {
    auto p = make();
    set_item(*p, 10, {1, 0, 0, 0});
    Events e;
    e.add(1, 10, EventType::kWatch, 1, 1000, 10000, 10000);
    ASSERT_TRUE(p->apply(e.batch()).is_ok());
    const UserState u = user(*p, 1);
    ASSERT_TRUE(u.found);
    const UpdateRule rule;
    EXPECT_FLOAT_EQ(u.long_term[0], rule.lr_long);     // weight 1
    EXPECT_FLOAT_EQ(u.session[0], rule.lr_session);
    EXPECT_EQ(u.words[kHighWaterSeq], 1u);
    EXPECT_EQ(u.words[kEventsApplied], 1u);
}

TEST(Profiles, NegativeSignalsMoveAwayFromTheItem) {
    auto p = make();
    set_item(*p, 10, {1, 0, 0, 0});
    Events e;
    e.add(1, 10, EventType::kNotInterested, 1);
    ASSERT_TRUE(p->apply(e.batch()).is_ok());
    EXPECT_LT(user(*p, 1).long_term[0], 0.0f);
    EXPECT_LT(user(*p, 1).session[0], 0.0f);
}

TEST(Profiles, ItemCountersCountEachEventType) {
    auto p = make();
    set_item(*p, 10, {1, 0, 0, 0});
    Events e;
    e.add(1, 10, EventType::kImpression, 1)
        .add(1, 10, EventType::kWatch, 2, 1000, 9500, 10000)   // a completion
        .add(2, 10, EventType::kWatch, 1, 1000, 1000, 10000)   // a fast skip
        .add(2, 10, EventType::kLike, 2)
        .add(3, 10, EventType::kSkip, 1, 1000, 500)
        .add(3, 10, EventType::kReplay, 2);
    Result<ApplyResult> r = p->apply(e.batch());
    ASSERT_TRUE(r.is_ok());
    EXPECT_EQ(r.value().applied, 6u);
    const auto c = item_words(*p, 10);
    EXPECT_EQ(c[kImpressions], 3u);  // three users met it (exposure: each one's first event)
    EXPECT_EQ(c[kWatches], 2u);
    EXPECT_EQ(c[kWatchMs], 10500u);
    EXPECT_EQ(c[kCompletions], 1u);
    EXPECT_EQ(c[kFastSkips], 2u);  // the short watch and the early skip
    EXPECT_EQ(c[kSkips], 1u);
    EXPECT_EQ(c[kLikes], 1u);
    EXPECT_EQ(c[kReplays], 1u);
    EXPECT_EQ(c[kItemFlags] & 1, 1u);
}

TEST(Profiles, UsersCountTheItemsTheyMetCompletionsAndFastSkipsAsItemsDo) {
    auto p = make();
    set_item(*p, 10, {1, 0, 0, 0});
    Events e;
    e.add(1, 10, EventType::kImpression, 1)
        .add(1, 10, EventType::kWatch, 2, 1000, 9500, 10000)   // a completion
        .add(1, 10, EventType::kImpression, 3)
        .add(1, 10, EventType::kWatch, 4, 1000, 1000, 10000)   // a fast skip
        .add(1, 10, EventType::kSkip, 5, 1000, 500)            // another
        .add(1, 10, EventType::kSkip, 5, 1000, 500)            // stale: not counted again
        .add(2, 10, EventType::kLike, 1);
    ASSERT_TRUE(p->apply(e.batch()).is_ok());
    const auto u = user(*p, 1);
    EXPECT_EQ(u.words[kUserImpressions], 1u);  // one item met, however many impression events
    EXPECT_EQ(u.words[kUserCompletions], 1u);
    EXPECT_EQ(u.words[kUserFastSkips], 2u);
    EXPECT_EQ(u.words[kEventsApplied], 5u);
    const auto other = user(*p, 2);
    EXPECT_EQ(other.words[kUserImpressions], 1u);  // a like alone: the user met the item
    EXPECT_EQ(other.words[kUserCompletions] + other.words[kUserFastSkips], 0u);
}

TEST(Profiles, ExposureCountsEachUsersFirstEventWithoutImpressionEvents) {
    auto p = make();
    set_item(*p, 10, {1, 0, 0, 0});
    set_item(*p, 11, {0, 1, 0, 0});
    Events e;  // a client that sends watches, likes and shares, never impressions
    e.add(1, 10, EventType::kWatch, 1, 1000, 9500, 10000)
        .add(1, 10, EventType::kLike, 2)
        .add(1, 11, EventType::kWatch, 3, 1000, 2000, 10000)
        .add(2, 10, EventType::kShare, 1)
        .add(3, 10, EventType::kWatch, 1, 1000, 500, 10000)
        .add(3, 10, EventType::kWatch, 2, 1000, 9000, 10000);  // watched again: the same view
    ASSERT_TRUE(p->apply(e.batch()).is_ok());
    EXPECT_EQ(item_words(*p, 10)[kImpressions], 3u);
    EXPECT_EQ(item_words(*p, 11)[kImpressions], 1u);
    EXPECT_EQ(user(*p, 1).words[kUserImpressions], 2u);
}

TEST(Profiles, AnImpressionAndAWatchOfOneViewCountOnceInEitherOrder) {
    auto p = make();
    set_item(*p, 10, {1, 0, 0, 0});
    Events e;
    e.add(1, 10, EventType::kImpression, 1).add(1, 10, EventType::kWatch, 2, 1000, 5000, 10000);
    e.add(2, 10, EventType::kWatch, 1, 1000, 5000, 10000).add(2, 10, EventType::kImpression, 2);  // late
    ASSERT_TRUE(p->apply(e.batch()).is_ok());
    EXPECT_EQ(item_words(*p, 10)[kImpressions], 2u);
    EXPECT_EQ(user(*p, 1).words[kUserImpressions], 1u);
    EXPECT_EQ(user(*p, 2).words[kUserImpressions], 1u);
}

TEST(Profiles, ReplayingEventsChangesNothingAndIsCounted) {
    auto p = make();
    set_item(*p, 10, {1, 0, 0, 0});
    set_item(*p, 11, {0, 1, 0, 0});
    Events e;
    e.add(1, 10, EventType::kWatch, 5, 1000, 8000).add(1, 11, EventType::kLike, 6);
    ASSERT_TRUE(p->apply(e.batch()).is_ok());
    const UserState before = user(*p, 1);
    const auto counters = item_words(*p, 11);
    Events again = e;
    again.add(1, 11, EventType::kShare, 4);  // behind the high-water mark too
    Result<ApplyResult> r = p->apply(again.batch());
    ASSERT_TRUE(r.is_ok());
    EXPECT_EQ(r.value().applied, 0u);
    EXPECT_EQ(r.value().stale, 3u);
    EXPECT_EQ(user(*p, 1), before);
    EXPECT_EQ(item_words(*p, 11), counters);
    EXPECT_EQ(p->stats().stale, 3u);
}

TEST(Profiles, ARedeliveredEventKeyIsIgnoredEvenWithANewSequenceNumber) {
    auto p = make();
    set_item(*p, 10, {1, 0, 0, 0});
    Events e;
    e.add(1, 10, EventType::kLike, 1, 1000, 0, 10000, 777);
    ASSERT_TRUE(p->apply(e.batch(true)).is_ok());
    const UserState before = user(*p, 1);
    Events retry;
    retry.add(1, 10, EventType::kLike, 2, 1000, 0, 10000, 777);
    Result<ApplyResult> r = p->apply(retry.batch(true));
    ASSERT_TRUE(r.is_ok());
    EXPECT_EQ(r.value().duplicate_keys, 1u);
    EXPECT_EQ(user(*p, 1), before);
    EXPECT_EQ(item_words(*p, 10)[kLikes], 1u);
}

TEST(Profiles, ABadEventRejectsTheWholeBatchAndChangesNothing) {
    auto p = make();
    set_item(*p, 10, {1, 0, 0, 0});
    Events ok;
    ok.add(1, 10, EventType::kLike, 1);
    for (int bad = 0; bad < 3; ++bad) {
        Events e = ok;
        if (bad == 0) e.add(2, 10, static_cast<EventType>(42), 1);
        if (bad == 1) e.add(2, 10, EventType::kWatch, 1, 1000, 500, 0);  // a watch without a duration
        if (bad == 2) e.add(2, 10, EventType::kLike, 0);                // seq 0
        Result<ApplyResult> r = p->apply(e.batch());
        ASSERT_FALSE(r.is_ok());
        EXPECT_NE(r.status().message().find("(event 1)"), std::string::npos) << r.status().message();
    }
    EXPECT_FALSE(user(*p, 1).found);
    EXPECT_EQ(item_words(*p, 10)[kLikes], 0u);
    const std::vector<float> nan = {0, std::numeric_limits<float>::quiet_NaN(), 0, 0};
    const std::uint64_t id = 12;
    EXPECT_FALSE(p->set_items(&id, nan.data(), 1).is_ok());
}

TEST(Profiles, EventsOnUnknownItemsMoveTheUserButMakeNoItemRow) {
    auto p = make();
    Events e;
    e.add(1, 99, EventType::kLike, 1);
    Result<ApplyResult> r = p->apply(e.batch());
    ASSERT_TRUE(r.is_ok());
    EXPECT_EQ(r.value().unknown_items, 1u);
    EXPECT_EQ(user(*p, 1).long_term, std::vector<float>(kDims, 0.0f));
    EXPECT_EQ(user(*p, 1).words[kEventsApplied], 1u);
    bool seen = false;
    p->seen(1, std::vector<std::uint64_t>{99}.data(), 1, &seen);
    EXPECT_TRUE(seen);
    EXPECT_EQ(p->stats().items, 0u);  // no row: events cannot crowd out the catalogue
}

TEST(Profiles, ItemsPastTheCapacityAreRefusedWholeAndNothingIsEvicted) {
    ProfilesOptions o;
    o.dims = kDims;
    o.user_capacity = 64;
    o.item_capacity = 16;  // one shard alone could take all 16: nothing is evicted early
    o.shards = 4;
    auto p = std::move(Profiles::create(o)).value();
    std::vector<std::uint64_t> ids(16);
    for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = i + 1;
    const std::vector<float> v(ids.size() * kDims, 1.0f);
    ASSERT_TRUE(p->set_items(ids.data(), v.data(), ids.size()).is_ok());
    ASSERT_TRUE(p->set_items(ids.data(), v.data(), ids.size()).is_ok());  // updates: no room needed
    const std::uint64_t more[2] = {100, 3};
    const Status full = p->set_items(more, v.data(), 2);
    EXPECT_EQ(full.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(full.message().find("item_capacity"), std::string::npos) << full.message();
    EXPECT_EQ(p->stats().items, 16u);
    EXPECT_EQ(p->stats().item_table.evictions, 0u);
    Events e;
    for (std::uint64_t i = 0; i < 100; ++i) e.add(1, 1000 + i, EventType::kImpression, i + 1);
    ASSERT_TRUE(p->apply(e.batch()).is_ok());
    EXPECT_EQ(p->stats().items, 16u);
    float got[kDims];
    bool found = false;
    p->items(&ids[0], 1, got, nullptr, &found);
    EXPECT_TRUE(found);
}

TEST(Profiles, EvictUsersHandsOverExactImagesThatImportBack) {
    ProfilesOptions o;
    o.user_lru = false;
    auto p = make(o);
    Events e;
    for (std::uint64_t u = 1; u <= 40; ++u) {
        e.add(u, 500 + u, EventType::kImpression, 2 * u, 1000, 0, 10000, 7000 + u);
        e.add(u, 600 + u, EventType::kSkip, 2 * u + 1, 2000, 100, 10000, 8000 + u);
    }
    ASSERT_TRUE(p->apply(e.batch(true)).is_ok());
    std::vector<std::vector<char>> vectors(40), states(40);
    for (std::uint64_t u = 1; u <= 40; ++u) ASSERT_TRUE(p->export_user(u, &vectors[u - 1], &states[u - 1]));
    std::vector<UserImage> out;
    EXPECT_EQ(p->evict_users(10, &out), 30u);
    EXPECT_EQ(p->stats().users, 10u);
    EXPECT_EQ(p->stats().user_table.evictions, 30u);
    ASSERT_EQ(out.size(), 30u);
    for (const UserImage& image : out) {
        EXPECT_FALSE(user(*p, image.user).found);
        EXPECT_EQ(p->recent_items(image.user), std::vector<std::uint64_t>{});  // the log went too
        EXPECT_EQ(image.vectors, vectors[image.user - 1]);
        EXPECT_EQ(image.state, states[image.user - 1]);
        ASSERT_TRUE(p->import_users(&image.user, &image.vectors, &image.state, 1).is_ok());
    }
    Events again;  // redeliveries are still recognised after the round trip
    again.add(out[0].user, 1, EventType::kLike, 1000, 3000, 0, 10000, 7000 + out[0].user);
    EXPECT_EQ(p->apply(again.batch(true)).value().duplicate_keys, 1u);
}

TEST(Profiles, WithoutUserLruTheTableNeverDropsAUserByItself) {
    ProfilesOptions o;
    o.user_lru = false;
    auto p = make(o);  // user_capacity 1024 over 4 shards
    Events e;
    for (std::uint64_t u = 1; u <= 3000; ++u) e.add(u, 1, EventType::kImpression, u);
    ASSERT_TRUE(p->apply(e.batch()).is_ok());
    EXPECT_EQ(p->stats().users, 3000u);  // the owner's evict_users() bounds it
    EXPECT_EQ(p->stats().user_table.evictions, 0u);
}

TEST(Profiles, AUserTheLruTableDropsTakesTheirSeenSetAlong) {
    ProfilesOptions o;
    o.dims = kDims;
    o.user_capacity = o.item_capacity = 16;
    o.shards = 1;
    auto p = std::move(Profiles::create(o)).value();
    Events e;
    for (std::uint64_t u = 1; u <= 40; ++u) e.add(u, 100 + u, EventType::kImpression, u);
    ASSERT_TRUE(p->apply(e.batch()).is_ok());
    EXPECT_EQ(p->stats().users, 16u);
    EXPECT_EQ(p->recent_items(1), std::vector<std::uint64_t>{});  // dropped with its row
    EXPECT_EQ(p->recent_items(40), std::vector<std::uint64_t>{140});
    auto q = std::move(Profiles::create(o)).value();  // only the 16 users that stayed
    Events last;
    for (std::uint64_t u = 25; u <= 40; ++u) last.add(u, 100 + u, EventType::kImpression, u);
    ASSERT_TRUE(q->apply(last.batch()).is_ok());
    EXPECT_EQ(p->snapshot(1).size(), q->snapshot(1).size());  // no log of a dropped user left
}

TEST(Profiles, EraseUserForgetsRowSeenSetAndEventKeys) {
    auto p = make();
    Events e;
    e.add(1, 10, EventType::kLike, 1, 1000, 0, 10000, 77).add(2, 10, EventType::kLike, 2);
    ASSERT_TRUE(p->apply(e.batch(true)).is_ok());
    EXPECT_TRUE(p->erase_user(1));
    EXPECT_FALSE(p->erase_user(1));
    EXPECT_FALSE(user(*p, 1).found);
    EXPECT_TRUE(user(*p, 2).found);
    EXPECT_EQ(p->recent_items(1), std::vector<std::uint64_t>{});
    Events again;  // the same event key is a new event for a new user
    again.add(1, 10, EventType::kLike, 3, 1000, 0, 10000, 77);
    EXPECT_EQ(p->apply(again.batch(true)).value().applied, 1u);
}

TEST(Profiles, SeenSetHoldsEveryItemTheUserMet) {
    auto p = make();
    Events e;
    for (std::uint64_t i = 0; i < 300; ++i) e.add(1, 1000 + i, EventType::kImpression, i + 1);
    ASSERT_TRUE(p->apply(e.batch()).is_ok());
    std::vector<std::uint64_t> items = {1000, 1150, 1299, 5, 2000};
    bool out[5];
    p->seen(1, items.data(), items.size(), out);
    EXPECT_TRUE(out[0] && out[1] && out[2]);
    EXPECT_FALSE(out[3] || out[4]);
    p->seen(2, items.data(), items.size(), out);  // an unknown user has seen nothing
    EXPECT_FALSE(out[0]);
    EXPECT_EQ(p->recent_items(1).front(), 1299u);
}

TEST(Profiles, SeenBeforeRecentHoldsWhatLeftTheExactRingAndNothingElse) {
    auto p = make();  // the seen-set keeps 128 items exactly
    Events e;
    for (std::uint64_t i = 0; i < 100; ++i) e.add(1, 1000 + i, EventType::kImpression, i + 1);
    ASSERT_TRUE(p->apply(e.batch()).is_ok());
    EXPECT_FALSE(p->has_seen_before_recent(1));  // all 100 still in the ring
    EXPECT_FALSE(p->seen_before_recent(1, 1000));
    Events more;
    for (std::uint64_t i = 100; i < 300; ++i) more.add(1, 1000 + i, EventType::kImpression, i + 1);
    ASSERT_TRUE(p->apply(more.batch()).is_ok());
    EXPECT_TRUE(p->has_seen_before_recent(1));
    EXPECT_TRUE(p->seen_before_recent(1, 1000));    // the oldest: moved to the filter
    EXPECT_FALSE(p->seen_before_recent(1, 1299));   // the newest: in the ring, not the filter
    EXPECT_FALSE(p->has_seen_before_recent(2));     // an unknown user
    EXPECT_FALSE(p->seen_before_recent(2, 1000));
}

TEST(Profiles, SessionDecaysWithTimeAndRestartsAfterTheTimeout) {
    auto p = make();
    set_item(*p, 10, {1, 0, 0, 0});
    Events e;
    e.add(1, 10, EventType::kWatch, 1, 0, 10000, 10000);
    ASSERT_TRUE(p->apply(e.batch()).is_ok());
    const float fresh = user(*p, 1, 0).session[0];
    EXPECT_FLOAT_EQ(user(*p, 1, 600000).session[0], fresh / 2);  // one half-life later
    EXPECT_EQ(user(*p, 1, 3600000).session[0], 0.0f);            // past the timeout
    Events later;
    later.add(1, 10, EventType::kLike, 2, 3600000);
    ASSERT_TRUE(p->apply(later.batch()).is_ok());
    const UserState u = user(*p, 1, 3600000);
    EXPECT_FLOAT_EQ(u.session[0], UpdateRule{}.lr_session * 0.5f);  // a new session: from zero
    EXPECT_EQ(static_cast<std::int64_t>(u.words[kSessionStartMs]), 3600000);
}

std::string temp_path(const char* name) { return ::testing::TempDir() + name; }

void write_file(const std::string& path, const std::vector<char>& bytes) {
    std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

TEST(ProfilesSnapshot, RoundTripsEveryUserItemAndSeenSet) {
    ProfilesOptions o;
    o.seen = {8, 1024, 16};
    auto p = make(o);
    std::mt19937_64 rng(7);
    for (std::uint64_t i = 0; i < 50; ++i) set_item(*p, i, {float(i), 1, 2, 3});
    Events e;
    for (std::uint64_t n = 1; n <= 2000; ++n)
        e.add(rng() % 40, rng() % 60, static_cast<EventType>(rng() % kEventTypes), n, std::int64_t(n) * 1000,
              std::uint32_t(rng() % 20000), 15000, n);
    ASSERT_TRUE(p->apply(e.batch(true)).is_ok());
    const std::string path = temp_path("profiles.snap");
    write_file(path, p->snapshot(1234));
    std::uint64_t lsn = 0;
    Result<std::unique_ptr<Profiles>> q = Profiles::load(path, p->options(), &lsn);
    ASSERT_TRUE(q.is_ok()) << q.status().message();
    EXPECT_EQ(lsn, 1234u);
    EXPECT_EQ(q.value()->snapshot(1234).size(), p->snapshot(1234).size());
    for (std::uint64_t u = 0; u < 40; ++u) EXPECT_EQ(user(*q.value(), u), user(*p, u)) << u;
    for (std::uint64_t i = 0; i < 60; ++i) EXPECT_EQ(item_words(*q.value(), i), item_words(*p, i)) << i;
    std::vector<std::uint64_t> probe(200);
    for (std::uint64_t i = 0; i < 200; ++i) probe[i] = i;
    for (std::uint64_t u = 0; u < 40; ++u) {
        bool a[200], b[200];
        p->seen(u, probe.data(), probe.size(), a);
        q.value()->seen(u, probe.data(), probe.size(), b);
        EXPECT_TRUE(std::equal(a, a + 200, b)) << u;
        EXPECT_EQ(q.value()->recent_items(u), p->recent_items(u));
    }
    EXPECT_EQ(q.value()->stats().applied, p->stats().applied);
    // The same events again change nothing: the high-water marks and key windows came back.
    Result<ApplyResult> again = q.value()->apply(e.batch(true));
    ASSERT_TRUE(again.is_ok());
    EXPECT_EQ(again.value().applied, 0u);
}

TEST(ProfilesSnapshot, EveryTruncationAndSampledBitFlipsAreReportedAsCorrupt) {
    auto p = make();
    set_item(*p, 1, {1, 2, 3, 4});
    Events e;
    for (std::uint64_t n = 1; n <= 20; ++n) e.add(n % 3, 1, EventType::kWatch, n, 1000, 5000);
    ASSERT_TRUE(p->apply(e.batch()).is_ok());
    const std::vector<char> good = p->snapshot(9);
    const std::string path = temp_path("damaged.snap");
    std::uint64_t lsn = 0;
    for (std::size_t cut = 0; cut < good.size(); ++cut) {
        write_file(path, std::vector<char>(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(cut)));
        Result<std::unique_ptr<Profiles>> q = Profiles::load(path, p->options(), &lsn);
        ASSERT_FALSE(q.is_ok()) << cut;
        EXPECT_EQ(q.status().code(), StatusCode::kCorrupt) << cut;
    }
    for (std::size_t bit = 0; bit < good.size() * 8; bit += 13) {
        std::vector<char> bad = good;
        bad[bit / 8] = static_cast<char>(bad[bit / 8] ^ (1 << (bit % 8)));
        write_file(path, bad);
        Result<std::unique_ptr<Profiles>> q = Profiles::load(path, p->options(), &lsn);
        ASSERT_FALSE(q.is_ok()) << bit;
        EXPECT_EQ(q.status().code(), StatusCode::kCorrupt) << bit;
    }
    EXPECT_EQ(Profiles::load(temp_path("missing.snap"), p->options(), &lsn).status().code(), StatusCode::kNotFound);
    ProfilesOptions other = p->options();
    other.seen.recent = 64;
    write_file(path, good);
    EXPECT_EQ(Profiles::load(path, other, &lsn).status().code(), StatusCode::kInvalidArgument);
}

// Runs write() over and over on one thread while two threads read what a feed reads (vectors
// of users 0..31, seen-sets, recent items, counters of items 0..63), for RECSERVE_STRESS_SECONDS
// (1 s). Returns how many user vectors the readers saw torn: every item vector is constant, so
// every whole user vector is too.
template <class Write>
std::uint64_t torn_reads_while(const Profiles& p, Write write) {
    const char* env = std::getenv("RECSERVE_STRESS_SECONDS");
    const double seconds = env ? std::atof(env) : 1.0;
    std::atomic<bool> stop{false};
    std::atomic<std::uint64_t> torn{0}, reads{0};
    std::thread writer([&] {
        while (!stop.load(std::memory_order_relaxed)) write();
    });
    std::vector<std::thread> readers;
    for (int r = 0; r < 2; ++r) {
        readers.emplace_back([&p, &stop, &torn, &reads, r] {
            std::mt19937_64 rng(100 + r);
            std::vector<std::uint64_t> users(8), items(16);
            std::vector<float> lt(8 * kDims), ss(8 * kDims);
            bool found[16], seen[16];
            while (!stop.load(std::memory_order_relaxed)) {
                for (auto& u : users) u = rng() % 32;
                for (auto& i : items) i = rng() % 64;
                p.user_vectors(users.data(), users.size(), 0, lt.data(), ss.data(), found);
                for (std::size_t k = 0; k < lt.size(); ++k) {
                    if (lt[k] != lt[k - k % kDims] || ss[k] != ss[k - k % kDims]) torn.fetch_add(1);
                }
                p.seen(users[0], items.data(), items.size(), seen);
                (void)p.recent_items(users[1]);
                std::vector<std::uint64_t> words(16 * kItemWords);
                p.items(items.data(), items.size(), nullptr, words.data(), found);
                reads.fetch_add(1, std::memory_order_relaxed);
            }
        });
    }
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
    stop.store(true);
    writer.join();
    for (auto& t : readers) t.join();
    EXPECT_GT(reads.load(), 0u);
    return torn.load();
}

TEST(ProfilesConcurrency, ReadersSeeWholeRowsWhileEventsApply) {
    auto p = make();
    for (std::uint64_t i = 0; i < 64; ++i) set_item(*p, i, std::vector<float>(kDims, float(i)));
    std::mt19937_64 rng(1);
    std::uint64_t seq = 0;
    const std::uint64_t torn = torn_reads_while(*p, [&] {
        Events e;
        for (int i = 0; i < 64; ++i) {
            ++seq;
            e.add(rng() % 32, rng() % 64, static_cast<EventType>(rng() % kEventTypes), seq, std::int64_t(seq), 9000,
                  10000);
        }
        ASSERT_TRUE(p->apply(e.batch()).is_ok());
    });
    EXPECT_EQ(torn, 0u);
    EXPECT_GT(p->stats().applied, 0u);
}

TEST(ProfilesConcurrency, ReadersSeeWholeRowsWhileUsersAreEvictedAndImported) {
    ProfilesOptions o;
    o.user_lru = false;
    auto p = make(o);
    for (std::uint64_t i = 0; i < 64; ++i) set_item(*p, i, std::vector<float>(kDims, float(i)));
    std::mt19937_64 rng(2);
    std::uint64_t seq = 0;
    std::vector<UserImage> out;
    const std::uint64_t torn = torn_reads_while(*p, [&] {  // keeps 8 of 32 users, brings half back
        Events e;
        for (int i = 0; i < 16; ++i) {
            ++seq;
            e.add(rng() % 32, rng() % 64, EventType::kWatch, seq, std::int64_t(seq), 9000, 10000);
        }
        ASSERT_TRUE(p->apply(e.batch()).is_ok());
        out.clear();
        p->evict_users(8, &out);
        for (const UserImage& image : out) {
            if (rng() % 2 == 0) {
                ASSERT_TRUE(p->import_users(&image.user, &image.vectors, &image.state, 1).is_ok());
            }
        }
    });
    EXPECT_EQ(torn, 0u);
    EXPECT_LE(p->stats().users, 8u + 16u);
}

TEST(Profiles, AnExportedUserContinuesElsewhereAsIfNeverMoved) {
    auto here = make(), there = make();
    for (auto* p : {here.get(), there.get()}) set_item(*p, 5, {1, 0, 0, 0});
    Events first;
    first.add(7, 5, EventType::kWatch, 1, 1000, 9000, 10000, 11).add(7, 5, EventType::kLike, 2, 2000, 0, 10000, 12);
    ASSERT_TRUE(here->apply(first.batch(true)).is_ok());
    std::vector<char> vectors, state;
    ASSERT_TRUE(here->export_user(7, &vectors, &state));
    std::size_t imported = 0;
    ASSERT_TRUE(there->import_users(std::vector<std::uint64_t>{7}.data(), &vectors, &state, 1, &imported).is_ok());
    EXPECT_EQ(imported, 1u);
    Events later;
    later.add(7, 5, EventType::kShare, 3, 3000, 0, 10000, 12)  // a redelivered key: skipped
        .add(7, 5, EventType::kShare, 4, 4000, 0, 10000, 13);
    for (auto* p : {here.get(), there.get()}) ASSERT_TRUE(p->apply(later.batch(true)).is_ok());
    EXPECT_EQ(user(*here, 7, 5000), user(*there, 7, 5000));
    EXPECT_FALSE(here->export_user(8, &vectors, &state));
}

TEST(Profiles, AnImportNeverRollsAUserBackAndADamagedImageChangesNothing) {
    auto p = make();
    set_item(*p, 5, {1, 0, 0, 0});
    Events one, two;
    one.add(7, 5, EventType::kWatch, 1, 1000, 9000);
    two.add(7, 5, EventType::kWatch, 2, 2000, 9000);
    ASSERT_TRUE(p->apply(one.batch()).is_ok());
    std::vector<char> old_vectors, old_state;
    ASSERT_TRUE(p->export_user(7, &old_vectors, &old_state));
    ASSERT_TRUE(p->apply(two.batch()).is_ok());
    const UserState now = user(*p, 7);
    const std::uint64_t users[2] = {7, 9};
    std::size_t imported = 1;
    const std::vector<char> vectors[2] = {old_vectors, old_vectors}, states[2] = {old_state, old_state};
    ASSERT_TRUE(p->import_users(users, vectors, states, 1, &imported).is_ok());
    EXPECT_EQ(imported, 0u);  // the row has applied more than the image
    EXPECT_EQ(user(*p, 7), now);
    std::vector<char> truncated[2] = {old_state, std::vector<char>(old_state.begin(), old_state.end() - 3)};
    Status bad = p->import_users(users, vectors, truncated, 2, &imported);
    EXPECT_FALSE(bad.is_ok());
    EXPECT_NE(bad.message().find("user 1 is truncated"), std::string::npos) << bad.message();
    EXPECT_FALSE(user(*p, 9).found);  // nothing of the batch imported
}

}  // namespace
}  // namespace recserve::profiles
