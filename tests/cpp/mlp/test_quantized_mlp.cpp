#include "recserve/mlp/quantized_mlp.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <thread>
#include <vector>

#include "mlp_test_models.hpp"
#include "recserve/simd/isa.hpp"

namespace recserve::mlp {
namespace {

using testing::random_float_model;
using testing::random_inputs;
using testing::reference_predict;

const std::vector<std::uint32_t> kRankerWidths = {208, 256, 128, 64, 8};

QuantizedMlp make(const Model& float_model, const simd::KernelTable* kernels = nullptr) {
    Result<Model> q = quantize(float_model, {});
    EXPECT_TRUE(q.is_ok()) << q.status().message();
    Result<QuantizedMlp> mlp = kernels ? QuantizedMlp::create(q.value(), kernels) : QuantizedMlp::create(q.value());
    EXPECT_TRUE(mlp.is_ok()) << mlp.status().message();
    return std::move(mlp).value();
}

TEST(Quantize, KeepsEveryWeightWithinHalfAStepOfTheFloat) {
    const Model f = random_float_model({37, 19, 3}, 1);
    Result<Model> q = quantize(f, {});
    ASSERT_TRUE(q.is_ok()) << q.status().message();
    for (std::size_t li = 0; li < f.layers.size(); ++li) {
        const Layer& fl = f.layers[li];
        const Layer& ql = q.value().layers[li];
        for (std::size_t n = 0; n < fl.out; ++n) {
            for (std::size_t k = 0; k < fl.in; ++k) {
                const std::int8_t w = ql.qweight[n * fl.in + k];
                EXPECT_LE(std::abs(int{w}), kWeightLimit);
                EXPECT_NEAR(w * ql.scale[n], fl.weight[n * fl.in + k], ql.scale[n] * 0.5001f);
            }
        }
    }
}

TEST(Quantize, InputScaleDividesTheFirstLayersColumns) {
    const Model f = random_float_model({4, 2, 1}, 2);
    const std::vector<float> input_scale = {1.0f, 2.0f, 4.0f, 0.5f};
    Result<Model> q = quantize(f, input_scale);
    ASSERT_TRUE(q.is_ok()) << q.status().message();
    const Layer& fl = f.layers[0];
    const Layer& ql = q.value().layers[0];
    for (std::size_t n = 0; n < fl.out; ++n)
        for (std::size_t k = 0; k < fl.in; ++k)
            EXPECT_NEAR(ql.qweight[n * 4 + k] * ql.scale[n], fl.weight[n * 4 + k] / input_scale[k], ql.scale[n] * 0.5001f);
}

TEST(Quantize, RejectsABadInputScale) {
    const Model f = random_float_model({4, 2, 1}, 3);
    EXPECT_EQ(quantize(f, std::vector<float>{1.0f, 2.0f}).status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(quantize(f, std::vector<float>{1.0f, 0.0f, 1.0f, 1.0f}).status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(quantize(f, std::vector<float>{1.0f, NAN, 1.0f, 1.0f}).status().code(), StatusCode::kInvalidArgument);
}

TEST(QuantizedMlp, TracksTheFloatReferenceOnTheRankerShape) {
    const Model f = random_float_model(kRankerWidths, 4, /*identity_last=*/true);
    const QuantizedMlp q = make(f);
    const std::size_t rows = 200;
    const std::vector<float> x = random_inputs(rows, 208, 5);
    std::vector<float> got(rows * 8);
    ASSERT_TRUE(q.predict(x.data(), rows, got.data()).is_ok());
    const std::vector<float> want = reference_predict(f, x, rows);
    // An untrained He-initialised network (logits with a spread of about 2) is a harder case
    // than a trained ranker; the bounds hold with margin here (measured: worst 0.024).
    double worst_prob = 0.0, sum_prob = 0.0, worst_logit = 0.0;
    for (std::size_t i = 0; i < got.size(); ++i) {
        const double d = std::fabs(double{got[i]} - want[i]);
        if (i % 8 == 7) {
            worst_logit = std::max(worst_logit, d / (1.0 + std::fabs(want[i])));
        } else {
            worst_prob = std::max(worst_prob, d);
            sum_prob += d;
        }
    }
    EXPECT_LT(worst_prob, 0.04);
    EXPECT_LT(sum_prob / (rows * 7), 0.006);
    EXPECT_LT(worst_logit, 0.06);
}

TEST(QuantizedMlp, EveryIsaGivesBitIdenticalScores) {
    const Model f = random_float_model(kRankerWidths, 6);
    Result<const simd::KernelTable*> scalar = simd::kernels_for(simd::Isa::kScalar);
    ASSERT_TRUE(scalar.is_ok());
    const QuantizedMlp reference = make(f, scalar.value());
    for (std::size_t rows : {1, 3, 31, 32, 33, 200}) {
        const std::vector<float> x = random_inputs(rows, 208, 7 + static_cast<std::uint32_t>(rows));
        std::vector<float> want(rows * 8);
        ASSERT_TRUE(reference.predict(x.data(), rows, want.data()).is_ok());
        for (simd::Isa isa : simd::available_isas()) {
            Result<const simd::KernelTable*> table = simd::kernels_for(isa);
            ASSERT_TRUE(table.is_ok());
            const QuantizedMlp q = make(f, table.value());
            std::vector<float> got(rows * 8);
            ASSERT_TRUE(q.predict(x.data(), rows, got.data()).is_ok());
            EXPECT_EQ(got, want) << table.value()->variant << " rows " << rows;
        }
    }
}

TEST(QuantizedMlp, ScoresARowTheSameAloneOrInABatch) {
    const Model f = random_float_model({10, 16, 3}, 8);
    const QuantizedMlp q = make(f);
    const std::vector<float> x = random_inputs(70, 10, 9);
    std::vector<float> batch(70 * 3);
    ASSERT_TRUE(q.predict(x.data(), 70, batch.data()).is_ok());
    for (std::size_t r : {0, 31, 32, 69}) {
        std::vector<float> one(3);
        ASSERT_TRUE(q.predict(x.data() + r * 10, 1, one.data()).is_ok());
        EXPECT_EQ(one, std::vector<float>(batch.begin() + static_cast<std::ptrdiff_t>(r * 3),
                                          batch.begin() + static_cast<std::ptrdiff_t>(r * 3 + 3)));
    }
}

TEST(QuantizedMlp, HandlesConstantAndAllZeroRows) {
    const Model f = random_float_model({6, 8, 2}, 10);
    const QuantizedMlp q = make(f);
    const std::vector<float> x = {0, 0, 0, 0, 0, 0, 3, 3, 3, 3, 3, 3, -2, -2, -2, -2, -2, -2};
    std::vector<float> got(6);
    ASSERT_TRUE(q.predict(x.data(), 3, got.data()).is_ok());
    const std::vector<float> want = reference_predict(f, x, 3);
    for (std::size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 0.02) << i;
}

TEST(QuantizedMlp, NonFiniteInputIsAnErrorThatWritesNothing) {
    const Model f = random_float_model({5, 4, 2}, 11);
    const QuantizedMlp q = make(f);
    for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
        std::vector<float> x = random_inputs(3, 5, 12);
        x[2 * 5 + 4] = bad;
        std::vector<float> out(6, -1.0f);
        const Status st = q.predict(x.data(), 3, out.data());
        EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
        EXPECT_NE(st.message().find("row 2, feature 4"), std::string::npos) << st.message();
        EXPECT_EQ(out, std::vector<float>(6, -1.0f));
    }
}

TEST(QuantizedMlp, ZeroRowsIsANoOp) {
    const QuantizedMlp q = make(random_float_model({5, 4, 2}, 13));
    EXPECT_TRUE(q.predict(nullptr, 0, nullptr).is_ok());
}

TEST(QuantizedMlp, RejectsAFloatModel) {
    EXPECT_EQ(QuantizedMlp::create(random_float_model({5, 4, 2}, 14)).status().code(), StatusCode::kInvalidArgument);
}

// Many threads score through one model at once (each with its own thread-local scratch): every
// thread gets the single-threaded answer. Run under ThreadSanitizer by .ci/tsan.sh.
TEST(QuantizedMlpConcurrency, ThreadsScoringAtOnceGetTheSingleThreadedScores) {
    const QuantizedMlp q = make(random_float_model({40, 32, 16, 4}, 16));
    const std::size_t rows = 45;
    const std::vector<float> x = random_inputs(rows, 40, 17);
    std::vector<float> want(rows * 4);
    ASSERT_TRUE(q.predict(x.data(), rows, want.data()).is_ok());
    std::vector<int> mismatches(4, 0);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            std::vector<float> got(rows * 4);
            for (int i = 0; i < 50; ++i) {
                if (!q.predict(x.data(), rows, got.data()).is_ok() || got != want) ++mismatches[t];
            }
        });
    }
    for (std::thread& th : threads) th.join();
    EXPECT_EQ(mismatches, std::vector<int>(4, 0));
}

TEST(Validate, NamesWhatIsWrong) {
    Model m = random_float_model({5, 4, 2}, 15);
    ASSERT_TRUE(validate(m).is_ok());
    Model chain = m;
    chain.layers[1].in = 3;
    EXPECT_NE(validate(chain).message().find("layer 1 takes 3 inputs"), std::string::npos);
    Model nan = m;
    nan.layers[0].weight[3] = NAN;
    EXPECT_NE(validate(nan).message().find("layer 0 weight has a NaN"), std::string::npos);
    Model heads = m;
    heads.heads[1] = heads.heads[0];
    EXPECT_NE(validate(heads).message().find("named twice"), std::string::npos);
    Model count = m;
    count.heads.pop_back();
    EXPECT_EQ(validate(count).code(), StatusCode::kInvalidArgument);
    Model empty;
    EXPECT_EQ(validate(empty).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace recserve::mlp
