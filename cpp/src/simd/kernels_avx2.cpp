// AVX2 + FMA kernels (compiled with -mavx2 -mfma; run only where cpu_features().avx2_fma).
//
// Floats: four 8-lane accumulators over 32 elements, then one step each of 16 and 8 on the
// idle accumulators (so the dims 50..384 of the graph keep short dependency chains), then a
// masked load (vmaskmovps never touches masked-off memory) for the last 1..7.
// int8: widened to int16 (vpmovsxbw / vpmovzxbw), then vpmaddwd adds pairs of products into
// int32 lanes: exact, unlike vpmaddubsw, which saturates (-128 * -128 * 2 > INT16_MAX).
// The last 1..7 int8 elements are a scalar tail.
//
// Only <immintrin.h> and always-inline helpers in an unnamed namespace here: no inline
// function with external linkage that the linker could pick for the whole program.
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "recserve/simd/kernels.hpp"

namespace recserve::simd {
namespace {

// kTailMask + 8 - n: the first n lanes set.
alignas(64) constexpr std::int32_t kTailMask[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

inline __m256i tail_mask_i32x8(std::size_t n) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kTailMask + 8 - n));
}

inline float reduce_add_f32x8(__m256 v) {
    __m128 sum_f32x4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    sum_f32x4 = _mm_add_ps(sum_f32x4, _mm_movehl_ps(sum_f32x4, sum_f32x4));
    sum_f32x4 = _mm_add_ss(sum_f32x4, _mm_movehdup_ps(sum_f32x4));
    return _mm_cvtss_f32(sum_f32x4);
}

inline std::int32_t reduce_add_i32x8(__m256i v) {
    __m128i sum_i32x4 = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    sum_i32x4 = _mm_add_epi32(sum_i32x4, _mm_unpackhi_epi64(sum_i32x4, sum_i32x4));
    sum_i32x4 = _mm_add_epi32(sum_i32x4, _mm_shuffle_epi32(sum_i32x4, 0x55));
    return _mm_cvtsi128_si32(sum_i32x4);
}

inline __m256i load_i8x16_as_i16x16(const std::int8_t* p) {
    return _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline __m256i load_u8x16_as_i16x16(const std::uint8_t* p) {
    return _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline __m128i load_i8x8_as_i16x8(const std::int8_t* p) {
    return _mm_cvtepi8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}
inline __m128i load_u8x8_as_i16x8(const std::uint8_t* p) {
    return _mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}

}  // namespace

float dot_f32_avx2(const float* a, const float* b, std::size_t dims) {
    __m256 sum0_f32x8 = _mm256_setzero_ps();
    __m256 sum1_f32x8 = _mm256_setzero_ps();
    __m256 sum2_f32x8 = _mm256_setzero_ps();
    __m256 sum3_f32x8 = _mm256_setzero_ps();
    std::size_t i = 0;
    for (; i + 32 <= dims; i += 32) {
        sum0_f32x8 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), sum0_f32x8);
        sum1_f32x8 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), sum1_f32x8);
        sum2_f32x8 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), sum2_f32x8);
        sum3_f32x8 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), sum3_f32x8);
    }
    if (i + 16 <= dims) {
        sum0_f32x8 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), sum0_f32x8);
        sum1_f32x8 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), sum1_f32x8);
        i += 16;
    }
    if (i + 8 <= dims) {
        sum2_f32x8 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), sum2_f32x8);
        i += 8;
    }
    if (i < dims) {
        const __m256i mask_i32x8 = tail_mask_i32x8(dims - i);
        sum3_f32x8 = _mm256_fmadd_ps(_mm256_maskload_ps(a + i, mask_i32x8), _mm256_maskload_ps(b + i, mask_i32x8),
                                     sum3_f32x8);
    }
    return reduce_add_f32x8(
        _mm256_add_ps(_mm256_add_ps(sum0_f32x8, sum1_f32x8), _mm256_add_ps(sum2_f32x8, sum3_f32x8)));
}

float l2sq_f32_avx2(const float* a, const float* b, std::size_t dims) {
    __m256 sum0_f32x8 = _mm256_setzero_ps();
    __m256 sum1_f32x8 = _mm256_setzero_ps();
    __m256 sum2_f32x8 = _mm256_setzero_ps();
    __m256 sum3_f32x8 = _mm256_setzero_ps();
    std::size_t i = 0;
    for (; i + 32 <= dims; i += 32) {
        const __m256 d0_f32x8 = _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
        const __m256 d1_f32x8 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8));
        const __m256 d2_f32x8 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16));
        const __m256 d3_f32x8 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24));
        sum0_f32x8 = _mm256_fmadd_ps(d0_f32x8, d0_f32x8, sum0_f32x8);
        sum1_f32x8 = _mm256_fmadd_ps(d1_f32x8, d1_f32x8, sum1_f32x8);
        sum2_f32x8 = _mm256_fmadd_ps(d2_f32x8, d2_f32x8, sum2_f32x8);
        sum3_f32x8 = _mm256_fmadd_ps(d3_f32x8, d3_f32x8, sum3_f32x8);
    }
    if (i + 16 <= dims) {
        const __m256 d0_f32x8 = _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
        const __m256 d1_f32x8 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8));
        sum0_f32x8 = _mm256_fmadd_ps(d0_f32x8, d0_f32x8, sum0_f32x8);
        sum1_f32x8 = _mm256_fmadd_ps(d1_f32x8, d1_f32x8, sum1_f32x8);
        i += 16;
    }
    if (i + 8 <= dims) {
        const __m256 d_f32x8 = _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
        sum2_f32x8 = _mm256_fmadd_ps(d_f32x8, d_f32x8, sum2_f32x8);
        i += 8;
    }
    if (i < dims) {
        const __m256i mask_i32x8 = tail_mask_i32x8(dims - i);
        const __m256 d_f32x8 = _mm256_sub_ps(_mm256_maskload_ps(a + i, mask_i32x8), _mm256_maskload_ps(b + i, mask_i32x8));
        sum3_f32x8 = _mm256_fmadd_ps(d_f32x8, d_f32x8, sum3_f32x8);
    }
    return reduce_add_f32x8(
        _mm256_add_ps(_mm256_add_ps(sum0_f32x8, sum1_f32x8), _mm256_add_ps(sum2_f32x8, sum3_f32x8)));
}

float cos_f32_avx2(const float* a, const float* b, std::size_t dims) {
    __m256 dot0_f32x8 = _mm256_setzero_ps();
    __m256 dot1_f32x8 = _mm256_setzero_ps();
    __m256 norm_a0_f32x8 = _mm256_setzero_ps();
    __m256 norm_a1_f32x8 = _mm256_setzero_ps();
    __m256 norm_b0_f32x8 = _mm256_setzero_ps();
    __m256 norm_b1_f32x8 = _mm256_setzero_ps();
    std::size_t i = 0;
    for (; i + 16 <= dims; i += 16) {
        const __m256 a0_f32x8 = _mm256_loadu_ps(a + i);
        const __m256 b0_f32x8 = _mm256_loadu_ps(b + i);
        const __m256 a1_f32x8 = _mm256_loadu_ps(a + i + 8);
        const __m256 b1_f32x8 = _mm256_loadu_ps(b + i + 8);
        dot0_f32x8 = _mm256_fmadd_ps(a0_f32x8, b0_f32x8, dot0_f32x8);
        dot1_f32x8 = _mm256_fmadd_ps(a1_f32x8, b1_f32x8, dot1_f32x8);
        norm_a0_f32x8 = _mm256_fmadd_ps(a0_f32x8, a0_f32x8, norm_a0_f32x8);
        norm_a1_f32x8 = _mm256_fmadd_ps(a1_f32x8, a1_f32x8, norm_a1_f32x8);
        norm_b0_f32x8 = _mm256_fmadd_ps(b0_f32x8, b0_f32x8, norm_b0_f32x8);
        norm_b1_f32x8 = _mm256_fmadd_ps(b1_f32x8, b1_f32x8, norm_b1_f32x8);
    }
    if (i + 8 <= dims) {
        const __m256 a_f32x8 = _mm256_loadu_ps(a + i);
        const __m256 b_f32x8 = _mm256_loadu_ps(b + i);
        dot0_f32x8 = _mm256_fmadd_ps(a_f32x8, b_f32x8, dot0_f32x8);
        norm_a0_f32x8 = _mm256_fmadd_ps(a_f32x8, a_f32x8, norm_a0_f32x8);
        norm_b0_f32x8 = _mm256_fmadd_ps(b_f32x8, b_f32x8, norm_b0_f32x8);
        i += 8;
    }
    if (i < dims) {
        const __m256i mask_i32x8 = tail_mask_i32x8(dims - i);
        const __m256 a_f32x8 = _mm256_maskload_ps(a + i, mask_i32x8);
        const __m256 b_f32x8 = _mm256_maskload_ps(b + i, mask_i32x8);
        dot1_f32x8 = _mm256_fmadd_ps(a_f32x8, b_f32x8, dot1_f32x8);
        norm_a1_f32x8 = _mm256_fmadd_ps(a_f32x8, a_f32x8, norm_a1_f32x8);
        norm_b1_f32x8 = _mm256_fmadd_ps(b_f32x8, b_f32x8, norm_b1_f32x8);
    }
    return cos_distance_from_sums(reduce_add_f32x8(_mm256_add_ps(dot0_f32x8, dot1_f32x8)),
                                  reduce_add_f32x8(_mm256_add_ps(norm_a0_f32x8, norm_a1_f32x8)),
                                  reduce_add_f32x8(_mm256_add_ps(norm_b0_f32x8, norm_b1_f32x8)));
}

std::int32_t dot_i8_avx2(const std::int8_t* a, const std::int8_t* b, std::size_t dims) {
    __m256i sum0_i32x8 = _mm256_setzero_si256();
    __m256i sum1_i32x8 = _mm256_setzero_si256();
    std::size_t i = 0;
    for (; i + 32 <= dims; i += 32) {
        sum0_i32x8 = _mm256_add_epi32(
            sum0_i32x8, _mm256_madd_epi16(load_i8x16_as_i16x16(a + i), load_i8x16_as_i16x16(b + i)));
        sum1_i32x8 = _mm256_add_epi32(
            sum1_i32x8, _mm256_madd_epi16(load_i8x16_as_i16x16(a + i + 16), load_i8x16_as_i16x16(b + i + 16)));
    }
    if (i + 16 <= dims) {
        sum0_i32x8 = _mm256_add_epi32(
            sum0_i32x8, _mm256_madd_epi16(load_i8x16_as_i16x16(a + i), load_i8x16_as_i16x16(b + i)));
        i += 16;
    }
    if (i + 8 <= dims) {
        const __m128i prod_i32x4 = _mm_madd_epi16(load_i8x8_as_i16x8(a + i), load_i8x8_as_i16x8(b + i));
        sum1_i32x8 = _mm256_add_epi32(sum1_i32x8, _mm256_zextsi128_si256(prod_i32x4));
        i += 8;
    }
    std::int32_t sum = reduce_add_i32x8(_mm256_add_epi32(sum0_i32x8, sum1_i32x8));
    for (; i < dims; ++i) sum += std::int32_t{a[i]} * std::int32_t{b[i]};
    return sum;
}

std::int32_t l2sq_i8_avx2(const std::int8_t* a, const std::int8_t* b, std::size_t dims) {
    __m256i sum0_i32x8 = _mm256_setzero_si256();
    __m256i sum1_i32x8 = _mm256_setzero_si256();
    std::size_t i = 0;
    // a - b lies in [-255, 255]: it fits int16, and vpmaddwd's pair sums (<= 2 * 255^2) int32.
    for (; i + 32 <= dims; i += 32) {
        const __m256i d0_i16x16 = _mm256_sub_epi16(load_i8x16_as_i16x16(a + i), load_i8x16_as_i16x16(b + i));
        const __m256i d1_i16x16 =
            _mm256_sub_epi16(load_i8x16_as_i16x16(a + i + 16), load_i8x16_as_i16x16(b + i + 16));
        sum0_i32x8 = _mm256_add_epi32(sum0_i32x8, _mm256_madd_epi16(d0_i16x16, d0_i16x16));
        sum1_i32x8 = _mm256_add_epi32(sum1_i32x8, _mm256_madd_epi16(d1_i16x16, d1_i16x16));
    }
    if (i + 16 <= dims) {
        const __m256i d_i16x16 = _mm256_sub_epi16(load_i8x16_as_i16x16(a + i), load_i8x16_as_i16x16(b + i));
        sum0_i32x8 = _mm256_add_epi32(sum0_i32x8, _mm256_madd_epi16(d_i16x16, d_i16x16));
        i += 16;
    }
    if (i + 8 <= dims) {
        const __m128i d_i16x8 = _mm_sub_epi16(load_i8x8_as_i16x8(a + i), load_i8x8_as_i16x8(b + i));
        sum1_i32x8 = _mm256_add_epi32(sum1_i32x8, _mm256_zextsi128_si256(_mm_madd_epi16(d_i16x8, d_i16x8)));
        i += 8;
    }
    std::int32_t sum = reduce_add_i32x8(_mm256_add_epi32(sum0_i32x8, sum1_i32x8));
    for (; i < dims; ++i) {
        const std::int32_t d = std::int32_t{a[i]} - std::int32_t{b[i]};
        sum += d * d;
    }
    return sum;
}

float cos_i8_avx2(const std::int8_t* a, const std::int8_t* b, std::size_t dims) {
    __m256i dot_i32x8 = _mm256_setzero_si256();
    __m256i norm_a_i32x8 = _mm256_setzero_si256();
    __m256i norm_b_i32x8 = _mm256_setzero_si256();
    std::size_t i = 0;
    for (; i + 16 <= dims; i += 16) {
        const __m256i a_i16x16 = load_i8x16_as_i16x16(a + i);
        const __m256i b_i16x16 = load_i8x16_as_i16x16(b + i);
        dot_i32x8 = _mm256_add_epi32(dot_i32x8, _mm256_madd_epi16(a_i16x16, b_i16x16));
        norm_a_i32x8 = _mm256_add_epi32(norm_a_i32x8, _mm256_madd_epi16(a_i16x16, a_i16x16));
        norm_b_i32x8 = _mm256_add_epi32(norm_b_i32x8, _mm256_madd_epi16(b_i16x16, b_i16x16));
    }
    if (i + 8 <= dims) {
        const __m128i a_i16x8 = load_i8x8_as_i16x8(a + i);
        const __m128i b_i16x8 = load_i8x8_as_i16x8(b + i);
        dot_i32x8 = _mm256_add_epi32(dot_i32x8, _mm256_zextsi128_si256(_mm_madd_epi16(a_i16x8, b_i16x8)));
        norm_a_i32x8 = _mm256_add_epi32(norm_a_i32x8, _mm256_zextsi128_si256(_mm_madd_epi16(a_i16x8, a_i16x8)));
        norm_b_i32x8 = _mm256_add_epi32(norm_b_i32x8, _mm256_zextsi128_si256(_mm_madd_epi16(b_i16x8, b_i16x8)));
        i += 8;
    }
    std::int32_t dot = reduce_add_i32x8(dot_i32x8);
    std::int32_t norm2_a = reduce_add_i32x8(norm_a_i32x8);
    std::int32_t norm2_b = reduce_add_i32x8(norm_b_i32x8);
    for (; i < dims; ++i) {
        const std::int32_t x = a[i];
        const std::int32_t y = b[i];
        dot += x * y;
        norm2_a += x * x;
        norm2_b += y * y;
    }
    return cos_distance_from_sums(dot, norm2_a, norm2_b);
}

std::int32_t dot_u8i8_avx2(const std::uint8_t* a, const std::int8_t* b, std::size_t dims) {
    __m256i sum0_i32x8 = _mm256_setzero_si256();
    __m256i sum1_i32x8 = _mm256_setzero_si256();
    std::size_t i = 0;
    // a zero-extends to [0, 255], which int16 holds; pair sums (<= 2 * 255 * 128) fit int32.
    for (; i + 32 <= dims; i += 32) {
        sum0_i32x8 = _mm256_add_epi32(
            sum0_i32x8, _mm256_madd_epi16(load_u8x16_as_i16x16(a + i), load_i8x16_as_i16x16(b + i)));
        sum1_i32x8 = _mm256_add_epi32(
            sum1_i32x8, _mm256_madd_epi16(load_u8x16_as_i16x16(a + i + 16), load_i8x16_as_i16x16(b + i + 16)));
    }
    if (i + 16 <= dims) {
        sum0_i32x8 = _mm256_add_epi32(
            sum0_i32x8, _mm256_madd_epi16(load_u8x16_as_i16x16(a + i), load_i8x16_as_i16x16(b + i)));
        i += 16;
    }
    if (i + 8 <= dims) {
        const __m128i prod_i32x4 = _mm_madd_epi16(load_u8x8_as_i16x8(a + i), load_i8x8_as_i16x8(b + i));
        sum1_i32x8 = _mm256_add_epi32(sum1_i32x8, _mm256_zextsi128_si256(prod_i32x4));
        i += 8;
    }
    std::int32_t sum = reduce_add_i32x8(_mm256_add_epi32(sum0_i32x8, sum1_i32x8));
    for (; i < dims; ++i) sum += std::int32_t{a[i]} * std::int32_t{b[i]};
    return sum;
}

}  // namespace recserve::simd
