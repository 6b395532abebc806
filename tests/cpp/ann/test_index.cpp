// recserve::ann::Index through its public API: recall against brute force, updates, removes,
// exclusion, compaction and churn, input validation, and what a distance means per metric.
//
// Data is seeded std::mt19937 draws from Gaussian clusters (never time-based); the brute-force
// reference computes every distance in double from the metric definitions in metric.hpp.
#include "recserve/ann/index.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <unordered_set>
#include <vector>

namespace recserve::ann {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// Points around `clusters` Gaussian centres; the centres depend only on (dims, clusters, seed),
// so items and queries drawn with different streams share them.
class Clusters {
  public:
    Clusters(std::size_t dims, std::size_t clusters, std::uint32_t seed) : dims_(dims), centers_(dims * clusters) {
        std::mt19937 rng(seed);
        std::normal_distribution<float> unit(0.0f, 1.0f);
        for (float& c : centers_) c = unit(rng);
    }
    std::vector<float> sample(std::size_t n, std::uint32_t seed, float spread = 0.8f) const {
        std::mt19937 rng(seed);
        std::normal_distribution<float> noise(0.0f, spread);
        std::uniform_int_distribution<std::size_t> pick(0, centers_.size() / dims_ - 1);
        std::vector<float> out(n * dims_);
        for (std::size_t i = 0; i < n; ++i) {
            const float* c = centers_.data() + pick(rng) * dims_;
            for (std::size_t d = 0; d < dims_; ++d) out[i * dims_ + d] = c[d] + noise(rng);
        }
        return out;
    }

  private:
    std::size_t dims_;
    std::vector<float> centers_;
};

std::vector<std::uint64_t> iota_ids(std::size_t n, std::uint64_t first = 0) {
    std::vector<std::uint64_t> ids(n);
    for (std::size_t i = 0; i < n; ++i) ids[i] = first + i;
    return ids;
}

// The metric definitions of metric.hpp, in double.
double reference_distance(Metric metric, const float* a, const float* b, std::size_t dims) {
    double dot = 0.0, aa = 0.0, bb = 0.0, l2 = 0.0;
    for (std::size_t i = 0; i < dims; ++i) {
        dot += double(a[i]) * b[i];
        aa += double(a[i]) * a[i];
        bb += double(b[i]) * b[i];
        l2 += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    }
    switch (metric) {
        case Metric::kL2: return l2;
        case Metric::kIp: return 1.0 - dot;
        case Metric::kCosine: return (aa == 0.0 || bb == 0.0) ? 1.0 : 1.0 - dot / std::sqrt(aa * bb);
    }
    return 0.0;
}

// The items a brute-force reference searches: ids and their current vectors.
struct Catalogue {
    std::size_t dims;
    std::vector<std::uint64_t> ids;
    std::vector<float> vectors;

    void add(const std::vector<std::uint64_t>& new_ids, const std::vector<float>& new_vectors) {
        ids.insert(ids.end(), new_ids.begin(), new_ids.end());
        vectors.insert(vectors.end(), new_vectors.begin(), new_vectors.end());
    }
    void remove(const std::unordered_set<std::uint64_t>& gone) {
        std::size_t kept = 0;
        for (std::size_t i = 0; i < ids.size(); ++i) {
            if (gone.count(ids[i])) continue;
            ids[kept] = ids[i];
            std::copy_n(vectors.begin() + static_cast<std::ptrdiff_t>(i * dims), dims,
                        vectors.begin() + static_cast<std::ptrdiff_t>(kept * dims));
            ++kept;
        }
        ids.resize(kept);
        vectors.resize(kept * dims);
    }
    // The k nearest ids of each query (fewer when the catalogue is smaller), nearest first.
    std::vector<std::vector<std::uint64_t>> knn(Metric metric, const std::vector<float>& queries, std::size_t k,
                                                const std::unordered_set<std::uint64_t>& exclude = {}) const {
        const std::size_t nq = queries.size() / dims;
        std::vector<std::vector<std::uint64_t>> out(nq);
        std::vector<std::pair<double, std::uint64_t>> all;
        for (std::size_t q = 0; q < nq; ++q) {
            all.clear();
            for (std::size_t i = 0; i < ids.size(); ++i)
                if (!exclude.count(ids[i]))
                    all.emplace_back(reference_distance(metric, queries.data() + q * dims, vectors.data() + i * dims, dims),
                                     ids[i]);
            const std::size_t m = std::min(k, all.size());
            std::partial_sort(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(m), all.end());
            for (std::size_t i = 0; i < m; ++i) out[q].push_back(all[i].second);
        }
        return out;
    }
};

std::unique_ptr<Index> create_or_fail(const IndexOptions& o) {
    auto r = Index::create(o);
    if (!r.is_ok()) {
        ADD_FAILURE() << "Index::create: " << r.status().message();
        return nullptr;
    }
    return std::move(r).value();
}

IndexOptions options_for(std::size_t dims, Metric metric = Metric::kL2, Dtype dtype = Dtype::kFloat32,
                         bool rerank = false) {
    IndexOptions o;
    o.dims = dims;
    o.metric = metric;
    o.dtype = dtype;
    o.rerank = rerank;
    o.seed = 7;
    o.compact_threshold = 0.0;  // these tests compact on demand; test_concurrency covers the thread
    return o;
}

struct Hits {
    std::size_t k = 0;
    std::vector<std::uint64_t> ids;
    std::vector<float> dist;

    std::size_t rows() const { return k == 0 ? 0 : ids.size() / k; }
    const std::uint64_t* row(std::size_t q) const { return ids.data() + q * k; }
    const float* row_dist(std::size_t q) const { return dist.data() + q * k; }
};

Hits search(const Index& index, const std::vector<float>& queries, std::size_t k, std::size_t ef = 128,
            const std::vector<std::uint64_t>& exclude = {}) {
    const std::size_t nq = queries.size() / index.options().dims;
    Hits h;
    h.k = k;
    h.ids.assign(nq * k, 0);
    h.dist.assign(nq * k, 0.0f);
    SearchParams p;
    p.ef = ef;
    p.exclude = exclude.empty() ? nullptr : exclude.data();
    p.exclude_count = exclude.size();
    const Status st = index.search(queries.data(), nq, k, p, h.ids.data(), h.dist.data());
    EXPECT_TRUE(st.is_ok()) << st.message();
    return h;
}

// Every row: distances ascending, no id twice, and missing results (kMissingId, +inf) only at
// the end.
void expect_well_formed(const Hits& h) {
    for (std::size_t q = 0; q < h.rows(); ++q) {
        const std::uint64_t* ids = h.row(q);
        const float* dist = h.row_dist(q);
        std::unordered_set<std::uint64_t> seen;
        bool missing_seen = false;
        for (std::size_t i = 0; i < h.k; ++i) {
            if (ids[i] == kMissingId) {
                EXPECT_EQ(dist[i], kInf) << "query " << q << " rank " << i;
                missing_seen = true;
                continue;
            }
            EXPECT_FALSE(missing_seen) << "query " << q << ": id " << ids[i] << " after a missing result";
            EXPECT_TRUE(std::isfinite(dist[i])) << "query " << q << " rank " << i;
            EXPECT_TRUE(seen.insert(ids[i]).second) << "query " << q << ": id " << ids[i] << " returned twice";
            if (i > 0) {
                EXPECT_LE(dist[i - 1], dist[i]) << "query " << q << ": distances not ascending at rank " << i;
            }
        }
    }
}

double recall(const Hits& h, const std::vector<std::vector<std::uint64_t>>& truth) {
    std::size_t found = 0, wanted = 0;
    for (std::size_t q = 0; q < truth.size(); ++q) {
        const std::unordered_set<std::uint64_t> got(h.row(q), h.row(q) + h.k);
        for (std::uint64_t id : truth[q]) found += got.count(id);
        wanted += truth[q].size();
    }
    return wanted == 0 ? 1.0 : double(found) / double(wanted);
}

bool returned_any(const Hits& h, const std::unordered_set<std::uint64_t>& ids) {
    for (std::uint64_t id : h.ids)
        if (ids.count(id)) return true;
    return false;
}

std::vector<float> row_of(const std::vector<float>& vectors, std::size_t i, std::size_t dims) {
    const auto first = vectors.begin() + static_cast<std::ptrdiff_t>(i * dims);
    return {first, first + static_cast<std::ptrdiff_t>(dims)};
}

// ---- recall against brute force ------------------------------------------------------------

using RecallCase = std::tuple<Metric, Dtype, bool>;

std::string case_name(const ::testing::TestParamInfo<RecallCase>& info) {
    const auto [metric, dtype, rerank] = info.param;
    return std::string(metric_name(metric)) + "_" + dtype_name(dtype) + (rerank ? "_rerank" : "");
}

class IndexRecall : public ::testing::TestWithParam<RecallCase> {};

TEST_P(IndexRecall, RecallAt10MatchesBruteForce) {
    const auto [metric, dtype, rerank] = GetParam();
    constexpr std::size_t kDims = 32, kItems = 5000, kQueries = 200, kK = 10;
    const Clusters clusters(kDims, 40, 1);
    Catalogue cat{kDims, iota_ids(kItems, 1000), clusters.sample(kItems, 2)};
    const std::vector<float> queries = clusters.sample(kQueries, 3);

    auto index = create_or_fail(options_for(kDims, metric, dtype, rerank));
    ASSERT_NE(index, nullptr);
    ASSERT_TRUE(index->add(cat.ids.data(), cat.vectors.data(), kItems, 1).is_ok());
    EXPECT_EQ(index->size(), kItems);

    const Hits hits = search(*index, queries, kK, 128);
    expect_well_formed(hits);
    for (std::uint64_t id : hits.ids) EXPECT_NE(id, kMissingId);
    // int8 codes alone rank by an approximate distance; re-ranking restores float32 quality.
    const double bound = (dtype == Dtype::kInt8 && !rerank) ? 0.85 : 0.9;
    EXPECT_GE(recall(hits, cat.knn(metric, queries, kK)), bound);
}

INSTANTIATE_TEST_SUITE_P(
    AllMetricsAndDtypes, IndexRecall,
    ::testing::Values(RecallCase{Metric::kCosine, Dtype::kFloat32, false}, RecallCase{Metric::kIp, Dtype::kFloat32, false},
                      RecallCase{Metric::kL2, Dtype::kFloat32, false}, RecallCase{Metric::kCosine, Dtype::kInt8, false},
                      RecallCase{Metric::kIp, Dtype::kInt8, false}, RecallCase{Metric::kL2, Dtype::kInt8, false},
                      RecallCase{Metric::kCosine, Dtype::kInt8, true}, RecallCase{Metric::kIp, Dtype::kInt8, true},
                      RecallCase{Metric::kL2, Dtype::kInt8, true}),
    case_name);

TEST(Index, ParallelInsertKeepsRecall) {
    constexpr std::size_t kDims = 32, kItems = 4000, kK = 10;
    const Clusters clusters(kDims, 40, 11);
    Catalogue cat{kDims, iota_ids(kItems), clusters.sample(kItems, 12)};
    const std::vector<float> queries = clusters.sample(150, 13);
    auto index = create_or_fail(options_for(kDims, Metric::kCosine, Dtype::kInt8, true));
    ASSERT_NE(index, nullptr);
    ASSERT_TRUE(index->add(cat.ids.data(), cat.vectors.data(), kItems, 4).is_ok());
    EXPECT_EQ(index->size(), kItems);
    const Hits hits = search(*index, queries, kK);
    expect_well_formed(hits);
    EXPECT_GE(recall(hits, cat.knn(Metric::kCosine, queries, kK)), 0.9);
}

TEST(Index, ParallelInsertLeavesEveryItemReachable) {
    constexpr std::size_t kDims = 16, kItems = 2000;
    const Clusters clusters(kDims, 10, 15);
    const std::vector<float> vectors = clusters.sample(kItems, 16);
    const std::vector<std::uint64_t> ids = iota_ids(kItems);
    for (int build = 0; build < 4; ++build) {
        SCOPED_TRACE("build " + std::to_string(build));
        auto index = create_or_fail(options_for(kDims, Metric::kCosine));
        ASSERT_NE(index, nullptr);
        ASSERT_TRUE(index->add(ids.data(), vectors.data(), kItems, 4).is_ok());
        // Each item's own vector, with a beam as wide as the index: only an orphan is missed.
        const Hits self = search(*index, vectors, 1, kItems);
        std::size_t orphans = 0;
        for (std::size_t i = 0; i < kItems; ++i) orphans += self.ids[i] != ids[i];
        EXPECT_EQ(orphans, 0u);
    }
}

TEST(Index, SameSeedAndInsertOrderGiveIdenticalResults) {
    constexpr std::size_t kDims = 16, kItems = 1500;
    const Clusters clusters(kDims, 20, 21);
    const std::vector<float> vectors = clusters.sample(kItems, 22);
    const std::vector<float> queries = clusters.sample(50, 23);
    const std::vector<std::uint64_t> ids = iota_ids(kItems);
    auto a = create_or_fail(options_for(kDims, Metric::kL2, Dtype::kInt8));
    auto b = create_or_fail(options_for(kDims, Metric::kL2, Dtype::kInt8));
    ASSERT_NE(a, nullptr);
    ASSERT_NE(b, nullptr);
    ASSERT_TRUE(a->add(ids.data(), vectors.data(), kItems, 1).is_ok());
    ASSERT_TRUE(b->add(ids.data(), vectors.data(), kItems, 1).is_ok());
    const Hits ha = search(*a, queries, 10, 32);
    const Hits hb = search(*b, queries, 10, 32);
    EXPECT_EQ(ha.ids, hb.ids);
    EXPECT_EQ(ha.dist, hb.dist);
    EXPECT_EQ(a->stats().levels, b->stats().levels);
}

// ---- updates ---------------------------------------------------------------------------------

TEST(Index, AddOfExistingIdReplacesItsVector) {
    for (const bool int8 : {false, true}) {
        SCOPED_TRACE(int8 ? "int8+rerank" : "float32");
        constexpr std::size_t kDims = 16, kItems = 1000;
        const Clusters clusters(kDims, 10, 31);
        const std::vector<float> vectors = clusters.sample(kItems, 32);
        const std::vector<std::uint64_t> ids = iota_ids(kItems);
        auto index = create_or_fail(options_for(kDims, Metric::kL2, int8 ? Dtype::kInt8 : Dtype::kFloat32, int8));
        ASSERT_NE(index, nullptr);
        ASSERT_TRUE(index->add(ids.data(), vectors.data(), kItems, 1).is_ok());

        // Move id 7 onto a point far from every cluster.
        const std::uint64_t id = 7;
        const std::vector<float> old_vector = row_of(vectors, id, kDims);
        const std::vector<float> new_vector(kDims, 25.0f);
        ASSERT_TRUE(index->add(&id, new_vector.data(), 1, 1).is_ok());
        EXPECT_EQ(index->size(), kItems);
        EXPECT_TRUE(index->contains(id));
        EXPECT_EQ(index->stats().live, kItems);
        EXPECT_EQ(index->stats().tombstones, 1u);

        const Hits at_new = search(*index, new_vector, 1);
        EXPECT_EQ(at_new.ids[0], id);
        EXPECT_NEAR(at_new.dist[0], 0.0f, 1e-3f);

        // Around the old point, id 7 is at most one far-away result, never the nearest.
        const Hits at_old = search(*index, old_vector, 200, 256);
        expect_well_formed(at_old);
        EXPECT_NE(at_old.ids[0], id);
        EXPECT_LE(std::count(at_old.ids.begin(), at_old.ids.end(), id), 1);

        // After compaction the old version is gone for good and the slot comes back.
        EXPECT_EQ(index->compact(), 1u);
        EXPECT_EQ(index->stats().free_slots, 1u);
        EXPECT_EQ(search(*index, new_vector, 1).ids[0], id);
        expect_well_formed(search(*index, old_vector, 200, 256));
    }
}

TEST(Index, UpdatingEveryIdKeepsSizeAndFindsNewVectors) {
    constexpr std::size_t kDims = 16, kItems = 800;
    const Clusters clusters(kDims, 10, 41);
    const std::vector<float> first = clusters.sample(kItems, 42);
    const std::vector<float> second = clusters.sample(kItems, 43);
    const std::vector<std::uint64_t> ids = iota_ids(kItems, 5);
    auto index = create_or_fail(options_for(kDims, Metric::kCosine));
    ASSERT_NE(index, nullptr);
    ASSERT_TRUE(index->add(ids.data(), first.data(), kItems, 1).is_ok());
    ASSERT_TRUE(index->add(ids.data(), second.data(), kItems, 2).is_ok());
    EXPECT_EQ(index->size(), kItems);
    EXPECT_EQ(index->stats().tombstones, kItems);

    const Catalogue cat{kDims, ids, second};
    const std::vector<float> queries = clusters.sample(100, 44);
    const Hits hits = search(*index, queries, 10);
    expect_well_formed(hits);
    EXPECT_GE(recall(hits, cat.knn(Metric::kCosine, queries, 10)), 0.9);
    // Each new vector finds its own id first.
    const Hits self = search(*index, second, 1);
    std::size_t self_found = 0;
    for (std::size_t i = 0; i < kItems; ++i) self_found += self.ids[i] == ids[i];
    // Every item is reachable (ParallelInsertLeavesEveryItemReachable), but a beam of default
    // width is approximate: allow a miss or two.
    EXPECT_GE(self_found, kItems * 99 / 100);
}

// ---- remove ----------------------------------------------------------------------------------

TEST(Index, RemovedIdsAreNeverReturned) {
    for (const Dtype dtype : {Dtype::kFloat32, Dtype::kInt8}) {
        SCOPED_TRACE(dtype_name(dtype));
        constexpr std::size_t kDims = 16, kItems = 3000;
        const Clusters clusters(kDims, 20, 51);
        const std::vector<float> vectors = clusters.sample(kItems, 52);
        const std::vector<std::uint64_t> ids = iota_ids(kItems);
        auto index = create_or_fail(options_for(kDims, Metric::kL2, dtype));
        ASSERT_NE(index, nullptr);
        ASSERT_TRUE(index->add(ids.data(), vectors.data(), kItems, 1).is_ok());

        std::mt19937 rng(53);
        std::vector<std::uint64_t> gone_list;
        for (std::uint64_t id : ids)
            if (rng() % 10 == 0) gone_list.push_back(id);
        std::vector<std::uint64_t> missing;
        EXPECT_EQ(index->remove(gone_list.data(), gone_list.size(), &missing), gone_list.size());
        EXPECT_TRUE(missing.empty());
        EXPECT_EQ(index->size(), kItems - gone_list.size());
        const std::unordered_set<std::uint64_t> gone(gone_list.begin(), gone_list.end());
        for (std::uint64_t id : gone_list) EXPECT_FALSE(index->contains(id));

        // Queries at the removed points themselves, and ordinary queries with a large k.
        std::vector<float> at_removed;
        for (std::uint64_t id : gone_list) {
            const auto v = row_of(vectors, id, kDims);
            at_removed.insert(at_removed.end(), v.begin(), v.end());
        }
        const Hits near_removed = search(*index, at_removed, 10);
        expect_well_formed(near_removed);
        EXPECT_FALSE(returned_any(near_removed, gone));
        const Hits wide = search(*index, clusters.sample(50, 54), 500, 500);
        expect_well_formed(wide);
        EXPECT_FALSE(returned_any(wide, gone));
        for (std::uint64_t id : wide.ids) EXPECT_NE(id, kMissingId);

        // Still true once the tombstones are repaired out of the graph.
        EXPECT_EQ(index->compact(), gone_list.size());
        EXPECT_FALSE(returned_any(search(*index, at_removed, 10), gone));
        EXPECT_FALSE(returned_any(search(*index, clusters.sample(50, 55), 500, 500), gone));
    }
}

TEST(Index, RemoveReportsUnknownIdsAsMissing) {
    constexpr std::size_t kDims = 8;
    const std::vector<std::uint64_t> ids = iota_ids(100);
    const std::vector<float> vectors = Clusters(kDims, 4, 61).sample(100, 62);
    auto index = create_or_fail(options_for(kDims));
    ASSERT_NE(index, nullptr);
    ASSERT_TRUE(index->add(ids.data(), vectors.data(), ids.size(), 1).is_ok());

    const std::vector<std::uint64_t> request = {3, 1000, 4, 2000, kMissingId};
    std::vector<std::uint64_t> missing;
    EXPECT_EQ(index->remove(request.data(), request.size(), &missing), 2u);
    EXPECT_EQ(missing, (std::vector<std::uint64_t>{1000, 2000, kMissingId}));
    EXPECT_EQ(index->size(), 98u);

    // Removing again: nothing removed, everything reported, the index unchanged.
    missing.clear();
    EXPECT_EQ(index->remove(request.data(), 2, &missing), 0u);
    EXPECT_EQ(missing, (std::vector<std::uint64_t>{3, 1000}));
    EXPECT_EQ(index->size(), 98u);
    // `missing` may be null.
    EXPECT_EQ(index->remove(request.data(), request.size(), nullptr), 0u);
    EXPECT_EQ(index->remove(nullptr, 0, nullptr), 0u);
    EXPECT_EQ(index->stats().tombstones, 2u);
}

TEST(Index, FullyRemovedIndexReturnsOnlyMissingAndAcceptsNewItems) {
    constexpr std::size_t kDims = 8, kItems = 300;
    const Clusters clusters(kDims, 4, 71);
    const std::vector<float> vectors = clusters.sample(kItems, 72);
    const std::vector<std::uint64_t> ids = iota_ids(kItems);
    auto index = create_or_fail(options_for(kDims, Metric::kCosine, Dtype::kInt8, true));
    ASSERT_NE(index, nullptr);
    ASSERT_TRUE(index->add(ids.data(), vectors.data(), kItems, 1).is_ok());
    EXPECT_EQ(index->remove(ids.data(), kItems, nullptr), kItems);
    EXPECT_EQ(index->size(), 0u);

    const std::vector<float> queries = clusters.sample(5, 73);
    for (const Hits& h : {search(*index, queries, 4)}) {
        for (std::uint64_t id : h.ids) EXPECT_EQ(id, kMissingId);
        for (float d : h.dist) EXPECT_EQ(d, kInf);
    }
    EXPECT_EQ(index->compact(), kItems);
    EXPECT_EQ(index->stats().free_slots, kItems);
    const Hits after = search(*index, queries, 4);
    for (std::uint64_t id : after.ids) EXPECT_EQ(id, kMissingId);

    const std::vector<std::uint64_t> fresh = iota_ids(50, 10'000);
    ASSERT_TRUE(index->add(fresh.data(), vectors.data(), fresh.size(), 1).is_ok());
    EXPECT_EQ(index->stats().slots, kItems);
    const Catalogue cat{kDims, fresh, std::vector<float>(vectors.begin(), vectors.begin() + 50 * kDims)};
    const Hits hits = search(*index, queries, 10);
    expect_well_formed(hits);
    EXPECT_GE(recall(hits, cat.knn(Metric::kCosine, queries, 10)), 0.9);
}

// ---- exclusion -------------------------------------------------------------------------------

class IndexExclude : public ::testing::Test {
  protected:
    static constexpr std::size_t kDims = 16, kItems = 2000;
    void SetUp() override {
        const Clusters clusters(kDims, 20, 81);
        cat_ = {kDims, iota_ids(kItems, 100), clusters.sample(kItems, 82)};
        queries_ = clusters.sample(40, 83);
        index_ = create_or_fail(options_for(kDims, Metric::kL2));
        ASSERT_NE(index_, nullptr);
        ASSERT_TRUE(index_->add(cat_.ids.data(), cat_.vectors.data(), kItems, 1).is_ok());
    }
    // Every id except `keep` of them, spread over the catalogue.
    std::vector<std::uint64_t> exclude_all_but(std::size_t keep, std::uint32_t seed) const {
        std::vector<std::uint64_t> ids = cat_.ids;
        std::shuffle(ids.begin(), ids.end(), std::mt19937(seed));
        ids.resize(ids.size() - keep);
        return ids;
    }

    Catalogue cat_;
    std::vector<float> queries_;
    std::unique_ptr<Index> index_;
};

TEST_F(IndexExclude, ExcludedIdsAreNeverReturned) {
    const std::vector<std::uint64_t> excluded = exclude_all_but(kItems * 7 / 10, 84);
    const std::unordered_set<std::uint64_t> set(excluded.begin(), excluded.end());
    const Hits hits = search(*index_, queries_, 10, 64, excluded);
    expect_well_formed(hits);
    EXPECT_FALSE(returned_any(hits, set));
    for (std::uint64_t id : hits.ids) EXPECT_NE(id, kMissingId);
    EXPECT_GE(recall(hits, cat_.knn(Metric::kL2, queries_, 10, set)), 0.9);
}

// A filter (asked inside the walk) and an exclude list (hashed per call) of the same ids give
// the same answer; with both, their union is left out.
class SetFilter final : public SearchFilter {
  public:
    explicit SetFilter(std::unordered_set<std::uint64_t> ids) : ids_(std::move(ids)) {}
    bool rejects(std::uint64_t id) const override { return ids_.count(id) != 0; }

  private:
    std::unordered_set<std::uint64_t> ids_;
};

TEST_F(IndexExclude, FilteredIdsAreNeverReturnedAndMatchTheExcludeList) {
    const std::vector<std::uint64_t> excluded = exclude_all_but(kItems * 7 / 10, 88);
    const std::unordered_set<std::uint64_t> set(excluded.begin(), excluded.end());
    const SetFilter filter(set);
    Hits filtered;
    filtered.k = 10;
    filtered.ids.assign(queries_.size() / kDims * 10, 0);
    filtered.dist.assign(filtered.ids.size(), 0.0f);
    SearchParams p;
    p.ef = 64;
    p.filter = &filter;
    ASSERT_TRUE(index_->search(queries_.data(), queries_.size() / kDims, 10, p, filtered.ids.data(),
                               filtered.dist.data()).is_ok());
    expect_well_formed(filtered);
    EXPECT_FALSE(returned_any(filtered, set));
    EXPECT_EQ(filtered.ids, search(*index_, queries_, 10, 64, excluded).ids);

    const std::vector<std::uint64_t> first_half(excluded.begin(), excluded.begin() + excluded.size() / 2);
    const SetFilter second_half({excluded.begin() + excluded.size() / 2, excluded.end()});
    p.exclude = first_half.data();
    p.exclude_count = first_half.size();
    p.filter = &second_half;
    std::vector<std::uint64_t> both(filtered.ids.size());
    ASSERT_TRUE(index_->search(queries_.data(), queries_.size() / kDims, 10, p, both.data(),
                               filtered.dist.data()).is_ok());
    EXPECT_EQ(both, filtered.ids);
}

TEST_F(IndexExclude, ExcludingNinetyNinePercentStillReturnsTheNearestK) {
    // 20 eligible items: the graph walk finds few, the fallback scan must find all of them.
    const std::vector<std::uint64_t> excluded = exclude_all_but(20, 85);
    const std::unordered_set<std::uint64_t> set(excluded.begin(), excluded.end());
    const Hits hits = search(*index_, queries_, 10, 16, excluded);
    expect_well_formed(hits);
    EXPECT_FALSE(returned_any(hits, set));
    for (std::uint64_t id : hits.ids) EXPECT_NE(id, kMissingId);
    // With 20 candidates the answer is exact.
    EXPECT_EQ(recall(hits, cat_.knn(Metric::kL2, queries_, 10, set)), 1.0);
}

TEST_F(IndexExclude, ExcludingAllButFewReturnsThoseThenMissing) {
    const std::vector<std::uint64_t> excluded = exclude_all_but(3, 86);
    const std::unordered_set<std::uint64_t> set(excluded.begin(), excluded.end());
    const Hits hits = search(*index_, queries_, 10, 64, excluded);
    expect_well_formed(hits);
    const auto truth = cat_.knn(Metric::kL2, queries_, 10, set);
    for (std::size_t q = 0; q < hits.rows(); ++q) {
        ASSERT_EQ(truth[q].size(), 3u);
        EXPECT_TRUE(std::equal(truth[q].begin(), truth[q].end(), hits.row(q)));
        for (std::size_t i = 3; i < 10; ++i) EXPECT_EQ(hits.row(q)[i], kMissingId);
    }
}

TEST_F(IndexExclude, ExcludingEverythingReturnsOnlyMissing) {
    const Hits hits = search(*index_, queries_, 5, 64, cat_.ids);
    for (std::uint64_t id : hits.ids) EXPECT_EQ(id, kMissingId);
    for (float d : hits.dist) EXPECT_EQ(d, kInf);
}

TEST_F(IndexExclude, ExclusionAndRemovalCombine) {
    // Remove half of the survivors of the exclusion: neither set may appear, and the rest is
    // still found in full.
    const std::vector<std::uint64_t> excluded = exclude_all_but(30, 87);
    std::unordered_set<std::uint64_t> eligible(cat_.ids.begin(), cat_.ids.end());
    for (std::uint64_t id : excluded) eligible.erase(id);
    std::vector<std::uint64_t> removed(eligible.begin(), eligible.end());
    std::sort(removed.begin(), removed.end());
    removed.resize(15);
    ASSERT_EQ(index_->remove(removed.data(), removed.size(), nullptr), 15u);
    std::unordered_set<std::uint64_t> banned(excluded.begin(), excluded.end());
    banned.insert(removed.begin(), removed.end());
    const Hits hits = search(*index_, queries_, 20, 64, excluded);
    expect_well_formed(hits);
    EXPECT_FALSE(returned_any(hits, banned));
    for (std::size_t q = 0; q < hits.rows(); ++q) {
        EXPECT_NE(hits.row(q)[14], kMissingId) << "query " << q;
        EXPECT_EQ(hits.row(q)[15], kMissingId) << "query " << q;
    }
}

TEST_F(IndexExclude, UnknownAndDuplicateExcludedIdsAreHarmless) {
    std::vector<std::uint64_t> excluded = {cat_.ids[0], cat_.ids[0], 99'999'999, kMissingId, cat_.ids[1]};
    const Hits hits = search(*index_, queries_, 10, 64, excluded);
    expect_well_formed(hits);
    EXPECT_FALSE(returned_any(hits, {cat_.ids[0], cat_.ids[1]}));
    for (std::uint64_t id : hits.ids) EXPECT_NE(id, kMissingId);
}

// ---- small and empty indexes -----------------------------------------------------------------

TEST(Index, EmptyIndexReturnsOnlyMissing) {
    for (const Dtype dtype : {Dtype::kFloat32, Dtype::kInt8}) {
        auto index = create_or_fail(options_for(8, Metric::kCosine, dtype));
        ASSERT_NE(index, nullptr);
        EXPECT_EQ(index->size(), 0u);
        EXPECT_FALSE(index->contains(0));
        EXPECT_EQ(index->stats().levels, 0);
        EXPECT_EQ(index->compact(), 0u);
        const Hits hits = search(*index, std::vector<float>(3 * 8, 0.5f), 7);
        for (std::uint64_t id : hits.ids) EXPECT_EQ(id, kMissingId);
        for (float d : hits.dist) EXPECT_EQ(d, kInf);
    }
}

TEST(Index, FewerItemsThanKAreFilledWithMissing) {
    constexpr std::size_t kDims = 4;
    const std::vector<std::uint64_t> ids = {10, 20, 30, 40, 50};
    const std::vector<float> vectors = Clusters(kDims, 2, 91).sample(ids.size(), 92);
    auto index = create_or_fail(options_for(kDims));
    ASSERT_NE(index, nullptr);
    ASSERT_TRUE(index->add(ids.data(), vectors.data(), ids.size(), 1).is_ok());
    const Hits hits = search(*index, Clusters(kDims, 2, 91).sample(3, 93), 8, 1);
    expect_well_formed(hits);
    for (std::size_t q = 0; q < hits.rows(); ++q) {
        std::vector<std::uint64_t> found(hits.row(q), hits.row(q) + 5);
        std::sort(found.begin(), found.end());
        EXPECT_EQ(found, ids);
        for (std::size_t i = 5; i < 8; ++i) {
            EXPECT_EQ(hits.row(q)[i], kMissingId);
            EXPECT_EQ(hits.row_dist(q)[i], kInf);
        }
    }
}

TEST(Index, SearchWritesOneRowPerQuery) {
    constexpr std::size_t kDims = 12, kItems = 600;
    const Clusters clusters(kDims, 8, 101);
    const std::vector<float> vectors = clusters.sample(kItems, 102);
    const std::vector<std::uint64_t> ids = iota_ids(kItems);
    auto index = create_or_fail(options_for(kDims, Metric::kIp, Dtype::kInt8));
    ASSERT_NE(index, nullptr);
    ASSERT_TRUE(index->add(ids.data(), vectors.data(), kItems, 1).is_ok());
    const std::vector<float> queries = clusters.sample(20, 103);
    const Hits batch = search(*index, queries, 7);
    for (std::size_t q = 0; q < 20; ++q) {
        const Hits one = search(*index, row_of(queries, q, kDims), 7);
        EXPECT_TRUE(std::equal(one.ids.begin(), one.ids.end(), batch.row(q))) << "query " << q;
        EXPECT_TRUE(std::equal(one.dist.begin(), one.dist.end(), batch.row_dist(q))) << "query " << q;
    }
    // nq = 0 writes nothing and succeeds.
    SearchParams p;
    EXPECT_TRUE(index->search(queries.data(), 0, 7, p, nullptr, nullptr).is_ok());
}

TEST(Index, BoundaryIdsAreOrdinaryIds) {
    constexpr std::size_t kDims = 4;
    const std::vector<std::uint64_t> ids = {0, kMissingId - 1, 1ULL << 63};
    const std::vector<float> vectors = {1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0};
    auto index = create_or_fail(options_for(kDims));
    ASSERT_NE(index, nullptr);
    ASSERT_TRUE(index->add(ids.data(), vectors.data(), ids.size(), 1).is_ok());
    for (std::size_t i = 0; i < ids.size(); ++i) {
        EXPECT_TRUE(index->contains(ids[i]));
        EXPECT_EQ(search(*index, row_of(vectors, i, kDims), 1).ids[0], ids[i]);
    }
    EXPECT_EQ(index->remove(ids.data(), ids.size(), nullptr), ids.size());
}

TEST(Index, OneDimensionalIndexOrdersByValue) {
    const std::vector<std::uint64_t> ids = iota_ids(64);
    std::vector<float> vectors(64);
    for (std::size_t i = 0; i < 64; ++i) vectors[i] = static_cast<float>(i);
    auto index = create_or_fail(options_for(1));
    ASSERT_NE(index, nullptr);
    ASSERT_TRUE(index->add(ids.data(), vectors.data(), ids.size(), 1).is_ok());
    const Hits hits = search(*index, {20.2f}, 4, 64);
    EXPECT_EQ(hits.ids, (std::vector<std::uint64_t>{20, 21, 19, 22}));
}

TEST(Index, ZeroVectorsDoNotBreakCosine) {
    for (const Dtype dtype : {Dtype::kFloat32, Dtype::kInt8}) {
        constexpr std::size_t kDims = 8;
        std::vector<float> vectors = Clusters(kDims, 2, 111).sample(20, 112);
        std::fill(vectors.begin(), vectors.begin() + kDims, 0.0f);  // id 0 is the zero vector
        const std::vector<std::uint64_t> ids = iota_ids(20);
        auto index = create_or_fail(options_for(kDims, Metric::kCosine, dtype));
        ASSERT_NE(index, nullptr);
        ASSERT_TRUE(index->add(ids.data(), vectors.data(), ids.size(), 1).is_ok());
        const Hits hits = search(*index, std::vector<float>(kDims, 0.0f), 20, 64);
        expect_well_formed(hits);
        for (float d : hits.dist) EXPECT_NEAR(d, 1.0f, 1e-5f);  // cosine of a zero vector is defined as 1
    }
}

// ---- compaction and churn --------------------------------------------------------------------

TEST(Index, CompactKeepsRecallFreesSlotsAndReusesThem) {
    constexpr std::size_t kDims = 32, kItems = 5000, kK = 10;
    const Clusters clusters(kDims, 40, 121);
    Catalogue cat{kDims, iota_ids(kItems), clusters.sample(kItems, 122)};
    const std::vector<float> queries = clusters.sample(200, 123);
    auto index = create_or_fail(options_for(kDims, Metric::kCosine));
    ASSERT_NE(index, nullptr);
    ASSERT_TRUE(index->add(cat.ids.data(), cat.vectors.data(), kItems, 1).is_ok());

    std::vector<std::uint64_t> gone_list(cat.ids);
    std::shuffle(gone_list.begin(), gone_list.end(), std::mt19937(124));
    gone_list.resize(kItems / 10);
    ASSERT_EQ(index->remove(gone_list.data(), gone_list.size(), nullptr), gone_list.size());
    const std::unordered_set<std::uint64_t> gone(gone_list.begin(), gone_list.end());
    cat.remove(gone);
    EXPECT_EQ(index->stats().tombstones, gone.size());
    EXPECT_EQ(index->stats().free_slots, 0u);

    EXPECT_EQ(index->compact(), gone.size());
    IndexStats st = index->stats();
    EXPECT_EQ(st.live, kItems - gone.size());
    EXPECT_EQ(st.tombstones, 0u);
    EXPECT_EQ(st.free_slots, gone.size());
    EXPECT_EQ(st.slots, kItems);
    EXPECT_EQ(index->compact(), 0u);  // nothing left to repair

    Hits hits = search(*index, queries, kK);
    expect_well_formed(hits);
    EXPECT_FALSE(returned_any(hits, gone));
    EXPECT_GE(recall(hits, cat.knn(Metric::kCosine, queries, kK)), 0.9);

    // New items take the freed slots: the slot count does not grow.
    const std::vector<std::uint64_t> fresh = iota_ids(gone.size(), 1'000'000);
    const std::vector<float> fresh_vectors = clusters.sample(fresh.size(), 125);
    ASSERT_TRUE(index->add(fresh.data(), fresh_vectors.data(), fresh.size(), 1).is_ok());
    cat.add(fresh, fresh_vectors);
    st = index->stats();
    EXPECT_EQ(st.slots, kItems);
    EXPECT_EQ(st.free_slots, 0u);
    EXPECT_EQ(st.live, kItems);
    hits = search(*index, queries, kK);
    expect_well_formed(hits);
    EXPECT_FALSE(returned_any(hits, gone));
    EXPECT_GE(recall(hits, cat.knn(Metric::kCosine, queries, kK)), 0.9);

    // One more beyond the free list takes a fresh slot.
    const std::uint64_t extra = 2'000'000;
    ASSERT_TRUE(index->add(&extra, fresh_vectors.data(), 1, 1).is_ok());
    EXPECT_EQ(index->stats().slots, kItems + 1);
}

class IndexChurn : public ::testing::TestWithParam<RecallCase> {};

TEST_P(IndexChurn, HeavyChurnKeepsRecall) {
    const auto [metric, dtype, rerank] = GetParam();
    constexpr std::size_t kDims = 24, kItems = 2500, kRounds = 10, kK = 10;
    const Clusters clusters(kDims, 30, 131);
    Catalogue cat{kDims, iota_ids(kItems), clusters.sample(kItems, 132)};
    const std::vector<float> queries = clusters.sample(100, 133);
    auto index = create_or_fail(options_for(kDims, metric, dtype, rerank));
    ASSERT_NE(index, nullptr);
    ASSERT_TRUE(index->add(cat.ids.data(), cat.vectors.data(), kItems, 1).is_ok());

    std::mt19937 rng(134);
    std::uint64_t next_id = kItems;
    std::unordered_set<std::uint64_t> ever_removed;
    for (std::size_t round = 0; round < kRounds; ++round) {
        SCOPED_TRACE("round " + std::to_string(round));
        // Remove a random 20% of the live items.
        std::vector<std::uint64_t> gone_list(cat.ids);
        std::shuffle(gone_list.begin(), gone_list.end(), rng);
        gone_list.resize(cat.ids.size() / 5);
        ASSERT_EQ(index->remove(gone_list.data(), gone_list.size(), nullptr), gone_list.size());
        const std::unordered_set<std::uint64_t> gone(gone_list.begin(), gone_list.end());
        cat.remove(gone);
        ever_removed.insert(gone.begin(), gone.end());

        // As many new items, and every tenth survivor moved to a new point.
        const std::size_t survivors = cat.ids.size();
        std::vector<std::uint64_t> add_ids = iota_ids(gone.size(), next_id);
        next_id += gone.size();
        std::vector<float> add_vectors = clusters.sample(gone.size(), 1000 + static_cast<std::uint32_t>(round));
        const std::vector<float> moved = clusters.sample(survivors / 10, 2000 + static_cast<std::uint32_t>(round));
        for (std::size_t i = 0; i < survivors / 10; ++i) {
            const std::size_t at = i * 10;
            add_ids.push_back(cat.ids[at]);
            add_vectors.insert(add_vectors.end(), moved.begin() + static_cast<std::ptrdiff_t>(i * kDims),
                               moved.begin() + static_cast<std::ptrdiff_t>((i + 1) * kDims));
            std::copy_n(moved.begin() + static_cast<std::ptrdiff_t>(i * kDims), kDims,
                        cat.vectors.begin() + static_cast<std::ptrdiff_t>(at * kDims));
        }
        const auto new_ids_end = add_ids.begin() + static_cast<std::ptrdiff_t>(gone.size());
        const auto new_vectors_end = add_vectors.begin() + static_cast<std::ptrdiff_t>(gone.size() * kDims);
        cat.add(std::vector<std::uint64_t>(add_ids.begin(), new_ids_end),
                std::vector<float>(add_vectors.begin(), new_vectors_end));
        const Status added = index->add(add_ids.data(), add_vectors.data(), add_ids.size(), 2);
        ASSERT_TRUE(added.is_ok()) << added.message();
        EXPECT_EQ(index->size(), kItems);

        Hits hits = search(*index, queries, kK);
        expect_well_formed(hits);
        EXPECT_FALSE(returned_any(hits, ever_removed));
        EXPECT_GE(recall(hits, cat.knn(metric, queries, kK)), 0.9);

        index->compact();
        const IndexStats st = index->stats();
        EXPECT_EQ(st.tombstones, 0u);
        EXPECT_EQ(st.live, kItems);
        // Each round's new items reuse the slots the previous compaction freed.
        EXPECT_LE(st.slots, kItems + kItems / 5 + kItems / 10 + 1);
        hits = search(*index, queries, kK);
        expect_well_formed(hits);
        EXPECT_FALSE(returned_any(hits, ever_removed));
        EXPECT_GE(recall(hits, cat.knn(metric, queries, kK)), 0.9);
    }

    // With the narrowest beam (ef = k) graph quality shows: the churned and repaired graph is
    // not much worse than one built afresh from the same items.
    auto fresh = create_or_fail(options_for(kDims, metric, dtype, rerank));
    ASSERT_NE(fresh, nullptr);
    ASSERT_TRUE(fresh->add(cat.ids.data(), cat.vectors.data(), cat.ids.size(), 1).is_ok());
    const auto truth = cat.knn(metric, queries, kK);
    EXPECT_GE(recall(search(*index, queries, kK, kK), truth), recall(search(*fresh, queries, kK, kK), truth) - 0.08);
}

INSTANTIATE_TEST_SUITE_P(Configurations, IndexChurn,
                         ::testing::Values(RecallCase{Metric::kL2, Dtype::kFloat32, false},
                                           RecallCase{Metric::kCosine, Dtype::kInt8, true}),
                         case_name);

// ---- bad input -------------------------------------------------------------------------------

class IndexBadInput : public ::testing::Test {
  protected:
    static constexpr std::size_t kDims = 8, kItems = 200;
    void SetUp() override {
        vectors_ = Clusters(kDims, 4, 141).sample(kItems, 142);
        ids_ = iota_ids(kItems);
        index_ = create_or_fail(options_for(kDims, Metric::kL2, Dtype::kInt8, true));
        ASSERT_NE(index_, nullptr);
        ASSERT_TRUE(index_->add(ids_.data(), vectors_.data(), kItems, 1).is_ok());
        before_ = index_->stats();
    }
    // The rejected call changed nothing: same counts, and every item still finds itself.
    void expect_unchanged() const {
        const IndexStats st = index_->stats();
        EXPECT_EQ(st.live, before_.live);
        EXPECT_EQ(st.slots, before_.slots);
        EXPECT_EQ(st.tombstones, before_.tombstones);
        EXPECT_EQ(index_->size(), kItems);
        const Hits self = search(*index_, vectors_, 1);
        for (std::size_t i = 0; i < kItems; ++i) EXPECT_EQ(self.ids[i], ids_[i]);
    }

    std::vector<float> vectors_;
    std::vector<std::uint64_t> ids_;
    std::unique_ptr<Index> index_;
    IndexStats before_;
};

TEST_F(IndexBadInput, NonFiniteVectorsAreRejectedAndChangeNothing) {
    for (const float bad : {std::numeric_limits<float>::quiet_NaN(), kInf, -kInf}) {
        // A batch of new ids and updates of existing ones, with one bad value in the last row.
        const std::vector<std::uint64_t> batch = {5000, 3, 5001, 4};
        std::vector<float> rows = Clusters(kDims, 4, 141).sample(batch.size(), 143);
        rows[3 * kDims + 5] = bad;
        const Status st = index_->add(batch.data(), rows.data(), batch.size(), 1);
        EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st.message();
        EXPECT_FALSE(index_->contains(5000));
        EXPECT_FALSE(index_->contains(5001));
        expect_unchanged();
    }
}

TEST_F(IndexBadInput, DuplicateIdsInOneAddAreRejected) {
    const std::vector<std::uint64_t> batch = {6000, 6001, 6000};
    const std::vector<float> rows = Clusters(kDims, 4, 141).sample(batch.size(), 144);
    const Status st = index_->add(batch.data(), rows.data(), batch.size(), 1);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st.message();
    EXPECT_FALSE(index_->contains(6000));
    EXPECT_FALSE(index_->contains(6001));
    expect_unchanged();
}

TEST_F(IndexBadInput, ReservedIdIsRejected) {
    const std::vector<std::uint64_t> batch = {7000, kMissingId};
    const std::vector<float> rows = Clusters(kDims, 4, 141).sample(batch.size(), 145);
    const Status st = index_->add(batch.data(), rows.data(), batch.size(), 1);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st.message();
    EXPECT_FALSE(index_->contains(7000));
    EXPECT_FALSE(index_->contains(kMissingId));
    expect_unchanged();
}

TEST_F(IndexBadInput, ZeroKAndZeroEfAreRejected) {
    std::uint64_t id = 0;
    float dist = 0.0f;
    SearchParams p;
    Status st = index_->search(vectors_.data(), 1, 0, p, &id, &dist);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st.message();
    p.ef = 0;
    st = index_->search(vectors_.data(), 1, 1, p, &id, &dist);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st.message();
    // ef below k is fine: the beam widens to k.
    p.ef = 1;
    const Hits hits = search(*index_, row_of(vectors_, 0, kDims), 10, 1);
    expect_well_formed(hits);
    for (std::uint64_t x : hits.ids) EXPECT_NE(x, kMissingId);
}

TEST_F(IndexBadInput, NonFiniteQueriesAreRejected) {
    std::vector<float> queries = Clusters(kDims, 4, 141).sample(3, 146);
    queries[2 * kDims] = std::numeric_limits<float>::quiet_NaN();
    std::vector<std::uint64_t> ids(3 * 5);
    std::vector<float> dist(3 * 5);
    const Status st = index_->search(queries.data(), 3, 5, SearchParams{}, ids.data(), dist.data());
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st.message();
}

TEST(IndexOptionsValidation, BadOptionsAreRejected) {
    const auto rejected = [](const char* what, auto mutate) {
        IndexOptions o = options_for(8);
        mutate(o);
        auto r = Index::create(o);
        EXPECT_FALSE(r.is_ok()) << what;
        if (!r.is_ok()) {
            EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << what;
            EXPECT_FALSE(r.status().message().empty()) << what;
        }
    };
    rejected("dims 0", [](IndexOptions& o) { o.dims = 0; });
    rejected("dims 65537", [](IndexOptions& o) { o.dims = 65537; });
    rejected("M 0", [](IndexOptions& o) { o.M = 0; });
    rejected("M 1", [](IndexOptions& o) { o.M = 1; });
    rejected("M 129", [](IndexOptions& o) { o.M = 129; });
    rejected("ef_construction 0", [](IndexOptions& o) { o.ef_construction = 0; });
    rejected("rerank with float32", [](IndexOptions& o) {
        o.dtype = Dtype::kFloat32;
        o.rerank = true;
    });
    rejected("negative compact_threshold", [](IndexOptions& o) { o.compact_threshold = -0.1; });
    rejected("NaN compact_threshold", [](IndexOptions& o) { o.compact_threshold = std::nan(""); });
    rejected("infinite compact_threshold", [](IndexOptions& o) { o.compact_threshold = HUGE_VAL; });
}

TEST(IndexOptionsValidation, BoundaryOptionsAreAccepted) {
    const auto accepted = [](const char* what, auto mutate) {
        IndexOptions o = options_for(8);
        mutate(o);
        auto r = Index::create(o);
        ASSERT_TRUE(r.is_ok()) << what << ": " << r.status().message();
        EXPECT_EQ(r.value()->options().dims, o.dims) << what;
        EXPECT_EQ(r.value()->options().M, o.M) << what;
    };
    accepted("dims 1", [](IndexOptions& o) { o.dims = 1; });
    accepted("dims 65536", [](IndexOptions& o) { o.dims = 65536; });
    accepted("M 2", [](IndexOptions& o) { o.M = 2; });
    accepted("M 128", [](IndexOptions& o) { o.M = 128; });
    accepted("ef_construction 1", [](IndexOptions& o) { o.ef_construction = 1; });
    accepted("int8 with rerank", [](IndexOptions& o) {
        o.dtype = Dtype::kInt8;
        o.rerank = true;
    });
    accepted("background compaction on", [](IndexOptions& o) { o.compact_threshold = 0.5; });
}

// ---- what distances mean ---------------------------------------------------------------------

class IndexDistances : public ::testing::TestWithParam<Metric> {
  protected:
    static constexpr std::size_t kDims = 20, kItems = 400;
    // Every returned distance against the double-precision definition, within `tol` times the
    // size of the terms the distance is made of (|q|^2 + |x|^2 for l2, |q| |x| for ip, 1 for
    // cosine): float32 rounding or int8 quantisation error scales with those, not with the result.
    void check(Dtype dtype, bool rerank, double tol) {
        const Metric metric = GetParam();
        const Clusters clusters(kDims, 6, 151);
        const Catalogue cat{kDims, iota_ids(kItems), clusters.sample(kItems, 152)};
        const std::vector<float> queries = clusters.sample(30, 153);
        auto index = create_or_fail(options_for(kDims, metric, dtype, rerank));
        ASSERT_NE(index, nullptr);
        ASSERT_TRUE(index->add(cat.ids.data(), cat.vectors.data(), kItems, 1).is_ok());
        const Hits hits = search(*index, queries, 20, 400);
        expect_well_formed(hits);
        for (std::size_t q = 0; q < hits.rows(); ++q) {
            const float* qv = queries.data() + q * kDims;
            for (std::size_t i = 0; i < hits.k; ++i) {
                const std::uint64_t id = hits.row(q)[i];
                ASSERT_LT(id, kItems);
                const float* xv = cat.vectors.data() + id * kDims;
                const double want = reference_distance(metric, qv, xv, kDims);
                const double qq = 1.0 - reference_distance(Metric::kIp, qv, qv, kDims);
                const double xx = 1.0 - reference_distance(Metric::kIp, xv, xv, kDims);
                const double scale = metric == Metric::kL2 ? qq + xx : metric == Metric::kIp ? std::sqrt(qq * xx) : 1.0;
                EXPECT_NEAR(hits.row_dist(q)[i], want, tol * scale) << "query " << q << " rank " << i << " id " << id;
            }
        }
    }
};

TEST_P(IndexDistances, Float32DistancesFollowTheMetricDefinition) { check(Dtype::kFloat32, false, 1e-5); }

TEST_P(IndexDistances, RerankedInt8DistancesAreExact) { check(Dtype::kInt8, true, 1e-5); }

// Per-vector symmetric int8 codes: about 1% of the terms' size, never more than a few percent.
TEST_P(IndexDistances, Int8DistancesApproximateTheMetricDefinition) { check(Dtype::kInt8, false, 2e-2); }

INSTANTIATE_TEST_SUITE_P(AllMetrics, IndexDistances, ::testing::Values(Metric::kCosine, Metric::kIp, Metric::kL2),
                         [](const ::testing::TestParamInfo<Metric>& info) { return std::string(metric_name(info.param)); });

TEST(Index, Float32SearchWithWideBeamIsExact) {
    // ef = catalogue size on a small index: the answer equals brute force, for every metric.
    for (const Metric metric : {Metric::kCosine, Metric::kIp, Metric::kL2}) {
        SCOPED_TRACE(metric_name(metric));
        constexpr std::size_t kDims = 10, kItems = 300;
        const Clusters clusters(kDims, 5, 161);
        const Catalogue cat{kDims, iota_ids(kItems), clusters.sample(kItems, 162)};
        const std::vector<float> queries = clusters.sample(30, 163);
        auto index = create_or_fail(options_for(kDims, metric));
        ASSERT_NE(index, nullptr);
        ASSERT_TRUE(index->add(cat.ids.data(), cat.vectors.data(), kItems, 1).is_ok());
        const Hits hits = search(*index, queries, 10, kItems);
        const auto truth = cat.knn(metric, queries, 10);
        for (std::size_t q = 0; q < hits.rows(); ++q)
            EXPECT_TRUE(std::equal(truth[q].begin(), truth[q].end(), hits.row(q))) << "query " << q;
    }
}

// ---- bookkeeping -----------------------------------------------------------------------------

TEST(Index, StatsTrackLiveTombstonesAndSlots) {
    constexpr std::size_t kDims = 8;
    const std::vector<float> vectors = Clusters(kDims, 4, 171).sample(100, 172);
    const std::vector<std::uint64_t> ids = iota_ids(100);
    auto index = create_or_fail(options_for(kDims, Metric::kL2, Dtype::kInt8));
    ASSERT_NE(index, nullptr);
    ASSERT_TRUE(index->add(ids.data(), vectors.data(), 100, 1).is_ok());
    IndexStats st = index->stats();
    EXPECT_EQ(st.live, 100u);
    EXPECT_EQ(st.slots, 100u);
    EXPECT_EQ(st.tombstones, 0u);
    EXPECT_EQ(st.free_slots, 0u);
    EXPECT_GE(st.levels, 1);
    EXPECT_GT(st.memory_bytes, 0u);
    EXPECT_FALSE(st.isa.empty());

    ASSERT_EQ(index->remove(ids.data(), 10, nullptr), 10u);     // 10 tombstones
    ASSERT_TRUE(index->add(ids.data() + 50, vectors.data(), 5, 1).is_ok());  // 5 updates: 5 more
    st = index->stats();
    EXPECT_EQ(st.live, 90u);
    EXPECT_EQ(st.slots, 105u);
    EXPECT_EQ(st.tombstones, 15u);
    EXPECT_EQ(index->compact(), 15u);
    st = index->stats();
    EXPECT_EQ(st.tombstones, 0u);
    EXPECT_EQ(st.free_slots, 15u);
    EXPECT_EQ(st.slots, 105u);
    EXPECT_EQ(index->size(), 90u);
}

TEST(Index, ContainsFollowsAddsAndRemoves) {
    constexpr std::size_t kDims = 4;
    const std::vector<float> vectors = Clusters(kDims, 2, 181).sample(3, 182);
    const std::vector<std::uint64_t> ids = {11, 22, 33};
    auto index = create_or_fail(options_for(kDims));
    ASSERT_NE(index, nullptr);
    EXPECT_FALSE(index->contains(11));
    ASSERT_TRUE(index->add(ids.data(), vectors.data(), 3, 1).is_ok());
    EXPECT_TRUE(index->contains(11) && index->contains(22) && index->contains(33));
    EXPECT_FALSE(index->contains(44));
    ASSERT_EQ(index->remove(&ids[1], 1, nullptr), 1u);
    EXPECT_FALSE(index->contains(22));
    ASSERT_TRUE(index->add(&ids[1], vectors.data(), 1, 1).is_ok());  // an id can come back
    EXPECT_TRUE(index->contains(22));
    EXPECT_EQ(index->size(), 3u);
    EXPECT_EQ(search(*index, row_of(vectors, 0, kDims), 3).ids.size(), 3u);
}

}  // namespace
}  // namespace recserve::ann
