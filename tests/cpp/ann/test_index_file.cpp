// Index::save / Index::load and the file format of index_file.hpp: round trips give identical
// answers (fresh, with tombstones, with free slots), a loaded index keeps working, and every
// damaged file (truncated, padded, a byte flipped, a field rewritten behind valid checksums) is
// kCorrupt, never a crash.
#include <gtest/gtest.h>
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <unordered_set>
#include <vector>

#include "recserve/ann/index.hpp"
#include "recserve/ann/index_file.hpp"
#include "recserve/base/crc32c.hpp"

namespace recserve::ann {
namespace {

namespace fs = std::filesystem;

// Seeded Gaussian clusters: the centres depend on (dims, seed) only, the points on `stream`.
std::vector<float> clustered(std::size_t n, std::size_t dims, std::uint32_t stream, std::uint32_t seed = 1) {
    std::mt19937 centre_rng(seed);
    std::normal_distribution<float> unit(0.0f, 1.0f);
    std::vector<float> centres(16 * dims);
    for (float& c : centres) c = unit(centre_rng);
    std::mt19937 rng(stream);
    std::normal_distribution<float> noise(0.0f, 0.8f);
    std::uniform_int_distribution<std::size_t> pick(0, 15);
    std::vector<float> out(n * dims);
    for (std::size_t i = 0; i < n; ++i) {
        const float* c = centres.data() + pick(rng) * dims;
        for (std::size_t d = 0; d < dims; ++d) out[i * dims + d] = c[d] + noise(rng);
    }
    return out;
}

std::vector<std::uint64_t> iota_ids(std::size_t n, std::uint64_t first = 0) {
    std::vector<std::uint64_t> ids(n);
    for (std::size_t i = 0; i < n; ++i) ids[i] = first + i;
    return ids;
}

std::unique_ptr<Index> create_or_fail(const IndexOptions& o) {
    auto r = Index::create(o);
    if (!r.is_ok()) {
        ADD_FAILURE() << "Index::create: " << r.status().message();
        return nullptr;
    }
    return std::move(r).value();
}

std::unique_ptr<Index> load_or_fail(const fs::path& path) {
    auto r = Index::load(path.string());
    if (!r.is_ok()) {
        ADD_FAILURE() << "Index::load: " << r.status().message();
        return nullptr;
    }
    return std::move(r).value();
}

struct Hits {
    std::vector<std::uint64_t> ids;
    std::vector<float> dist;
};

Hits search(const Index& index, const std::vector<float>& queries, std::size_t k, std::size_t ef = 64,
            const std::vector<std::uint64_t>& exclude = {}) {
    const std::size_t nq = queries.size() / index.options().dims;
    Hits h{std::vector<std::uint64_t>(nq * k), std::vector<float>(nq * k)};
    SearchParams p;
    p.ef = ef;
    p.exclude = exclude.data();
    p.exclude_count = exclude.size();
    const Status st = index.search(queries.data(), nq, k, p, h.ids.data(), h.dist.data());
    EXPECT_TRUE(st.is_ok()) << st.message();
    return h;
}

std::vector<char> read_bytes(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const fs::path& path, const char* data, std::size_t n) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(data, static_cast<std::streamsize>(n));
}

// Rewrites both checksums of an index file image so that only its structure is wrong.
void reseal(std::vector<char>& file) {
    IndexFileHeader h;
    std::memcpy(&h, file.data(), sizeof(h));
    h.body_bytes = file.size() - sizeof(h);
    h.body_crc = crc32c(file.data() + sizeof(h), file.size() - sizeof(h));
    h.header_crc = crc32c(&h, offsetof(IndexFileHeader, header_crc));
    std::memcpy(file.data(), &h, sizeof(h));
}

// A private directory under the system temp dir, removed after the test.
class IndexFile : public ::testing::Test {
  protected:
    void SetUp() override {
        const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
        std::string name = std::string("recserve_ann_") + std::to_string(::getpid()) + "_" + info->test_suite_name() + "_" +
                           info->name();
        std::replace(name.begin(), name.end(), '/', '_');
        dir_ = fs::temp_directory_path() / name;
        fs::remove_all(dir_);
        fs::create_directories(dir_);
    }
    void TearDown() override {
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }
    fs::path path(const std::string& name) const { return dir_ / name; }

    // Loads `bytes` written to a scratch file; the status of the load.
    Status load_image(const std::vector<char>& bytes, std::size_t n) {
        const fs::path p = path("image.rsvann");
        fs::remove(p);  // a new file each time: ext4 flushes a file truncated and rewritten in place
        write_bytes(p, bytes.data(), n);
        auto r = Index::load(p.string());
        return r.is_ok() ? Status::ok() : r.status();
    }

    fs::path dir_;
};

// Searches, stats and options of two indexes agree exactly.
void expect_same_index(const Index& a, const Index& b, const std::vector<float>& queries,
                       const std::vector<std::uint64_t>& exclude) {
    for (const std::size_t k : {1u, 10u, 50u}) {
        const Hits ha = search(a, queries, k);
        const Hits hb = search(b, queries, k);
        EXPECT_EQ(ha.ids, hb.ids) << "k " << k;
        EXPECT_EQ(ha.dist, hb.dist) << "k " << k;
    }
    const Hits ea = search(a, queries, 10, 32, exclude);
    const Hits eb = search(b, queries, 10, 32, exclude);
    EXPECT_EQ(ea.ids, eb.ids);
    EXPECT_EQ(ea.dist, eb.dist);

    const IndexStats sa = a.stats(), sb = b.stats();
    EXPECT_EQ(sa.live, sb.live);
    EXPECT_EQ(sa.slots, sb.slots);
    EXPECT_EQ(sa.tombstones, sb.tombstones);
    EXPECT_EQ(sa.free_slots, sb.free_slots);
    EXPECT_EQ(sa.levels, sb.levels);
    EXPECT_EQ(a.size(), b.size());
    const IndexOptions& oa = a.options();
    const IndexOptions& ob = b.options();
    EXPECT_EQ(oa.dims, ob.dims);
    EXPECT_EQ(oa.metric, ob.metric);
    EXPECT_EQ(oa.dtype, ob.dtype);
    EXPECT_EQ(oa.rerank, ob.rerank);
    EXPECT_EQ(oa.M, ob.M);
    EXPECT_EQ(oa.ef_construction, ob.ef_construction);
    EXPECT_EQ(oa.seed, ob.seed);
    EXPECT_EQ(oa.compact_threshold, ob.compact_threshold);
}

// ---- round trips -----------------------------------------------------------------------------

using Format = std::tuple<Metric, Dtype, bool>;

class IndexFileRoundTrip : public IndexFile, public ::testing::WithParamInterface<Format> {};

TEST_P(IndexFileRoundTrip, LoadedIndexAnswersIdentically) {
    const auto [metric, dtype, rerank] = GetParam();
    constexpr std::size_t kDims = 16, kItems = 1500;
    IndexOptions o;
    o.dims = kDims;
    o.metric = metric;
    o.dtype = dtype;
    o.rerank = rerank;
    o.M = 8;
    o.seed = 99;
    o.compact_threshold = 0.0;
    auto index = create_or_fail(o);
    ASSERT_NE(index, nullptr);
    const std::vector<std::uint64_t> ids = iota_ids(kItems, 500);
    const std::vector<float> vectors = clustered(kItems, kDims, 2);
    ASSERT_TRUE(index->add(ids.data(), vectors.data(), kItems, 1).is_ok());
    const std::vector<float> queries = clustered(60, kDims, 3);
    const std::vector<std::uint64_t> exclude(ids.begin(), ids.begin() + 1200);

    const auto round_trip = [&](const std::string& stage) {
        SCOPED_TRACE(stage);
        const fs::path p = path(stage + ".rsvann");
        const Status saved = index->save(p.string());
        ASSERT_TRUE(saved.is_ok()) << saved.message();
        EXPECT_FALSE(fs::exists(p.string() + ".tmp"));
        auto loaded = load_or_fail(p);
        ASSERT_NE(loaded, nullptr);
        expect_same_index(*index, *loaded, queries, exclude);
        for (std::size_t i = 0; i < kItems; i += 7) EXPECT_EQ(loaded->contains(ids[i]), index->contains(ids[i])) << ids[i];
    };

    round_trip("fresh");

    // Tombstones: removed ids and the old versions of updated ones (over 10% of the live items;
    // the loaded index keeps compact_threshold 0, so nothing repairs them behind the test's back).
    std::vector<std::uint64_t> gone;
    for (std::size_t i = 0; i < kItems; i += 9) gone.push_back(ids[i]);
    ASSERT_EQ(index->remove(gone.data(), gone.size(), nullptr), gone.size());
    const std::vector<std::uint64_t> moved = {ids[1], ids[2], ids[3]};
    const std::vector<float> moved_to = clustered(3, kDims, 4);
    ASSERT_TRUE(index->add(moved.data(), moved_to.data(), moved.size(), 1).is_ok());
    ASSERT_GT(index->stats().tombstones, 0u);
    round_trip("tombstones");

    // Free slots after compaction, then some of them reused.
    index->compact();
    ASSERT_GT(index->stats().free_slots, 0u);
    round_trip("compacted");
    const std::vector<std::uint64_t> fresh = iota_ids(40, 100'000);
    const std::vector<float> fresh_vectors = clustered(fresh.size(), kDims, 5);
    ASSERT_TRUE(index->add(fresh.data(), fresh_vectors.data(), fresh.size(), 1).is_ok());
    round_trip("reused");
}

INSTANTIATE_TEST_SUITE_P(Formats, IndexFileRoundTrip,
                         ::testing::Values(Format{Metric::kL2, Dtype::kFloat32, false},
                                           Format{Metric::kCosine, Dtype::kFloat32, false},
                                           Format{Metric::kIp, Dtype::kInt8, false},
                                           Format{Metric::kCosine, Dtype::kInt8, false},
                                           Format{Metric::kL2, Dtype::kInt8, true},
                                           Format{Metric::kCosine, Dtype::kInt8, true}),
                         [](const ::testing::TestParamInfo<Format>& info) {
                             return std::string(metric_name(std::get<0>(info.param))) + "_" +
                                    dtype_name(std::get<1>(info.param)) + (std::get<2>(info.param) ? "_rerank" : "");
                         });

TEST_F(IndexFile, EmptyIndexRoundTrips) {
    IndexOptions o;
    o.dims = 5;
    o.compact_threshold = 0.0;
    auto index = create_or_fail(o);
    ASSERT_NE(index, nullptr);
    ASSERT_TRUE(index->save(path("empty.rsvann").string()).is_ok());
    auto loaded = load_or_fail(path("empty.rsvann"));
    ASSERT_NE(loaded, nullptr);
    EXPECT_EQ(loaded->size(), 0u);
    EXPECT_EQ(loaded->stats().slots, 0u);
    const Hits h = search(*loaded, std::vector<float>(5, 1.0f), 3);
    for (std::uint64_t id : h.ids) EXPECT_EQ(id, kMissingId);
    const std::vector<std::uint64_t> ids = iota_ids(30);
    const std::vector<float> vectors = clustered(30, 5, 6);
    ASSERT_TRUE(loaded->add(ids.data(), vectors.data(), ids.size(), 1).is_ok());
    EXPECT_EQ(search(*loaded, std::vector<float>(vectors.begin(), vectors.begin() + 5), 1).ids[0], 0u);
}

TEST_F(IndexFile, LoadedIndexAcceptsFurtherAddsAndRemoves) {
    constexpr std::size_t kDims = 16, kItems = 2000;
    IndexOptions o;
    o.dims = kDims;
    o.metric = Metric::kCosine;
    o.dtype = Dtype::kInt8;
    o.rerank = true;
    o.compact_threshold = 0.0;
    auto index = create_or_fail(o);
    ASSERT_NE(index, nullptr);
    std::vector<std::uint64_t> ids = iota_ids(kItems);
    std::vector<float> vectors = clustered(kItems, kDims, 7);
    ASSERT_TRUE(index->add(ids.data(), vectors.data(), kItems, 1).is_ok());
    std::vector<std::uint64_t> gone(ids.begin(), ids.begin() + 300);
    ASSERT_EQ(index->remove(gone.data(), gone.size(), nullptr), gone.size());
    index->compact();
    ASSERT_TRUE(index->save(path("a.rsvann").string()).is_ok());
    index.reset();

    auto loaded = load_or_fail(path("a.rsvann"));
    ASSERT_NE(loaded, nullptr);
    ASSERT_EQ(loaded->stats().free_slots, 300u);
    // 310 new items: 300 take the free slots, 10 take new ones.
    const std::vector<std::uint64_t> fresh = iota_ids(310, 50'000);
    const std::vector<float> fresh_vectors = clustered(fresh.size(), kDims, 8);
    ASSERT_TRUE(loaded->add(fresh.data(), fresh_vectors.data(), fresh.size(), 1).is_ok());
    EXPECT_EQ(loaded->stats().slots, kItems + 10);
    EXPECT_EQ(loaded->size(), kItems + 10);
    // Each new item finds itself.
    const Hits self = search(*loaded, fresh_vectors, 1);
    std::size_t found = 0;
    for (std::size_t i = 0; i < fresh.size(); ++i) found += self.ids[i] == fresh[i];
    EXPECT_GE(found, fresh.size() * 98 / 100);

    // Remove more (old and new ids), compact, and nothing removed comes back.
    std::vector<std::uint64_t> more(ids.begin() + 300, ids.begin() + 600);
    more.insert(more.end(), fresh.begin(), fresh.begin() + 50);
    ASSERT_EQ(loaded->remove(more.data(), more.size(), nullptr), more.size());
    gone.insert(gone.end(), more.begin(), more.end());
    const std::unordered_set<std::uint64_t> gone_set(gone.begin(), gone.end());
    const std::vector<float> queries = clustered(100, kDims, 9);
    Hits h = search(*loaded, queries, 50, 128);
    for (std::uint64_t id : h.ids) EXPECT_FALSE(gone_set.count(id)) << id;
    loaded->compact();
    h = search(*loaded, queries, 50, 128);
    for (std::uint64_t id : h.ids) {
        EXPECT_FALSE(gone_set.count(id)) << id;
        EXPECT_NE(id, kMissingId);
    }
    // And it saves and loads again.
    ASSERT_TRUE(loaded->save(path("b.rsvann").string()).is_ok());
    auto again = load_or_fail(path("b.rsvann"));
    ASSERT_NE(again, nullptr);
    expect_same_index(*loaded, *again, queries, {});
}

// Regression: the file once did not record compact_threshold, so every loaded index ran the
// background compactor at the default 0.1 and could start repairing right after load.
TEST_F(IndexFile, LoadedIndexKeepsItsCompactThreshold) {
    IndexOptions o;
    o.dims = 4;
    o.compact_threshold = 0.0;
    auto index = create_or_fail(o);
    ASSERT_NE(index, nullptr);
    const std::vector<std::uint64_t> ids = iota_ids(100);
    const std::vector<float> vectors = clustered(100, 4, 12);
    ASSERT_TRUE(index->add(ids.data(), vectors.data(), ids.size(), 1).is_ok());
    ASSERT_EQ(index->remove(ids.data(), 50, nullptr), 50u);
    ASSERT_TRUE(index->save(path("t.rsvann").string()).is_ok());
    auto loaded = load_or_fail(path("t.rsvann"));
    ASSERT_NE(loaded, nullptr);
    EXPECT_EQ(loaded->options().compact_threshold, 0.0);
    EXPECT_EQ(loaded->stats().tombstones, 50u);
}

TEST_F(IndexFile, LoadCanOverrideTheCompactThreshold) {
    IndexOptions o;
    o.dims = 4;
    o.compact_threshold = 0.25;
    auto index = create_or_fail(o);
    ASSERT_NE(index, nullptr);
    ASSERT_TRUE(index->save(path("t.rsvann").string()).is_ok());
    index.reset();

    auto saved = Index::load(path("t.rsvann").string());
    ASSERT_TRUE(saved.is_ok()) << saved.status().message();
    EXPECT_EQ(saved.value()->options().compact_threshold, 0.25);
    auto off = Index::load(path("t.rsvann").string(), 0.0);
    ASSERT_TRUE(off.is_ok()) << off.status().message();
    EXPECT_EQ(off.value()->options().compact_threshold, 0.0);
    auto other = Index::load(path("t.rsvann").string(), 0.5);
    ASSERT_TRUE(other.is_ok()) << other.status().message();
    EXPECT_EQ(other.value()->options().compact_threshold, 0.5);
    // A bad override is refused (the file itself is fine).
    EXPECT_FALSE(Index::load(path("t.rsvann").string(), -1.0).is_ok());
}

TEST_F(IndexFile, SaveReplacesAnExistingFile) {
    IndexOptions o;
    o.dims = 4;
    o.compact_threshold = 0.0;
    auto index = create_or_fail(o);
    ASSERT_NE(index, nullptr);
    const fs::path p = path("x.rsvann");
    ASSERT_TRUE(index->save(p.string()).is_ok());
    const std::vector<std::uint64_t> ids = iota_ids(10);
    const std::vector<float> vectors = clustered(10, 4, 10);
    ASSERT_TRUE(index->add(ids.data(), vectors.data(), ids.size(), 1).is_ok());
    ASSERT_TRUE(index->save(p.string()).is_ok());
    EXPECT_FALSE(fs::exists(p.string() + ".tmp"));
    auto loaded = load_or_fail(p);
    ASSERT_NE(loaded, nullptr);
    EXPECT_EQ(loaded->size(), 10u);
}

TEST_F(IndexFile, SaveIntoAMissingDirectoryIsAnIoError) {
    IndexOptions o;
    o.dims = 4;
    o.compact_threshold = 0.0;
    auto index = create_or_fail(o);
    ASSERT_NE(index, nullptr);
    const Status st = index->save(path("no/such/dir/x.rsvann").string());
    EXPECT_EQ(st.code(), StatusCode::kIoError) << st.message();
}

// ---- damaged files ---------------------------------------------------------------------------

// A small index file with every section present: upper levels, tombstones, free slots and
// float32 re-rank copies. Returns its bytes.
class DamagedIndexFile : public IndexFile {
  protected:
    static constexpr std::size_t kDims = 4, kM = 4;
    void SetUp() override {
        IndexFile::SetUp();
        IndexOptions o;
        o.dims = kDims;
        o.metric = Metric::kL2;
        o.dtype = Dtype::kInt8;
        o.rerank = true;
        o.M = kM;
        o.ef_construction = 16;
        o.compact_threshold = 0.0;
        auto index = create_or_fail(o);
        ASSERT_NE(index, nullptr);
        const std::vector<std::uint64_t> ids = iota_ids(40);
        const std::vector<float> vectors = clustered(40, kDims, 11);
        ASSERT_TRUE(index->add(ids.data(), vectors.data(), ids.size(), 1).is_ok());
        ASSERT_EQ(index->remove(ids.data(), 4, nullptr), 4u);
        index->compact();                                              // 4 free slots
        ASSERT_EQ(index->remove(ids.data() + 10, 3, nullptr), 3u);     // 3 tombstones
        ASSERT_GE(index->stats().levels, 2) << "want upper-level links in the file; change the seed";
        slots_ = index->stats().slots;
        free_ = index->stats().free_slots;
        ASSERT_TRUE(index->save(path("good.rsvann").string()).is_ok());
        good_ = read_bytes(path("good.rsvann"));
        ASSERT_GT(good_.size(), sizeof(IndexFileHeader));
        ASSERT_TRUE(load_image(good_, good_.size()).is_ok());
    }

    // Body offsets of the columns (the layout of IndexImpl::serialize in index.cpp).
    std::size_t labels_at() const { return sizeof(IndexFileHeader); }
    std::size_t levels_at() const { return labels_at() + 8 * slots_; }
    std::size_t states_at() const { return levels_at() + slots_; }
    std::size_t links0_at() const { return states_at() + slots_; }
    std::size_t tail_at() const { return good_.size() - (4 + 4 + 4 + 4 * free_ + 8); }  // entry, free list, tombstones

    void expect_corrupt_after(const char* what, const std::function<void(std::vector<char>&)>& damage) {
        std::vector<char> bad = good_;
        damage(bad);
        reseal(bad);
        const Status st = load_image(bad, bad.size());
        EXPECT_EQ(st.code(), StatusCode::kCorrupt) << what << ": " << st.message();
    }
    template <class T>
    static void poke(std::vector<char>& bytes, std::size_t at, T value) {
        std::memcpy(bytes.data() + at, &value, sizeof(T));
    }

    std::vector<char> good_;
    std::size_t slots_ = 0;
    std::size_t free_ = 0;
};

// Regression: a repeated free-list entry once loaded, and two later adds then shared one slot.
TEST_F(DamagedIndexFile, FreeListNamingASlotTwiceIsCorrupt) {
    ASSERT_GE(free_, 2u);
    expect_corrupt_after("free list with a repeated slot", [this](auto& b) {
        std::uint32_t first;
        std::memcpy(&first, b.data() + tail_at() + 12, 4);
        poke<std::uint32_t>(b, tail_at() + 16, first);
    });
}

TEST_F(DamagedIndexFile, EveryTruncationIsCorrupt) {
    for (std::size_t n = 0; n < good_.size(); ++n) {
        const Status st = load_image(good_, n);
        ASSERT_EQ(st.code(), StatusCode::kCorrupt) << "truncated to " << n << " of " << good_.size() << ": " << st.message();
    }
}

TEST_F(DamagedIndexFile, TrailingBytesAreCorrupt) {
    std::vector<char> padded = good_;
    padded.push_back('\0');
    const Status st = load_image(padded, padded.size());
    EXPECT_EQ(st.code(), StatusCode::kCorrupt) << st.message();
}

TEST_F(DamagedIndexFile, EveryTruncatedBodyBehindValidChecksumsIsCorrupt) {
    // The checksums cannot help here: the structural checks must stop at the end of the body.
    for (std::size_t n = sizeof(IndexFileHeader); n < good_.size(); ++n) {
        std::vector<char> cut(good_.begin(), good_.begin() + static_cast<std::ptrdiff_t>(n));
        reseal(cut);
        const Status st = load_image(cut, cut.size());
        ASSERT_EQ(st.code(), StatusCode::kCorrupt) << "body cut to " << n - sizeof(IndexFileHeader) << ": " << st.message();
    }
}

TEST_F(DamagedIndexFile, FlippedByteAnywhereIsCorrupt) {
    // CRC-32C catches every error burst of up to 32 bits, so every position is checked, with
    // one single-bit flip (cycling through the bits) and one whole-byte flip.
    for (std::size_t at = 0; at < good_.size(); ++at) {
        for (const unsigned mask : {1u << (at % 8), 0xFFu}) {
            std::vector<char> bad = good_;
            bad[at] = static_cast<char>(bad[at] ^ mask);
            const Status st = load_image(bad, bad.size());
            ASSERT_EQ(st.code(), StatusCode::kCorrupt)
                << "byte " << at << " ^ " << int(mask) << " of " << good_.size() << ": " << st.message();
        }
    }
}

TEST_F(DamagedIndexFile, MissingFileIsNotFound) {
    auto r = Index::load(path("does-not-exist.rsvann").string());
    ASSERT_FALSE(r.is_ok());
    EXPECT_EQ(r.status().code(), StatusCode::kNotFound) << r.status().message();
}

TEST_F(DamagedIndexFile, DirectoryIsNotAnIndex) {
    auto r = Index::load(dir_.string());
    EXPECT_FALSE(r.is_ok());
}

TEST_F(DamagedIndexFile, WrongMagicIsCorrupt) {
    std::vector<char> bad = good_;
    std::memcpy(bad.data(), "NOTANIDX", 8);
    Status st = load_image(bad, bad.size());
    EXPECT_EQ(st.code(), StatusCode::kCorrupt) << st.message();
    reseal(bad);  // even with both checksums right
    st = load_image(bad, bad.size());
    EXPECT_EQ(st.code(), StatusCode::kCorrupt) << st.message();
    // A text file is not an index either.
    const std::string text(200, 'x');
    st = load_image(std::vector<char>(text.begin(), text.end()), text.size());
    EXPECT_EQ(st.code(), StatusCode::kCorrupt) << st.message();
}

TEST_F(DamagedIndexFile, BadHeaderFieldsBehindValidChecksumsAreCorrupt) {
    expect_corrupt_after("version 2", [](auto& b) { poke<std::uint32_t>(b, offsetof(IndexFileHeader, version), 2); });
    expect_corrupt_after("dims 0", [](auto& b) { poke<std::uint32_t>(b, offsetof(IndexFileHeader, dims), 0); });
    expect_corrupt_after("dims 5", [](auto& b) { poke<std::uint32_t>(b, offsetof(IndexFileHeader, dims), 5); });
    expect_corrupt_after("metric 3", [](auto& b) { poke<std::uint8_t>(b, offsetof(IndexFileHeader, metric), 3); });
    expect_corrupt_after("dtype 2", [](auto& b) { poke<std::uint8_t>(b, offsetof(IndexFileHeader, dtype), 2); });
    expect_corrupt_after("float32 with rerank", [](auto& b) { poke<std::uint8_t>(b, offsetof(IndexFileHeader, dtype), 0); });
    expect_corrupt_after("no rerank", [](auto& b) { poke<std::uint8_t>(b, offsetof(IndexFileHeader, rerank), 0); });
    expect_corrupt_after("M 1", [](auto& b) { poke<std::uint32_t>(b, offsetof(IndexFileHeader, M), 1); });
    expect_corrupt_after("M 5", [](auto& b) { poke<std::uint32_t>(b, offsetof(IndexFileHeader, M), 5); });
    expect_corrupt_after("ef_construction 0",
                         [](auto& b) { poke<std::uint32_t>(b, offsetof(IndexFileHeader, ef_construction), 0); });
    expect_corrupt_after("negative compact_threshold", [](auto& b) {
        poke<double>(b, offsetof(IndexFileHeader, compact_threshold), -0.5);
    });
    expect_corrupt_after("NaN compact_threshold", [](auto& b) {
        poke<double>(b, offsetof(IndexFileHeader, compact_threshold), std::numeric_limits<double>::quiet_NaN());
    });
    const auto set_slots = [](std::size_t slots) {
        return [slots](auto& b) { poke<std::uint32_t>(b, offsetof(IndexFileHeader, slots), std::uint32_t(slots)); };
    };
    expect_corrupt_after("one slot fewer", set_slots(slots_ - 1));
    expect_corrupt_after("one slot more", set_slots(slots_ + 1));
    expect_corrupt_after("twice the slots", set_slots(2 * slots_));
}

TEST_F(DamagedIndexFile, BadBodyFieldsBehindValidChecksumsAreCorrupt) {
    const std::size_t list0 = 4 * (1 + 2 * kM);
    expect_corrupt_after("level above the maximum", [this](auto& b) { poke<std::uint8_t>(b, levels_at() + 5, 32); });
    expect_corrupt_after("unknown slot state", [this](auto& b) { poke<std::uint8_t>(b, states_at() + 5, 4); });
    expect_corrupt_after("a live id stored twice", [this](auto& b) {
        std::uint64_t label;
        std::memcpy(&label, b.data() + labels_at() + 8 * 20, 8);
        poke<std::uint64_t>(b, labels_at() + 8 * 21, label);
    });
    expect_corrupt_after("too many links", [this, list0](auto& b) {
        poke<std::uint32_t>(b, links0_at() + 20 * list0, std::uint32_t(2 * kM + 1));
    });
    expect_corrupt_after("a link past the last slot", [this, list0](auto& b) {
        poke<std::uint32_t>(b, links0_at() + 20 * list0, 1);
        poke<std::uint32_t>(b, links0_at() + 20 * list0 + 4, std::uint32_t(slots_));
    });
    expect_corrupt_after("a link to a free slot", [this, list0](auto& b) {
        std::uint32_t free_slot;
        std::memcpy(&free_slot, b.data() + tail_at() + 12, 4);
        poke<std::uint32_t>(b, links0_at() + 20 * list0, 1);
        poke<std::uint32_t>(b, links0_at() + 20 * list0 + 4, free_slot);
    });
    expect_corrupt_after("entry point past the last slot",
                         [this](auto& b) { poke<std::uint32_t>(b, tail_at(), std::uint32_t(slots_ + 3)); });
    expect_corrupt_after("entry point at the wrong level", [this](auto& b) {
        std::int32_t level;
        std::memcpy(&level, b.data() + tail_at() + 4, 4);
        poke<std::int32_t>(b, tail_at() + 4, level + 1);
    });
    expect_corrupt_after("free list longer than the slots",
                         [this](auto& b) { poke<std::uint32_t>(b, tail_at() + 8, std::uint32_t(slots_ + 1)); });
    expect_corrupt_after("free list naming a live slot", [this](auto& b) {
        std::uint32_t entry;
        std::memcpy(&entry, b.data() + tail_at(), 4);  // the entry point is live
        poke<std::uint32_t>(b, tail_at() + 12, entry);
    });
    expect_corrupt_after("free list naming a slot past the end",
                         [this](auto& b) { poke<std::uint32_t>(b, tail_at() + 12, std::uint32_t(slots_ + 7)); });
    expect_corrupt_after("one byte more in the body", [](auto& b) { b.push_back('\0'); });
}

// Regression (found by cpp/fuzz/fuzz_index_file): the entry point was checked against the
// slot's level byte only. A free slot gets no upper link lists whatever that byte says, so a
// file naming one as the entry at level >= 1 loaded, and the first search read links through a
// null pointer. Now a free slot must be at level 0, and the entry point must not be free.
TEST_F(DamagedIndexFile, EntryPointOnAFreeSlotIsCorrupt) {
    ASSERT_GE(free_, 1u);
    for (const std::uint8_t level : {1, 0}) {
        expect_corrupt_after("entry point on a free slot", [this, level](auto& b) {
            std::uint32_t free_slot;
            std::memcpy(&free_slot, b.data() + tail_at() + 12, 4);  // the free list's first slot: unlinked
            poke<std::uint8_t>(b, levels_at() + free_slot, level);
            poke<std::uint32_t>(b, tail_at(), free_slot);
            poke<std::int32_t>(b, tail_at() + 4, level);
        });
    }
}

// Regression (found by cpp/fuzz/fuzz_index_file): slots in states save() never writes loaded,
// and compact() (which unlinks dead nodes from live ones only) then left links from them to the
// slots it freed: the index saved a file it refused to load. A saved slot is live, deleted or
// free; a free slot is at level 0, has no links, and is on the free list.
TEST_F(DamagedIndexFile, SlotsInStatesSaveNeverWritesAreCorrupt) {
    const auto entry_slot = [this](const std::vector<char>& b) {
        std::uint32_t slot;
        std::memcpy(&slot, b.data() + tail_at(), 4);
        return slot;
    };
    const auto first_free = [this](const std::vector<char>& b) {
        std::uint32_t slot;
        std::memcpy(&slot, b.data() + tail_at() + 12, 4);
        return slot;
    };
    expect_corrupt_after("a live slot in state unused (0)",
                         [&](auto& b) { poke<std::uint8_t>(b, states_at() + entry_slot(b), 0); });
    expect_corrupt_after("a free slot at level 1", [&](auto& b) { poke<std::uint8_t>(b, levels_at() + first_free(b), 1); });
    expect_corrupt_after("a free slot with a link", [&](auto& b) {
        const std::size_t list = links0_at() + first_free(b) * 4 * (1 + 2 * kM);
        poke<std::uint32_t>(b, list, 1);
        poke<std::uint32_t>(b, list + 4, entry_slot(b));
    });
    expect_corrupt_after("a free slot left off the free list", [this](auto& b) {
        poke<std::uint32_t>(b, tail_at() + 8, std::uint32_t(free_ - 1));
        const auto last = b.begin() + static_cast<std::ptrdiff_t>(tail_at() + 12 + 4 * (free_ - 1));
        b.erase(last, last + 4);
    });
}

#if defined(__GLIBC__) && !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
// Regression (found by cpp/fuzz/fuzz_index_file under LeakSanitizer): a file refused after its
// slot table (here: a link past the last slot) leaked the upper link lists of every slot read
// so far, because the graph's destructor frees only the slots it counts and they were counted
// at the very end. Measured with glibc's heap statistics: the sanitizers replace malloc.
TEST_F(DamagedIndexFile, AFileRefusedAfterItsSlotTableLeaksNothing) {
    const std::size_t list0 = 4 * (1 + 2 * kM);
    std::vector<char> bad = good_;
    poke<std::uint32_t>(bad, links0_at() + (slots_ - 1) * list0, 1);
    poke<std::uint32_t>(bad, links0_at() + (slots_ - 1) * list0 + 4, std::uint32_t(slots_));
    reseal(bad);
    const fs::path p = path("refused.rsvann");
    write_bytes(p, bad.data(), bad.size());
    const auto load_refused = [&] {
        auto r = Index::load(p.string());
        ASSERT_FALSE(r.is_ok());
        EXPECT_EQ(r.status().code(), StatusCode::kCorrupt) << r.status().message();
    };
    load_refused();  // warm up whatever the first load allocates once
    const std::size_t before = mallinfo2().uordblks;
    for (int i = 0; i < 200; ++i) load_refused();
    const std::size_t after = mallinfo2().uordblks;
    // Leaked, the lists of this file's upper-level nodes were hundreds of bytes per load.
    EXPECT_LT(after, before + 4096) << "bytes in use grew from " << before << " to " << after;
}
#endif

}  // namespace
}  // namespace recserve::ann
