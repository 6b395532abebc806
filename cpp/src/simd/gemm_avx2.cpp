// AVX2 int8 matrix product (compiled with -mavx2 -mfma; run only where cpu_features().avx2_fma).
//
// A tile is R rows x 16 columns held in 2R int32x8 accumulators. Each 4-k step loads the
// 64 packed weight bytes once (two ymm) and, per row, broadcasts 4 activation bytes; then
// vpmaddubsw (u8 x s8 pair sums in int16: never saturates, activations are 7-bit) and vpmaddwd
// against ones (int16 pairs into int32) give each column 4 products per instruction pair.
// Columns outer, rows inner: the 16-column weight panel stays in L1 across the row tiles.
#include <immintrin.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "recserve/simd/gemm_kernels.hpp"
#include "quantize_u8.hpp"

namespace recserve::simd {
namespace {

constexpr std::size_t kRowTile = 4;

inline __m256i broadcast_4_bytes(const std::uint8_t* p) {
    std::int32_t v;
    std::memcpy(&v, p, sizeof v);
    return _mm256_set1_epi32(v);
}

template <std::size_t R>
inline void tile(const std::uint8_t* a, std::size_t lda, const std::int8_t* panel, std::size_t groups,
                 std::int32_t* c, std::size_t ldc) {
    const __m256i ones_i16x16 = _mm256_set1_epi16(1);
    __m256i lo_i32x8[R];
    __m256i hi_i32x8[R];
    for (std::size_t r = 0; r < R; ++r) lo_i32x8[r] = hi_i32x8[r] = _mm256_setzero_si256();
    for (std::size_t g = 0; g < groups; ++g) {
        const __m256i w_lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(panel + g * 64));
        const __m256i w_hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(panel + g * 64 + 32));
        for (std::size_t r = 0; r < R; ++r) {
            const __m256i a_u8x32 = broadcast_4_bytes(a + r * lda + g * kGemmKGroup);
            lo_i32x8[r] = _mm256_add_epi32(
                lo_i32x8[r], _mm256_madd_epi16(_mm256_maddubs_epi16(a_u8x32, w_lo), ones_i16x16));
            hi_i32x8[r] = _mm256_add_epi32(
                hi_i32x8[r], _mm256_madd_epi16(_mm256_maddubs_epi16(a_u8x32, w_hi), ones_i16x16));
        }
    }
    for (std::size_t r = 0; r < R; ++r) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(c + r * ldc), lo_i32x8[r]);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(c + r * ldc + 8), hi_i32x8[r]);
    }
}

}  // namespace

void gemm_u8i8_avx2(const std::uint8_t* a, std::size_t lda, std::size_t rows, const std::int8_t* w,
                    std::size_t k_pad, std::size_t n_pad, std::int32_t* c, std::size_t ldc) {
    const std::size_t groups = k_pad / kGemmKGroup;
    for (std::size_t n0 = 0; n0 < n_pad; n0 += kGemmColumnBlock) {
        const std::int8_t* panel = w + (n0 / kGemmColumnBlock) * groups * 64;
        std::size_t r = 0;
        for (; r + kRowTile <= rows; r += kRowTile) tile<kRowTile>(a + r * lda, lda, panel, groups, c + r * ldc + n0, ldc);
        switch (rows - r) {
            case 3: tile<3>(a + r * lda, lda, panel, groups, c + r * ldc + n0, ldc); break;
            case 2: tile<2>(a + r * lda, lda, panel, groups, c + r * ldc + n0, ldc); break;
            case 1: tile<1>(a + r * lda, lda, panel, groups, c + r * ldc + n0, ldc); break;
            default: break;
        }
    }
}

namespace {

// The second half of relu_requantize: y (already ReLU'd) to 7 bits, given its maximum hi.
float requantize_relud(const float* y, std::size_t n, float hi, std::uint8_t* q) {
    const float levels = static_cast<float>(kGemmActivationMax);
    const float scale = hi > 0.0f ? hi / levels : 1.0f;
    const float inv = 1.0f / scale;
    const __m256 inv_f32x8 = _mm256_set1_ps(inv);
    const __m256 levels_f32x8 = _mm256_set1_ps(levels);
    const __m256 half_f32x8 = _mm256_set1_ps(0.5f);
    std::size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        const __m256 v = _mm256_min_ps(_mm256_mul_ps(_mm256_loadu_ps(y + j), inv_f32x8), levels_f32x8);
        const __m256i q_i32x8 = _mm256_cvttps_epi32(_mm256_add_ps(v, half_f32x8));
        // 8 int32 in [0, 127] -> 8 bytes: pack to int16, then to uint8, lanes in order.
        const __m128i q_i16x8 = _mm_packs_epi32(_mm256_castsi256_si128(q_i32x8), _mm256_extracti128_si256(q_i32x8, 1));
        _mm_storel_epi64(reinterpret_cast<__m128i*>(q + j), _mm_packus_epi16(q_i16x8, q_i16x8));
    }
    for (; j < n; ++j) {
        float v = y[j] * inv;
        v = v < levels ? v : levels;
        q[j] = static_cast<std::uint8_t>(static_cast<std::int32_t>(v + 0.5f));
    }
    return scale;
}

float horizontal_max(__m256 v_f32x8) {
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, v_f32x8);
    float hi = 0.0f;
    for (float l : lanes) hi = hi > l ? hi : l;
    return hi;
}

}  // namespace

float relu_requantize_avx2(float* y, std::size_t n, std::uint8_t* q) {
    const __m256 zero = _mm256_setzero_ps();
    __m256 hi_f32x8 = zero;
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_max_ps(_mm256_loadu_ps(y + i), zero);
        _mm256_storeu_ps(y + i, v);
        hi_f32x8 = _mm256_max_ps(hi_f32x8, v);
    }
    float hi = horizontal_max(hi_f32x8);
    for (std::size_t t = i; t < n; ++t) {
        y[t] = y[t] > 0.0f ? y[t] : 0.0f;
        hi = hi > y[t] ? hi : y[t];
    }
    return requantize_relud(y, n, hi, q);
}

float dequantize_requantize_avx2(const std::int32_t* acc, std::size_t n, std::int32_t zero, const std::int32_t* w_sums,
                                 float row_scale, const float* scale, const float* bias, float* y, std::uint8_t* q) {
    const __m256 zero_f32x8 = _mm256_setzero_ps();
    const __m256 row_scale_f32x8 = _mm256_set1_ps(row_scale);
    const __m256i zero_i32x8 = _mm256_set1_epi32(zero);
    __m256 hi_f32x8 = zero_f32x8;
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i sum_i32x8 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + i));
        if (w_sums) {
            const __m256i w_i32x8 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w_sums + i));
            sum_i32x8 = _mm256_sub_epi32(sum_i32x8, _mm256_mullo_epi32(zero_i32x8, w_i32x8));
        }
        const __m256 s_f32x8 = _mm256_mul_ps(row_scale_f32x8, _mm256_loadu_ps(scale + i));
        __m256 p_f32x8 = _mm256_mul_ps(_mm256_cvtepi32_ps(sum_i32x8), s_f32x8);
        // The product is rounded before the bias is added, as in the scalar kernel: this file is
        // compiled with -mfma, and the compiler would otherwise fuse the two into one vfmadd.
        asm("" : "+x"(p_f32x8));
        const __m256 v = _mm256_max_ps(_mm256_add_ps(p_f32x8, _mm256_loadu_ps(bias + i)), zero_f32x8);
        _mm256_storeu_ps(y + i, v);
        hi_f32x8 = _mm256_max_ps(hi_f32x8, v);
    }
    float hi = horizontal_max(hi_f32x8);
    for (; i < n; ++i) {
        const std::int32_t sum = w_sums ? acc[i] - zero * w_sums[i] : acc[i];
        const float s = row_scale * scale[i];
        float p = static_cast<float>(sum) * s;
        asm("" : "+x"(p));  // not fused with the addition (see above)
        float v = p + bias[i];
        v = v > 0.0f ? v : 0.0f;
        y[i] = v;
        hi = hi > v ? hi : v;
    }
    return requantize_relud(y, n, hi, q);
}

void quantize_row_u8_avx2(const float* x, const float* mult, std::size_t n, std::uint8_t* q, float* scale,
                          std::int32_t* zero) {
    const auto load = [&](std::size_t i) {
        const __m256 v = _mm256_loadu_ps(x + i);
        return mult ? _mm256_mul_ps(v, _mm256_loadu_ps(mult + i)) : v;
    };
    __m256 lo_f32x8 = _mm256_setzero_ps(), hi_f32x8 = _mm256_setzero_ps();
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = load(i);
        lo_f32x8 = _mm256_min_ps(lo_f32x8, v);
        hi_f32x8 = _mm256_max_ps(hi_f32x8, v);
    }
    alignas(32) float lanes_lo[8];
    _mm256_store_ps(lanes_lo, lo_f32x8);
    float lo = 0.0f;
    for (float l : lanes_lo) lo = lo < l ? lo : l;
    float hi = horizontal_max(hi_f32x8);
    for (std::size_t t = i; t < n; ++t) {
        const float v = mult ? x[t] * mult[t] : x[t];
        lo = lo < v ? lo : v;
        hi = hi > v ? hi : v;
    }
    const U8Quantization u = U8Quantization::of_range(lo, hi);
    const __m256 inv_f32x8 = _mm256_set1_ps(u.inv), z_f32x8 = _mm256_set1_ps(u.z),
                 steps_f32x8 = _mm256_set1_ps(U8Quantization::kSteps);
    const __m256 zero_f32x8 = _mm256_setzero_ps(), one_f32x8 = _mm256_set1_ps(1.0f);
    std::size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 v = _mm256_round_ps(_mm256_mul_ps(load(j), inv_f32x8), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        v = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(v, z_f32x8), zero_f32x8), steps_f32x8);
        const __m256i q_i32x8 = _mm256_cvttps_epi32(_mm256_add_ps(v, one_f32x8));
        const __m128i q_i16x8 = _mm_packs_epi32(_mm256_castsi256_si128(q_i32x8), _mm256_extracti128_si256(q_i32x8, 1));
        _mm_storel_epi64(reinterpret_cast<__m128i*>(q + j), _mm_packus_epi16(q_i16x8, q_i16x8));
    }
    for (; j < n; ++j) q[j] = u.quantize(mult ? x[j] * mult[j] : x[j]);
    *scale = u.scale;
    *zero = u.zero();
}

// 8-bit activations in [1, 255] (the first layer): vpmaddubsw would saturate on 255 x 127 pairs,
// so each row takes a - 128 (a signed byte in [-127, 127], one vpxor) and the weights their
// absolute values (vpabsb, once per step for all rows): vpsignb moves each weight's sign onto
// the activation, and vpmaddubsw(|w|, sign(a - 128, w)) pair sums stay within 2 x 127 x 127.
// 128 * w_sums, added once per tile, gives back sum a * w.
namespace {

template <std::size_t R>
inline void tile_wide(const std::uint8_t* a, std::size_t lda, const std::int8_t* panel, std::size_t groups,
                      const std::int32_t* w_sums, std::int32_t* c, std::size_t ldc) {
    const __m256i ones_i16x16 = _mm256_set1_epi16(1);
    const __m256i flip_u8x32 = _mm256_set1_epi8(static_cast<char>(0x80));
    __m256i lo_i32x8[R];
    __m256i hi_i32x8[R];
    for (std::size_t r = 0; r < R; ++r) lo_i32x8[r] = hi_i32x8[r] = _mm256_setzero_si256();
    for (std::size_t g = 0; g < groups; ++g) {
        const __m256i w_lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(panel + g * 64));
        const __m256i w_hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(panel + g * 64 + 32));
        const __m256i abs_lo = _mm256_abs_epi8(w_lo), abs_hi = _mm256_abs_epi8(w_hi);
        for (std::size_t r = 0; r < R; ++r) {
            const __m256i s_i8x32 = _mm256_xor_si256(broadcast_4_bytes(a + r * lda + g * kGemmKGroup), flip_u8x32);
            lo_i32x8[r] = _mm256_add_epi32(
                lo_i32x8[r],
                _mm256_madd_epi16(_mm256_maddubs_epi16(abs_lo, _mm256_sign_epi8(s_i8x32, w_lo)), ones_i16x16));
            hi_i32x8[r] = _mm256_add_epi32(
                hi_i32x8[r],
                _mm256_madd_epi16(_mm256_maddubs_epi16(abs_hi, _mm256_sign_epi8(s_i8x32, w_hi)), ones_i16x16));
        }
    }
    const __m256i back_lo = _mm256_slli_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w_sums)), 7);
    const __m256i back_hi = _mm256_slli_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w_sums + 8)), 7);
    for (std::size_t r = 0; r < R; ++r) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(c + r * ldc), _mm256_add_epi32(lo_i32x8[r], back_lo));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(c + r * ldc + 8), _mm256_add_epi32(hi_i32x8[r], back_hi));
    }
}

}  // namespace

void gemm_u8i8_wide_avx2(const std::uint8_t* a, std::size_t lda, std::size_t rows, const std::int8_t* w,
                         std::size_t k_pad, std::size_t n_pad, const std::int32_t* w_sums, std::int32_t* c,
                         std::size_t ldc) {
    const std::size_t groups = k_pad / kGemmKGroup;
    for (std::size_t n0 = 0; n0 < n_pad; n0 += kGemmColumnBlock) {
        const std::int8_t* panel = w + (n0 / kGemmColumnBlock) * groups * 64;
        const std::int32_t* sums = w_sums + n0;
        std::size_t r = 0;
        for (; r + kRowTile <= rows; r += kRowTile)
            tile_wide<kRowTile>(a + r * lda, lda, panel, groups, sums, c + r * ldc + n0, ldc);
        switch (rows - r) {
            case 3: tile_wide<3>(a + r * lda, lda, panel, groups, sums, c + r * ldc + n0, ldc); break;
            case 2: tile_wide<2>(a + r * lda, lda, panel, groups, sums, c + r * ldc + n0, ldc); break;
            case 1: tile_wide<1>(a + r * lda, lda, panel, groups, sums, c + r * ldc + n0, ldc); break;
            default: break;
        }
    }
}

// 16-bit activations: per 4-k step each row broadcasts its 4 int16 values (8 bytes) to every
// 64-bit lane; each 32-byte quarter of the step's widened weights holds 4 columns x 4 k, so
// vpmaddwd leaves, per column, two int32 partial sums (k0+k1, k2+k3) in adjacent lanes, added
// together (vphaddd) once at the end of the tile. Two rows per tile: 8 accumulators + 4 weight
// registers + the broadcast fit the 16 ymm registers.
template <std::size_t R>
inline void tile_s16(const std::int16_t* a, std::size_t lda, const std::int16_t* panel, std::size_t groups,
                     std::int32_t* c, std::size_t ldc) {
    __m256i acc[R][4];
    for (std::size_t r = 0; r < R; ++r)
        for (auto& v : acc[r]) v = _mm256_setzero_si256();
    for (std::size_t g = 0; g < groups; ++g) {
        __m256i w_i16x16[4];
        for (int q = 0; q < 4; ++q) {
            w_i16x16[q] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(panel + g * 64 + q * 16));
            // Keep the weights in registers: folded into each row's vpmaddwd they are loaded
            // once per row, and the loads, not the multiplies, become the limit.
            asm("" : "+x"(w_i16x16[q]));
        }
        for (std::size_t r = 0; r < R; ++r) {
            std::int64_t four;
            std::memcpy(&four, a + r * lda + g * kGemmKGroup, sizeof four);
            const __m256i a_i16x16 = _mm256_set1_epi64x(four);
            for (int q = 0; q < 4; ++q) acc[r][q] = _mm256_add_epi32(acc[r][q], _mm256_madd_epi16(a_i16x16, w_i16x16[q]));
        }
    }
    for (std::size_t r = 0; r < R; ++r) {
        // hadd(q0, q1) = [c0 c1 c4 c5 | c2 c3 c6 c7]; the permute puts the columns in order.
        const __m256i lo = _mm256_permute4x64_epi64(_mm256_hadd_epi32(acc[r][0], acc[r][1]), 0xD8);
        const __m256i hi = _mm256_permute4x64_epi64(_mm256_hadd_epi32(acc[r][2], acc[r][3]), 0xD8);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(c + r * ldc), lo);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(c + r * ldc + 8), hi);
    }
}

void gemm_s16s16_avx2(const std::int16_t* a, std::size_t lda, std::size_t rows, const std::int16_t* w,
                      std::size_t k_pad, std::size_t n_pad, std::int32_t* c, std::size_t ldc) {
    const std::size_t groups = k_pad / kGemmKGroup;
    for (std::size_t n0 = 0; n0 < n_pad; n0 += kGemmColumnBlock) {
        const std::int16_t* panel = w + (n0 / kGemmColumnBlock) * groups * 64;
        std::size_t r = 0;
        for (; r + 2 <= rows; r += 2) tile_s16<2>(a + r * lda, lda, panel, groups, c + r * ldc + n0, ldc);
        if (r < rows) tile_s16<1>(a + r * lda, lda, panel, groups, c + r * ldc + n0, ldc);
    }
}

void quantize_row_s16_avx2(const float* x, const float* mult, std::size_t n, std::int32_t levels, std::int16_t* q,
                           float* scale) {
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const auto load = [&](std::size_t i) {
        const __m256 v = _mm256_loadu_ps(x + i);
        return mult ? _mm256_mul_ps(v, _mm256_loadu_ps(mult + i)) : v;
    };
    __m256 hi_f32x8 = _mm256_setzero_ps();
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) hi_f32x8 = _mm256_max_ps(hi_f32x8, _mm256_and_ps(load(i), abs_mask));
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, hi_f32x8);
    float hi = 0.0f;
    for (float l : lanes) hi = hi > l ? hi : l;
    for (std::size_t t = i; t < n; ++t) {
        const float v = std::fabs(mult ? x[t] * mult[t] : x[t]);
        hi = hi > v ? hi : v;
    }
    const float top = static_cast<float>(levels);
    const float s = hi > 0.0f ? hi / top : 1.0f;
    const float inv = 1.0f / s;
    const __m256 inv_f32x8 = _mm256_set1_ps(inv), top_f32x8 = _mm256_set1_ps(top), bottom_f32x8 = _mm256_set1_ps(-top);
    std::size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 v = _mm256_round_ps(_mm256_mul_ps(load(j), inv_f32x8), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        v = _mm256_max_ps(_mm256_min_ps(v, top_f32x8), bottom_f32x8);
        const __m256i q_i32x8 = _mm256_cvttps_epi32(v);
        const __m128i q_i16x8 = _mm_packs_epi32(_mm256_castsi256_si128(q_i32x8), _mm256_extracti128_si256(q_i32x8, 1));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(q + j), q_i16x8);
    }
    for (; j < n; ++j) {
        float v = std::nearbyint((mult ? x[j] * mult[j] : x[j]) * inv);
        v = v < top ? v : top;
        v = v > -top ? v : -top;
        q[j] = static_cast<std::int16_t>(v);
    }
    *scale = s;
}

std::uint64_t int8_peak_avx2(std::size_t iterations) {
    // Six independent chains from 2 activation x 3 weight registers, all named (an array, or
    // more chains, get spilled to the stack and then measure store forwarding instead).
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i a0 = _mm256_set1_epi8(3), a1 = _mm256_set1_epi8(5);
    __m256i w0 = _mm256_set1_epi8(-5), w1 = _mm256_set1_epi8(7), w2 = _mm256_set1_epi8(-9);
    __m256i c0 = _mm256_setzero_si256(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0;
    const auto mac = [&](__m256i acc, __m256i a, __m256i w) {
        return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(a, w), ones));
    };
    for (std::size_t i = 0; i < iterations; ++i) {
        // An empty asm that "changes" the inputs: the products cannot be hoisted out of the loop.
        asm volatile("" : "+x"(a0), "+x"(a1), "+x"(w0), "+x"(w1), "+x"(w2));
        c0 = mac(c0, a0, w0);
        c1 = mac(c1, a0, w1);
        c2 = mac(c2, a0, w2);
        c3 = mac(c3, a1, w0);
        c4 = mac(c4, a1, w1);
        c5 = mac(c5, a1, w2);
    }
    const __m256i sum = _mm256_add_epi32(_mm256_add_epi32(_mm256_add_epi32(c0, c1), _mm256_add_epi32(c2, c3)),
                                         _mm256_add_epi32(c4, c5));
    volatile std::int32_t sink = _mm256_extract_epi32(sum, 0);
    (void)sink;
    return std::uint64_t{iterations} * 6 * 32;
}

}  // namespace recserve::simd
