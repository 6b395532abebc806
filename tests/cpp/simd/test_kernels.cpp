// Every kernel of every variant against the scalar reference: odd sizes (1, 3, 17, 97, 1000),
// the graph's sizes (50, 64, 384) and every size up to 300, so each unrolled step and each tail
// of each ISA is crossed. int8 kernels must match exactly; float kernels within a bound on
// the rounding of a float sum.
//
// A variant the CPU lacks is skipped, and the skip says which and why.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "recserve/simd/isa.hpp"
#include "recserve/simd/kernel_table.hpp"
#include "recserve/simd/gemm_kernels.hpp"
#include "recserve/simd/kernels.hpp"

namespace recserve::simd {
namespace {

struct Variant {
    const char* name;  // the test-name suffix: letters, digits and '_' only
    const char* requires_what;
    bool (*runs_here)();
    KernelTable table;
};

// What gtest prints for a parameter (instead of its bytes).
void PrintTo(const Variant& v, std::ostream* os) { *os << v.name; }

const KernelTable kScalar{Isa::kScalar,   "scalar",      dot_f32_scalar, l2sq_f32_scalar, cos_f32_scalar,
                          dot_i8_scalar,  l2sq_i8_scalar, cos_i8_scalar,  dot_u8i8_scalar,
                          gemm_u8i8_scalar, int8_peak_scalar, relu_requantize_scalar, gemm_s16s16_scalar,
                          quantize_row_s16_scalar, quantize_row_u8_scalar, gemm_u8i8_wide_scalar,
                          dequantize_requantize_scalar};

const Variant kVariants[] = {
    {"scalar", "nothing", [] { return true; }, kScalar},
#if defined(RECSERVE_ARCH_X86)
    {"avx2", "AVX2 + FMA", [] { return cpu_features().avx2_fma; },
     {Isa::kAvx2, "avx2", dot_f32_avx2, l2sq_f32_avx2, cos_f32_avx2, dot_i8_avx2, l2sq_i8_avx2, cos_i8_avx2,
      dot_u8i8_avx2, gemm_u8i8_avx2, int8_peak_avx2, relu_requantize_avx2, gemm_s16s16_avx2, quantize_row_s16_avx2,
      quantize_row_u8_avx2, gemm_u8i8_wide_avx2, dequantize_requantize_avx2}},
    {"avx512", "AVX-512 F/BW/VL/DQ", [] { return cpu_features().avx512; },
     {Isa::kAvx512, "avx512", dot_f32_avx512, l2sq_f32_avx512, cos_f32_avx512, dot_i8_avx512, l2sq_i8_avx512,
      cos_i8_avx512, dot_u8i8_avx512, gemm_u8i8_avx2, int8_peak_avx2, relu_requantize_avx2, gemm_s16s16_avx2, quantize_row_s16_avx2,
      quantize_row_u8_avx2, gemm_u8i8_wide_avx2, dequantize_requantize_avx2}},
    {"avx512_vnni", "AVX-512 F/BW/VL/DQ + VNNI", [] { return cpu_features().avx512_vnni; },
     {Isa::kAvx512, "avx512+vnni", dot_f32_avx512, l2sq_f32_avx512, cos_f32_avx512, dot_i8_avx512vnni,
      l2sq_i8_avx512vnni, cos_i8_avx512vnni, dot_u8i8_avx512vnni, gemm_u8i8_avx512vnni, int8_peak_avx512vnni,
      relu_requantize_avx2, gemm_s16s16_avx512vnni, quantize_row_s16_avx2, quantize_row_u8_avx512vnni,
      gemm_u8i8_wide_avx512vnni, dequantize_requantize_avx512vnni}},
#endif
#if defined(RECSERVE_ARCH_ARM64)
    {"neon", "Advanced SIMD", [] { return cpu_features().neon; },
     {Isa::kNeon, "neon", dot_f32_neon, l2sq_f32_neon, cos_f32_neon, dot_i8_neon, l2sq_i8_neon, cos_i8_neon,
      dot_u8i8_neon, gemm_u8i8_neon, int8_peak_neon, relu_requantize_scalar, gemm_s16s16_neon, quantize_row_s16_scalar,
      quantize_row_u8_scalar, gemm_u8i8_wide_neon, dequantize_requantize_scalar}},
    {"neon_dotprod", "Advanced SIMD + dotprod", [] { return cpu_features().neon_dotprod; },
     {Isa::kNeon, "neon+dotprod", dot_f32_neon, l2sq_f32_neon, cos_f32_neon, dot_i8_neondotprod,
      l2sq_i8_neondotprod, cos_i8_neondotprod, dot_u8i8_neondotprod, gemm_u8i8_neondotprod,
      int8_peak_neondotprod, relu_requantize_scalar, gemm_s16s16_neon, quantize_row_s16_scalar, quantize_row_u8_scalar,
      gemm_u8i8_wide_neondotprod, dequantize_requantize_scalar}},
#endif
};

std::vector<std::size_t> test_sizes() {
    std::vector<std::size_t> sizes;
    for (std::size_t n = 0; n <= 300; ++n) sizes.push_back(n);
    for (std::size_t n : {383, 384, 385, 511, 512, 513, 1000, 1023, 1024, 4096}) sizes.push_back(n);
    return sizes;
}

std::vector<float> random_floats(std::size_t n, std::uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> v(n);
    for (float& x : v) x = normal(rng);
    return v;
}

template <class T>
std::vector<T> random_ints(std::size_t n, std::uint32_t seed, int lo, int hi) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int> uniform(lo, hi);
    std::vector<T> v(n);
    for (T& x : v) x = static_cast<T>(uniform(rng));
    return v;
}

// Random picks from the extremes (and zero), where widening or saturation bugs show.
template <class T>
std::vector<T> random_extremes(std::size_t n, std::uint32_t seed, std::vector<int> values) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<std::size_t> pick(0, values.size() - 1);
    std::vector<T> v(n);
    for (T& x : v) x = static_cast<T>(values[pick(rng)]);
    return v;
}

// A float sum of n terms is within about n * eps * sum|term| of the exact sum, whatever the order;
// two orders differ by at most twice that. Measured errors are far below this bound.
double float_tolerance(std::size_t n, double sum_abs_terms) {
    return 2.0 * (static_cast<double>(n) + 8.0) * 6e-8 * sum_abs_terms + 1e-30;
}

class KernelTest : public ::testing::TestWithParam<Variant> {
  protected:
    void SetUp() override {
        if (!GetParam().runs_here()) {
            GTEST_SKIP() << GetParam().name << " kernels not run: this CPU lacks " << GetParam().requires_what;
        }
    }
    const KernelTable& k() const { return GetParam().table; }
};

TEST_P(KernelTest, DotF32MatchesScalar) {
    for (std::size_t n : test_sizes()) {
        const std::vector<float> a = random_floats(n, 11 + static_cast<std::uint32_t>(n));
        const std::vector<float> b = random_floats(n, 7000 + static_cast<std::uint32_t>(n));
        double exact = 0.0;
        double sum_abs = 0.0;
        for (std::size_t i = 0; i < n; ++i) {
            exact += double(a[i]) * double(b[i]);
            sum_abs += std::fabs(double(a[i]) * double(b[i]));
        }
        const double tol = float_tolerance(n, sum_abs);
        const float got = k().dot_f32(a.data(), b.data(), n);
        EXPECT_NEAR(got, dot_f32_scalar(a.data(), b.data(), n), 2 * tol) << "dims " << n;
        EXPECT_NEAR(got, exact, tol) << "dims " << n;
    }
}

TEST_P(KernelTest, L2sqF32MatchesScalar) {
    for (std::size_t n : test_sizes()) {
        const std::vector<float> a = random_floats(n, 23 + static_cast<std::uint32_t>(n));
        const std::vector<float> b = random_floats(n, 9000 + static_cast<std::uint32_t>(n));
        double exact = 0.0;
        for (std::size_t i = 0; i < n; ++i) {
            const double d = double(a[i]) - double(b[i]);
            exact += d * d;
        }
        const double tol = float_tolerance(n, exact);
        const float got = k().l2sq_f32(a.data(), b.data(), n);
        EXPECT_NEAR(got, l2sq_f32_scalar(a.data(), b.data(), n), 2 * tol) << "dims " << n;
        EXPECT_NEAR(got, exact, tol) << "dims " << n;
        EXPECT_EQ(k().l2sq_f32(a.data(), a.data(), n), 0.0f) << "dims " << n;
    }
}

TEST_P(KernelTest, CosF32MatchesScalar) {
    for (std::size_t n : test_sizes()) {
        if (n == 0) continue;
        const std::vector<float> a = random_floats(n, 31 + static_cast<std::uint32_t>(n));
        std::vector<float> b = random_floats(n, 11000 + static_cast<std::uint32_t>(n));
        double dot = 0.0, na = 0.0, nb = 0.0;
        for (std::size_t i = 0; i < n; ++i) {
            dot += double(a[i]) * double(b[i]);
            na += double(a[i]) * double(a[i]);
            nb += double(b[i]) * double(b[i]);
        }
        const double exact = 1.0 - dot / std::sqrt(na * nb);
        // |error of dot| / (|a| |b|) <= tolerance(n, sum|a_i b_i|) / (|a| |b|) <= tolerance(n, 1).
        const double tol = 3.0 * float_tolerance(n, 1.0) + 1e-6;
        const float got = k().cos_f32(a.data(), b.data(), n);
        EXPECT_NEAR(got, cos_f32_scalar(a.data(), b.data(), n), 2 * tol) << "dims " << n;
        EXPECT_NEAR(got, exact, tol) << "dims " << n;
        EXPECT_NEAR(k().cos_f32(a.data(), a.data(), n), 0.0, tol) << "dims " << n;
        std::vector<float> minus_a(a);
        for (float& x : minus_a) x = -x;
        EXPECT_NEAR(k().cos_f32(a.data(), minus_a.data(), n), 2.0, tol) << "dims " << n;
    }
}

TEST_P(KernelTest, CosineOfAZeroVectorIsOne) {
    for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{17}, std::size_t{64}, std::size_t{97}}) {
        const std::vector<float> zero_f32(n, 0.0f);
        const std::vector<float> other_f32 = random_floats(n, 5);
        EXPECT_EQ(k().cos_f32(zero_f32.data(), other_f32.data(), n), 1.0f) << "dims " << n;
        EXPECT_EQ(k().cos_f32(other_f32.data(), zero_f32.data(), n), 1.0f) << "dims " << n;
        EXPECT_EQ(k().cos_f32(zero_f32.data(), zero_f32.data(), n), 1.0f) << "dims " << n;
        const std::vector<std::int8_t> zero_i8(n, 0);
        const std::vector<std::int8_t> other_i8(n, -128);
        EXPECT_EQ(k().cos_i8(zero_i8.data(), other_i8.data(), n), 1.0f) << "dims " << n;
        EXPECT_EQ(k().cos_i8(other_i8.data(), zero_i8.data(), n), 1.0f) << "dims " << n;
        EXPECT_EQ(k().cos_i8(zero_i8.data(), zero_i8.data(), n), 1.0f) << "dims " << n;
    }
}

// The int8 kernels on one pair of inputs: exact equality with scalar, cos_i8 bit-identical
// (same integer sums, same shared finish).
void expect_int_kernels_exact(const KernelTable& k, const std::vector<std::int8_t>& a,
                              const std::vector<std::int8_t>& b, const std::vector<std::uint8_t>& u,
                              const std::string& what) {
    const std::size_t n = a.size();
    EXPECT_EQ(k.dot_i8(a.data(), b.data(), n), dot_i8_scalar(a.data(), b.data(), n)) << what;
    EXPECT_EQ(k.l2sq_i8(a.data(), b.data(), n), l2sq_i8_scalar(a.data(), b.data(), n)) << what;
    EXPECT_EQ(k.cos_i8(a.data(), b.data(), n), cos_i8_scalar(a.data(), b.data(), n)) << what;
    EXPECT_EQ(k.dot_u8i8(u.data(), b.data(), n), dot_u8i8_scalar(u.data(), b.data(), n)) << what;
}

TEST_P(KernelTest, Int8KernelsAreExactOnRandomData) {
    for (std::size_t n : test_sizes()) {
        const auto seed = static_cast<std::uint32_t>(n);
        expect_int_kernels_exact(k(), random_ints<std::int8_t>(n, 100 + seed, -128, 127),
                                 random_ints<std::int8_t>(n, 20000 + seed, -128, 127),
                                 random_ints<std::uint8_t>(n, 40000 + seed, 0, 255), "random, dims " + std::to_string(n));
    }
}

TEST_P(KernelTest, Int8KernelsAreExactOnExtremeValues) {
    for (std::size_t n : test_sizes()) {
        const auto seed = static_cast<std::uint32_t>(n);
        expect_int_kernels_exact(k(), random_extremes<std::int8_t>(n, 300 + seed, {-128, -127, 0, 127}),
                                 random_extremes<std::int8_t>(n, 600 + seed, {-128, -127, 0, 127}),
                                 random_extremes<std::uint8_t>(n, 900 + seed, {0, 1, 128, 255}),
                                 "extremes, dims " + std::to_string(n));
    }
}

TEST_P(KernelTest, Int8SumsOfExtremesDoNotSaturate) {
    for (std::size_t n : {std::size_t{1}, std::size_t{17}, std::size_t{64}, std::size_t{1000}, std::size_t{4096}}) {
        const auto dims = static_cast<std::int32_t>(n);
        const std::vector<std::int8_t> min_i8(n, -128);
        const std::vector<std::int8_t> max_i8(n, 127);
        const std::vector<std::uint8_t> max_u8(n, 255);
        EXPECT_EQ(k().dot_i8(min_i8.data(), min_i8.data(), n), 128 * 128 * dims) << "dims " << n;
        EXPECT_EQ(k().dot_i8(min_i8.data(), max_i8.data(), n), -128 * 127 * dims) << "dims " << n;
        EXPECT_EQ(k().l2sq_i8(min_i8.data(), max_i8.data(), n), 255 * 255 * dims) << "dims " << n;
        EXPECT_EQ(k().dot_u8i8(max_u8.data(), min_i8.data(), n), -255 * 128 * dims) << "dims " << n;
        EXPECT_EQ(k().dot_u8i8(max_u8.data(), max_i8.data(), n), 255 * 127 * dims) << "dims " << n;
        EXPECT_EQ(k().cos_i8(min_i8.data(), max_i8.data(), n), cos_i8_scalar(min_i8.data(), max_i8.data(), n));
    }
    // The largest dims the header promises exact, for dot (2^16 * 128^2 = 2^30).
    const std::size_t big = 65536;
    const std::vector<std::int8_t> min_i8(big, -128);
    const std::vector<std::uint8_t> max_u8(big, 255);
    EXPECT_EQ(k().dot_i8(min_i8.data(), min_i8.data(), big), 1 << 30);
    EXPECT_EQ(k().dot_u8i8(max_u8.data(), min_i8.data(), big), -255 * 128 * 65536);
}

TEST_P(KernelTest, KernelsReadOnlyTheirDims) {
    // Inputs sit at the very end of their buffers: a kernel that reads past dims would read
    // the guard values and give a different answer (or fault under AddressSanitizer).
    for (std::size_t n : {std::size_t{1}, std::size_t{3}, std::size_t{17}, std::size_t{50}, std::size_t{97}}) {
        std::vector<float> fa(n + 64, 1e30f), fb(n + 64, 1e30f);
        std::vector<std::int8_t> ia(n + 64, 127), ib(n + 64, 127);
        std::vector<std::uint8_t> ua(n + 64, 255);
        const std::vector<float> ra = random_floats(n, 1), rb = random_floats(n, 2);
        const std::vector<std::int8_t> sa = random_ints<std::int8_t>(n, 3, -128, 127);
        const std::vector<std::int8_t> sb = random_ints<std::int8_t>(n, 4, -128, 127);
        const std::vector<std::uint8_t> su = random_ints<std::uint8_t>(n, 5, 0, 255);
        for (std::size_t i = 0; i < n; ++i) {
            fa[i] = ra[i];
            fb[i] = rb[i];
            ia[i] = sa[i];
            ib[i] = sb[i];
            ua[i] = su[i];
        }
        EXPECT_NEAR(k().dot_f32(fa.data(), fb.data(), n), dot_f32_scalar(ra.data(), rb.data(), n), 1e-3) << n;
        EXPECT_NEAR(k().l2sq_f32(fa.data(), fb.data(), n), l2sq_f32_scalar(ra.data(), rb.data(), n), 1e-3) << n;
        EXPECT_NEAR(k().cos_f32(fa.data(), fb.data(), n), cos_f32_scalar(ra.data(), rb.data(), n), 1e-4) << n;
        EXPECT_EQ(k().dot_i8(ia.data(), ib.data(), n), dot_i8_scalar(sa.data(), sb.data(), n)) << n;
        EXPECT_EQ(k().l2sq_i8(ia.data(), ib.data(), n), l2sq_i8_scalar(sa.data(), sb.data(), n)) << n;
        EXPECT_EQ(k().cos_i8(ia.data(), ib.data(), n), cos_i8_scalar(sa.data(), sb.data(), n)) << n;
        EXPECT_EQ(k().dot_u8i8(ua.data(), ib.data(), n), dot_u8i8_scalar(su.data(), sb.data(), n)) << n;
    }
}

TEST_P(KernelTest, KernelsForUsesTheseKernelsWhenThisIsTheBestVariantOfItsIsa) {
    Result<const KernelTable*> table = kernels_for(k().isa);
    ASSERT_TRUE(table.is_ok()) << table.status().message();
    if (std::string(table.value()->variant) != k().variant) {
        GTEST_SKIP() << "kernels_for(" << isa_name(k().isa) << ") picks " << table.value()->variant << " here";
    }
    const KernelTable& t = *table.value();
    EXPECT_EQ(t.dot_f32, k().dot_f32);
    EXPECT_EQ(t.l2sq_f32, k().l2sq_f32);
    EXPECT_EQ(t.cos_f32, k().cos_f32);
    EXPECT_EQ(t.dot_i8, k().dot_i8);
    EXPECT_EQ(t.l2sq_i8, k().l2sq_i8);
    EXPECT_EQ(t.cos_i8, k().cos_i8);
    EXPECT_EQ(t.dot_u8i8, k().dot_u8i8);
    EXPECT_EQ(t.gemm_u8i8, k().gemm_u8i8);
    EXPECT_EQ(t.int8_peak, k().int8_peak);
    EXPECT_EQ(t.relu_requantize, k().relu_requantize);
    EXPECT_EQ(t.gemm_s16s16, k().gemm_s16s16);
    EXPECT_EQ(t.quantize_row_s16, k().quantize_row_s16);
    EXPECT_EQ(t.quantize_row_u8, k().quantize_row_u8);
    EXPECT_EQ(t.gemm_u8i8_wide, k().gemm_u8i8_wide);
    EXPECT_EQ(t.dequantize_requantize, k().dequantize_requantize);
}

// Packs W [n][k] (row-major) into the gemm panel layout of gemm_kernels.hpp.
std::vector<std::int8_t> pack_panels(const std::vector<std::int8_t>& w, std::size_t n, std::size_t k,
                                     std::size_t n_pad, std::size_t k_pad) {
    std::vector<std::int8_t> panels(n_pad * k_pad, 0);
    const std::size_t groups = k_pad / kGemmKGroup;
    for (std::size_t col = 0; col < n; ++col) {
        for (std::size_t kk = 0; kk < k; ++kk) {
            const std::size_t at =
                ((col / kGemmColumnBlock * groups + kk / kGemmKGroup) * kGemmColumnBlock + col % kGemmColumnBlock) *
                    kGemmKGroup +
                kk % kGemmKGroup;
            panels[at] = w[col * k + kk];
        }
    }
    return panels;
}

// C = A W^T exactly, for shapes that exercise every row tail and column block, on random and on
// extreme values (127 x +-127: the largest pair sums vpmaddubsw can see without saturating).
TEST_P(KernelTest, GemmIsExactAgainstPlainLoops) {
    const std::size_t shapes[][3] = {{1, 4, 16}, {3, 8, 16}, {4, 208, 256}, {5, 12, 32}, {7, 256, 128},
                                     {9, 64, 8},  {17, 36, 48}, {32, 128, 64}, {33, 4, 16}};
    std::uint32_t seed = 1;
    for (const auto& shape : shapes) {
        for (bool extreme : {false, true}) {
            const std::size_t rows = shape[0], depth = shape[1], n = shape[2];
            const std::size_t k_pad = (depth + 3) / 4 * 4, n_pad = (n + 15) / 16 * 16;
            const std::size_t lda = k_pad + 4, ldc = n_pad + 16;  // strides wider than the data
            std::vector<std::uint8_t> a = extreme ? random_extremes<std::uint8_t>(rows * lda, seed++, {0, 1, 126, 127})
                                                  : random_ints<std::uint8_t>(rows * lda, seed++, 0, 127);
            std::vector<std::int8_t> w = extreme ? random_extremes<std::int8_t>(n * depth, seed++, {-127, -126, 0, 126, 127})
                                                 : random_ints<std::int8_t>(n * depth, seed++, -127, 127);
            const std::vector<std::int8_t> panels = pack_panels(w, n, depth, n_pad, k_pad);
            std::vector<std::int32_t> c(rows * ldc, -7);
            k().gemm_u8i8(a.data(), lda, rows, panels.data(), k_pad, n_pad, c.data(), ldc);
            for (std::size_t r = 0; r < rows; ++r) {
                for (std::size_t col = 0; col < n_pad; ++col) {
                    std::int32_t expected = 0;
                    for (std::size_t kk = 0; col < n && kk < depth; ++kk)
                        expected += std::int32_t{a[r * lda + kk]} * std::int32_t{w[col * depth + kk]};
                    ASSERT_EQ(c[r * ldc + col], expected)
                        << rows << "x" << depth << "x" << n << (extreme ? " extreme" : "") << " at " << r << "," << col;
                }
                for (std::size_t col = n_pad; col < ldc; ++col) ASSERT_EQ(c[r * ldc + col], -7) << "wrote past n_pad";
            }
        }
    }
}

TEST_P(KernelTest, ReluRequantizeIsBitIdenticalToScalar) {
    for (std::size_t n : {1, 7, 8, 9, 64, 127, 256, 1000}) {
        for (int kind = 0; kind < 3; ++kind) {  // mixed signs, all negative (scale 1), ties at .5
            std::vector<float> y = random_floats(n, 40 + static_cast<std::uint32_t>(n));
            if (kind == 1) for (float& v : y) v = -std::fabs(v);
            if (kind == 2) for (std::size_t i = 0; i < n; ++i) y[i] = static_cast<float>(i % 128) + 0.5f;
            std::vector<float> y_ref = y;
            std::vector<std::uint8_t> q(n + 8, 200), q_ref(n + 8, 200);
            const float scale = k().relu_requantize(y.data(), n, q.data());
            const float scale_ref = relu_requantize_scalar(y_ref.data(), n, q_ref.data());
            EXPECT_EQ(scale, scale_ref) << n << " kind " << kind;
            EXPECT_EQ(y, y_ref) << n << " kind " << kind;
            EXPECT_EQ(q, q_ref) << n << " kind " << kind;  // includes the 8 bytes past n: untouched
            for (std::size_t i = 0; i < n; ++i) EXPECT_LE(q[i], kGemmActivationMax);
        }
    }
}

TEST_P(KernelTest, GemmS16IsExactAgainstPlainLoops) {
    const std::size_t shapes[][3] = {{1, 4, 16}, {2, 8, 16}, {3, 208, 256}, {5, 12, 32}, {32, 212, 48}};
    std::uint32_t seed = 100;
    for (const auto& shape : shapes) {
        for (bool extreme : {false, true}) {
            const std::size_t rows = shape[0], depth = shape[1], n = shape[2];
            const std::size_t k_pad = (depth + 3) / 4 * 4, n_pad = (n + 15) / 16 * 16;
            const std::size_t lda = k_pad + 4, ldc = n_pad + 16;
            std::vector<std::int16_t> a =
                extreme ? random_extremes<std::int16_t>(rows * lda, seed++, {-16383, -16382, 0, 16382, 16383})
                        : random_ints<std::int16_t>(rows * lda, seed++, -16383, 16383);
            for (std::size_t r = 0; r < rows; ++r)  // padding past depth is zero, as QuantizedMlp leaves it
                for (std::size_t kk = depth; kk < lda; ++kk) a[r * lda + kk] = 0;
            std::vector<std::int8_t> w = extreme ? random_extremes<std::int8_t>(n * depth, seed++, {-127, 0, 127})
                                                 : random_ints<std::int8_t>(n * depth, seed++, -127, 127);
            const std::vector<std::int8_t> panels8 = pack_panels(w, n, depth, n_pad, k_pad);
            const std::vector<std::int16_t> panels(panels8.begin(), panels8.end());
            std::vector<std::int32_t> c(rows * ldc, -7);
            k().gemm_s16s16(a.data(), lda, rows, panels.data(), k_pad, n_pad, c.data(), ldc);
            for (std::size_t r = 0; r < rows; ++r) {
                for (std::size_t col = 0; col < n_pad; ++col) {
                    std::int64_t expected = 0;
                    for (std::size_t kk = 0; col < n && kk < depth; ++kk)
                        expected += std::int64_t{a[r * lda + kk]} * std::int64_t{w[col * depth + kk]};
                    ASSERT_EQ(c[r * ldc + col], expected)
                        << rows << "x" << depth << "x" << n << (extreme ? " extreme" : "") << " at " << r << "," << col;
                }
                for (std::size_t col = n_pad; col < ldc; ++col) ASSERT_EQ(c[r * ldc + col], -7) << "wrote past n_pad";
            }
        }
    }
}

TEST_P(KernelTest, QuantizeRowS16IsBitIdenticalToScalarAndReconstructsTheRow) {
    for (std::size_t n : {1, 7, 8, 9, 64, 208, 1000}) {
        for (int kind = 0; kind < 3; ++kind) {  // mixed signs, all zero, exact halves (ties)
            std::vector<float> x = random_floats(n, 70 + static_cast<std::uint32_t>(n));
            if (kind == 1) x.assign(n, 0.0f);
            if (kind == 2) for (std::size_t i = 0; i < n; ++i) x[i] = static_cast<float>(i % 16) - 7.5f;
            const std::vector<float> mult = random_floats(n, 90);
            for (const float* m : {static_cast<const float*>(nullptr), mult.data()}) {
                for (std::int32_t levels : {16383, 255}) {
                    std::vector<std::int16_t> q(n + 8, 999), q_ref(n + 8, 999);
                    float scale = 0, scale_ref = 0;
                    k().quantize_row_s16(x.data(), m, n, levels, q.data(), &scale);
                    quantize_row_s16_scalar(x.data(), m, n, levels, q_ref.data(), &scale_ref);
                    ASSERT_EQ(scale, scale_ref) << n << " kind " << kind;
                    ASSERT_EQ(q, q_ref) << n << " kind " << kind;  // includes the 8 past n: untouched
                    for (std::size_t i = 0; i < n; ++i) {
                        const float v = m ? x[i] * m[i] : x[i];
                        EXPECT_LE(std::abs(int{q[i]}), levels);
                        EXPECT_NEAR(scale * static_cast<float>(q[i]), v, scale * 0.5f + 1e-6f) << i;
                    }
                }
            }
        }
    }
}

// The first layer's product on all 8 bits of the activations: every row tail of the ISA's
// tiles (1..9 rows, 17, 33), k tails (depth not a multiple of 4), column blocks past the real
// width, on random and on extreme values (255 x -127, 1 x 127: where a saturating or
// sign-flipping kernel would go wrong).
TEST_P(KernelTest, GemmWideIsExactAgainstPlainLoops) {
    const std::size_t shapes[][3] = {{1, 4, 16},  {2, 8, 16},   {3, 211, 256}, {4, 208, 256}, {5, 12, 32},
                                     {6, 1, 16},  {7, 256, 128}, {8, 212, 48},  {9, 64, 8},    {17, 37, 48},
                                     {32, 211, 256}, {33, 5, 16}};
    std::uint32_t seed = 200;
    for (const auto& shape : shapes) {
        for (bool extreme : {false, true}) {
            const std::size_t rows = shape[0], depth = shape[1], n = shape[2];
            const std::size_t k_pad = (depth + 3) / 4 * 4, n_pad = (n + 15) / 16 * 16;
            const std::size_t lda = k_pad + 4, ldc = n_pad + 16;  // strides wider than the data
            std::vector<std::uint8_t> a = extreme ? random_extremes<std::uint8_t>(rows * lda, seed++, {1, 2, 128, 254, 255})
                                                  : random_ints<std::uint8_t>(rows * lda, seed++, 1, 255);
            std::vector<std::int8_t> w = extreme ? random_extremes<std::int8_t>(n * depth, seed++, {-127, -126, 0, 126, 127})
                                                 : random_ints<std::int8_t>(n * depth, seed++, -127, 127);
            const std::vector<std::int8_t> panels = pack_panels(w, n, depth, n_pad, k_pad);
            std::vector<std::int32_t> w_sums(n_pad, 0);
            for (std::size_t col = 0; col < n; ++col)
                for (std::size_t kk = 0; kk < depth; ++kk) w_sums[col] += w[col * depth + kk];
            std::vector<std::int32_t> c(rows * ldc, -7);
            k().gemm_u8i8_wide(a.data(), lda, rows, panels.data(), k_pad, n_pad, w_sums.data(), c.data(), ldc);
            for (std::size_t r = 0; r < rows; ++r) {
                for (std::size_t col = 0; col < n_pad; ++col) {
                    std::int32_t expected = 0;
                    for (std::size_t kk = 0; col < n && kk < depth; ++kk)
                        expected += std::int32_t{a[r * lda + kk]} * std::int32_t{w[col * depth + kk]};
                    ASSERT_EQ(c[r * ldc + col], expected)
                        << rows << "x" << depth << "x" << n << (extreme ? " extreme" : "") << " at " << r << "," << col;
                }
                for (std::size_t col = n_pad; col < ldc; ++col) ASSERT_EQ(c[r * ldc + col], -7) << "wrote past n_pad";
            }
        }
    }
}

// The plain-loop definition of quantize_row_u8 in gemm_kernels.hpp, against which the scalar
// kernel is checked too.
void quantize_row_u8_reference(const float* x, const float* mult, std::size_t n, std::uint8_t* q, float* scale,
                               std::int32_t* zero) {
    float lo = 0.0f, hi = 0.0f;
    for (std::size_t i = 0; i < n; ++i) {
        const float v = mult ? x[i] * mult[i] : x[i];
        lo = std::min(lo, v);
        hi = std::max(hi, v);
    }
    *scale = hi > lo ? (hi - lo) / 254.0f : 1.0f;
    const float inv = 1.0f / *scale;
    const float z = std::min(std::nearbyint(-lo * inv), 254.0f);
    for (std::size_t i = 0; i < n; ++i) {
        const float v = std::nearbyint((mult ? x[i] * mult[i] : x[i]) * inv) + z;
        q[i] = static_cast<std::uint8_t>(std::min(std::max(v, 0.0f), 254.0f) + 1.0f);
    }
    *zero = static_cast<std::int32_t>(z) + 1;
}

TEST_P(KernelTest, QuantizeRowU8IsBitIdenticalToTheDefinitionAndReconstructsTheRow) {
    for (std::size_t n : {1, 7, 8, 9, 15, 16, 17, 64, 208, 211, 1000}) {
        for (int kind = 0; kind < 5; ++kind) {  // mixed signs, all zero, exact halves, all positive, all negative
            std::vector<float> x = random_floats(n, 170 + static_cast<std::uint32_t>(n));
            if (kind == 1) x.assign(n, 0.0f);
            if (kind == 2) for (std::size_t i = 0; i < n; ++i) x[i] = static_cast<float>(i % 16) - 7.5f;
            if (kind == 3) for (float& v : x) v = std::fabs(v) + 0.25f;
            if (kind == 4) for (float& v : x) v = -std::fabs(v) - 0.25f;
            const std::vector<float> mult = random_floats(n, 190);
            for (const float* m : {static_cast<const float*>(nullptr), mult.data()}) {
                std::vector<std::uint8_t> q(n + 8, 77), q_ref(n + 8, 77);
                float scale = 0, scale_ref = 0;
                std::int32_t zero = -1, zero_ref = -1;
                k().quantize_row_u8(x.data(), m, n, q.data(), &scale, &zero);
                quantize_row_u8_reference(x.data(), m, n, q_ref.data(), &scale_ref, &zero_ref);
                ASSERT_EQ(scale, scale_ref) << n << " kind " << kind;
                ASSERT_EQ(zero, zero_ref) << n << " kind " << kind;
                ASSERT_EQ(q, q_ref) << n << " kind " << kind;  // includes the 8 past n: untouched
                ASSERT_GE(zero, 1);
                ASSERT_LE(zero, 255);
                for (std::size_t i = 0; i < n; ++i) {
                    const float v = m ? x[i] * m[i] : x[i];
                    ASSERT_GE(q[i], 1);
                    EXPECT_NEAR(scale * static_cast<float>(int{q[i]} - zero), v, scale * 0.5f + 1e-5f * std::fabs(v))
                        << n << " kind " << kind << " at " << i;
                }
            }
        }
    }
}

TEST_P(KernelTest, DequantizeRequantizeIsBitIdenticalToScalar) {
    for (std::size_t n : {1, 7, 8, 9, 16, 17, 64, 127, 128, 256}) {
        for (int kind = 0; kind < 3; ++kind) {  // mixed signs, all negative (scale 1), with a zero-point share
            std::vector<std::int32_t> acc = random_ints<std::int32_t>(n, 300 + static_cast<std::uint32_t>(n), -2000000, 2000000);
            if (kind == 1) for (auto& v : acc) v = -std::abs(v) - 1;
            const std::vector<std::int32_t> w_sums = random_ints<std::int32_t>(n, 310, -20000, 20000);
            const std::vector<float> scale = random_floats(n, 320);
            std::vector<float> scale_pos(n);
            for (std::size_t i = 0; i < n; ++i) scale_pos[i] = std::fabs(scale[i]) * 1e-3f + 1e-5f;
            std::vector<float> bias = random_floats(n, 330);
            if (kind == 1) for (float& b : bias) b = -std::fabs(b);
            const std::int32_t zero = kind == 2 ? 131 : 0;
            const std::int32_t* sums = kind == 2 ? w_sums.data() : nullptr;
            std::vector<float> y(n + 8, 5.0f), y_ref(n + 8, 5.0f);
            std::vector<std::uint8_t> q(n + 8, 200), q_ref(n + 8, 200);
            const float rs = 0.0371f;
            const float got = k().dequantize_requantize(acc.data(), n, zero, sums, rs, scale_pos.data(), bias.data(),
                                                        y.data(), q.data());
            const float want = dequantize_requantize_scalar(acc.data(), n, zero, sums, rs, scale_pos.data(), bias.data(),
                                                            y_ref.data(), q_ref.data());
            EXPECT_EQ(got, want) << n << " kind " << kind;
            EXPECT_EQ(y, y_ref) << n << " kind " << kind;
            EXPECT_EQ(q, q_ref) << n << " kind " << kind;  // includes the 8 past n: untouched
            // And the scalar kernel is its definition: dequantize, then relu_requantize.
            std::vector<float> y_def(n);
            for (std::size_t i = 0; i < n; ++i) {
                const std::int32_t sum = sums ? acc[i] - zero * sums[i] : acc[i];
                const float s = rs * scale_pos[i];
                volatile float p = static_cast<float>(sum) * s;  // rounded: never fused with the addition
                y_def[i] = p + bias[i];
            }
            std::vector<std::uint8_t> q_def(n + 8, 200);
            EXPECT_EQ(relu_requantize_scalar(y_def.data(), n, q_def.data()), want);
            EXPECT_EQ(q_def, q_ref);
            for (std::size_t i = 0; i < n; ++i) EXPECT_LE(q[i], kGemmActivationMax);
        }
    }
}

TEST_P(KernelTest, Int8PeakProbeCountsItsMultiplyAccumulates) {
    const std::uint64_t one = k().int8_peak(1000);
    EXPECT_GT(one, 0u);
    EXPECT_EQ(k().int8_peak(2000), 2 * one);
}

INSTANTIATE_TEST_SUITE_P(Variants, KernelTest, ::testing::ValuesIn(kVariants),
                         [](const ::testing::TestParamInfo<Variant>& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace recserve::simd
