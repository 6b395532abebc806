// AVX-512 VNNI int8 matrix product (compiled with AVX-512 F/BW/VL/DQ + VNNI flags; run only
// where cpu_features().avx512_vnni).
//
// One zmm holds the 64 packed bytes of a 4-k step for 16 columns, so a tile of R rows x 16
// columns is R int32x16 accumulators and one vpdpbusd per row per step (u8 x s8, 4 products
// per lane, no intermediate saturation).
#include <immintrin.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "recserve/simd/gemm_kernels.hpp"
#include "quantize_u8.hpp"

namespace recserve::simd {
namespace {

constexpr std::size_t kRowTile = 8;

inline __m512i broadcast_4_bytes(const std::uint8_t* p) {
    std::int32_t v;
    std::memcpy(&v, p, sizeof v);
    return _mm512_set1_epi32(v);
}

template <std::size_t R>
inline void tile(const std::uint8_t* a, std::size_t lda, const std::int8_t* panel, std::size_t groups,
                 std::int32_t* c, std::size_t ldc) {
    __m512i acc_i32x16[R];
    for (std::size_t r = 0; r < R; ++r) acc_i32x16[r] = _mm512_setzero_si512();
    for (std::size_t g = 0; g < groups; ++g) {
        const __m512i w_i8x64 = _mm512_loadu_si512(panel + g * 64);
        for (std::size_t r = 0; r < R; ++r) {
            acc_i32x16[r] = _mm512_dpbusd_epi32(acc_i32x16[r], broadcast_4_bytes(a + r * lda + g * kGemmKGroup), w_i8x64);
        }
    }
    for (std::size_t r = 0; r < R; ++r) _mm512_storeu_si512(c + r * ldc, acc_i32x16[r]);
}

// Calls tile(std::integral_constant<std::size_t, rows_left>) for the last rows_left < R + 1
// rows: the row count is a template argument, so a tile's accumulators stay in registers.
template <std::size_t R, typename Tile>
inline void tail_tile(std::size_t rows_left, const Tile& tile) {
    if constexpr (R > 0) {
        if (rows_left == R) {
            tile(std::integral_constant<std::size_t, R>{});
            return;
        }
        tail_tile<R - 1>(rows_left, tile);
    }
}

// The 16-bit first layer: one 128-byte step of the packed int16 weights is two zmm, columns
// 0-7 and 8-15, each column's 4 k as two 32-bit lanes of 2 k; a row's 4 inputs broadcast as one
// 64-bit pattern meet them in vpdpwssd (2 products per lane, non-saturating: exact in int32
// under the layer's bound). Each column's two lanes are added once, at the end of the tile.
template <std::size_t R>
inline void tile_s16(const std::int16_t* a, std::size_t lda, const std::int16_t* panel, std::size_t groups,
                     std::int32_t* c, std::size_t ldc) {
    __m512i lo_i32x16[R], hi_i32x16[R];
    for (std::size_t r = 0; r < R; ++r) lo_i32x16[r] = hi_i32x16[r] = _mm512_setzero_si512();
    for (std::size_t g = 0; g < groups; ++g) {
        const __m512i w_lo_i16x32 = _mm512_loadu_si512(panel + g * 64);
        const __m512i w_hi_i16x32 = _mm512_loadu_si512(panel + g * 64 + 32);
        for (std::size_t r = 0; r < R; ++r) {
            std::int64_t four;
            std::memcpy(&four, a + r * lda + g * kGemmKGroup, sizeof four);
            const __m512i a_i16x32 = _mm512_set1_epi64(four);
            lo_i32x16[r] = _mm512_dpwssd_epi32(lo_i32x16[r], a_i16x32, w_lo_i16x32);
            hi_i32x16[r] = _mm512_dpwssd_epi32(hi_i32x16[r], a_i16x32, w_hi_i16x32);
        }
    }
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    for (std::size_t r = 0; r < R; ++r) {
        const __m512i sum = _mm512_add_epi32(_mm512_permutex2var_epi32(lo_i32x16[r], even, hi_i32x16[r]),
                                             _mm512_permutex2var_epi32(lo_i32x16[r], odd, hi_i32x16[r]));
        _mm512_storeu_si512(c + r * ldc, sum);
    }
}

}  // namespace

void gemm_s16s16_avx512vnni(const std::int16_t* a, std::size_t lda, std::size_t rows, const std::int16_t* w,
                            std::size_t k_pad, std::size_t n_pad, std::int32_t* c, std::size_t ldc) {
    const std::size_t groups = k_pad / kGemmKGroup;
    for (std::size_t n0 = 0; n0 < n_pad; n0 += kGemmColumnBlock) {
        const std::int16_t* panel = w + (n0 / kGemmColumnBlock) * groups * 64;
        std::size_t r = 0;
        for (; r + kRowTile <= rows; r += kRowTile)
            tile_s16<kRowTile>(a + r * lda, lda, panel, groups, c + r * ldc + n0, ldc);
        tail_tile<kRowTile - 1>(rows - r, [&](auto rows_left) {
            tile_s16<decltype(rows_left)::value>(a + r * lda, lda, panel, groups, c + r * ldc + n0, ldc);
        });
    }
}

void gemm_u8i8_avx512vnni(const std::uint8_t* a, std::size_t lda, std::size_t rows, const std::int8_t* w,
                          std::size_t k_pad, std::size_t n_pad, std::int32_t* c, std::size_t ldc) {
    const std::size_t groups = k_pad / kGemmKGroup;
    for (std::size_t n0 = 0; n0 < n_pad; n0 += kGemmColumnBlock) {
        const std::int8_t* panel = w + (n0 / kGemmColumnBlock) * groups * 64;
        std::size_t r = 0;
        for (; r + kRowTile <= rows; r += kRowTile) tile<kRowTile>(a + r * lda, lda, panel, groups, c + r * ldc + n0, ldc);
        tail_tile<kRowTile - 1>(rows - r, [&](auto rows_left) {
            tile<decltype(rows_left)::value>(a + r * lda, lda, panel, groups, c + r * ldc + n0, ldc);
        });
    }
}

void gemm_u8i8_wide_avx512vnni(const std::uint8_t* a, std::size_t lda, std::size_t rows, const std::int8_t* w,
                               std::size_t k_pad, std::size_t n_pad, const std::int32_t* /*w_sums*/, std::int32_t* c,
                               std::size_t ldc) {
    gemm_u8i8_avx512vnni(a, lda, rows, w, k_pad, n_pad, c, ldc);  // vpdpbusd: u8 x s8, no saturation
}

namespace {

// Full-mask forms of vmaxps, vminps, vcvtdq2ps, vcvttps2dq and vrndscaleps: the unmasked
// intrinsics go through _mm512_undefined_* in GCC 12 and trip -Wuninitialized (GCC bug 105593);
// these compile to the same instructions.
inline __m512 max_f32x16(__m512 a, __m512 b) { return _mm512_maskz_max_ps(0xffff, a, b); }
inline __m512 min_f32x16(__m512 a, __m512 b) { return _mm512_maskz_min_ps(0xffff, a, b); }
inline __m512 to_f32x16(__m512i v) { return _mm512_maskz_cvtepi32_ps(0xffff, v); }
inline __m512i trunc_i32x16(__m512 v) { return _mm512_maskz_cvttps_epi32(0xffff, v); }
inline __m512 nearest_f32x16(__m512 v) {
    return _mm512_maskz_roundscale_ps(0xffff, v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
// Maximum and minimum across the lanes, as a tree (4 steps, not a 16-long chain: the row's
// scale waits on it). Exact in any order.
template <class Op>
inline float reduce_f32x16(__m512 v, Op op) {
    v = op(v, _mm512_maskz_shuffle_f32x4(0xffff, v, v, 0x4E));  // 256-bit halves swapped
    v = op(v, _mm512_maskz_shuffle_f32x4(0xffff, v, v, 0xB1));  // 128-bit quarters swapped
    v = op(v, _mm512_maskz_permute_ps(0xffff, v, 0x4E));        // 64-bit pairs swapped
    v = op(v, _mm512_maskz_permute_ps(0xffff, v, 0xB1));        // neighbours swapped
    return _mm512_cvtss_f32(v);
}
inline float reduce_max_f32x16(__m512 v) { return reduce_f32x16(v, max_f32x16); }
inline float reduce_min_f32x16(__m512 v) { return reduce_f32x16(v, min_f32x16); }

// 64 int32 in [0, 255], four registers of 16, to 64 bytes in order: two packs (each works within
// 128-bit lanes), then one dword permute puts the lanes' 4-byte pieces back in order. One store
// of 64 bytes, where four masked vpmovdb stores are slow on some cores (Zen 4).
inline void store_64_bytes(std::uint8_t* q, __m512i q0, __m512i q1, __m512i q2, __m512i q3) {
    const __m512i bytes = _mm512_packus_epi16(_mm512_packs_epi32(q0, q1), _mm512_packs_epi32(q2, q3));
    const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    _mm512_storeu_si512(q, _mm512_maskz_permutexvar_epi32(0xffff, order, bytes));  // (full mask: GCC bug 105593)
}

// Lanes [0, rows_left) of a 16-lane step, for the masked tail of a row.
inline __mmask16 first_lanes(std::size_t rows_left) {
    return rows_left >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << rows_left) - 1);
}

}  // namespace

// The scalar kernels' operations, 16 lanes at a time; the tail is masked (its lanes load as
// zero, which moves neither the row's maximum, nor its minimum and maximum around 0).
float dequantize_requantize_avx512vnni(const std::int32_t* acc, std::size_t n, std::int32_t zero, const std::int32_t* w_sums,
                                       float row_scale, const float* scale, const float* bias, float* y, std::uint8_t* q) {
    const __m512 zero_f32x16 = _mm512_setzero_ps();
    const __m512 row_scale_f32x16 = _mm512_set1_ps(row_scale);
    const __m512i zero_i32x16 = _mm512_set1_epi32(zero);
    __m512 hi_f32x16 = zero_f32x16;
    const auto dequantize = [&](std::size_t i, __mmask16 m, bool correct) {
        __m512i sum_i32x16 = _mm512_maskz_loadu_epi32(m, acc + i);
        if (correct)
            sum_i32x16 = _mm512_sub_epi32(sum_i32x16, _mm512_mullo_epi32(zero_i32x16, _mm512_maskz_loadu_epi32(m, w_sums + i)));
        const __m512 s_f32x16 = _mm512_mul_ps(row_scale_f32x16, _mm512_maskz_loadu_ps(m, scale + i));
        __m512 p_f32x16 = _mm512_mul_ps(to_f32x16(sum_i32x16), s_f32x16);
        asm("" : "+v"(p_f32x16));  // rounded before the bias is added: never fused into a vfmadd
        const __m512 v = max_f32x16(_mm512_add_ps(p_f32x16, _mm512_maskz_loadu_ps(m, bias + i)), zero_f32x16);
        _mm512_mask_storeu_ps(y + i, m, v);
        hi_f32x16 = max_f32x16(hi_f32x16, v);
    };
    std::size_t t = 0;
    if (w_sums) {
        for (; t + 16 <= n; t += 16) dequantize(t, 0xffff, true);
        if (t < n) dequantize(t, first_lanes(n - t), true);
    } else {
        for (; t + 16 <= n; t += 16) dequantize(t, 0xffff, false);
        if (t < n) dequantize(t, first_lanes(n - t), false);
    }
    const float hi = reduce_max_f32x16(hi_f32x16);
    const float levels = static_cast<float>(kGemmActivationMax);
    const float row_scale_out = hi > 0.0f ? hi / levels : 1.0f;
    const __m512 inv_f32x16 = _mm512_set1_ps(1.0f / row_scale_out);
    const __m512 levels_f32x16 = _mm512_set1_ps(levels);
    const __m512 half_f32x16 = _mm512_set1_ps(0.5f);
    const auto quantize = [&](std::size_t i, __mmask16 m) {
        const __m512 v = min_f32x16(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, y + i), inv_f32x16), levels_f32x16);
        return trunc_i32x16(_mm512_add_ps(v, half_f32x16));
    };
    std::size_t i = 0;
    for (; i + 64 <= n; i += 64)
        store_64_bytes(q + i, quantize(i, 0xffff), quantize(i + 16, 0xffff), quantize(i + 32, 0xffff),
                       quantize(i + 48, 0xffff));
    for (; i + 16 <= n; i += 16) _mm512_mask_cvtepi32_storeu_epi8(q + i, 0xffff, quantize(i, 0xffff));
    if (i < n) _mm512_mask_cvtepi32_storeu_epi8(q + i, first_lanes(n - i), quantize(i, first_lanes(n - i)));
    return row_scale_out;
}

void quantize_row_u8_avx512vnni(const float* x, const float* mult, std::size_t n, std::uint8_t* q, float* scale,
                                std::int32_t* zero) {
    const auto load = [&](std::size_t i, __mmask16 m) {
        const __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        return mult ? _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, mult + i)) : v;
    };
    __m512 lo_f32x16 = _mm512_setzero_ps(), hi_f32x16 = _mm512_setzero_ps();
    const auto range = [&](std::size_t i, __mmask16 m) {
        const __m512 v = load(i, m);
        lo_f32x16 = min_f32x16(lo_f32x16, v);
        hi_f32x16 = max_f32x16(hi_f32x16, v);
    };
    std::size_t t = 0;
    for (; t + 16 <= n; t += 16) range(t, 0xffff);
    if (t < n) range(t, first_lanes(n - t));
    const float lo = reduce_min_f32x16(lo_f32x16), hi = reduce_max_f32x16(hi_f32x16);
    const U8Quantization u = U8Quantization::of_range(lo, hi);
    const __m512 inv_f32x16 = _mm512_set1_ps(u.inv), z_f32x16 = _mm512_set1_ps(u.z),
                 steps_f32x16 = _mm512_set1_ps(U8Quantization::kSteps);
    const __m512 zero_f32x16 = _mm512_setzero_ps(), one_f32x16 = _mm512_set1_ps(1.0f);
    const auto quantize = [&](std::size_t i, __mmask16 m) {
        __m512 v = nearest_f32x16(_mm512_mul_ps(load(i, m), inv_f32x16));
        v = min_f32x16(max_f32x16(_mm512_add_ps(v, z_f32x16), zero_f32x16), steps_f32x16);
        return trunc_i32x16(_mm512_add_ps(v, one_f32x16));
    };
    std::size_t i = 0;
    for (; i + 64 <= n; i += 64)
        store_64_bytes(q + i, quantize(i, 0xffff), quantize(i + 16, 0xffff), quantize(i + 32, 0xffff),
                       quantize(i + 48, 0xffff));
    for (; i + 16 <= n; i += 16) _mm512_mask_cvtepi32_storeu_epi8(q + i, 0xffff, quantize(i, 0xffff));
    if (i < n) _mm512_mask_cvtepi32_storeu_epi8(q + i, first_lanes(n - i), quantize(i, first_lanes(n - i)));
    *scale = u.scale;
    *zero = u.zero();
}

std::uint64_t int8_peak_avx512vnni(std::size_t iterations) {
    constexpr int kChains = 12;  // vpdpbusd: latency ~5, up to 2 per cycle
    __m512i a_u8x64 = _mm512_set1_epi8(3);
    __m512i w_i8x64 = _mm512_set1_epi8(-5);
    __m512i acc[kChains];
    for (auto& v : acc) v = _mm512_setzero_si512();
    for (std::size_t i = 0; i < iterations; ++i) {
        asm volatile("" : "+v"(a_u8x64), "+v"(w_i8x64));
        for (auto& v : acc) v = _mm512_dpbusd_epi32(v, a_u8x64, w_i8x64);
    }
    __m512i sum = acc[0];
    for (int j = 1; j < kChains; ++j) sum = _mm512_add_epi32(sum, acc[j]);
    alignas(64) std::int32_t lanes[16];
    _mm512_store_si512(lanes, sum);
    volatile std::int32_t sink = lanes[0];
    (void)sink;
    return std::uint64_t{iterations} * kChains * 64;
}

}  // namespace recserve::simd
