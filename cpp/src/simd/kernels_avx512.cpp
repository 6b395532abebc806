// AVX-512 F/BW/VL/DQ kernels (run only where cpu_features().avx512).
//
// Floats: two 16-lane accumulators over 32 elements, one 16 step, then a masked load for the
// last 1..15 (masked-off lanes read as zero and never touch memory): no scalar tail.
// int8: 32 bytes widened to int16 (vpmovsxbw / vpmovzxbw), vpmaddwd into int32 lanes (exact),
// the last 1..31 through a masked byte load.
//
// Only <immintrin.h> and helpers in an unnamed namespace here (see kernels.hpp).
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "recserve/simd/kernels.hpp"

namespace recserve::simd {
namespace {

// Horizontal sums. Not _mm512_reduce_add_* nor _mm512_cast*512_*256: in GCC 12.2 those go
// through _mm256_undefined_* and trip -Wuninitialized (GCC bug 105593). A zero-masked extract
// with a full mask compiles to the same plain vextract (or, for the low half, a register move).
inline std::int32_t reduce_add_i32x16(__m512i v) {
    const __m256i sum_i32x8 = _mm256_add_epi32(_mm512_maskz_extracti64x4_epi64(0xff, v, 0), _mm512_maskz_extracti64x4_epi64(0xff, v, 1));
    __m128i sum_i32x4 = _mm_add_epi32(_mm256_castsi256_si128(sum_i32x8), _mm256_extracti128_si256(sum_i32x8, 1));
    sum_i32x4 = _mm_add_epi32(sum_i32x4, _mm_unpackhi_epi64(sum_i32x4, sum_i32x4));
    sum_i32x4 = _mm_add_epi32(sum_i32x4, _mm_shuffle_epi32(sum_i32x4, 0x55));
    return _mm_cvtsi128_si32(sum_i32x4);
}
inline float reduce_add_f32x16(__m512 v) {
    const __m256 sum_f32x8 = _mm256_add_ps(_mm512_maskz_extractf32x8_ps(0xff, v, 0), _mm512_maskz_extractf32x8_ps(0xff, v, 1));
    __m128 sum_f32x4 = _mm_add_ps(_mm256_castps256_ps128(sum_f32x8), _mm256_extractf128_ps(sum_f32x8, 1));
    sum_f32x4 = _mm_add_ps(sum_f32x4, _mm_movehl_ps(sum_f32x4, sum_f32x4));
    sum_f32x4 = _mm_add_ss(sum_f32x4, _mm_movehdup_ps(sum_f32x4));
    return _mm_cvtss_f32(sum_f32x4);
}

inline __mmask16 first_lanes_mask16(std::size_t n) { return static_cast<__mmask16>((1u << n) - 1u); }
inline __mmask32 first_lanes_mask32(std::size_t n) { return static_cast<__mmask32>((1ull << n) - 1ull); }

inline __m512i load_i8x32_as_i16x32(const std::int8_t* p) {
    return _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
inline __m512i load_u8x32_as_i16x32(const std::uint8_t* p) {
    return _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
inline __m512i load_i8_tail_as_i16x32(const std::int8_t* p, __mmask32 mask) {
    return _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(mask, p));
}
inline __m512i load_u8_tail_as_i16x32(const std::uint8_t* p, __mmask32 mask) {
    return _mm512_cvtepu8_epi16(_mm256_maskz_loadu_epi8(mask, p));
}

}  // namespace

float dot_f32_avx512(const float* a, const float* b, std::size_t dims) {
    __m512 sum0_f32x16 = _mm512_setzero_ps();
    __m512 sum1_f32x16 = _mm512_setzero_ps();
    std::size_t i = 0;
    for (; i + 32 <= dims; i += 32) {
        sum0_f32x16 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), sum0_f32x16);
        sum1_f32x16 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), sum1_f32x16);
    }
    if (i + 16 <= dims) {
        sum0_f32x16 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), sum0_f32x16);
        i += 16;
    }
    if (i < dims) {
        const __mmask16 mask = first_lanes_mask16(dims - i);
        sum1_f32x16 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, a + i), _mm512_maskz_loadu_ps(mask, b + i),
                                      sum1_f32x16);
    }
    return reduce_add_f32x16(_mm512_add_ps(sum0_f32x16, sum1_f32x16));
}

float l2sq_f32_avx512(const float* a, const float* b, std::size_t dims) {
    __m512 sum0_f32x16 = _mm512_setzero_ps();
    __m512 sum1_f32x16 = _mm512_setzero_ps();
    std::size_t i = 0;
    for (; i + 32 <= dims; i += 32) {
        const __m512 d0_f32x16 = _mm512_sub_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i));
        const __m512 d1_f32x16 = _mm512_sub_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16));
        sum0_f32x16 = _mm512_fmadd_ps(d0_f32x16, d0_f32x16, sum0_f32x16);
        sum1_f32x16 = _mm512_fmadd_ps(d1_f32x16, d1_f32x16, sum1_f32x16);
    }
    if (i + 16 <= dims) {
        const __m512 d_f32x16 = _mm512_sub_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i));
        sum0_f32x16 = _mm512_fmadd_ps(d_f32x16, d_f32x16, sum0_f32x16);
        i += 16;
    }
    if (i < dims) {
        const __mmask16 mask = first_lanes_mask16(dims - i);
        const __m512 d_f32x16 = _mm512_sub_ps(_mm512_maskz_loadu_ps(mask, a + i), _mm512_maskz_loadu_ps(mask, b + i));
        sum1_f32x16 = _mm512_fmadd_ps(d_f32x16, d_f32x16, sum1_f32x16);
    }
    return reduce_add_f32x16(_mm512_add_ps(sum0_f32x16, sum1_f32x16));
}

float cos_f32_avx512(const float* a, const float* b, std::size_t dims) {
    __m512 dot_f32x16 = _mm512_setzero_ps();
    __m512 norm_a_f32x16 = _mm512_setzero_ps();
    __m512 norm_b_f32x16 = _mm512_setzero_ps();
    std::size_t i = 0;
    for (; i + 16 <= dims; i += 16) {
        const __m512 a_f32x16 = _mm512_loadu_ps(a + i);
        const __m512 b_f32x16 = _mm512_loadu_ps(b + i);
        dot_f32x16 = _mm512_fmadd_ps(a_f32x16, b_f32x16, dot_f32x16);
        norm_a_f32x16 = _mm512_fmadd_ps(a_f32x16, a_f32x16, norm_a_f32x16);
        norm_b_f32x16 = _mm512_fmadd_ps(b_f32x16, b_f32x16, norm_b_f32x16);
    }
    if (i < dims) {
        const __mmask16 mask = first_lanes_mask16(dims - i);
        const __m512 a_f32x16 = _mm512_maskz_loadu_ps(mask, a + i);
        const __m512 b_f32x16 = _mm512_maskz_loadu_ps(mask, b + i);
        dot_f32x16 = _mm512_fmadd_ps(a_f32x16, b_f32x16, dot_f32x16);
        norm_a_f32x16 = _mm512_fmadd_ps(a_f32x16, a_f32x16, norm_a_f32x16);
        norm_b_f32x16 = _mm512_fmadd_ps(b_f32x16, b_f32x16, norm_b_f32x16);
    }
    return cos_distance_from_sums(reduce_add_f32x16(dot_f32x16), reduce_add_f32x16(norm_a_f32x16),
                                  reduce_add_f32x16(norm_b_f32x16));
}

std::int32_t dot_i8_avx512(const std::int8_t* a, const std::int8_t* b, std::size_t dims) {
    __m512i sum0_i32x16 = _mm512_setzero_si512();
    __m512i sum1_i32x16 = _mm512_setzero_si512();
    std::size_t i = 0;
    for (; i + 64 <= dims; i += 64) {
        sum0_i32x16 = _mm512_add_epi32(
            sum0_i32x16, _mm512_madd_epi16(load_i8x32_as_i16x32(a + i), load_i8x32_as_i16x32(b + i)));
        sum1_i32x16 = _mm512_add_epi32(
            sum1_i32x16, _mm512_madd_epi16(load_i8x32_as_i16x32(a + i + 32), load_i8x32_as_i16x32(b + i + 32)));
    }
    if (i + 32 <= dims) {
        sum0_i32x16 = _mm512_add_epi32(
            sum0_i32x16, _mm512_madd_epi16(load_i8x32_as_i16x32(a + i), load_i8x32_as_i16x32(b + i)));
        i += 32;
    }
    if (i < dims) {
        const __mmask32 mask = first_lanes_mask32(dims - i);
        sum1_i32x16 = _mm512_add_epi32(
            sum1_i32x16, _mm512_madd_epi16(load_i8_tail_as_i16x32(a + i, mask), load_i8_tail_as_i16x32(b + i, mask)));
    }
    return reduce_add_i32x16(_mm512_add_epi32(sum0_i32x16, sum1_i32x16));
}

std::int32_t l2sq_i8_avx512(const std::int8_t* a, const std::int8_t* b, std::size_t dims) {
    __m512i sum0_i32x16 = _mm512_setzero_si512();
    __m512i sum1_i32x16 = _mm512_setzero_si512();
    std::size_t i = 0;
    // a - b lies in [-255, 255]: it fits int16, and vpmaddwd's pair sums (<= 2 * 255^2) int32.
    for (; i + 64 <= dims; i += 64) {
        const __m512i d0_i16x32 = _mm512_sub_epi16(load_i8x32_as_i16x32(a + i), load_i8x32_as_i16x32(b + i));
        const __m512i d1_i16x32 =
            _mm512_sub_epi16(load_i8x32_as_i16x32(a + i + 32), load_i8x32_as_i16x32(b + i + 32));
        sum0_i32x16 = _mm512_add_epi32(sum0_i32x16, _mm512_madd_epi16(d0_i16x32, d0_i16x32));
        sum1_i32x16 = _mm512_add_epi32(sum1_i32x16, _mm512_madd_epi16(d1_i16x32, d1_i16x32));
    }
    if (i + 32 <= dims) {
        const __m512i d_i16x32 = _mm512_sub_epi16(load_i8x32_as_i16x32(a + i), load_i8x32_as_i16x32(b + i));
        sum0_i32x16 = _mm512_add_epi32(sum0_i32x16, _mm512_madd_epi16(d_i16x32, d_i16x32));
        i += 32;
    }
    if (i < dims) {
        const __mmask32 mask = first_lanes_mask32(dims - i);
        const __m512i d_i16x32 =
            _mm512_sub_epi16(load_i8_tail_as_i16x32(a + i, mask), load_i8_tail_as_i16x32(b + i, mask));
        sum1_i32x16 = _mm512_add_epi32(sum1_i32x16, _mm512_madd_epi16(d_i16x32, d_i16x32));
    }
    return reduce_add_i32x16(_mm512_add_epi32(sum0_i32x16, sum1_i32x16));
}

float cos_i8_avx512(const std::int8_t* a, const std::int8_t* b, std::size_t dims) {
    __m512i dot_i32x16 = _mm512_setzero_si512();
    __m512i norm_a_i32x16 = _mm512_setzero_si512();
    __m512i norm_b_i32x16 = _mm512_setzero_si512();
    std::size_t i = 0;
    for (; i + 32 <= dims; i += 32) {
        const __m512i a_i16x32 = load_i8x32_as_i16x32(a + i);
        const __m512i b_i16x32 = load_i8x32_as_i16x32(b + i);
        dot_i32x16 = _mm512_add_epi32(dot_i32x16, _mm512_madd_epi16(a_i16x32, b_i16x32));
        norm_a_i32x16 = _mm512_add_epi32(norm_a_i32x16, _mm512_madd_epi16(a_i16x32, a_i16x32));
        norm_b_i32x16 = _mm512_add_epi32(norm_b_i32x16, _mm512_madd_epi16(b_i16x32, b_i16x32));
    }
    if (i < dims) {
        const __mmask32 mask = first_lanes_mask32(dims - i);
        const __m512i a_i16x32 = load_i8_tail_as_i16x32(a + i, mask);
        const __m512i b_i16x32 = load_i8_tail_as_i16x32(b + i, mask);
        dot_i32x16 = _mm512_add_epi32(dot_i32x16, _mm512_madd_epi16(a_i16x32, b_i16x32));
        norm_a_i32x16 = _mm512_add_epi32(norm_a_i32x16, _mm512_madd_epi16(a_i16x32, a_i16x32));
        norm_b_i32x16 = _mm512_add_epi32(norm_b_i32x16, _mm512_madd_epi16(b_i16x32, b_i16x32));
    }
    return cos_distance_from_sums(reduce_add_i32x16(dot_i32x16), reduce_add_i32x16(norm_a_i32x16),
                                  reduce_add_i32x16(norm_b_i32x16));
}

std::int32_t dot_u8i8_avx512(const std::uint8_t* a, const std::int8_t* b, std::size_t dims) {
    __m512i sum0_i32x16 = _mm512_setzero_si512();
    __m512i sum1_i32x16 = _mm512_setzero_si512();
    std::size_t i = 0;
    // a zero-extends to [0, 255], which int16 holds; pair sums (<= 2 * 255 * 128) fit int32.
    for (; i + 64 <= dims; i += 64) {
        sum0_i32x16 = _mm512_add_epi32(
            sum0_i32x16, _mm512_madd_epi16(load_u8x32_as_i16x32(a + i), load_i8x32_as_i16x32(b + i)));
        sum1_i32x16 = _mm512_add_epi32(
            sum1_i32x16, _mm512_madd_epi16(load_u8x32_as_i16x32(a + i + 32), load_i8x32_as_i16x32(b + i + 32)));
    }
    if (i + 32 <= dims) {
        sum0_i32x16 = _mm512_add_epi32(
            sum0_i32x16, _mm512_madd_epi16(load_u8x32_as_i16x32(a + i), load_i8x32_as_i16x32(b + i)));
        i += 32;
    }
    if (i < dims) {
        const __mmask32 mask = first_lanes_mask32(dims - i);
        sum1_i32x16 = _mm512_add_epi32(
            sum1_i32x16, _mm512_madd_epi16(load_u8_tail_as_i16x32(a + i, mask), load_i8_tail_as_i16x32(b + i, mask)));
    }
    return reduce_add_i32x16(_mm512_add_epi32(sum0_i32x16, sum1_i32x16));
}

}  // namespace recserve::simd
