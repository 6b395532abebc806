// aarch64 dot-product kernels (-march=armv8.2-a+dotprod; run only where
// cpu_features().neon_dotprod; the float kernels of this variant are neon's).
//
// sdot/udot multiply 4 bytes by 4 bytes and add the four products to an int32 lane: exact.
//   i8 x i8:  sdot directly.
//   l2sq:     sabd gives |a - b| in [0, 255], exact as a u8; udot squares and sums it.
//   u8 x i8:  there is no mixed-sign dot without i8mm (usdot), so a is biased into signed,
//             a - 128 = a ^ 0x80, and sum a*b = sum (a - 128)*b + 128 * sum b,
//             with sum b = sdot(1, b). Exact in wrapping int32 for dims <= 65536.
// The last 1..7 bytes are a scalar tail.
//
// Only <arm_neon.h> and helpers in an unnamed namespace here (see kernels.hpp).
#include <arm_neon.h>

#include <cstddef>
#include <cstdint>

#include "recserve/simd/kernels.hpp"

namespace recserve::simd {

std::int32_t dot_i8_neondotprod(const std::int8_t* a, const std::int8_t* b, std::size_t dims) {
    int32x4_t sum0_i32x4 = vdupq_n_s32(0);
    int32x4_t sum1_i32x4 = vdupq_n_s32(0);
    std::size_t i = 0;
    for (; i + 32 <= dims; i += 32) {
        sum0_i32x4 = vdotq_s32(sum0_i32x4, vld1q_s8(a + i), vld1q_s8(b + i));
        sum1_i32x4 = vdotq_s32(sum1_i32x4, vld1q_s8(a + i + 16), vld1q_s8(b + i + 16));
    }
    if (i + 16 <= dims) {
        sum0_i32x4 = vdotq_s32(sum0_i32x4, vld1q_s8(a + i), vld1q_s8(b + i));
        i += 16;
    }
    std::int32_t sum = vaddvq_s32(vaddq_s32(sum0_i32x4, sum1_i32x4));
    if (i + 8 <= dims) {
        sum += vaddv_s32(vdot_s32(vdup_n_s32(0), vld1_s8(a + i), vld1_s8(b + i)));
        i += 8;
    }
    for (; i < dims; ++i) sum += std::int32_t{a[i]} * std::int32_t{b[i]};
    return sum;
}

std::int32_t l2sq_i8_neondotprod(const std::int8_t* a, const std::int8_t* b, std::size_t dims) {
    uint32x4_t sum0_u32x4 = vdupq_n_u32(0);
    uint32x4_t sum1_u32x4 = vdupq_n_u32(0);
    std::size_t i = 0;
    for (; i + 32 <= dims; i += 32) {
        const uint8x16_t d0_u8x16 = vreinterpretq_u8_s8(vabdq_s8(vld1q_s8(a + i), vld1q_s8(b + i)));
        const uint8x16_t d1_u8x16 = vreinterpretq_u8_s8(vabdq_s8(vld1q_s8(a + i + 16), vld1q_s8(b + i + 16)));
        sum0_u32x4 = vdotq_u32(sum0_u32x4, d0_u8x16, d0_u8x16);
        sum1_u32x4 = vdotq_u32(sum1_u32x4, d1_u8x16, d1_u8x16);
    }
    if (i + 16 <= dims) {
        const uint8x16_t d_u8x16 = vreinterpretq_u8_s8(vabdq_s8(vld1q_s8(a + i), vld1q_s8(b + i)));
        sum0_u32x4 = vdotq_u32(sum0_u32x4, d_u8x16, d_u8x16);
        i += 16;
    }
    std::uint32_t sum = vaddvq_u32(vaddq_u32(sum0_u32x4, sum1_u32x4));
    if (i + 8 <= dims) {
        const uint8x8_t d_u8x8 = vreinterpret_u8_s8(vabd_s8(vld1_s8(a + i), vld1_s8(b + i)));
        sum += vaddv_u32(vdot_u32(vdup_n_u32(0), d_u8x8, d_u8x8));
        i += 8;
    }
    for (; i < dims; ++i) {
        const std::int32_t d = std::int32_t{a[i]} - std::int32_t{b[i]};
        sum += static_cast<std::uint32_t>(d * d);
    }
    return static_cast<std::int32_t>(sum);
}

float cos_i8_neondotprod(const std::int8_t* a, const std::int8_t* b, std::size_t dims) {
    int32x4_t dot_i32x4 = vdupq_n_s32(0);
    int32x4_t norm_a_i32x4 = vdupq_n_s32(0);
    int32x4_t norm_b_i32x4 = vdupq_n_s32(0);
    std::size_t i = 0;
    for (; i + 16 <= dims; i += 16) {
        const int8x16_t a_i8x16 = vld1q_s8(a + i);
        const int8x16_t b_i8x16 = vld1q_s8(b + i);
        dot_i32x4 = vdotq_s32(dot_i32x4, a_i8x16, b_i8x16);
        norm_a_i32x4 = vdotq_s32(norm_a_i32x4, a_i8x16, a_i8x16);
        norm_b_i32x4 = vdotq_s32(norm_b_i32x4, b_i8x16, b_i8x16);
    }
    std::int32_t dot = vaddvq_s32(dot_i32x4);
    std::int32_t norm2_a = vaddvq_s32(norm_a_i32x4);
    std::int32_t norm2_b = vaddvq_s32(norm_b_i32x4);
    if (i + 8 <= dims) {
        const int8x8_t a_i8x8 = vld1_s8(a + i);
        const int8x8_t b_i8x8 = vld1_s8(b + i);
        dot += vaddv_s32(vdot_s32(vdup_n_s32(0), a_i8x8, b_i8x8));
        norm2_a += vaddv_s32(vdot_s32(vdup_n_s32(0), a_i8x8, a_i8x8));
        norm2_b += vaddv_s32(vdot_s32(vdup_n_s32(0), b_i8x8, b_i8x8));
        i += 8;
    }
    for (; i < dims; ++i) {
        const std::int32_t x = a[i];
        const std::int32_t y = b[i];
        dot += x * y;
        norm2_a += x * x;
        norm2_b += y * y;
    }
    return cos_distance_from_sums(dot, norm2_a, norm2_b);
}

std::int32_t dot_u8i8_neondotprod(const std::uint8_t* a, const std::int8_t* b, std::size_t dims) {
    const uint8x16_t bias_u8x16 = vdupq_n_u8(0x80);
    const int8x16_t ones_i8x16 = vdupq_n_s8(1);
    int32x4_t sum_i32x4 = vdupq_n_s32(0);    // sum (a - 128) * b
    int32x4_t sum_b_i32x4 = vdupq_n_s32(0);  // sum b
    std::size_t i = 0;
    for (; i + 16 <= dims; i += 16) {
        const int8x16_t a_i8x16 = vreinterpretq_s8_u8(veorq_u8(vld1q_u8(a + i), bias_u8x16));
        const int8x16_t b_i8x16 = vld1q_s8(b + i);
        sum_i32x4 = vdotq_s32(sum_i32x4, a_i8x16, b_i8x16);
        sum_b_i32x4 = vdotq_s32(sum_b_i32x4, ones_i8x16, b_i8x16);
    }
    // sum + 128 * sum_b, lane-wise, modulo 2^32 (shift of the unsigned view: no overflow UB).
    const int32x4_t total_i32x4 = vaddq_s32(
        sum_i32x4, vreinterpretq_s32_u32(vshlq_n_u32(vreinterpretq_u32_s32(sum_b_i32x4), 7)));
    std::int32_t sum = vaddvq_s32(total_i32x4);
    if (i + 8 <= dims) {
        const int8x8_t a_i8x8 = vreinterpret_s8_u8(veor_u8(vld1_u8(a + i), vget_low_u8(bias_u8x16)));
        const int8x8_t b_i8x8 = vld1_s8(b + i);
        const int32x2_t part_i32x2 = vdot_s32(vdup_n_s32(0), a_i8x8, b_i8x8);
        const int32x2_t part_b_i32x2 = vdot_s32(vdup_n_s32(0), vget_low_s8(ones_i8x16), b_i8x8);
        sum += vaddv_s32(part_i32x2) + 128 * vaddv_s32(part_b_i32x2);
        i += 8;
    }
    for (; i < dims; ++i) sum += std::int32_t{a[i]} * std::int32_t{b[i]};
    return sum;
}

}  // namespace recserve::simd
