#include "recserve/embed/table.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <random>
#include <thread>
#include <vector>

namespace recserve::embed {
namespace {

std::unique_ptr<Table> make(std::size_t dims, std::size_t capacity, std::size_t shards = 4, double ttl = 0,
                            std::uint32_t admit_after = 0, std::size_t words = 0) {
    Result<std::unique_ptr<Table>> t = Table::create({dims, capacity, shards, ttl, admit_after, words});
    EXPECT_TRUE(t.is_ok()) << t.status().message();
    return std::move(t).value();
}

std::vector<float> row_of(std::uint64_t key, std::size_t dims) {
    std::vector<float> v(dims);
    for (std::size_t d = 0; d < dims; ++d) v[d] = static_cast<float>(key) + 0.25f * static_cast<float>(d);
    return v;
}

bool get_one(const Table& t, std::uint64_t key, std::vector<float>* out) {
    out->assign(t.options().dims, -1.0f);
    bool found = false;
    t.get(&key, 1, out->data(), &found);
    return found;
}

TEST(Table, SetThenGetReturnsEveryRowAndZerosForMissingKeys) {
    auto t = make(8, 1000);
    std::vector<std::uint64_t> keys;
    std::vector<float> vecs;
    for (std::uint64_t k = 0; k < 300; ++k) {
        keys.push_back(k * 7919);
        const auto v = row_of(k, 8);
        vecs.insert(vecs.end(), v.begin(), v.end());
    }
    ASSERT_TRUE(t->set(keys.data(), vecs.data(), keys.size()).is_ok());
    EXPECT_EQ(t->size(), 300u);
    keys.push_back(123456789);  // never set
    std::vector<float> out(keys.size() * 8);
    std::unique_ptr<bool[]> found(new bool[keys.size()]);
    t->get(keys.data(), keys.size(), out.data(), found.get());
    for (std::size_t i = 0; i < 300; ++i) {
        ASSERT_TRUE(found[i]) << i;
        EXPECT_EQ(std::vector<float>(out.begin() + static_cast<std::ptrdiff_t>(i * 8),
                                     out.begin() + static_cast<std::ptrdiff_t>(i * 8 + 8)),
                  row_of(i, 8));
    }
    EXPECT_FALSE(found[300]);
    EXPECT_EQ(std::vector<float>(out.end() - 8, out.end()), std::vector<float>(8, 0.0f));
}

TEST(Table, SettingAKeyAgainUpdatesItsRowInPlace) {
    auto t = make(4, 100);
    const std::uint64_t key = 42;
    ASSERT_TRUE(t->set(&key, row_of(1, 4).data(), 1).is_ok());
    ASSERT_TRUE(t->set(&key, row_of(2, 4).data(), 1).is_ok());
    std::vector<float> out;
    ASSERT_TRUE(get_one(*t, key, &out));
    EXPECT_EQ(out, row_of(2, 4));
    EXPECT_EQ(t->size(), 1u);
}

TEST(Table, RemovedKeysReadAsMissingAndTheirRowsAreReused) {
    auto t = make(4, 16, 1);
    std::vector<std::uint64_t> keys = {1, 2, 3};
    std::vector<float> vecs(12, 1.0f);
    ASSERT_TRUE(t->set(keys.data(), vecs.data(), 3).is_ok());
    const std::uint64_t gone[] = {2, 99};
    EXPECT_EQ(t->remove(gone, 2), 1u);
    std::vector<float> out;
    EXPECT_FALSE(get_one(*t, 2, &out));
    EXPECT_TRUE(get_one(*t, 1, &out));
    EXPECT_EQ(t->size(), 2u);
    for (std::uint64_t k = 10; k < 24; ++k) ASSERT_TRUE(t->set(&k, vecs.data(), 1).is_ok());
    // 16 rows hold 1, 3 and 10..23: the removed key's row was reused, nothing was evicted
    EXPECT_EQ(t->stats().evictions, 0u);
    EXPECT_EQ(t->size(), 16u);
    EXPECT_TRUE(get_one(*t, 3, &out));
}

TEST(Table, BadInputIsAnErrorAndWritesNothing) {
    auto t = make(3, 100);
    const std::uint64_t keys[] = {1, 2};
    const float nan_row[] = {1, 2, 3, 4, NAN, 6};
    const Status st = t->set(keys, nan_row, 2);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(st.message().find("row 1, column 1"), std::string::npos) << st.message();
    EXPECT_EQ(t->size(), 0u);
    const std::uint64_t reserved[] = {1, kInvalidKey};
    const float ok_rows[] = {1, 2, 3, 4, 5, 6};
    EXPECT_EQ(t->set(reserved, ok_rows, 2).code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(t->size(), 0u);
}

TEST(Table, CreateRejectsBadOptions) {
    EXPECT_FALSE(Table::create({0, 10, 1, 0, 0}).is_ok());
    EXPECT_FALSE(Table::create({4, 10, 3, 0, 0}).is_ok());
    EXPECT_FALSE(Table::create({4, 2, 4, 0, 0}).is_ok());
    EXPECT_FALSE(Table::create({4, 10, 1, -1.0, 0}).is_ok());
}

TEST(Table, AFullShardEvictsItsLeastRecentlyUpdatedRow) {
    auto t = make(2, 4, 1);
    const std::vector<float> v = {1, 2};
    for (std::uint64_t k = 1; k <= 4; ++k) ASSERT_TRUE(t->set(&k, v.data(), 1).is_ok());
    const std::uint64_t one = 1, five = 5;
    ASSERT_TRUE(t->set(&one, v.data(), 1).is_ok());   // 1 is now the most recent
    ASSERT_TRUE(t->set(&five, v.data(), 1).is_ok());  // evicts 2, the least recently updated
    std::vector<float> out;
    EXPECT_FALSE(get_one(*t, 2, &out));
    for (std::uint64_t k : {1, 3, 4, 5}) EXPECT_TRUE(get_one(*t, k, &out)) << k;
    EXPECT_EQ(t->stats().evictions, 1u);
    EXPECT_EQ(t->size(), 4u);
}

TEST(Table, EvictTakesTheFullestShardsLeastRecentRowsAndShowsEachFirst) {
    auto t = make(2, 64, 4);
    const std::vector<float> v = {1, 2};
    for (std::uint64_t k = 1; k <= 40; ++k) ASSERT_TRUE(t->set(&k, v.data(), 1).is_ok());
    std::vector<std::uint64_t> seen;
    auto visit = [](void* context, std::uint64_t key, const float* vector, const std::uint64_t*) {
        EXPECT_EQ(vector[1], 2.0f);
        static_cast<std::vector<std::uint64_t>*>(context)->push_back(key);
    };
    EXPECT_EQ(t->evict(25, visit, &seen), 15u);
    EXPECT_EQ(t->size(), 25u);
    EXPECT_EQ(seen.size(), 15u);
    std::vector<float> out;
    for (std::uint64_t k : seen) EXPECT_FALSE(get_one(*t, k, &out)) << k;
    EXPECT_EQ(t->stats().evictions, 15u);
    EXPECT_EQ(t->evict(100, visit, &seen), 0u);  // already within
    EXPECT_EQ(t->evict(0, nullptr, nullptr), 25u);
    EXPECT_EQ(t->size(), 0u);
}

TEST(Table, GrowsItsIndexThroughManyKeys) {
    auto t = make(2, 200000, 2);
    std::vector<std::uint64_t> keys(100000);
    std::vector<float> vecs(keys.size() * 2);
    for (std::size_t i = 0; i < keys.size(); ++i) {
        keys[i] = i * 0x9E3779B97F4A7C15ull;
        vecs[2 * i] = static_cast<float>(i);
        vecs[2 * i + 1] = -static_cast<float>(i);
    }
    ASSERT_TRUE(t->set(keys.data(), vecs.data(), keys.size()).is_ok());
    std::vector<float> out(vecs.size());
    std::unique_ptr<bool[]> found(new bool[keys.size()]);
    t->get(keys.data(), keys.size(), out.data(), found.get());
    for (std::size_t i = 0; i < keys.size(); ++i) ASSERT_TRUE(found[i]) << i;
    EXPECT_EQ(out, vecs);
    EXPECT_EQ(t->stats().evictions, 0u);
}

TEST(Table, AdmissionCreatesARowOnlyOnTheNthSet) {
    auto t = make(2, 100, 1, 0, 3);
    const std::uint64_t key = 7;
    const std::vector<float> v = {1, 2};
    std::vector<float> out;
    ASSERT_TRUE(t->set(&key, v.data(), 1).is_ok());
    ASSERT_TRUE(t->set(&key, v.data(), 1).is_ok());
    EXPECT_FALSE(get_one(*t, key, &out));
    ASSERT_TRUE(t->set(&key, v.data(), 1).is_ok());
    EXPECT_TRUE(get_one(*t, key, &out));
    EXPECT_EQ(t->stats().not_admitted, 2u);
}

TEST(Table, ExpiredRowsReadAsMissingAndExpireDropsThem) {
    auto t = make(2, 100, 1, 0.3);  // margins wide enough for a loaded CI machine
    const std::uint64_t key = 9;
    const std::vector<float> v = {1, 2};
    ASSERT_TRUE(t->set(&key, v.data(), 1).is_ok());
    std::vector<float> out;
    EXPECT_TRUE(get_one(*t, key, &out));
    std::this_thread::sleep_for(std::chrono::milliseconds(700));
    EXPECT_FALSE(get_one(*t, key, &out));
    EXPECT_EQ(t->expire(), 1u);
    EXPECT_EQ(t->size(), 0u);
    EXPECT_EQ(t->stats().evictions, 1u);
}

// Writers rewrite rows as constant vectors (every element the same value) while readers read:
// a reader that ever sees two different values in one row saw a torn write. Keys also churn
// through removal and LRU eviction, and the index grows, while the readers run. Run under
// ThreadSanitizer by .ci/tsan.sh with RECSERVE_STRESS_SECONDS=10.
TEST(Table, UpdateEditsACopyAndPublishesItOnlyWhenAsked) {
    auto t = make(2, 100, 2, 0, 0, 3);
    struct Edit {
        float add;
        bool publish;
        bool saw_existing = false;
    };
    const UpdateFn fn = [](void* ctx, const RowView& row) {
        auto* e = static_cast<Edit*>(ctx);
        e->saw_existing = row.existed;
        row.vector[0] += e->add;
        row.words[2] += 1;
        return e->publish;
    };
    Edit skip{5.0f, false};
    EXPECT_FALSE(t->update(7, fn, &skip));  // declined on a missing key: no row
    EXPECT_EQ(t->size(), 0u);
    Edit first{1.5f, true};
    EXPECT_TRUE(t->update(7, fn, &first));
    EXPECT_FALSE(first.saw_existing);
    Edit second{2.0f, true};
    EXPECT_TRUE(t->update(7, fn, &second));
    EXPECT_TRUE(second.saw_existing);
    EXPECT_TRUE(t->update(7, fn, &skip));  // declined on an existing key: unchanged
    float v[2];
    std::uint64_t w[3];
    bool found = false;
    const std::uint64_t key = 7;
    t->read(&key, 1, v, w, &found);
    ASSERT_TRUE(found);
    EXPECT_EQ(v[0], 3.5f);
    EXPECT_EQ(v[1], 0.0f);
    EXPECT_EQ(w[0], 0u);
    EXPECT_EQ(w[2], 2u);
}

TEST(Table, UpdateWordsKeepsTheFloats) {
    auto t = make(2, 100, 1, 0, 0, 2);
    const std::uint64_t key = 3;
    const float v[2] = {4, 5};
    ASSERT_TRUE(t->set(&key, v, 1).is_ok());
    const UpdateFn bump = [](void*, const RowView& row) {
        EXPECT_EQ(row.vector, nullptr);
        row.words[1] += 7;
        return true;
    };
    EXPECT_TRUE(t->update_words(key, bump, nullptr));
    EXPECT_TRUE(t->update_words(9, bump, nullptr));  // a new row: zero floats
    float out[2];
    std::uint64_t w[2];
    bool found = false;
    t->read(&key, 1, out, w, &found);
    EXPECT_EQ(out[1], 5.0f);
    EXPECT_EQ(w[1], 7u);
    const std::uint64_t nine = 9;
    t->read(&nine, 1, out, w, &found);
    ASSERT_TRUE(found);
    EXPECT_EQ(out[0], 0.0f);
    EXPECT_EQ(w[1], 7u);
}

TEST(Table, SetReplacesTheFloatsAndZeroesTheWords) {
    auto t = make(2, 100, 1, 0, 0, 1);
    t->update(9, [](void*, const RowView& row) { row.words[0] = 77; return true; }, nullptr);
    const std::uint64_t key = 9;
    const float v[2] = {1, 2};
    ASSERT_TRUE(t->set(&key, v, 1).is_ok());
    float out[2];
    std::uint64_t w = 1;
    bool found = false;
    t->read(&key, 1, out, &w, &found);
    EXPECT_TRUE(found);
    EXPECT_EQ(w, 0u);
    EXPECT_EQ(out[1], 2.0f);
}

TEST(Table, PeekAndPrefetchSeeWhatGetSees) {
    auto t = make(2, 100, 2, 0, 0, 2);
    t->update(5, [](void*, const RowView& row) {
        row.vector[1] = 3.0f;
        row.words[1] = 42;
        return true;
    }, nullptr);
    t->prefetch(5);
    t->prefetch_row(5);
    t->prefetch_row(6);  // missing keys are fine
    float v[2] = {-1, -1};
    std::uint64_t w[2] = {1, 1};
    ASSERT_TRUE(t->peek(5, v, w));
    EXPECT_EQ(v[1], 3.0f);
    EXPECT_EQ(w[1], 42u);
    EXPECT_EQ(t->peek_word(5, 1), 42u);
    EXPECT_FALSE(t->peek(6, v, w));
    EXPECT_EQ(t->peek_word(6, 1), 0u);
}

TEST(Table, ForEachVisitsEveryLiveRowOnce) {
    auto t = make(1, 1000, 4, 0, 0, 1);
    for (std::uint64_t k = 1; k <= 200; ++k)
        t->update(k, [](void* ctx, const RowView& row) {
            row.words[0] = *static_cast<std::uint64_t*>(ctx) * 10;
            return true;
        }, &k);
    const std::uint64_t gone = 5;
    t->remove(&gone, 1);
    std::vector<int> seen(201, 0);
    struct Ctx { std::vector<int>* seen; bool ok = true; } ctx{&seen};
    t->for_each([](void* c, std::uint64_t key, const float*, const std::uint64_t* words) {
        auto* x = static_cast<Ctx*>(c);
        ++(*x->seen)[key];
        x->ok = x->ok && words[0] == key * 10;
    }, &ctx);
    EXPECT_TRUE(ctx.ok);
    for (std::uint64_t k = 1; k <= 200; ++k) EXPECT_EQ(seen[k], k == 5 ? 0 : 1) << k;
}

TEST(TableConcurrency, ReadersNeverSeeATornRow) {
    const char* env = std::getenv("RECSERVE_STRESS_SECONDS");
    const double seconds = env ? std::atof(env) : 1.0;
    constexpr std::size_t kDims = 64;
    auto t = make(kDims, 4096, 4, 0, 0, 2);
    std::atomic<bool> stop{false};
    std::atomic<std::uint64_t> torn{0}, reads{0}, hits{0};
    std::vector<std::thread> threads;
    for (int w = 0; w < 2; ++w) {
        threads.emplace_back([&, w] {
            std::mt19937_64 rng(static_cast<std::uint64_t>(w) + 1);
            std::vector<float> v(kDims);
            std::uint64_t i = 0;
            while (!stop.load(std::memory_order_relaxed)) {
                const std::uint64_t key = rng() % 8192;  // twice the capacity: evictions happen
                std::fill(v.begin(), v.end(), static_cast<float>(++i));
                if (w == 0) {  // set: zero words
                    ASSERT_TRUE(t->set(&key, v.data(), 1).is_ok());
                } else {  // update: words equal to the floats
                    t->update(key, [](void* ctx, const RowView& row) {
                        const float value = *static_cast<const float*>(ctx);
                        std::fill(row.vector, row.vector + 64, value);
                        row.words[0] = row.words[1] = static_cast<std::uint64_t>(value);
                        return true;
                    }, v.data());
                }
                if (i % 64 == 0) t->remove(&key, 1);
            }
        });
    }
    for (int r = 0; r < 2; ++r) {
        threads.emplace_back([&, r] {
            std::mt19937_64 rng(static_cast<std::uint64_t>(r) + 100);
            std::vector<std::uint64_t> keys(16);
            std::vector<float> out(16 * kDims);
            std::vector<std::uint64_t> words(16 * 2);
            bool found[16];
            while (!stop.load(std::memory_order_relaxed)) {
                for (auto& k : keys) k = rng() % 8192;
                t->read(keys.data(), keys.size(), out.data(), words.data(), found);
                for (std::size_t i = 0; i < keys.size(); ++i) {
                    const float* row = out.data() + i * kDims;
                    const std::uint64_t* w = words.data() + i * 2;
                    if (w[0] != w[1] || (w[0] != 0 && static_cast<float>(w[0]) != row[0])) torn.fetch_add(1);
                    for (std::size_t d = 1; d < kDims; ++d) {
                        if (row[d] != row[0]) {
                            torn.fetch_add(1);
                            break;
                        }
                    }
                    if (found[i]) hits.fetch_add(1, std::memory_order_relaxed);
                }
                reads.fetch_add(keys.size(), std::memory_order_relaxed);
            }
        });
    }
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
    stop.store(true);
    for (auto& th : threads) th.join();
    EXPECT_EQ(torn.load(), 0u);
    EXPECT_GT(reads.load(), 0u);
    EXPECT_GT(hits.load(), 0u);
    EXPECT_GT(t->stats().evictions, 0u);
}

}  // namespace
}  // namespace recserve::embed
