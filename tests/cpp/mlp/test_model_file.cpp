#include "recserve/mlp/model_file.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "mlp_test_models.hpp"

namespace recserve::mlp {
namespace {

namespace fs = std::filesystem;

class ModelFileTest : public ::testing::Test {
  protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() /
               ("recserve_model_file_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "_" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::create_directories(dir_);
    }
    void TearDown() override { fs::remove_all(dir_); }
    std::string path(const std::string& name) const { return (dir_ / name).string(); }

    fs::path dir_;
};

std::vector<char> read_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), {}};
}

void write_bytes(const std::string& path, const std::vector<char>& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

void expect_same(const Model& a, const Model& b) {
    EXPECT_EQ(a.weight_type, b.weight_type);
    EXPECT_EQ(a.heads, b.heads);
    EXPECT_EQ(a.activations, b.activations);
    EXPECT_EQ(a.input_scale, b.input_scale);
    EXPECT_EQ(a.metadata, b.metadata);
    ASSERT_EQ(a.layers.size(), b.layers.size());
    for (std::size_t i = 0; i < a.layers.size(); ++i) {
        EXPECT_EQ(a.layers[i].out, b.layers[i].out);
        EXPECT_EQ(a.layers[i].in, b.layers[i].in);
        EXPECT_EQ(a.layers[i].weight, b.layers[i].weight);
        EXPECT_EQ(a.layers[i].qweight, b.layers[i].qweight);
        EXPECT_EQ(a.layers[i].scale, b.layers[i].scale);
        EXPECT_EQ(a.layers[i].bias, b.layers[i].bias);
    }
}

TEST_F(ModelFileTest, Float32ModelRoundTripsExactly) {
    const Model m = testing::random_float_model({12, 8, 3}, 1, true);
    ASSERT_TRUE(save_model(path("f.rsm"), m).is_ok());
    Result<Model> back = load_model(path("f.rsm"));
    ASSERT_TRUE(back.is_ok()) << back.status().message();
    expect_same(m, back.value());
}

TEST_F(ModelFileTest, Int8ModelWithInputScaleRoundTripsExactly) {
    const Model f = testing::random_float_model({12, 8, 3}, 2);
    Result<Model> q = quantize(f, std::vector<float>(12, 0.5f));
    ASSERT_TRUE(q.is_ok());
    ASSERT_TRUE(save_model(path("q.rsm"), q.value()).is_ok());
    Result<Model> back = load_model(path("q.rsm"));
    ASSERT_TRUE(back.is_ok()) << back.status().message();
    expect_same(q.value(), back.value());
}

TEST_F(ModelFileTest, MissingFileIsNotFound) {
    EXPECT_EQ(load_model(path("nope.rsm")).status().code(), StatusCode::kNotFound);
}

TEST_F(ModelFileTest, SavingAnInvalidModelWritesNothing) {
    Model m = testing::random_float_model({4, 3, 2}, 3);
    m.layers[0].bias[0] = NAN;
    EXPECT_EQ(save_model(path("bad.rsm"), m).code(), StatusCode::kInvalidArgument);
    EXPECT_FALSE(fs::exists(path("bad.rsm")));
}

TEST_F(ModelFileTest, EveryTruncationIsReportedAsCorrupt) {
    const Model f = testing::random_float_model({6, 5, 2}, 4);
    Result<Model> q = quantize(f, {});
    ASSERT_TRUE(save_model(path("m.rsm"), q.value()).is_ok());
    const std::vector<char> bytes = read_bytes(path("m.rsm"));
    for (std::size_t n = 0; n < bytes.size(); ++n) {
        write_bytes(path("t.rsm"), std::vector<char>(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n)));
        EXPECT_EQ(load_model(path("t.rsm")).status().code(), StatusCode::kCorrupt) << n << " bytes";
    }
}

TEST_F(ModelFileTest, EverySingleBitFlipIsReportedAsCorrupt) {
    const Model m = testing::random_float_model({6, 5, 2}, 5);
    ASSERT_TRUE(save_model(path("m.rsm"), m).is_ok());
    const std::vector<char> bytes = read_bytes(path("m.rsm"));
    for (std::size_t i = 0; i < bytes.size(); ++i) {
        for (int bit : {0, 7}) {
            std::vector<char> flipped = bytes;
            flipped[i] = static_cast<char>(flipped[i] ^ (1 << bit));
            write_bytes(path("f.rsm"), flipped);
            EXPECT_EQ(load_model(path("f.rsm")).status().code(), StatusCode::kCorrupt) << "byte " << i << " bit " << bit;
        }
    }
}

TEST_F(ModelFileTest, TrailingBytesAreReportedAsCorrupt) {
    const Model m = testing::random_float_model({3, 2, 1}, 6);
    ASSERT_TRUE(save_model(path("m.rsm"), m).is_ok());
    std::vector<char> bytes = read_bytes(path("m.rsm"));
    bytes.push_back('\0');
    write_bytes(path("m.rsm"), bytes);
    EXPECT_EQ(load_model(path("m.rsm")).status().code(), StatusCode::kCorrupt);
}

TEST_F(ModelFileTest, SaveReplacesAnOldFileWhole) {
    const Model a = testing::random_float_model({3, 2, 1}, 7);
    const Model b = testing::random_float_model({9, 4, 2}, 8);
    ASSERT_TRUE(save_model(path("m.rsm"), a).is_ok());
    ASSERT_TRUE(save_model(path("m.rsm"), b).is_ok());
    Result<Model> back = load_model(path("m.rsm"));
    ASSERT_TRUE(back.is_ok());
    expect_same(b, back.value());
    EXPECT_FALSE(fs::exists(path("m.rsm.tmp")));
}

}  // namespace
}  // namespace recserve::mlp
