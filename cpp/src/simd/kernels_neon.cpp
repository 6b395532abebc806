// aarch64 Advanced SIMD kernels (the aarch64 baseline: no extra flags).
//
// Floats: four 4-lane accumulators over 16 elements, then one step each of 8 and 4 on the
// idle accumulators, then a scalar tail of 1..3.
// int8 (exact):
//   dot, cos:  smull (i8 x i8 -> i16, |p| <= 16384), then sadalp adds pairs into int32 lanes.
//   l2sq:      sabd gives |a - b| in [0, 255], exact as a u8; umull squares it into u16
//              (<= 65025), uadalp adds pairs into uint32 lanes.
//   u8 x i8:   both widened to int16 (u8 fits), smlal accumulates the products into int32.
// The last 1..7 int8 elements are a scalar tail.
//
// Only <arm_neon.h> and helpers in an unnamed namespace here (see kernels.hpp).
#include <arm_neon.h>

#include <cstddef>
#include <cstdint>

#include "recserve/simd/kernels.hpp"

namespace recserve::simd {

float dot_f32_neon(const float* a, const float* b, std::size_t dims) {
    float32x4_t sum0_f32x4 = vdupq_n_f32(0.0f);
    float32x4_t sum1_f32x4 = vdupq_n_f32(0.0f);
    float32x4_t sum2_f32x4 = vdupq_n_f32(0.0f);
    float32x4_t sum3_f32x4 = vdupq_n_f32(0.0f);
    std::size_t i = 0;
    for (; i + 16 <= dims; i += 16) {
        sum0_f32x4 = vfmaq_f32(sum0_f32x4, vld1q_f32(a + i), vld1q_f32(b + i));
        sum1_f32x4 = vfmaq_f32(sum1_f32x4, vld1q_f32(a + i + 4), vld1q_f32(b + i + 4));
        sum2_f32x4 = vfmaq_f32(sum2_f32x4, vld1q_f32(a + i + 8), vld1q_f32(b + i + 8));
        sum3_f32x4 = vfmaq_f32(sum3_f32x4, vld1q_f32(a + i + 12), vld1q_f32(b + i + 12));
    }
    if (i + 8 <= dims) {
        sum0_f32x4 = vfmaq_f32(sum0_f32x4, vld1q_f32(a + i), vld1q_f32(b + i));
        sum1_f32x4 = vfmaq_f32(sum1_f32x4, vld1q_f32(a + i + 4), vld1q_f32(b + i + 4));
        i += 8;
    }
    if (i + 4 <= dims) {
        sum2_f32x4 = vfmaq_f32(sum2_f32x4, vld1q_f32(a + i), vld1q_f32(b + i));
        i += 4;
    }
    float sum = vaddvq_f32(vaddq_f32(vaddq_f32(sum0_f32x4, sum1_f32x4), vaddq_f32(sum2_f32x4, sum3_f32x4)));
    for (; i < dims; ++i) sum += a[i] * b[i];
    return sum;
}

float l2sq_f32_neon(const float* a, const float* b, std::size_t dims) {
    float32x4_t sum0_f32x4 = vdupq_n_f32(0.0f);
    float32x4_t sum1_f32x4 = vdupq_n_f32(0.0f);
    float32x4_t sum2_f32x4 = vdupq_n_f32(0.0f);
    float32x4_t sum3_f32x4 = vdupq_n_f32(0.0f);
    std::size_t i = 0;
    for (; i + 16 <= dims; i += 16) {
        const float32x4_t d0_f32x4 = vsubq_f32(vld1q_f32(a + i), vld1q_f32(b + i));
        const float32x4_t d1_f32x4 = vsubq_f32(vld1q_f32(a + i + 4), vld1q_f32(b + i + 4));
        const float32x4_t d2_f32x4 = vsubq_f32(vld1q_f32(a + i + 8), vld1q_f32(b + i + 8));
        const float32x4_t d3_f32x4 = vsubq_f32(vld1q_f32(a + i + 12), vld1q_f32(b + i + 12));
        sum0_f32x4 = vfmaq_f32(sum0_f32x4, d0_f32x4, d0_f32x4);
        sum1_f32x4 = vfmaq_f32(sum1_f32x4, d1_f32x4, d1_f32x4);
        sum2_f32x4 = vfmaq_f32(sum2_f32x4, d2_f32x4, d2_f32x4);
        sum3_f32x4 = vfmaq_f32(sum3_f32x4, d3_f32x4, d3_f32x4);
    }
    if (i + 8 <= dims) {
        const float32x4_t d0_f32x4 = vsubq_f32(vld1q_f32(a + i), vld1q_f32(b + i));
        const float32x4_t d1_f32x4 = vsubq_f32(vld1q_f32(a + i + 4), vld1q_f32(b + i + 4));
        sum0_f32x4 = vfmaq_f32(sum0_f32x4, d0_f32x4, d0_f32x4);
        sum1_f32x4 = vfmaq_f32(sum1_f32x4, d1_f32x4, d1_f32x4);
        i += 8;
    }
    if (i + 4 <= dims) {
        const float32x4_t d_f32x4 = vsubq_f32(vld1q_f32(a + i), vld1q_f32(b + i));
        sum2_f32x4 = vfmaq_f32(sum2_f32x4, d_f32x4, d_f32x4);
        i += 4;
    }
    float sum = vaddvq_f32(vaddq_f32(vaddq_f32(sum0_f32x4, sum1_f32x4), vaddq_f32(sum2_f32x4, sum3_f32x4)));
    for (; i < dims; ++i) {
        const float d = a[i] - b[i];
        sum += d * d;
    }
    return sum;
}

float cos_f32_neon(const float* a, const float* b, std::size_t dims) {
    float32x4_t dot0_f32x4 = vdupq_n_f32(0.0f);
    float32x4_t dot1_f32x4 = vdupq_n_f32(0.0f);
    float32x4_t norm_a0_f32x4 = vdupq_n_f32(0.0f);
    float32x4_t norm_a1_f32x4 = vdupq_n_f32(0.0f);
    float32x4_t norm_b0_f32x4 = vdupq_n_f32(0.0f);
    float32x4_t norm_b1_f32x4 = vdupq_n_f32(0.0f);
    std::size_t i = 0;
    for (; i + 8 <= dims; i += 8) {
        const float32x4_t a0_f32x4 = vld1q_f32(a + i);
        const float32x4_t b0_f32x4 = vld1q_f32(b + i);
        const float32x4_t a1_f32x4 = vld1q_f32(a + i + 4);
        const float32x4_t b1_f32x4 = vld1q_f32(b + i + 4);
        dot0_f32x4 = vfmaq_f32(dot0_f32x4, a0_f32x4, b0_f32x4);
        dot1_f32x4 = vfmaq_f32(dot1_f32x4, a1_f32x4, b1_f32x4);
        norm_a0_f32x4 = vfmaq_f32(norm_a0_f32x4, a0_f32x4, a0_f32x4);
        norm_a1_f32x4 = vfmaq_f32(norm_a1_f32x4, a1_f32x4, a1_f32x4);
        norm_b0_f32x4 = vfmaq_f32(norm_b0_f32x4, b0_f32x4, b0_f32x4);
        norm_b1_f32x4 = vfmaq_f32(norm_b1_f32x4, b1_f32x4, b1_f32x4);
    }
    if (i + 4 <= dims) {
        const float32x4_t a_f32x4 = vld1q_f32(a + i);
        const float32x4_t b_f32x4 = vld1q_f32(b + i);
        dot0_f32x4 = vfmaq_f32(dot0_f32x4, a_f32x4, b_f32x4);
        norm_a0_f32x4 = vfmaq_f32(norm_a0_f32x4, a_f32x4, a_f32x4);
        norm_b0_f32x4 = vfmaq_f32(norm_b0_f32x4, b_f32x4, b_f32x4);
        i += 4;
    }
    float dot = vaddvq_f32(vaddq_f32(dot0_f32x4, dot1_f32x4));
    float norm2_a = vaddvq_f32(vaddq_f32(norm_a0_f32x4, norm_a1_f32x4));
    float norm2_b = vaddvq_f32(vaddq_f32(norm_b0_f32x4, norm_b1_f32x4));
    for (; i < dims; ++i) {
        dot += a[i] * b[i];
        norm2_a += a[i] * a[i];
        norm2_b += b[i] * b[i];
    }
    return cos_distance_from_sums(dot, norm2_a, norm2_b);
}

std::int32_t dot_i8_neon(const std::int8_t* a, const std::int8_t* b, std::size_t dims) {
    int32x4_t sum0_i32x4 = vdupq_n_s32(0);
    int32x4_t sum1_i32x4 = vdupq_n_s32(0);
    std::size_t i = 0;
    for (; i + 16 <= dims; i += 16) {
        const int8x16_t a_i8x16 = vld1q_s8(a + i);
        const int8x16_t b_i8x16 = vld1q_s8(b + i);
        sum0_i32x4 = vpadalq_s16(sum0_i32x4, vmull_s8(vget_low_s8(a_i8x16), vget_low_s8(b_i8x16)));
        sum1_i32x4 = vpadalq_s16(sum1_i32x4, vmull_high_s8(a_i8x16, b_i8x16));
    }
    if (i + 8 <= dims) {
        sum0_i32x4 = vpadalq_s16(sum0_i32x4, vmull_s8(vld1_s8(a + i), vld1_s8(b + i)));
        i += 8;
    }
    std::int32_t sum = vaddvq_s32(vaddq_s32(sum0_i32x4, sum1_i32x4));
    for (; i < dims; ++i) sum += std::int32_t{a[i]} * std::int32_t{b[i]};
    return sum;
}

std::int32_t l2sq_i8_neon(const std::int8_t* a, const std::int8_t* b, std::size_t dims) {
    uint32x4_t sum0_u32x4 = vdupq_n_u32(0);
    uint32x4_t sum1_u32x4 = vdupq_n_u32(0);
    std::size_t i = 0;
    for (; i + 16 <= dims; i += 16) {
        const uint8x16_t d_u8x16 = vreinterpretq_u8_s8(vabdq_s8(vld1q_s8(a + i), vld1q_s8(b + i)));
        sum0_u32x4 = vpadalq_u16(sum0_u32x4, vmull_u8(vget_low_u8(d_u8x16), vget_low_u8(d_u8x16)));
        sum1_u32x4 = vpadalq_u16(sum1_u32x4, vmull_high_u8(d_u8x16, d_u8x16));
    }
    if (i + 8 <= dims) {
        const uint8x8_t d_u8x8 = vreinterpret_u8_s8(vabd_s8(vld1_s8(a + i), vld1_s8(b + i)));
        sum0_u32x4 = vpadalq_u16(sum0_u32x4, vmull_u8(d_u8x8, d_u8x8));
        i += 8;
    }
    auto sum = static_cast<std::int32_t>(vaddvq_u32(vaddq_u32(sum0_u32x4, sum1_u32x4)));
    for (; i < dims; ++i) {
        const std::int32_t d = std::int32_t{a[i]} - std::int32_t{b[i]};
        sum += d * d;
    }
    return sum;
}

float cos_i8_neon(const std::int8_t* a, const std::int8_t* b, std::size_t dims) {
    int32x4_t dot_i32x4 = vdupq_n_s32(0);
    int32x4_t norm_a_i32x4 = vdupq_n_s32(0);
    int32x4_t norm_b_i32x4 = vdupq_n_s32(0);
    std::size_t i = 0;
    for (; i + 16 <= dims; i += 16) {
        const int8x16_t a_i8x16 = vld1q_s8(a + i);
        const int8x16_t b_i8x16 = vld1q_s8(b + i);
        const int8x8_t a_lo_i8x8 = vget_low_s8(a_i8x16);
        const int8x8_t b_lo_i8x8 = vget_low_s8(b_i8x16);
        dot_i32x4 = vpadalq_s16(dot_i32x4, vmull_s8(a_lo_i8x8, b_lo_i8x8));
        dot_i32x4 = vpadalq_s16(dot_i32x4, vmull_high_s8(a_i8x16, b_i8x16));
        norm_a_i32x4 = vpadalq_s16(norm_a_i32x4, vmull_s8(a_lo_i8x8, a_lo_i8x8));
        norm_a_i32x4 = vpadalq_s16(norm_a_i32x4, vmull_high_s8(a_i8x16, a_i8x16));
        norm_b_i32x4 = vpadalq_s16(norm_b_i32x4, vmull_s8(b_lo_i8x8, b_lo_i8x8));
        norm_b_i32x4 = vpadalq_s16(norm_b_i32x4, vmull_high_s8(b_i8x16, b_i8x16));
    }
    if (i + 8 <= dims) {
        const int8x8_t a_i8x8 = vld1_s8(a + i);
        const int8x8_t b_i8x8 = vld1_s8(b + i);
        dot_i32x4 = vpadalq_s16(dot_i32x4, vmull_s8(a_i8x8, b_i8x8));
        norm_a_i32x4 = vpadalq_s16(norm_a_i32x4, vmull_s8(a_i8x8, a_i8x8));
        norm_b_i32x4 = vpadalq_s16(norm_b_i32x4, vmull_s8(b_i8x8, b_i8x8));
        i += 8;
    }
    std::int32_t dot = vaddvq_s32(dot_i32x4);
    std::int32_t norm2_a = vaddvq_s32(norm_a_i32x4);
    std::int32_t norm2_b = vaddvq_s32(norm_b_i32x4);
    for (; i < dims; ++i) {
        const std::int32_t x = a[i];
        const std::int32_t y = b[i];
        dot += x * y;
        norm2_a += x * x;
        norm2_b += y * y;
    }
    return cos_distance_from_sums(dot, norm2_a, norm2_b);
}

std::int32_t dot_u8i8_neon(const std::uint8_t* a, const std::int8_t* b, std::size_t dims) {
    int32x4_t sum0_i32x4 = vdupq_n_s32(0);
    int32x4_t sum1_i32x4 = vdupq_n_s32(0);
    std::size_t i = 0;
    for (; i + 16 <= dims; i += 16) {
        const uint8x16_t a_u8x16 = vld1q_u8(a + i);
        const int8x16_t b_i8x16 = vld1q_s8(b + i);
        const int16x8_t a_lo_i16x8 = vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(a_u8x16)));
        const int16x8_t a_hi_i16x8 = vreinterpretq_s16_u16(vmovl_high_u8(a_u8x16));
        const int16x8_t b_lo_i16x8 = vmovl_s8(vget_low_s8(b_i8x16));
        const int16x8_t b_hi_i16x8 = vmovl_high_s8(b_i8x16);
        sum0_i32x4 = vmlal_s16(sum0_i32x4, vget_low_s16(a_lo_i16x8), vget_low_s16(b_lo_i16x8));
        sum1_i32x4 = vmlal_high_s16(sum1_i32x4, a_lo_i16x8, b_lo_i16x8);
        sum0_i32x4 = vmlal_s16(sum0_i32x4, vget_low_s16(a_hi_i16x8), vget_low_s16(b_hi_i16x8));
        sum1_i32x4 = vmlal_high_s16(sum1_i32x4, a_hi_i16x8, b_hi_i16x8);
    }
    if (i + 8 <= dims) {
        const int16x8_t a_i16x8 = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(a + i)));
        const int16x8_t b_i16x8 = vmovl_s8(vld1_s8(b + i));
        sum0_i32x4 = vmlal_s16(sum0_i32x4, vget_low_s16(a_i16x8), vget_low_s16(b_i16x8));
        sum1_i32x4 = vmlal_high_s16(sum1_i32x4, a_i16x8, b_i16x8);
        i += 8;
    }
    std::int32_t sum = vaddvq_s32(vaddq_s32(sum0_i32x4, sum1_i32x4));
    for (; i < dims; ++i) sum += std::int32_t{a[i]} * std::int32_t{b[i]};
    return sum;
}

}  // namespace recserve::simd
