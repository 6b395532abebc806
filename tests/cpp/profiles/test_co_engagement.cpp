#include "recserve/profiles/co_engagement.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <fstream>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <thread>
#include <vector>

#include "../../../cpp/src/profiles/user_logs.hpp"  // the image and snapshot layouts of a user log
#include "recserve/base/crc32c.hpp"
#include "recserve/profiles/profiles.hpp"

namespace recserve::profiles {
namespace {

CoEngagementOptions options(std::uint32_t neighbours, double half_life_seconds = 0, std::uint32_t history = 8) {
    CoEngagementOptions o;
    o.neighbours = neighbours;
    o.history = history;
    o.half_life_seconds = half_life_seconds;
    return o;
}

// The index and a brute-force reference fed the same positives: every increment is kept with
// its time, so a value at now is sum 2^((ts - now) / half_life), exact up to rounding.
struct Twin {
    CoEngagement index;
    double half_life;
    std::size_t history;
    std::map<std::uint64_t, std::vector<RecentPositive>> lists;
    std::map<std::uint64_t, std::vector<std::int64_t>> n;
    std::map<std::pair<std::uint64_t, std::uint64_t>, std::vector<std::int64_t>> w;

    explicit Twin(const CoEngagementOptions& o) : index(o), half_life(o.half_life_seconds), history(o.history) {}

    void positive(std::uint64_t user, std::uint64_t item, std::int64_t ts) {
        std::vector<RecentPositive>& list = lists[user];
        std::vector<std::uint64_t> partners;
        for (const RecentPositive& p : list) partners.push_back(p.item);
        if (!note_positive(list, item, ts, 1.0f, history)) return;
        index.add(item, partners.data(), partners.size(), ts);
        n[item].push_back(ts);
        for (std::uint64_t p : partners) {
            w[{p, item}].push_back(ts);
            w[{item, p}].push_back(ts);
        }
    }
    static double power(double x, double a) {  // as the index takes it
        if (a == 0.0) return 1.0;
        if (a == 1.0) return x;
        if (a == 0.5) return std::sqrt(x);
        return std::pow(x, a);
    }
    double decayed(const std::vector<std::int64_t>& times, std::int64_t now) const {
        double sum = 0;
        for (std::int64_t t : times) sum += half_life > 0 ? std::exp2((double(t) - double(now)) / 1000.0 / half_life) : 1.0;
        return sum;
    }
    // related() by the formula, summed in the same order as the index (r ascending).
    std::vector<std::pair<double, std::uint64_t>> related(std::uint64_t user, std::int64_t now, float decay,
                                                          float alpha_f) const {
        const double alpha = alpha_f;
        const std::vector<RecentPositive>& list = lists.at(user);
        std::map<std::uint64_t, double> sums;
        double coef = 1;
        for (std::size_t r = 0; r < list.size(); ++r, coef *= decay) {
            const auto ni = n.find(list[r].item);
            if (ni == n.end()) continue;
            const double base = coef / power(decayed(ni->second, now), 1.0 - alpha);
            for (const auto& [pair, times] : w) {
                if (pair.first == list[r].item) sums[pair.second] += base * decayed(times, now);
            }
        }
        std::vector<std::pair<double, std::uint64_t>> out;
        for (const auto& [j, sum] : sums) {
            const bool own = std::any_of(list.begin(), list.end(), [j = j](const RecentPositive& p) { return p.item == j; });
            if (!own) out.emplace_back(sum / power(decayed(n.at(j), now), alpha), j);
        }
        std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
            return a.first != b.first ? a.first > b.first : a.second < b.second;
        });
        return out;
    }
};

// A seeded stream of positives: 40 users, 60 items (popularity skewed), time mostly forward.
void feed(Twin& t, std::uint32_t seed, std::size_t events, std::int64_t step_ms, std::int64_t back_ms) {
    std::mt19937_64 rng(seed);
    std::int64_t ts = 1'700'000'000'000;
    for (std::size_t e = 0; e < events; ++e) {
        ts += static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(step_ms + 1));
        const std::int64_t at = back_ms > 0 && rng() % 10 == 0 ? ts - static_cast<std::int64_t>(rng() % back_ms) : ts;
        const std::uint64_t item = std::min(rng() % 60, rng() % 60);
        t.positive(rng() % 40, item, at);
    }
}

TEST(RecentPositives, ANewItemGoesFirstARepeatMovesUpAndTheListKeepsTheNewest) {
    std::vector<RecentPositive> list;
    EXPECT_TRUE(note_positive(list, 1, 100, 0.5f, 3));
    EXPECT_TRUE(note_positive(list, 2, 200, 1.0f, 3));
    EXPECT_TRUE(note_positive(list, 3, 300, 0.6f, 3));
    EXPECT_FALSE(note_positive(list, 1, 400, 0.4f, 3));  // a refresh: to the front, max weight
    ASSERT_EQ(list.size(), 3u);
    EXPECT_EQ(list[0].item, 1u);
    EXPECT_EQ(list[0].ts_ms, 400);
    EXPECT_EQ(list[0].weight, 0.5f);
    EXPECT_EQ(list[1].item, 3u);
    EXPECT_EQ(list[2].item, 2u);
    EXPECT_TRUE(note_positive(list, 4, 500, 1.0f, 3));  // the oldest (2) leaves
    ASSERT_EQ(list.size(), 3u);
    EXPECT_EQ(list[0].item, 4u);
    EXPECT_EQ(list[2].item, 3u);
}

TEST(CoEngagement, OptionsOutOfRangeAreRefused) {
    EXPECT_TRUE(validate(CoEngagementOptions{}).is_ok());
    EXPECT_FALSE(validate(options(kMaxNeighbours + 1)).is_ok());
    EXPECT_FALSE(validate(options(8, 0, 0)).is_ok());
    EXPECT_FALSE(validate(options(8, 0, kMaxHistory + 1)).is_ok());
    EXPECT_FALSE(validate(options(8, -1)).is_ok());
    EXPECT_FALSE(validate(options(8, NAN)).is_ok());
    CoEngagementOptions o;
    o.positive_weight = 0;
    EXPECT_FALSE(validate(o).is_ok());
    o.positive_weight = NAN;
    EXPECT_FALSE(validate(o).is_ok());
}

TEST(CoEngagement, APositivePairsWithEachRecentPositiveInBothDirections) {
    CoEngagement index(options(8));
    const std::uint64_t none[1] = {0};
    index.add(10, none, 0, 1000);
    const std::uint64_t one[1] = {10};
    index.add(11, one, 1, 2000);
    const std::uint64_t two[2] = {11, 10};
    index.add(12, two, 2, 3000);
    std::vector<std::uint64_t> keys;
    std::vector<double> weights;
    double n = 0;
    ASSERT_TRUE(index.neighbours(10, 3000, &keys, &weights, &n));
    EXPECT_EQ(keys, (std::vector<std::uint64_t>{11, 12}));
    EXPECT_EQ(weights, (std::vector<double>{1, 1}));
    EXPECT_EQ(n, 1);
    ASSERT_TRUE(index.neighbours(12, 3000, &keys, &weights, &n));
    EXPECT_EQ(keys, (std::vector<std::uint64_t>{10, 11}));
    EXPECT_FALSE(index.neighbours(99, 3000, &keys, &weights, &n));
    EXPECT_EQ(index.stats().items, 3u);
    EXPECT_EQ(index.stats().edges, 6u);
}

TEST(CoEngagement, WithRoomForEveryNeighbourCountsAndScoresEqualBruteForce) {
    Twin t(options(kMaxNeighbours, 0, 16));
    feed(t, 11, 3000, 1000, 0);
    const std::int64_t now = 1'800'000'000'000;
    std::size_t compared = 0;
    for (const auto& [item, times] : t.n) {
        std::vector<std::uint64_t> keys;
        std::vector<double> weights;
        double n = 0;
        ASSERT_TRUE(t.index.neighbours(item, now, &keys, &weights, &n));
        EXPECT_EQ(n, double(times.size()));
        std::map<std::uint64_t, double> got;
        for (std::size_t i = 0; i < keys.size(); ++i) got[keys[i]] = weights[i];
        std::map<std::uint64_t, double> want;
        for (const auto& [pair, ts] : t.w) {
            if (pair.first == item) want[pair.second] = double(ts.size());
        }
        EXPECT_EQ(got, want) << item;
        compared += want.size();
    }
    EXPECT_GT(compared, 500u);
    for (std::uint64_t user = 0; user < 40; ++user) {
        for (const auto& [decay, alpha] : {std::pair{0.8f, 0.5f}, {1.0f, 0.0f}, {0.5f, 1.0f}, {0.0f, 0.3f}}) {
            const auto want = t.related(user, now, decay, alpha);
            const auto& list = t.lists[user];
            std::vector<std::uint64_t> keys(10);
            std::vector<float> scores(10);
            const std::size_t m = t.index.related(list.data(), list.size(), now, 10, decay, alpha,
                                                  keys.data(), scores.data());
            ASSERT_EQ(m, std::min<std::size_t>(10, want.size())) << user;
            for (std::size_t i = 0; i < m; ++i) {
                EXPECT_EQ(keys[i], want[i].second) << user << " " << i;
                EXPECT_EQ(scores[i], float(want[i].first)) << user << " " << i;
            }
        }
    }
}

TEST(CoEngagement, DecayAcrossRebasesAndEventsBehindTheEpochMatchesBruteForce) {
    // 5 s half-life over ~75 minutes: hundreds of half-lives, so many rebases; a tenth of the
    // events are up to 20 s late, some behind the epoch a rebase just moved.
    Twin t(options(kMaxNeighbours, 5.0, 16));
    feed(t, 23, 3000, 3000, 20000);
    std::int64_t now = 0;
    for (const auto& [item, times] : t.n) now = std::max(now, *std::max_element(times.begin(), times.end()));
    std::size_t compared = 0;
    for (const auto& [item, times] : t.n) {
        std::vector<std::uint64_t> keys;
        std::vector<double> weights;
        double n = 0;
        const bool found = t.index.neighbours(item, now, &keys, &weights, &n);
        const double n_want = t.decayed(times, now);
        if (!found) {  // underflowed away in a rebase: only when its value is negligible
            EXPECT_LT(n_want, 1e-30) << item;
            continue;
        }
        EXPECT_NEAR(n, n_want, 1e-4 * n_want + 1e-30) << item;
        std::map<std::uint64_t, double> got;
        for (std::size_t i = 0; i < keys.size(); ++i) got[keys[i]] = weights[i];
        for (const auto& [pair, ts] : t.w) {
            if (pair.first != item) continue;
            const double want = t.decayed(ts, now);
            const auto it = got.find(pair.second);
            if (it == got.end()) {
                EXPECT_LT(want, 1e-30) << item << " -> " << pair.second;
                continue;
            }
            EXPECT_NEAR(it->second, want, 1e-4 * want + 1e-30) << item << " -> " << pair.second;
            ++compared;
        }
    }
    EXPECT_GT(compared, 500u);
    for (std::uint64_t user = 0; user < 40; ++user) {
        const auto want = t.related(user, now, 0.8f, 0.5f);
        const auto& list = t.lists[user];
        std::vector<std::uint64_t> keys(10);
        std::vector<float> scores(10);
        const std::size_t m = t.index.related(list.data(), list.size(), now, 10, 0.8f, 0.5f, keys.data(), scores.data());
        std::map<std::uint64_t, double> score_of;
        for (const auto& [s, j] : want) score_of[j] = s;
        for (std::size_t i = 0; i < m; ++i) {
            ASSERT_TRUE(score_of.count(keys[i])) << user;
            EXPECT_NEAR(scores[i], score_of[keys[i]], 1e-4 * score_of[keys[i]] + 1e-12) << user;
            if (i > 0) {
                EXPECT_GE(scores[i - 1], scores[i]);
            }
        }
        // The top k of the reference, up to near-ties: the k-th found is as good as the k-th best.
        if (m > 0 && want.size() >= m && want[m - 1].first > 1e-20) {
            EXPECT_GE(double(scores[m - 1]), want[m - 1].first * (1 - 1e-4)) << user;
        }
    }
}

TEST(CoEngagement, AFullListGivesUpItsLightestAndNeverLosesTheHeavyPair) {
    CoEngagement index(options(4));
    std::map<std::uint64_t, double> truth;
    double total = 0;
    for (std::uint64_t t = 0; t < 100; ++t) {
        const std::uint64_t heavy[1] = {2}, once[1] = {100 + t};
        index.add(1, heavy, 1, std::int64_t(t) * 1000);
        index.add(1, once, 1, std::int64_t(t) * 1000 + 500);
        truth[2] += 1;
        truth[100 + t] += 1;
        total += 2;
    }
    std::vector<std::uint64_t> keys;
    std::vector<double> weights;
    double n = 0;
    ASSERT_TRUE(index.neighbours(1, 0, &keys, &weights, &n));
    ASSERT_GE(keys.size(), 1u);
    ASSERT_LE(keys.size(), 4u);  // never more than the bound
    EXPECT_EQ(keys[0], 2u);      // the heavy pair stays, heaviest first
    for (std::size_t i = 0; i < keys.size(); ++i) {
        EXPECT_LE(weights[i], truth[keys[i]]) << keys[i];  // Misra-Gries never overestimates
        EXPECT_LE(truth[keys[i]] - weights[i], total / 5) << keys[i];  // short by <= total / (K + 1)
    }
    ASSERT_TRUE(index.neighbours(150, 0, &keys, &weights, &n));
    EXPECT_EQ(keys, (std::vector<std::uint64_t>{1}));
}

TEST(CoEngagement, ARemovedItemLeavesItsNeighboursListsAndIsNeverRelated) {
    // Room for every neighbour: pairs are in both lists, so removal finds every entry naming the item.
    Twin t(options(kMaxNeighbours, 0, 8));
    feed(t, 5, 1500, 1000, 0);
    std::vector<std::uint64_t> gone = {0, 1, 2};
    const std::size_t items_before = t.index.stats().items;
    EXPECT_EQ(t.index.remove(gone.data(), gone.size()), 3u);
    EXPECT_EQ(t.index.remove(gone.data(), gone.size()), 0u);
    EXPECT_EQ(t.index.stats().items, items_before - 3);
    std::vector<std::uint64_t> keys;
    std::vector<double> weights;
    double n = 0;
    std::size_t edges = 0;
    for (std::uint64_t item = 0; item < 60; ++item) {
        if (!t.index.neighbours(item, 0, &keys, &weights, &n)) continue;
        edges += keys.size();
        EXPECT_EQ(std::count_if(keys.begin(), keys.end(), [](std::uint64_t k) { return k <= 2; }), 0) << item;
    }
    EXPECT_EQ(t.index.stats().edges, edges);
}

TEST(CoEngagement, ARemovedItemIsNeverRelatedEvenWhereAFullListKeptOneSideOfAPair) {
    Twin t(options(4, 0, 8));
    feed(t, 5, 1500, 1000, 0);
    std::vector<std::uint64_t> gone = {0, 1, 2};
    EXPECT_EQ(t.index.remove(gone.data(), gone.size()), 3u);
    for (std::uint64_t user = 0; user < 40; ++user) {
        const auto& list = t.lists[user];
        std::vector<std::uint64_t> related(60);
        std::vector<float> scores(60);
        const std::size_t m = t.index.related(list.data(), list.size(), 0, 60, 0.8f, 0.5f, related.data(), scores.data());
        for (std::size_t i = 0; i < m; ++i) EXPECT_GT(related[i], 2u);
    }
}

TEST(CoEngagement, DisabledKeepsNothing) {
    CoEngagement index(options(0));
    const std::uint64_t one[1] = {10};
    index.add(11, one, 1, 1000);
    EXPECT_EQ(index.stats().items, 0u);
    const RecentPositive recent[1] = {{10, 1000, 1.0f}};
    std::uint64_t keys[4];
    float scores[4];
    EXPECT_EQ(index.related(recent, 1, 1000, 4, 0.8f, 0.5f, keys, scores), 0u);
}

TEST(CoEngagement, SectionsRoundTripAndDamageIsCorrupt) {
    Twin t(options(32, 60.0, 8));
    feed(t, 9, 800, 1000, 5000);
    ByteWriter w;
    t.index.serialize(w);
    const std::vector<char> bytes = w.buffer();
    const auto all = [](std::uint64_t) { return true; };
    CoEngagement back(options(32, 60.0, 8));
    ByteReader r(bytes.data(), bytes.size());
    ASSERT_TRUE(back.parse(r, bytes.size(), all, "test").is_ok());
    EXPECT_TRUE(r.at_end());
    EXPECT_EQ(back.stats().items, t.index.stats().items);
    EXPECT_EQ(back.stats().edges, t.index.stats().edges);
    ByteWriter again;
    back.serialize(again);
    EXPECT_EQ(again.buffer().size(), bytes.size());
    for (std::uint64_t item = 0; item < 60; ++item) {
        std::vector<std::uint64_t> k1, k2;
        std::vector<double> w1, w2;
        double n1 = 0, n2 = 0;
        EXPECT_EQ(t.index.neighbours(item, 5, &k1, &w1, &n1), back.neighbours(item, 5, &k2, &w2, &n2));
        EXPECT_EQ(k1, k2);
        EXPECT_EQ(w1, w2);
        EXPECT_EQ(n1, n2);
    }
    // Fewer neighbours now: each list keeps its heaviest.
    CoEngagement fewer(options(2, 60.0, 8));
    ByteReader r2(bytes.data(), bytes.size());
    ASSERT_TRUE(fewer.parse(r2, bytes.size(), all, "test").is_ok());
    std::vector<std::uint64_t> keys, keys_full;
    std::vector<double> weights, weights_full;
    double n = 0;
    ASSERT_TRUE(fewer.neighbours(0, 5, &keys, &weights, &n));
    ASSERT_TRUE(t.index.neighbours(0, 5, &keys_full, &weights_full, &n));
    keys_full.resize(2);
    EXPECT_EQ(keys, keys_full);
    // Every truncation is reported, and leaves the index empty.
    for (std::size_t cut = 0; cut < bytes.size(); cut += 7) {
        CoEngagement partial(options(32, 60.0, 8));
        ByteReader rc(bytes.data(), cut);
        const Status st = partial.parse(rc, cut, all, "test");
        ASSERT_FALSE(st.is_ok()) << cut;
        EXPECT_EQ(st.code(), StatusCode::kCorrupt);
        EXPECT_EQ(partial.stats().items, 0u);
    }
    // A NaN weight (the last bytes are the last item's last weight).
    std::vector<char> bad = bytes;
    const float nan = NAN;
    std::memcpy(bad.data() + bad.size() - sizeof(float), &nan, sizeof nan);
    CoEngagement damaged(options(32, 60.0, 8));
    ByteReader rb(bad.data(), bad.size());
    EXPECT_EQ(damaged.parse(rb, bad.size(), all, "test").code(), StatusCode::kCorrupt);
}

TEST(CoEngagementConcurrency, ReadersGetSortedFiniteScoresWhileTheWriterAddsAndRebases) {
    const char* env = std::getenv("RECSERVE_STRESS_SECONDS");
    const double seconds = env ? std::atof(env) : 0.5;
    CoEngagement index(options(16, 0.001, 8));  // a rebase every few events
    std::atomic<bool> stop{false};
    std::atomic<std::uint64_t> bad{0}, reads{0};
    std::thread writer([&] {
        std::mt19937_64 rng(3);
        std::int64_t ts = 0;
        std::vector<std::uint64_t> partners(4);
        while (!stop.load(std::memory_order_relaxed)) {
            for (auto& p : partners) p = rng() % 50;
            index.add(rng() % 50, partners.data(), partners.size(), ts += 1 + std::int64_t(rng() % 50));
            if (rng() % 100 == 0) {
                const std::uint64_t item = rng() % 50;
                index.remove(&item, 1);
            }
        }
    });
    std::vector<std::thread> readers;
    for (int r = 0; r < 2; ++r) {
        readers.emplace_back([&, r] {
            std::mt19937_64 rng(100 + r);
            RecentPositive recent[8];
            std::uint64_t keys[20];
            float scores[20];
            while (!stop.load(std::memory_order_relaxed)) {
                for (auto& p : recent) p = {rng() % 50, 0, 1.0f};
                const std::size_t m = index.related(recent, 8, 0, 20, 0.8f, 0.5f, keys, scores);
                for (std::size_t i = 0; i < m; ++i) {
                    if (!std::isfinite(scores[i]) || !(scores[i] >= 0) || (i > 0 && scores[i] > scores[i - 1]))
                        bad.fetch_add(1);
                }
                reads.fetch_add(1, std::memory_order_relaxed);
            }
        });
    }
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
    stop.store(true);
    writer.join();
    for (auto& t : readers) t.join();
    EXPECT_GT(reads.load(), 0u);
    EXPECT_EQ(bad.load(), 0u);
}

}  // namespace
}  // namespace recserve::profiles

// ---- through Profiles: positives from events, snapshots, user images ----------------------

namespace recserve::profiles {
namespace {

constexpr std::size_t kDims = 4;

std::unique_ptr<Profiles> make_profiles(CoEngagementOptions co = {}) {
    ProfilesOptions o;
    o.dims = kDims;
    o.user_capacity = o.item_capacity = 1024;
    o.shards = 4;
    o.co_engagement = co;
    Result<std::unique_ptr<Profiles>> p = Profiles::create(o);
    EXPECT_TRUE(p.is_ok()) << p.status().message();
    return std::move(p).value();
}

struct Stream {
    std::vector<std::uint64_t> users, items, seq;
    std::vector<std::uint8_t> types;
    std::vector<std::uint32_t> watch, duration;
    std::vector<std::int64_t> ts;
    std::map<std::uint64_t, std::uint64_t> next_seq;

    // A completed watch (weight 1) unless watch_ms says otherwise.
    Stream& add(std::uint64_t user, std::uint64_t item, std::int64_t t, EventType type = EventType::kWatch,
                std::uint32_t watch_ms = 10000) {
        users.push_back(user);
        items.push_back(item);
        types.push_back(static_cast<std::uint8_t>(type));
        seq.push_back(++next_seq[user]);
        ts.push_back(t);
        watch.push_back(watch_ms);
        duration.push_back(10000);
        return *this;
    }
    EventBatch batch() const {
        return {users.size(), users.data(), items.data(), types.data(), watch.data(), duration.data(),
                ts.data(),    seq.data(),   nullptr};
    }
};

void put_items(Profiles& p, std::uint64_t first, std::uint64_t count) {
    std::vector<std::uint64_t> ids;
    std::vector<float> v;
    for (std::uint64_t i = first; i < first + count; ++i) {
        ids.push_back(i);
        v.insert(v.end(), {1.0f + float(i % 7), float(i % 3), 0.5f, -1.0f});
    }
    ASSERT_TRUE(p.set_items(ids.data(), v.data(), ids.size()).is_ok());
}

std::vector<std::uint64_t> positive_items(const Profiles& p, std::uint64_t user) {
    std::vector<std::uint64_t> out;
    for (const RecentPositive& r : p.recent_positives(user)) out.push_back(r.item);
    return out;
}

std::vector<std::pair<std::uint64_t, float>> related(const Profiles& p, std::uint64_t user, std::size_t k = 10,
                                                     float decay = 0.8f, float alpha = 0.5f) {
    std::vector<std::uint64_t> keys(k);
    std::vector<float> scores(k);
    Result<std::size_t> m = p.related(user, 0, k, decay, alpha, keys.data(), scores.data());
    EXPECT_TRUE(m.is_ok()) << m.status().message();
    std::vector<std::pair<std::uint64_t, float>> out;
    for (std::size_t i = 0; i < (m.is_ok() ? m.value() : 0); ++i) out.emplace_back(keys[i], scores[i]);
    return out;
}

double n_of(const Profiles& p, std::uint64_t item) {
    std::vector<std::uint64_t> keys;
    std::vector<double> weights;
    double n = 0;
    p.co_engagement().neighbours(item, 0, &keys, &weights, &n);
    return n;
}

TEST(ProfilesCoEngagement, PositivesPairOnceAndAWatchAndLikeOfOneItemCountOnce) {
    auto p = make_profiles();
    put_items(*p, 10, 5);
    Stream s;
    s.add(1, 10, 1000)                              // positive
        .add(1, 10, 1500, EventType::kLike, 0)      // the same item again: a refresh, no pair
        .add(1, 11, 2000, EventType::kWatch, 5000)  // a half watch (~0.29): not a positive
        .add(1, 12, 2500, EventType::kSkip, 500)    // negative
        .add(1, 99, 2600)                           // no vector: not a positive
        .add(1, 13, 3000, EventType::kLike, 0);     // a like (0.5): positive, pairs with 10
    ASSERT_TRUE(p->apply(s.batch()).is_ok());
    const std::vector<RecentPositive> recent = p->recent_positives(1);
    ASSERT_EQ(recent.size(), 2u);
    EXPECT_EQ(recent[0].item, 13u);
    EXPECT_EQ(recent[0].ts_ms, 3000);
    EXPECT_EQ(recent[0].weight, 0.5f);
    EXPECT_EQ(recent[1].item, 10u);
    EXPECT_EQ(recent[1].ts_ms, 1500);  // the like refreshed it
    EXPECT_EQ(recent[1].weight, 1.0f);
    EXPECT_EQ(n_of(*p, 10), 1.0);
    EXPECT_EQ(n_of(*p, 13), 1.0);
    EXPECT_EQ(p->stats().co_engagement.items, 2u);
    EXPECT_EQ(p->stats().co_engagement.edges, 2u);
    EXPECT_TRUE(p->recent_positives(2).empty());
}

TEST(ProfilesCoEngagement, RelatedScoresByCosineAndLeavesOutTheUsersOwnPositives) {
    auto p = make_profiles();
    put_items(*p, 10, 5);
    Stream s;
    s.add(1, 10, 1000).add(1, 11, 2000);  // edge 10-11
    s.add(2, 10, 1000).add(2, 12, 2000);  // edge 10-12
    s.add(3, 10, 1000);
    s.add(4, 10, 1000);  // n(10) = 4
    ASSERT_TRUE(p->apply(s.batch()).is_ok());
    using R = std::vector<std::pair<std::uint64_t, float>>;
    EXPECT_EQ(related(*p, 4), (R{{11, 0.5f}, {12, 0.5f}}));  // 1 / sqrt(4 * 1), ties by key
    EXPECT_EQ(related(*p, 4, 1), (R{{11, 0.5f}}));
    EXPECT_EQ(related(*p, 4, 10, 0.8f, 0.0f), (R{{11, 0.25f}, {12, 0.25f}}));  // w / n(10)
    EXPECT_EQ(related(*p, 1), (R{{12, 0.8f * 0.5f}}));  // 10 is second (0.8); 10 and 11 are its own
    EXPECT_TRUE(related(*p, 77).empty());
}

TEST(ProfilesCoEngagement, BadQueryArgumentsAreRefused) {
    auto p = make_profiles();
    std::uint64_t keys[1];
    float scores[1];
    EXPECT_EQ(p->related(1, 0, 0, 0.8f, 0.5f, keys, scores).status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(p->related(1, 0, kMaxRelated + 1, 0.8f, 0.5f, keys, scores).status().code(),
              StatusCode::kInvalidArgument);
    EXPECT_EQ(p->related(1, 0, 1, NAN, 0.5f, keys, scores).status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(p->related(1, 0, 1, 1.5f, 0.5f, keys, scores).status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(p->related(1, 0, 1, 0.8f, -0.1f, keys, scores).status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(p->related(1, 0, 1, 0.8f, NAN, keys, scores).status().code(), StatusCode::kInvalidArgument);
    CoEngagementOptions bad;
    bad.history = 0;
    ProfilesOptions o;
    o.dims = kDims;
    o.co_engagement = bad;
    EXPECT_EQ(Profiles::create(o).status().code(), StatusCode::kInvalidArgument);
}

TEST(ProfilesCoEngagement, HistoryKeepsTheNewestAndZeroNeighboursTurnsItAllOff) {
    CoEngagementOptions co;
    co.history = 3;
    auto p = make_profiles(co);
    put_items(*p, 10, 6);
    Stream s;
    for (std::uint64_t i = 10; i < 16; ++i) s.add(1, i, std::int64_t(i) * 1000);
    ASSERT_TRUE(p->apply(s.batch()).is_ok());
    EXPECT_EQ(positive_items(*p, 1), (std::vector<std::uint64_t>{15, 14, 13}));
    std::vector<std::uint64_t> keys;
    std::vector<double> weights;
    double n = 0;
    ASSERT_TRUE(p->co_engagement().neighbours(15, 0, &keys, &weights, &n));
    EXPECT_EQ(keys, (std::vector<std::uint64_t>{12, 13, 14}));  // the three before it, not 10 or 11

    co.neighbours = 0;
    auto off = make_profiles(co);
    put_items(*off, 10, 6);
    ASSERT_TRUE(off->apply(s.batch()).is_ok());
    EXPECT_TRUE(off->recent_positives(1).empty());
    EXPECT_EQ(off->stats().co_engagement.items, 0u);
    EXPECT_TRUE(related(*off, 1).empty());
}

TEST(ProfilesCoEngagement, RemovedItemsLeaveTheIndexAndErasedUsersTheirPositives) {
    auto p = make_profiles();
    put_items(*p, 10, 5);
    Stream s;
    s.add(1, 10, 1000).add(1, 11, 2000).add(2, 10, 1000).add(2, 12, 2000).add(3, 10, 1000);
    ASSERT_TRUE(p->apply(s.batch()).is_ok());
    const std::uint64_t gone = 12;
    EXPECT_EQ(p->remove_items(&gone, 1), 1u);
    std::vector<std::uint64_t> keys;
    std::vector<double> weights;
    double n = 0;
    EXPECT_FALSE(p->co_engagement().neighbours(12, 0, &keys, &weights, &n));
    ASSERT_TRUE(p->co_engagement().neighbours(10, 0, &keys, &weights, &n));
    EXPECT_EQ(keys, (std::vector<std::uint64_t>{11}));
    EXPECT_EQ(related(*p, 3).size(), 1u);
    // A later positive of user 2 (whose list still holds 12) pairs only with catalogue items.
    Stream more;
    more.next_seq = s.next_seq;
    more.add(2, 13, 3000);
    ASSERT_TRUE(p->apply(more.batch()).is_ok());
    EXPECT_FALSE(p->co_engagement().neighbours(12, 0, &keys, &weights, &n));
    ASSERT_TRUE(p->co_engagement().neighbours(13, 0, &keys, &weights, &n));
    EXPECT_EQ(keys, (std::vector<std::uint64_t>{10}));

    EXPECT_TRUE(p->erase_user(1));
    EXPECT_TRUE(p->recent_positives(1).empty());
    EXPECT_EQ(n_of(*p, 10), 3.0);  // aggregate counts stay
}

TEST(ProfilesCoEngagement, AWatchAddsTheViewersMatchBeforeItMovesThem) {
    auto p = make_profiles();
    const std::uint64_t ids[2] = {1, 2};
    const float v[8] = {1, 0, 0, 0, 0.6f, 0.8f, 0, 0};
    ASSERT_TRUE(p->set_items(ids, v, 2).is_ok());
    Stream s;
    s.add(7, 1, 1000).add(7, 2, 1000).add(8, 2, 1000, EventType::kLike, 0);
    ASSERT_TRUE(p->apply(s.batch()).is_ok());
    std::uint64_t words[2 * kItemWords];
    bool found[2];
    p->items(ids, 2, nullptr, words, found);
    EXPECT_EQ(std::bit_cast<std::int64_t>(words[kMatchSum]), 0);  // no vectors yet: no match
    // After item 1, both vectors point at it: q = 2 e1, cos(q, item 2) = 0.6.
    EXPECT_EQ(std::bit_cast<std::int64_t>(words[kItemWords + kMatchSum]), std::llround(0.6 * (1 << 20)));
    // A viewer whose vectors point away from the item adds a negative match.
    Stream away;
    away.add(9, 1, 1000, EventType::kNotInterested, 0).add(9, 1, 2000);
    ASSERT_TRUE(p->apply(away.batch()).is_ok());
    p->items(ids, 1, nullptr, words, found);
    EXPECT_EQ(std::bit_cast<std::int64_t>(words[kMatchSum]), -(std::int64_t{1} << 20));
}

TEST(ProfilesCoEngagement, AnImpressionAddsTheViewersMatchWhateverItsType) {
    auto p = make_profiles();
    const std::uint64_t ids[2] = {1, 2};
    const float v[8] = {1, 0, 0, 0, 0.6f, 0.8f, 0, 0};
    ASSERT_TRUE(p->set_items(ids, v, 2).is_ok());
    Stream s;  // user 7 meets item 1, then item 2 by an impression event, a skip and a watch
    s.add(7, 1, 1000).add(7, 2, 1000, EventType::kImpression, 0).add(7, 2, 1000, EventType::kSkip, 800).add(7, 2, 1000);
    ASSERT_TRUE(p->apply(s.batch()).is_ok());
    std::uint64_t words[2 * kItemWords];
    bool found[2];
    p->items(ids, 2, nullptr, words, found);
    const std::int64_t match = std::llround(0.6 * (1 << 20));
    EXPECT_EQ(words[kItemWords + kImpressions], 1u);
    EXPECT_EQ(std::bit_cast<std::int64_t>(words[kItemWords + kImpressionMatchSum]), match);  // once
    EXPECT_EQ(std::bit_cast<std::int64_t>(words[kImpressionMatchSum]), 0);  // no vectors yet
}

std::string temp_path(const char* name) { return ::testing::TempDir() + name; }

void write_file(const std::string& path, const std::vector<char>& bytes) {
    std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A seeded stream of positives, half-watches, likes and skips over 30 users and 40 items.
Stream random_stream(std::uint32_t seed, std::size_t events) {
    std::mt19937_64 rng(seed);
    Stream s;
    for (std::size_t e = 0; e < events; ++e) {
        const auto type = rng() % 4 == 0 ? EventType::kLike : EventType::kWatch;
        s.add(rng() % 30, 100 + std::min(rng() % 40, rng() % 40), 1'700'000'000'000 + std::int64_t(e) * 1000, type,
              std::uint32_t(rng() % 10001));
    }
    return s;
}

void expect_same_co_engagement(const Profiles& a, const Profiles& b) {
    EXPECT_EQ(a.stats().co_engagement.items, b.stats().co_engagement.items);
    EXPECT_EQ(a.stats().co_engagement.edges, b.stats().co_engagement.edges);
    for (std::uint64_t u = 0; u < 30; ++u) {
        EXPECT_EQ(positive_items(a, u), positive_items(b, u)) << u;
        EXPECT_EQ(related(a, u), related(b, u)) << u;
    }
    for (std::uint64_t i = 100; i < 140; ++i) {
        std::vector<std::uint64_t> k1, k2;
        std::vector<double> w1, w2;
        double n1 = 0, n2 = 0;
        EXPECT_EQ(a.co_engagement().neighbours(i, 0, &k1, &w1, &n1), b.co_engagement().neighbours(i, 0, &k2, &w2, &n2));
        EXPECT_EQ(k1, k2) << i;
        EXPECT_EQ(w1, w2) << i;
        EXPECT_EQ(n1, n2) << i;
    }
}

TEST(ProfilesCoEngagementSnapshot, TheIndexAndRecentPositivesComeBack) {
    CoEngagementOptions co;
    co.neighbours = 8;
    co.half_life_seconds = 600;
    auto p = make_profiles(co);
    put_items(*p, 100, 40);
    ASSERT_TRUE(p->apply(random_stream(4, 3000).batch()).is_ok());
    ASSERT_GT(p->stats().co_engagement.edges, 100u);
    const std::string path = temp_path("co.snap");
    write_file(path, p->snapshot(5));
    std::uint64_t lsn = 0;
    Result<std::unique_ptr<Profiles>> q = Profiles::load(path, p->options(), &lsn);
    ASSERT_TRUE(q.is_ok()) << q.status().message();
    expect_same_co_engagement(*p, *q.value());
    // Both go on alike.
    Stream more = random_stream(5, 500);
    for (auto& t : more.ts) t += 4'000'000;
    for (auto& s : more.seq) s += 10000;
    ASSERT_TRUE(p->apply(more.batch()).is_ok());
    ASSERT_TRUE(q.value()->apply(more.batch()).is_ok());
    expect_same_co_engagement(*p, *q.value());
}

// Rewrites both checksums of a snapshot image after an edit (snapshot.cpp's header layout).
void reseal(std::vector<char>& bytes) {
    const std::uint32_t body_crc = crc32c(bytes.data() + 64, bytes.size() - 64);
    std::memcpy(bytes.data() + 32, &body_crc, 4);
    const std::uint32_t header_crc = crc32c(bytes.data(), 60);
    std::memcpy(bytes.data() + 60, &header_crc, 4);
}

TEST(ProfilesCoEngagementSnapshot, ADamagedIndexSectionIsCorruptEvenUnderGoodChecksums) {
    auto p = make_profiles();
    put_items(*p, 100, 40);
    ASSERT_TRUE(p->apply(random_stream(6, 300).batch()).is_ok());
    std::vector<char> bytes = p->snapshot(1);
    const float nan = NAN;  // the last item's last weight
    std::memcpy(bytes.data() + bytes.size() - sizeof(float), &nan, sizeof nan);
    const std::string path = temp_path("co-damaged.snap");
    std::uint64_t lsn = 0;
    write_file(path, bytes);
    EXPECT_EQ(Profiles::load(path, p->options(), &lsn).status().code(), StatusCode::kCorrupt);  // checksum
    reseal(bytes);
    write_file(path, bytes);
    Result<std::unique_ptr<Profiles>> q = Profiles::load(path, p->options(), &lsn);
    ASSERT_FALSE(q.is_ok());
    EXPECT_EQ(q.status().code(), StatusCode::kCorrupt);
    EXPECT_NE(q.status().message().find("co-engagement"), std::string::npos) << q.status().message();
}

// A snapshot as an older release wrote it, from this release's image: version 3 rows lack
// impression_match_sum; version 2 rows also lack match_sum, and logs their recent positives
// and the file its index section.
std::vector<char> as_older_snapshot(const Profiles& p, std::uint32_t version) {
    const std::vector<char> now = p.snapshot(3);
    ByteReader r(now.data() + 64, now.size() - 64);
    ByteWriter w;
    w.bytes(now.data(), 64);
    std::uint64_t counters[4], count = 0;
    EXPECT_TRUE(r.bytes(counters, sizeof counters));
    w.bytes(counters, sizeof counters);
    EXPECT_TRUE(r.get(count));
    w.put(count);
    std::vector<char> row(8 + 2 * kDims * 4 + kUserTableWords * 8);
    for (std::uint64_t i = 0; i < count; ++i) {
        EXPECT_TRUE(r.bytes(row.data(), row.size()));
        w.bytes(row.data(), row.size());
    }
    EXPECT_TRUE(r.get(count));
    w.put(count);
    const std::size_t first_missing = version == 2 ? kMatchSum : kImpressionMatchSum;
    const std::size_t kept = kItemWords - (kImpressionMatchSum + 1 - first_missing);
    std::vector<std::uint64_t> item_words(kItemWords);
    std::vector<float> vec(kDims);
    std::uint64_t key = 0;
    for (std::uint64_t i = 0; i < count; ++i) {
        EXPECT_TRUE(r.get(key) && r.bytes(vec.data(), kDims * 4) && r.bytes(item_words.data(), kItemWords * 8));
        item_words.erase(item_words.begin() + static_cast<std::ptrdiff_t>(first_missing),
                         item_words.begin() + kImpressionMatchSum + 1);
        w.put(key);
        w.bytes(vec.data(), kDims * 4);
        w.bytes(item_words.data(), kept * 8);
        item_words.resize(kItemWords);
    }
    if (version == 3) {  // the rest as it is
        w.bytes(now.data() + now.size() - r.remaining(), r.remaining());
    } else {
        EXPECT_TRUE(r.get(count));
        w.put(count);
        for (std::uint64_t i = 0; i < count; ++i) {
            UserLog log;
            std::uint32_t keys = 0;
            EXPECT_TRUE(r.get(key) && log.seen.parse(r, p.options().seen) && r.get(keys) && r.get(log.keys_head));
            log.keys.resize(keys);
            EXPECT_TRUE(r.bytes(log.keys.data(), keys * 8));
            EXPECT_EQ(get_positives(r, log.positives), nullptr);
            w.put(key);
            log.seen.serialize(w);
            w.put(keys);
            w.put(log.keys_head);
            w.bytes(log.keys.data(), keys * 8);
        }
    }
    std::vector<char> old = w.buffer();
    std::memcpy(old.data() + 8, &version, 4);
    const std::uint64_t body = old.size() - 64;
    std::memcpy(old.data() + 24, &body, 8);
    reseal(old);
    return old;
}

// The item counters an older snapshot lacks load as zeros; every other word as it was.
void expect_items_but_missing_words(const Profiles& before, const Profiles& after, std::size_t first_missing) {
    const std::uint64_t ids[3] = {100, 101, 102};
    std::uint64_t was[3 * kItemWords], is[3 * kItemWords];
    bool found[3];
    before.items(ids, 3, nullptr, was, found);
    after.items(ids, 3, nullptr, is, found);
    for (std::size_t i = 0; i < 3; ++i) {
        for (std::size_t wd = 0; wd < kItemWords; ++wd) {
            const bool missing = wd >= first_missing && wd <= kImpressionMatchSum;
            EXPECT_EQ(is[i * kItemWords + wd], missing ? 0u : was[i * kItemWords + wd]) << i << " " << wd;
        }
        EXPECT_EQ(is[i * kItemWords + kItemFlags] & 1, 1u);
    }
}

TEST(ProfilesCoEngagementSnapshot, AVersionTwoSnapshotLoadsWithAnEmptyIndex) {
    auto p = make_profiles();
    put_items(*p, 100, 3);
    Stream s;
    s.add(1, 100, 1000).add(1, 101, 2000, EventType::kLike, 0);
    ASSERT_TRUE(p->apply(s.batch()).is_ok());
    const std::string path = temp_path("v2.snap");
    write_file(path, as_older_snapshot(*p, 2));
    std::uint64_t lsn = 0;
    Result<std::unique_ptr<Profiles>> q = Profiles::load(path, p->options(), &lsn);
    ASSERT_TRUE(q.is_ok()) << q.status().message();
    EXPECT_EQ(q.value()->stats().co_engagement.items, 0u);
    EXPECT_TRUE(q.value()->recent_positives(1).empty());
    expect_items_but_missing_words(*p, *q.value(), kMatchSum);
}

TEST(ProfilesCoEngagementSnapshot, AVersionThreeSnapshotLoadsWithoutImpressionMatches) {
    auto p = make_profiles();
    put_items(*p, 100, 3);
    Stream s;
    s.add(1, 100, 1000).add(1, 101, 2000, EventType::kLike, 0).add(2, 101, 3000);
    ASSERT_TRUE(p->apply(s.batch()).is_ok());
    const std::string path = temp_path("v3.snap");
    write_file(path, as_older_snapshot(*p, 3));
    std::uint64_t lsn = 0;
    Result<std::unique_ptr<Profiles>> q = Profiles::load(path, p->options(), &lsn);
    ASSERT_TRUE(q.is_ok()) << q.status().message();
    EXPECT_EQ(positive_items(*q.value(), 1), positive_items(*p, 1));
    expect_items_but_missing_words(*p, *q.value(), kImpressionMatchSum);
}

TEST(ProfilesCoEngagementImages, RecentPositivesTravelWithTheUserAndVersionOneImagesImportEmpty) {
    auto here = make_profiles(), there = make_profiles(), old = make_profiles();
    for (auto* p : {here.get(), there.get(), old.get()}) put_items(*p, 10, 4);
    Stream s;
    s.add(7, 10, 1000).add(7, 11, 2000).add(7, 12, 3000, EventType::kLike, 0);
    ASSERT_TRUE(here->apply(s.batch()).is_ok());
    std::vector<char> vectors, state;
    ASSERT_TRUE(here->export_user(7, &vectors, &state));
    const std::uint64_t user = 7;
    ASSERT_TRUE(there->import_users(&user, &vectors, &state, 1).is_ok());
    EXPECT_EQ(positive_items(*there, 7), (std::vector<std::uint64_t>{12, 11, 10}));
    std::vector<char> v2, s2;
    ASSERT_TRUE(there->export_user(7, &v2, &s2));
    EXPECT_EQ(s2, state);

    // Version 1: the same bytes up to the event keys, then nothing.
    const std::size_t positives_bytes = 4 + 3 * 20;
    std::vector<char> v1(state.begin(), state.end() - static_cast<std::ptrdiff_t>(positives_bytes));
    const std::uint32_t one = 1;
    std::memcpy(v1.data(), &one, 4);
    std::size_t imported = 0;
    ASSERT_TRUE(old->import_users(&user, &vectors, &v1, 1, &imported).is_ok());
    EXPECT_EQ(imported, 1u);
    EXPECT_TRUE(old->recent_positives(7).empty());
    std::uint64_t w1[kUserWords], w2[kUserWords];
    bool found = false;
    old->user_words(&user, 1, w1, &found);
    here->user_words(&user, 1, w2, &found);
    EXPECT_TRUE(std::equal(w1, w1 + kUserWords, w2));

    // Damage in the positives is refused and changes nothing.
    std::vector<char> twice = state;  // the second positive names the first's item
    std::memcpy(twice.data() + twice.size() - 40, twice.data() + twice.size() - 60, 8);
    const std::uint64_t other = 8;
    const Status st = old->import_users(&other, &vectors, &twice, 1);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(st.message().find("recent positive twice"), std::string::npos) << st.message();
    EXPECT_TRUE(old->recent_positives(8).empty());
}

TEST(ProfilesCoEngagementConcurrency, RelatedAndRecentPositivesReadWhileEventsApply) {
    const char* env = std::getenv("RECSERVE_STRESS_SECONDS");
    const double seconds = env ? std::atof(env) : 0.5;
    CoEngagementOptions co;
    co.neighbours = 8;
    co.half_life_seconds = 0.01;  // rebases while readers read
    auto p = make_profiles(co);
    put_items(*p, 100, 40);
    std::atomic<bool> stop{false};
    std::atomic<std::uint64_t> bad{0};
    std::thread writer([&] {
        std::uint32_t seed = 1;
        std::int64_t shift = 0;
        while (!stop.load(std::memory_order_relaxed)) {
            Stream s = random_stream(seed++, 200);
            shift += 1'000'000;
            for (auto& t : s.ts) t += shift;
            for (auto& q : s.seq) q += shift;
            if (!p->apply(s.batch()).is_ok()) bad.fetch_add(1);
        }
    });
    std::thread reader([&] {
        std::uint64_t user = 0;
        while (!stop.load(std::memory_order_relaxed)) {
            const auto r = related(*p, user++ % 30, 16);
            for (std::size_t i = 1; i < r.size(); ++i) {
                if (r[i].second > r[i - 1].second) bad.fetch_add(1);
            }
            if (p->recent_positives(user % 30).size() > co.history) bad.fetch_add(1);
        }
    });
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
    stop.store(true);
    writer.join();
    reader.join();
    EXPECT_EQ(bad.load(), 0u);
}

}  // namespace
}  // namespace recserve::profiles
