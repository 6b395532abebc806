// AVX-512 VNNI int8 matrix product (compiled with AVX-512 F/BW/VL/DQ + VNNI flags; run only
// where cpu_features().avx512_vnni).
//
// One zmm holds the 64 packed bytes of a 4-k step for 16 columns, so a tile of R rows x 16
// columns is R int32x16 accumulators and one vpdpbusd per row per step (u8 x s8, 4 products
// per lane, no intermediate saturation).
#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "recserve/simd/gemm_kernels.hpp"

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
