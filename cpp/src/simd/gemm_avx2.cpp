// AVX2 int8 matrix product (compiled with -mavx2 -mfma; run only where cpu_features().avx2_fma).
//
// A tile is R rows x 16 columns held in 2R int32x8 accumulators. Each 4-k step loads the
// 64 packed weight bytes once (two ymm) and, per row, broadcasts 4 activation bytes; then
// vpmaddubsw (u8 x s8 pair sums in int16: never saturates, activations are 7-bit) and vpmaddwd
// against ones (int16 pairs into int32) give each column 4 products per instruction pair.
// Columns outer, rows inner: the 16-column weight panel stays in L1 across the row tiles.
#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "recserve/simd/gemm_kernels.hpp"

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

std::uint64_t int8_peak_avx2(std::size_t iterations) {
    constexpr int kChains = 8;
    const __m256i ones_i16x16 = _mm256_set1_epi16(1);
    __m256i a_u8x32 = _mm256_set1_epi8(3);
    __m256i w_i8x32[kChains];
    __m256i acc[kChains];
    for (int j = 0; j < kChains; ++j) {
        w_i8x32[j] = _mm256_set1_epi8(static_cast<char>(j - 4));
        acc[j] = _mm256_setzero_si256();
    }
    for (std::size_t i = 0; i < iterations; ++i) {
        // Empty asm statements that "change" the inputs: the products cannot be hoisted out of
        // the loop or shared between chains.
        asm volatile("" : "+x"(a_u8x32));
        for (int j = 0; j < kChains; ++j) {
            asm volatile("" : "+x"(w_i8x32[j]));
            acc[j] = _mm256_add_epi32(acc[j],
                                      _mm256_madd_epi16(_mm256_maddubs_epi16(a_u8x32, w_i8x32[j]), ones_i16x16));
        }
    }
    __m256i sum = acc[0];
    for (int j = 1; j < kChains; ++j) sum = _mm256_add_epi32(sum, acc[j]);
    volatile std::int32_t sink = _mm256_extract_epi32(sum, 0);
    (void)sink;
    return std::uint64_t{iterations} * kChains * 32;
}

}  // namespace recserve::simd
