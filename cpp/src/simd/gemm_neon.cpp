// aarch64 Advanced SIMD int8 matrix product (the aarch64 baseline, no flags needed).
//
// Without SDOT there is no 4-way int8 dot product: each row widens its 4 activation bytes to
// int16 once per step, and each pair of columns does one widening multiply-accumulate
// (smlal into int32x4, lanes = the 4 k of a column); the lanes are summed at the end.
#include <arm_neon.h>

#include <cstddef>
#include <cstdint>

#include "recserve/simd/gemm_kernels.hpp"

namespace recserve::simd {

void gemm_u8i8_neon(const std::uint8_t* a, std::size_t lda, std::size_t rows, const std::int8_t* w,
                    std::size_t k_pad, std::size_t n_pad, std::int32_t* c, std::size_t ldc) {
    const std::size_t groups = k_pad / kGemmKGroup;
    for (std::size_t n0 = 0; n0 < n_pad; n0 += kGemmColumnBlock) {
        const std::int8_t* panel = w + (n0 / kGemmColumnBlock) * groups * 64;
        for (std::size_t r = 0; r < rows; ++r) {
            const std::uint8_t* a_row = a + r * lda;
            int32x4_t acc[kGemmColumnBlock];
            for (auto& v : acc) v = vdupq_n_s32(0);
            for (std::size_t g = 0; g < groups; ++g) {
                // The 4 activations of this step, twice: {a0 a1 a2 a3 a0 a1 a2 a3} as int16.
                std::uint8_t quad[8];
                for (int i = 0; i < 8; ++i) quad[i] = a_row[g * kGemmKGroup + (i & 3)];
                const int16x8_t a_i16x8 = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(quad)));
                const std::int8_t* step = panel + g * 64;
                for (std::size_t pair = 0; pair < kGemmColumnBlock / 2; ++pair) {
                    const int16x8_t w_i16x8 = vmovl_s8(vld1_s8(step + pair * 8));
                    acc[2 * pair] = vmlal_s16(acc[2 * pair], vget_low_s16(a_i16x8), vget_low_s16(w_i16x8));
                    acc[2 * pair + 1] = vmlal_high_s16(acc[2 * pair + 1], a_i16x8, w_i16x8);
                }
            }
            for (std::size_t col = 0; col < kGemmColumnBlock; ++col) c[r * ldc + n0 + col] = vaddvq_s32(acc[col]);
        }
    }
}

void gemm_s16s16_neon(const std::int16_t* a, std::size_t lda, std::size_t rows, const std::int16_t* w,
                      std::size_t k_pad, std::size_t n_pad, std::int32_t* c, std::size_t ldc) {
    const std::size_t groups = k_pad / kGemmKGroup;
    for (std::size_t n0 = 0; n0 < n_pad; n0 += kGemmColumnBlock) {
        const std::int16_t* panel = w + (n0 / kGemmColumnBlock) * groups * 64;
        for (std::size_t r = 0; r < rows; ++r) {
            const std::int16_t* a_row = a + r * lda;
            int32x4_t acc[kGemmColumnBlock];
            for (auto& v : acc) v = vdupq_n_s32(0);
            for (std::size_t g = 0; g < groups; ++g) {
                const int16x4_t a_i16x4 = vld1_s16(a_row + g * kGemmKGroup);
                const int16x8_t a_i16x8 = vcombine_s16(a_i16x4, a_i16x4);
                const std::int16_t* step = panel + g * 64;
                for (std::size_t pair = 0; pair < kGemmColumnBlock / 2; ++pair) {
                    const int16x8_t w_i16x8 = vld1q_s16(step + pair * 8);  // 2 columns x 4 k
                    acc[2 * pair] = vmlal_s16(acc[2 * pair], vget_low_s16(a_i16x8), vget_low_s16(w_i16x8));
                    acc[2 * pair + 1] = vmlal_high_s16(acc[2 * pair + 1], a_i16x8, w_i16x8);
                }
            }
            for (std::size_t col = 0; col < kGemmColumnBlock; ++col) c[r * ldc + n0 + col] = vaddvq_s32(acc[col]);
        }
    }
}

void gemm_u8i8_wide_neon(const std::uint8_t* a, std::size_t lda, std::size_t rows, const std::int8_t* w,
                         std::size_t k_pad, std::size_t n_pad, const std::int32_t* /*w_sums*/, std::int32_t* c,
                         std::size_t ldc) {
    gemm_u8i8_neon(a, lda, rows, w, k_pad, n_pad, c, ldc);  // widens to int16: any u8 is exact
}

std::uint64_t int8_peak_neon(std::size_t iterations) {
    constexpr int kChains = 8;
    int16x4_t a_i16x4 = vdup_n_s16(3);
    int16x4_t w_i16x4 = vdup_n_s16(-5);
    int32x4_t acc[kChains];
    for (auto& v : acc) v = vdupq_n_s32(0);
    for (std::size_t i = 0; i < iterations; ++i) {
        asm volatile("" : "+w"(a_i16x4), "+w"(w_i16x4));
        for (auto& v : acc) v = vmlal_s16(v, a_i16x4, w_i16x4);
    }
    int32x4_t sum = acc[0];
    for (int j = 1; j < kChains; ++j) sum = vaddq_s32(sum, acc[j]);
    volatile std::int32_t sink = vaddvq_s32(sum);
    (void)sink;
    return std::uint64_t{iterations} * kChains * 4;
}

}  // namespace recserve::simd
