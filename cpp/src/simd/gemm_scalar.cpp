// Portable int8 matrix product: the reference every ISA's gemm is tested against.
#include <cstddef>
#include <cstdint>

#include "recserve/simd/gemm_kernels.hpp"

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
