// Portable int8 matrix product: the reference every ISA's gemm is tested against.
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "recserve/simd/gemm_kernels.hpp"
#include "quantize_u8.hpp"

namespace recserve::simd {

void gemm_u8i8_scalar(const std::uint8_t* a, std::size_t lda, std::size_t rows, const std::int8_t* w,
                      std::size_t k_pad, std::size_t n_pad, std::int32_t* c, std::size_t ldc) {
    const std::size_t groups = k_pad / kGemmKGroup;
    const std::size_t block_bytes = groups * kGemmColumnBlock * kGemmKGroup;
    for (std::size_t r = 0; r < rows; ++r) {
        const std::uint8_t* a_row = a + r * lda;
        for (std::size_t n0 = 0; n0 < n_pad; n0 += kGemmColumnBlock) {
            const std::int8_t* block = w + (n0 / kGemmColumnBlock) * block_bytes;
            std::int32_t sums[kGemmColumnBlock] = {};
            for (std::size_t g = 0; g < groups; ++g) {
                const std::uint8_t* a_group = a_row + g * kGemmKGroup;
                const std::int8_t* w_group = block + g * kGemmColumnBlock * kGemmKGroup;
                for (std::size_t col = 0; col < kGemmColumnBlock; ++col) {
                    for (std::size_t kk = 0; kk < kGemmKGroup; ++kk) {
                        sums[col] += std::int32_t{a_group[kk]} * std::int32_t{w_group[col * kGemmKGroup + kk]};
                    }
                }
            }
            for (std::size_t col = 0; col < kGemmColumnBlock; ++col) c[r * ldc + n0 + col] = sums[col];
        }
    }
}

float relu_requantize_scalar(float* y, std::size_t n, std::uint8_t* q) {
    float m[8] = {};  // eight running maxima: one chain would wait on each comparison
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        for (std::size_t j = 0; j < 8; ++j) {
            y[i + j] = y[i + j] > 0.0f ? y[i + j] : 0.0f;
            m[j] = m[j] > y[i + j] ? m[j] : y[i + j];
        }
    }
    for (; i < n; ++i) {
        y[i] = y[i] > 0.0f ? y[i] : 0.0f;
        m[0] = m[0] > y[i] ? m[0] : y[i];
    }
    float hi = m[0];
    for (std::size_t j = 1; j < 8; ++j) hi = hi > m[j] ? hi : m[j];
    const float levels = static_cast<float>(kGemmActivationMax);
    const float scale = hi > 0.0f ? hi / levels : 1.0f;
    const float inv = 1.0f / scale;
    for (i = 0; i < n; ++i) {
        float v = y[i] * inv;
        v = v < levels ? v : levels;
        q[i] = static_cast<std::uint8_t>(static_cast<std::int32_t>(v + 0.5f));
    }
    return scale;
}

void gemm_s16s16_scalar(const std::int16_t* a, std::size_t lda, std::size_t rows, const std::int16_t* w,
                       std::size_t k_pad, std::size_t n_pad, std::int32_t* c, std::size_t ldc) {
    const std::size_t groups = k_pad / kGemmKGroup;
    const std::size_t block_bytes = groups * kGemmColumnBlock * kGemmKGroup;
    for (std::size_t r = 0; r < rows; ++r) {
        const std::int16_t* a_row = a + r * lda;
        for (std::size_t n0 = 0; n0 < n_pad; n0 += kGemmColumnBlock) {
            const std::int16_t* block = w + (n0 / kGemmColumnBlock) * block_bytes;
            std::int32_t sums[kGemmColumnBlock] = {};
            for (std::size_t g = 0; g < groups; ++g) {
                const std::int16_t* a_group = a_row + g * kGemmKGroup;
                const std::int16_t* w_group = block + g * kGemmColumnBlock * kGemmKGroup;
                for (std::size_t col = 0; col < kGemmColumnBlock; ++col) {
                    for (std::size_t kk = 0; kk < kGemmKGroup; ++kk)
                        sums[col] += std::int32_t{a_group[kk]} * std::int32_t{w_group[col * kGemmKGroup + kk]};
                }
            }
            for (std::size_t col = 0; col < kGemmColumnBlock; ++col) c[r * ldc + n0 + col] = sums[col];
        }
    }
}

void quantize_row_s16_scalar(const float* x, const float* mult, std::size_t n, std::int32_t levels, std::int16_t* q,
                             float* scale) {
    float hi = 0.0f;
    for (std::size_t i = 0; i < n; ++i) {
        const float v = std::fabs(mult ? x[i] * mult[i] : x[i]);
        hi = hi > v ? hi : v;
    }
    const float top = static_cast<float>(levels);
    const float s = hi > 0.0f ? hi / top : 1.0f;
    const float inv = 1.0f / s;
    for (std::size_t i = 0; i < n; ++i) {
        float v = std::nearbyint((mult ? x[i] * mult[i] : x[i]) * inv);
        v = v < top ? v : top;
        v = v > -top ? v : -top;
        q[i] = static_cast<std::int16_t>(v);
    }
    *scale = s;
}

void quantize_row_u8_scalar(const float* x, const float* mult, std::size_t n, std::uint8_t* q, float* scale,
                            std::int32_t* zero) {
    float lo = 0.0f, hi = 0.0f;
    for (std::size_t i = 0; i < n; ++i) {
        const float v = mult ? x[i] * mult[i] : x[i];
        lo = lo < v ? lo : v;
        hi = hi > v ? hi : v;
    }
    const U8Quantization u = U8Quantization::of_range(lo, hi);
    for (std::size_t i = 0; i < n; ++i) q[i] = u.quantize(mult ? x[i] * mult[i] : x[i]);
    *scale = u.scale;
    *zero = u.zero();
}

void gemm_u8i8_wide_scalar(const std::uint8_t* a, std::size_t lda, std::size_t rows, const std::int8_t* w,
                           std::size_t k_pad, std::size_t n_pad, const std::int32_t* /*w_sums*/, std::int32_t* c,
                           std::size_t ldc) {
    gemm_u8i8_scalar(a, lda, rows, w, k_pad, n_pad, c, ldc);  // plain int32 products: any u8 is exact
}

namespace {

// v as rounded to float, before it takes part in another operation: where the target has a fused
// multiply-add, the compiler may otherwise fuse a product with the sum it feeds (C++ allows
// it), and the SIMD kernels, which round the product first, would differ in the last bit.
inline float rounded(float v) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    asm("" : "+x"(v));
#elif defined(__GNUC__) && defined(__aarch64__)
    asm("" : "+w"(v));
#endif
    return v;
}

}  // namespace

float dequantize_requantize_scalar(const std::int32_t* acc, std::size_t n, std::int32_t zero, const std::int32_t* w_sums,
                                   float row_scale, const float* scale, const float* bias, float* y, std::uint8_t* q) {
    for (std::size_t i = 0; i < n; ++i) {
        const std::int32_t sum = w_sums ? acc[i] - zero * w_sums[i] : acc[i];
        const float s = row_scale * scale[i];
        const float p = rounded(static_cast<float>(sum) * s);
        y[i] = p + bias[i];
    }
    return relu_requantize_scalar(y, n, q);
}

std::uint64_t int8_peak_scalar(std::size_t iterations) {
    // Eight independent multiply-add chains the compiler may not fold away (volatile inputs).
    volatile std::int32_t seed_a = 3;
    volatile std::int32_t seed_w = -5;
    std::int32_t acc[8] = {};
    const std::int32_t a = seed_a;
    const std::int32_t w = seed_w;
    for (std::size_t i = 0; i < iterations; ++i) {
        for (std::int32_t j = 0; j < 8; ++j) acc[j] += (a + j) * (w - j);
    }
    volatile std::int32_t sink = acc[0] ^ acc[7];
    (void)sink;
    return std::uint64_t{iterations} * 8;
}

}  // namespace recserve::simd
