// Searches running while one writer adds, updates, removes, compacts and saves (with the
// background compactor on), and GracePeriod on its own. Outcomes are deterministic: nothing is
// timed, every thread does a bounded amount of work, and what is checked holds for every
// interleaving. Run under ThreadSanitizer by .ci/tsan.sh.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "recserve/ann/grace_period.hpp"
#include "recserve/ann/index.hpp"

namespace recserve::ann {
namespace {

constexpr std::uint32_t kNever = ~std::uint32_t{0};

// Records what went wrong in any thread; the test thread reports it.
class Violations {
  public:
    void add(const std::string& what) {
        count_.fetch_add(1, std::memory_order_relaxed);
        std::lock_guard<std::mutex> lock(mu_);
        if (examples_.size() < 8) examples_.push_back(what);
    }
    int count() const { return count_.load(std::memory_order_relaxed); }
    std::string examples() const {
        std::lock_guard<std::mutex> lock(mu_);
        std::string out;
        for (const auto& e : examples_) out += "\n  " + e;
        return out;
    }

  private:
    std::atomic<int> count_{0};
    mutable std::mutex mu_;
    std::vector<std::string> examples_;
};

// Version v of item `id`: a point near one of 16 seeded centres, a function of (id, v) only, so
// readers can rebuild any item's first vector without sharing state with the writer.
std::vector<float> vector_of(std::uint64_t id, std::uint32_t version, std::size_t dims) {
    static const std::vector<float> centres = [] {
        std::mt19937 rng(2024);
        std::normal_distribution<float> unit(0.0f, 1.0f);
        std::vector<float> c(16 * 64);
        for (float& x : c) x = unit(rng);
        return c;
    }();
    std::mt19937 rng(static_cast<std::uint32_t>(id * 2654435761u + version * 40503u + 1));
    std::normal_distribution<float> noise(0.0f, 0.8f);
    const float* c = centres.data() + ((id + version) % 16) * 64;
    std::vector<float> v(dims);
    for (std::size_t d = 0; d < dims; ++d) v[d] = c[d] + noise(rng);
    return v;
}

// ---- readers against one writer -------------------------------------------------------------

struct ConcurrencyCase {
    const char* name;
    Dtype dtype;
    bool rerank;
    Metric metric;
};

class IndexConcurrency : public ::testing::TestWithParam<ConcurrencyCase> {};

// The protocol: the writer marks ids as added (`announced`) before add() starts, and records a
// removed id (`removed_gen[id] = g`) only after remove() has returned, then publishes g. A
// reader reads the generation before it searches: any id removed at or before that generation
// was removed before the search began and must not be returned.
TEST_P(IndexConcurrency, ReadersNeverSeeRemovedIdsWhileOneWriterChurns) {
    const ConcurrencyCase c = GetParam();
    constexpr std::size_t kDims = 16, kInitial = 1000, kRounds = 60, kReaders = 3, kMinSearches = 150;
    constexpr std::size_t kMaxIds = kInitial + kRounds * 20 + (kRounds / 10) * 130;

    IndexOptions o;
    o.dims = kDims;
    o.metric = c.metric;
    o.dtype = c.dtype;
    o.rerank = c.rerank;
    o.M = 8;
    o.ef_construction = 48;
    o.seed = 5;
    o.compact_threshold = 0.15;  // the background compactor runs alongside (every ~10 rounds)
    auto created = Index::create(o);
    ASSERT_TRUE(created.is_ok()) << created.status().message();
    const std::unique_ptr<Index> index = std::move(created).value();

    std::vector<std::atomic<std::uint8_t>> announced(kMaxIds);
    std::vector<std::atomic<std::uint32_t>> removed_gen(kMaxIds);
    for (auto& a : announced) a.store(0, std::memory_order_relaxed);
    for (auto& r : removed_gen) r.store(kNever, std::memory_order_relaxed);
    std::atomic<std::uint32_t> generation{0};
    std::atomic<std::uint64_t> announced_count{0};  // ids [0, announced_count) were announced
    std::atomic<bool> writer_done{false};
    Violations violations;

    // Initial items, before any reader starts.
    {
        std::vector<std::uint64_t> ids(kInitial);
        std::vector<float> vectors;
        for (std::size_t i = 0; i < kInitial; ++i) {
            ids[i] = i;
            const auto v = vector_of(i, 0, kDims);
            vectors.insert(vectors.end(), v.begin(), v.end());
            announced[i].store(1, std::memory_order_relaxed);
        }
        ASSERT_TRUE(index->add(ids.data(), vectors.data(), kInitial, 2).is_ok());
        announced_count.store(kInitial, std::memory_order_release);
    }

    const auto reader = [&](std::size_t r) {
        std::mt19937 rng(static_cast<std::uint32_t>(100 + r));
        std::vector<std::uint64_t> ids(50);
        std::vector<float> dist(50);
        std::vector<std::uint64_t> exclude;
        for (std::size_t n = 0; n < kMinSearches || !writer_done.load(std::memory_order_acquire); ++n) {
            const std::uint32_t snapshot = generation.load(std::memory_order_acquire);
            // Query at an item's first vector: if the item were still there it would rank first.
            const std::uint64_t target = rng() % announced_count.load(std::memory_order_acquire);
            const std::vector<float> q = vector_of(target, 0, kDims);
            const std::size_t k = (n % 3 == 0) ? 50 : 10;
            SearchParams p;
            p.ef = (n % 2 == 0) ? 16 : 64;
            exclude.clear();
            if (n % 5 == 0)
                for (int e = 0; e < 20; ++e) exclude.push_back(rng() % announced_count.load(std::memory_order_acquire));
            p.exclude = exclude.data();
            p.exclude_count = exclude.size();
            const Status st = index->search(q.data(), 1, k, p, ids.data(), dist.data());
            if (!st.is_ok()) {
                violations.add("search failed: " + st.message());
                continue;
            }
            bool missing_seen = false;
            for (std::size_t i = 0; i < k; ++i) {
                const std::uint64_t id = ids[i];
                const std::string where = "reader " + std::to_string(r) + " search " + std::to_string(n) + " rank " +
                                          std::to_string(i) + " id " + std::to_string(id);
                if (id == kMissingId) {
                    missing_seen = true;
                    if (dist[i] != std::numeric_limits<float>::infinity())
                        violations.add(where + ": missing with finite distance");
                    continue;
                }
                if (missing_seen) violations.add(where + ": result after a missing one");
                if (id >= kMaxIds || announced[id].load(std::memory_order_acquire) == 0) {
                    violations.add(where + ": never added");
                    continue;
                }
                const std::uint32_t removed_at = removed_gen[id].load(std::memory_order_relaxed);
                if (removed_at <= snapshot)
                    violations.add(where + ": removed at generation " + std::to_string(removed_at) +
                                   ", search started at " + std::to_string(snapshot));
                if (std::find(exclude.begin(), exclude.end(), id) != exclude.end()) violations.add(where + ": excluded");
                const auto earlier = ids.begin() + static_cast<std::ptrdiff_t>(i);
                if (std::find(ids.begin(), earlier, id) != earlier) violations.add(where + ": returned twice");
                if (i > 0 && ids[i - 1] != kMissingId && dist[i - 1] > dist[i])
                    violations.add(where + ": distances not ascending");
            }
        }
    };

    const auto writer = [&] {
        std::mt19937 rng(7);
        std::vector<std::uint64_t> live(kInitial);
        for (std::size_t i = 0; i < kInitial; ++i) live[i] = i;
        std::uint64_t next_id = kInitial;
        std::uint32_t version = 1;
        std::uint32_t gen = 0;
        const std::string save_path = (std::filesystem::temp_directory_path() /
                                       ("recserve_ann_concurrency_" + std::to_string(::getpid()) + "_" + c.name + ".rsvann"))
                                          .string();
        for (std::size_t round = 0; round < kRounds; ++round) {
            // New ids (a bigger batch on two insert threads every tenth round) ...
            const std::size_t fresh = round % 10 == 9 ? 130 : 20;
            std::vector<std::uint64_t> ids;
            std::vector<float> vectors;
            for (std::size_t i = 0; i < fresh; ++i) {
                const std::uint64_t id = next_id++;
                announced[id].store(1, std::memory_order_release);
                ids.push_back(id);
                const auto v = vector_of(id, 0, kDims);
                vectors.insert(vectors.end(), v.begin(), v.end());
            }
            announced_count.store(next_id, std::memory_order_release);
            // ... and updates of live ones, in the same batch.
            std::unordered_set<std::uint64_t> in_batch(ids.begin(), ids.end());
            for (int u = 0; u < 10; ++u) {
                const std::uint64_t id = live[rng() % live.size()];
                if (!in_batch.insert(id).second) continue;
                ids.push_back(id);
                const auto v = vector_of(id, version++, kDims);
                vectors.insert(vectors.end(), v.begin(), v.end());
            }
            const Status st = index->add(ids.data(), vectors.data(), ids.size(), fresh > 64 ? 2 : 1);
            if (!st.is_ok()) violations.add("add failed: " + st.message());
            live.insert(live.end(), ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(fresh));

            // Remove 15 live ids; publish them only once remove() has returned.
            std::vector<std::uint64_t> gone;
            for (int i = 0; i < 15 && !live.empty(); ++i) {
                const std::size_t at = rng() % live.size();
                gone.push_back(live[at]);
                live[at] = live.back();
                live.pop_back();
            }
            std::vector<std::uint64_t> missing;
            if (index->remove(gone.data(), gone.size(), &missing) != gone.size() || !missing.empty())
                violations.add("remove did not remove every live id");
            ++gen;
            for (std::uint64_t id : gone) removed_gen[id].store(gen, std::memory_order_relaxed);
            // release: a reader that sees gen also sees the removed_gen entries above.
            generation.store(gen, std::memory_order_release);

            if (round % 15 == 14) index->compact();
            if (round % 30 == 29) {
                const Status saved = index->save(save_path);
                if (!saved.is_ok()) violations.add("save failed: " + saved.message());
            }
            if (index->size() != live.size()) violations.add("size() differs from the writer's count");
        }
        std::filesystem::remove(save_path);
        writer_done.store(true, std::memory_order_release);
        return live;
    };

    std::vector<std::thread> readers;
    for (std::size_t r = 0; r < kReaders; ++r) readers.emplace_back(reader, r);
    std::vector<std::uint64_t> live;
    std::thread writer_thread([&] { live = writer(); });
    writer_thread.join();
    for (auto& t : readers) t.join();
    EXPECT_EQ(violations.count(), 0) << violations.examples();

    // Quiescent: exactly the writer's live ids remain, and they are all found.
    EXPECT_EQ(index->size(), live.size());
    const std::unordered_set<std::uint64_t> live_set(live.begin(), live.end());
    for (std::uint64_t id = 0; id < announced_count.load(); ++id)
        EXPECT_EQ(index->contains(id), live_set.count(id) == 1) << id;
}

INSTANTIATE_TEST_SUITE_P(Formats, IndexConcurrency,
                         ::testing::Values(ConcurrencyCase{"float32_l2", Dtype::kFloat32, false, Metric::kL2},
                                           ConcurrencyCase{"int8_cosine_rerank", Dtype::kInt8, true, Metric::kCosine}),
                         [](const ::testing::TestParamInfo<ConcurrencyCase>& info) { return std::string(info.param.name); });

// Regression: add() publishes the new version of an updated id before it marks the old one
// deleted, so for the length of a batch both slots are live with the same label; search must
// still write each id once. Big batches of small moves make that window wide.
TEST(IndexConcurrency, UpdatedIdIsNeverReturnedTwiceDuringTheUpdate) {
    constexpr std::size_t kDims = 8, kItems = 1000, kUpdated = 250, kRounds = 5;
    IndexOptions o;
    o.dims = kDims;
    o.M = 8;
    o.compact_threshold = 0.0;
    auto created = Index::create(o);
    ASSERT_TRUE(created.is_ok()) << created.status().message();
    const std::unique_ptr<Index> index = std::move(created).value();
    std::vector<std::uint64_t> ids(kItems);
    std::vector<float> vectors;
    for (std::size_t i = 0; i < kItems; ++i) {
        ids[i] = i;
        const auto v = vector_of(i, 0, kDims);
        vectors.insert(vectors.end(), v.begin(), v.end());
    }
    ASSERT_TRUE(index->add(ids.data(), vectors.data(), kItems, 1).is_ok());

    std::atomic<bool> done{false};
    Violations violations;
    std::vector<std::thread> readers;
    for (std::uint32_t r = 0; r < 2; ++r) {
        readers.emplace_back([&, r] {
            std::mt19937 rng(r);
            std::vector<std::uint64_t> out(20);
            std::vector<float> dist(20);
            for (std::size_t n = 0; n < 200 || !done.load(std::memory_order_acquire); ++n) {
                const std::size_t target = rng() % kUpdated;  // the updated items move only slightly
                if (!index->search(vectors.data() + target * kDims, 1, 20, SearchParams{}, out.data(), dist.data()).is_ok())
                    violations.add("search failed");
                std::vector<std::uint64_t> sorted(out);
                std::sort(sorted.begin(), sorted.end());
                for (std::size_t i = 1; i < sorted.size(); ++i)
                    if (sorted[i] == sorted[i - 1] && sorted[i] != kMissingId)
                        violations.add("id " + std::to_string(sorted[i]) + " returned twice");
            }
        });
    }
    std::mt19937 rng(3);
    std::normal_distribution<float> nudge(0.0f, 0.01f);
    for (std::size_t round = 0; round < kRounds; ++round) {
        std::vector<float> moved(vectors.begin(), vectors.begin() + kUpdated * kDims);
        for (float& x : moved) x += nudge(rng);
        if (!index->add(ids.data(), moved.data(), kUpdated, 1).is_ok()) violations.add("add failed");
        index->compact();
    }
    done.store(true, std::memory_order_release);
    for (auto& t : readers) t.join();
    EXPECT_EQ(violations.count(), 0) << violations.examples();
}

TEST(IndexBackgroundCompactor, RepairsTombstonesPastTheThreshold) {
    constexpr std::size_t kDims = 8, kItems = 1000;
    IndexOptions o;
    o.dims = kDims;
    o.compact_threshold = 0.1;
    auto created = Index::create(o);
    ASSERT_TRUE(created.is_ok()) << created.status().message();
    const std::unique_ptr<Index> index = std::move(created).value();
    std::vector<std::uint64_t> ids(kItems);
    std::vector<float> vectors;
    for (std::size_t i = 0; i < kItems; ++i) {
        ids[i] = i;
        const auto v = vector_of(i, 0, kDims);
        vectors.insert(vectors.end(), v.begin(), v.end());
    }
    ASSERT_TRUE(index->add(ids.data(), vectors.data(), kItems, 1).is_ok());
    // 5% removed: below the threshold, nothing is repaired.
    ASSERT_EQ(index->remove(ids.data(), 50, nullptr), 50u);
    EXPECT_EQ(index->stats().free_slots, 0u);
    // 20% removed in all: the compactor wakes and frees every tombstone. Wait for it without a
    // clock: poll, yielding, with a generous bound on the number of polls.
    ASSERT_EQ(index->remove(ids.data() + 50, 150, nullptr), 150u);
    IndexStats st = index->stats();
    for (int poll = 0; poll < 20'000'000 && st.free_slots != 200; ++poll) {
        std::this_thread::yield();
        if (poll % 1000 == 0) st = index->stats();
    }
    st = index->stats();
    EXPECT_EQ(st.free_slots, 200u);
    EXPECT_EQ(st.tombstones, 0u);
    EXPECT_EQ(st.live, kItems - 200);
}

TEST(IndexBackgroundCompactor, IndexWithPendingWorkShutsDownCleanly) {
    // Destroying the index while the compactor may be mid-repair joins it without a hang or
    // a race (TSan checks the latter).
    for (int round = 0; round < 5; ++round) {
        IndexOptions o;
        o.dims = 8;
        o.compact_threshold = 0.01;
        auto created = Index::create(o);
        ASSERT_TRUE(created.is_ok());
        const std::unique_ptr<Index> index = std::move(created).value();
        std::vector<std::uint64_t> ids(300);
        std::vector<float> vectors;
        for (std::size_t i = 0; i < ids.size(); ++i) {
            ids[i] = i;
            const auto v = vector_of(i, 0, 8);
            vectors.insert(vectors.end(), v.begin(), v.end());
        }
        ASSERT_TRUE(index->add(ids.data(), vectors.data(), ids.size(), 1).is_ok());
        ASSERT_EQ(index->remove(ids.data(), 100, nullptr), 100u);
    }
}

// ---- GracePeriod ----------------------------------------------------------------------------

TEST(GracePeriod, WaitWithoutReadersReturns) {
    GracePeriod gp;
    gp.wait_for_readers();
    { const auto guard = gp.enter(); }
    { const auto guard = gp.enter(); }
    gp.wait_for_readers();
    gp.wait_for_readers();
}

TEST(GracePeriod, WaitReturnsOnlyAfterAnEarlierReaderHasLeft) {
    GracePeriod gp;
    std::atomic<bool> entered{false}, may_leave{false}, left{false}, wait_returned{false};
    std::atomic<bool> left_before_return{false};

    std::thread reader([&] {
        {
            const auto guard = gp.enter();
            entered.store(true, std::memory_order_release);
            while (!may_leave.load(std::memory_order_acquire)) std::this_thread::yield();
            left.store(true, std::memory_order_release);  // still inside the guard
        }
    });
    while (!entered.load(std::memory_order_acquire)) std::this_thread::yield();

    std::thread writer([&] {
        gp.wait_for_readers();
        left_before_return.store(left.load(std::memory_order_acquire), std::memory_order_relaxed);
        wait_returned.store(true, std::memory_order_release);
    });
    // Give the writer every chance to return early: it must not while the reader is inside.
    for (int i = 0; i < 20'000; ++i) {
        ASSERT_FALSE(wait_returned.load(std::memory_order_acquire)) << "wait_for_readers returned with a reader inside";
        std::this_thread::yield();
    }
    may_leave.store(true, std::memory_order_release);
    writer.join();
    reader.join();
    EXPECT_TRUE(wait_returned.load());
    EXPECT_TRUE(left_before_return.load());
}

TEST(GracePeriod, WaitWaitsForEveryReaderInside) {
    // Several readers inside at once: the wait returns only after the last has left.
    GracePeriod gp;
    constexpr int kReaders = 3;
    std::atomic<int> inside{0};
    std::atomic<bool> may_leave{false};
    std::atomic<int> still_inside_at_return{-1};
    std::vector<std::thread> readers;
    for (int r = 0; r < kReaders; ++r) {
        readers.emplace_back([&] {
            const auto guard = gp.enter();
            inside.fetch_add(1, std::memory_order_acq_rel);
            while (!may_leave.load(std::memory_order_acquire)) std::this_thread::yield();
            inside.fetch_sub(1, std::memory_order_acq_rel);
        });
    }
    while (inside.load(std::memory_order_acquire) != kReaders) std::this_thread::yield();
    std::thread writer([&] {
        gp.wait_for_readers();
        still_inside_at_return.store(inside.load(std::memory_order_acquire));
    });
    for (int i = 0; i < 5'000; ++i) std::this_thread::yield();
    may_leave.store(true, std::memory_order_release);
    writer.join();
    for (auto& t : readers) t.join();
    EXPECT_EQ(still_inside_at_return.load(), 0);
    gp.wait_for_readers();
}

// The use the index makes of it: a writer retires an object, waits, then destroys it; readers
// that found the object inside a guard must never see it destroyed. (Under TSan, a broken grace
// period also shows as a race between the poisoning write and a reader's read.)
TEST(GracePeriod, RetiredObjectIsNeverSeenDestroyedByAReader) {
    struct Object {
        std::uint64_t value;
        std::uint64_t check;  // value * 3 while alive
    };
    constexpr int kRetirements = 1500, kReaders = 3;
    GracePeriod gp;
    std::atomic<Object*> current{new Object{1, 3}};
    std::atomic<bool> done{false};
    std::atomic<int> bad{0};
    std::atomic<std::uint64_t> reads{0};

    std::vector<std::thread> readers;
    for (int r = 0; r < kReaders; ++r) {
        readers.emplace_back([&] {
            for (std::uint64_t n = 0; n < 2000 || !done.load(std::memory_order_acquire); ++n) {
                const auto guard = gp.enter();
                const Object* o = current.load(std::memory_order_acquire);
                for (int i = 0; i < 8; ++i) {
                    if (o->value * 3 != o->check || o->value == 0) bad.fetch_add(1, std::memory_order_relaxed);
                    std::this_thread::yield();
                }
                reads.fetch_add(1, std::memory_order_relaxed);
            }
        });
    }
    for (int i = 0; i < kRetirements; ++i) {
        const std::uint64_t value = std::uint64_t(i) + 2;
        Object* old = current.exchange(new Object{value, 3 * value}, std::memory_order_acq_rel);
        gp.wait_for_readers();
        old->value = 0;  // poison, then free: no reader may still be looking
        old->check = 1;
        delete old;
    }
    done.store(true, std::memory_order_release);
    for (auto& t : readers) t.join();
    delete current.load();
    EXPECT_EQ(bad.load(), 0);
    EXPECT_GT(reads.load(), 0u);
}

}  // namespace
}  // namespace recserve::ann
