// aarch64 int8 matrix product with SDOT (compiled with -march=armv8.2-a+dotprod; run only where
// cpu_features().neon_dotprod).
//
// The 7-bit activations are valid signed bytes, so SDOT takes them as they are. A tile is
// R rows x 16 columns: 4R int32x4 accumulators, one SDOT per 4 columns per row per 4-k step,
// the row's 4 activation bytes broadcast to every lane.
#include <arm_neon.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "recserve/simd/gemm_kernels.hpp"

namespace recserve::simd {
namespace {

constexpr std::size_t kRowTile = 4;

inline int8x16_t broadcast_4_bytes(const std::uint8_t* p) {
    std::uint32_t v;
    std::memcpy(&v, p, sizeof v);
    return vreinterpretq_s8_u32(vdupq_n_u32(v));
}

template <std::size_t R>
inline void tile(const std::uint8_t* a, std::size_t lda, const std::int8_t* panel, std::size_t groups,
                 std::int32_t* c, std::size_t ldc) {
    int32x4_t acc[R][4];
    for (std::size_t r = 0; r < R; ++r)
        for (auto& v : acc[r]) v = vdupq_n_s32(0);
    for (std::size_t g = 0; g < groups; ++g) {
        int8x16_t w_i8x16[4];
        for (int q = 0; q < 4; ++q) w_i8x16[q] = vld1q_s8(panel + g * 64 + q * 16);
        for (std::size_t r = 0; r < R; ++r) {
            const int8x16_t a_i8x16 = broadcast_4_bytes(a + r * lda + g * kGemmKGroup);
            for (int q = 0; q < 4; ++q) acc[r][q] = vdotq_s32(acc[r][q], a_i8x16, w_i8x16[q]);
        }
    }
    for (std::size_t r = 0; r < R; ++r)
        for (int q = 0; q < 4; ++q) vst1q_s32(c + r * ldc + q * 4, acc[r][q]);
}

// 8-bit activations in [1, 255] (the first layer): SDOT is signed x signed, so each row takes
// a - 128 (one EOR per broadcast) and 128 * w_sums, added once per tile, gives back sum a * w.
template <std::size_t R>
inline void tile_wide(const std::uint8_t* a, std::size_t lda, const std::int8_t* panel, std::size_t groups,
                      const std::int32_t* w_sums, std::int32_t* c, std::size_t ldc) {
    const int8x16_t flip_i8x16 = vdupq_n_s8(static_cast<std::int8_t>(-128));
    int32x4_t acc[R][4];
    for (std::size_t r = 0; r < R; ++r)
        for (auto& v : acc[r]) v = vdupq_n_s32(0);
    for (std::size_t g = 0; g < groups; ++g) {
        int8x16_t w_i8x16[4];
        for (int q = 0; q < 4; ++q) w_i8x16[q] = vld1q_s8(panel + g * 64 + q * 16);
        for (std::size_t r = 0; r < R; ++r) {
            const int8x16_t a_i8x16 = veorq_s8(broadcast_4_bytes(a + r * lda + g * kGemmKGroup), flip_i8x16);
            for (int q = 0; q < 4; ++q) acc[r][q] = vdotq_s32(acc[r][q], a_i8x16, w_i8x16[q]);
        }
    }
    for (int q = 0; q < 4; ++q) {
        const int32x4_t back_i32x4 = vshlq_n_s32(vld1q_s32(w_sums + q * 4), 7);
        for (std::size_t r = 0; r < R; ++r) vst1q_s32(c + r * ldc + q * 4, vaddq_s32(acc[r][q], back_i32x4));
    }
}

}  // namespace

void gemm_u8i8_wide_neondotprod(const std::uint8_t* a, std::size_t lda, std::size_t rows, const std::int8_t* w,
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

void gemm_u8i8_neondotprod(const std::uint8_t* a, std::size_t lda, std::size_t rows, const std::int8_t* w,
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

std::uint64_t int8_peak_neondotprod(std::size_t iterations) {
    constexpr int kChains = 8;
    int8x16_t a_i8x16 = vdupq_n_s8(3);
    int8x16_t w_i8x16 = vdupq_n_s8(-5);
    int32x4_t acc[kChains];
    for (auto& v : acc) v = vdupq_n_s32(0);
    for (std::size_t i = 0; i < iterations; ++i) {
        asm volatile("" : "+w"(a_i8x16), "+w"(w_i8x16));
        for (auto& v : acc) v = vdotq_s32(v, a_i8x16, w_i8x16);
    }
    int32x4_t sum = acc[0];
    for (int j = 1; j < kChains; ++j) sum = vaddq_s32(sum, acc[j]);
    volatile std::int32_t sink = vaddvq_s32(sum);
    (void)sink;
    return std::uint64_t{iterations} * kChains * 16;
}

}  // namespace recserve::simd
