// AVX-512 VNNI int8 kernels (run only where cpu_features().avx512_vnni; the float kernels of
// this variant are avx512's).
//
// vpdpbusd multiplies 4 unsigned bytes by 4 signed bytes and adds the four products to an
// int32 lane without saturation (the "s" form, vpdpbusds, saturates: not used). So
//   u8 x i8:  vpdpbusd directly, 64 bytes per instruction.
//   i8 x i8:  bias a into unsigned, a + 128 = a ^ 0x80, then
//             sum a*b = sum (a + 128)*b - 128 * sum b, with sum b = vpdpbusd(1, b).
//             All lane arithmetic wraps modulo 2^32, so the result is exact whenever the true
//             result fits int32 (dims <= 65536), even if a partial sum wraps on the way.
//   l2sq:     a - b does not fit a byte: widened to int16, then vpdpwssd(d, d).
// The last 1..63 (1..31 for l2sq) bytes come through a masked load; a zero byte in a masked-off
// lane contributes nothing to any sum (its bias partner multiplies a zero).
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

inline __mmask32 first_lanes_mask32(std::size_t n) { return static_cast<__mmask32>((1ull << n) - 1ull); }
inline __mmask64 first_lanes_mask64(std::size_t n) { return static_cast<__mmask64>((1ull << n) - 1ull); }

inline __m512i load_i8x64(const void* p) { return _mm512_loadu_si512(p); }
inline __m512i load_i8x32_as_i16x32(const std::int8_t* p) {
    return _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

// sum - 128 * bias_sum of two int32 totals, modulo 2^32 (unsigned: no overflow UB).
inline std::int32_t remove_bias(std::int32_t sum, std::int32_t bias_sum) {
    return static_cast<std::int32_t>(static_cast<std::uint32_t>(sum) - (static_cast<std::uint32_t>(bias_sum) << 7));
}

}  // namespace

std::int32_t dot_i8_avx512vnni(const std::int8_t* a, const std::int8_t* b, std::size_t dims) {
    const __m512i bias_u8x64 = _mm512_set1_epi8(static_cast<char>(0x80));
    const __m512i ones_u8x64 = _mm512_set1_epi8(1);
    __m512i sum_i32x16 = _mm512_setzero_si512();    // sum (a + 128) * b
    __m512i sum_b_i32x16 = _mm512_setzero_si512();  // sum b
    std::size_t i = 0;
    for (; i + 64 <= dims; i += 64) {
        const __m512i a_u8x64 = _mm512_xor_si512(load_i8x64(a + i), bias_u8x64);
        const __m512i b_i8x64 = load_i8x64(b + i);
        sum_i32x16 = _mm512_dpbusd_epi32(sum_i32x16, a_u8x64, b_i8x64);
        sum_b_i32x16 = _mm512_dpbusd_epi32(sum_b_i32x16, ones_u8x64, b_i8x64);
    }
    if (i < dims) {
        const __mmask64 mask = first_lanes_mask64(dims - i);
        const __m512i a_u8x64 = _mm512_xor_si512(_mm512_maskz_loadu_epi8(mask, a + i), bias_u8x64);
        const __m512i b_i8x64 = _mm512_maskz_loadu_epi8(mask, b + i);
        sum_i32x16 = _mm512_dpbusd_epi32(sum_i32x16, a_u8x64, b_i8x64);
        sum_b_i32x16 = _mm512_dpbusd_epi32(sum_b_i32x16, ones_u8x64, b_i8x64);
    }
    return remove_bias(reduce_add_i32x16(sum_i32x16), reduce_add_i32x16(sum_b_i32x16));
}

std::int32_t l2sq_i8_avx512vnni(const std::int8_t* a, const std::int8_t* b, std::size_t dims) {
    __m512i sum0_i32x16 = _mm512_setzero_si512();
    __m512i sum1_i32x16 = _mm512_setzero_si512();
    std::size_t i = 0;
    // a - b lies in [-255, 255]: it fits int16, and vpdpwssd's pair sums (<= 2 * 255^2) int32.
    for (; i + 64 <= dims; i += 64) {
        const __m512i d0_i16x32 = _mm512_sub_epi16(load_i8x32_as_i16x32(a + i), load_i8x32_as_i16x32(b + i));
        const __m512i d1_i16x32 =
            _mm512_sub_epi16(load_i8x32_as_i16x32(a + i + 32), load_i8x32_as_i16x32(b + i + 32));
        sum0_i32x16 = _mm512_dpwssd_epi32(sum0_i32x16, d0_i16x32, d0_i16x32);
        sum1_i32x16 = _mm512_dpwssd_epi32(sum1_i32x16, d1_i16x32, d1_i16x32);
    }
    if (i + 32 <= dims) {
        const __m512i d_i16x32 = _mm512_sub_epi16(load_i8x32_as_i16x32(a + i), load_i8x32_as_i16x32(b + i));
        sum0_i32x16 = _mm512_dpwssd_epi32(sum0_i32x16, d_i16x32, d_i16x32);
        i += 32;
    }
    if (i < dims) {
        const __mmask32 mask = first_lanes_mask32(dims - i);
        const __m512i d_i16x32 = _mm512_sub_epi16(_mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(mask, a + i)),
                                                  _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(mask, b + i)));
        sum1_i32x16 = _mm512_dpwssd_epi32(sum1_i32x16, d_i16x32, d_i16x32);
    }
    return reduce_add_i32x16(_mm512_add_epi32(sum0_i32x16, sum1_i32x16));
}

float cos_i8_avx512vnni(const std::int8_t* a, const std::int8_t* b, std::size_t dims) {
    const __m512i bias_u8x64 = _mm512_set1_epi8(static_cast<char>(0x80));
    const __m512i ones_u8x64 = _mm512_set1_epi8(1);
    __m512i dot_i32x16 = _mm512_setzero_si512();     // sum (a + 128) * b
    __m512i norm_a_i32x16 = _mm512_setzero_si512();  // sum (a + 128) * a
    __m512i norm_b_i32x16 = _mm512_setzero_si512();  // sum (b + 128) * b
    __m512i sum_a_i32x16 = _mm512_setzero_si512();   // sum a
    __m512i sum_b_i32x16 = _mm512_setzero_si512();   // sum b
    std::size_t i = 0;
    for (; i < dims; i += 64) {
        const __mmask64 mask = dims - i >= 64 ? ~__mmask64{0} : first_lanes_mask64(dims - i);
        const __m512i a_i8x64 = _mm512_maskz_loadu_epi8(mask, a + i);
        const __m512i b_i8x64 = _mm512_maskz_loadu_epi8(mask, b + i);
        const __m512i a_u8x64 = _mm512_xor_si512(a_i8x64, bias_u8x64);
        const __m512i b_u8x64 = _mm512_xor_si512(b_i8x64, bias_u8x64);
        dot_i32x16 = _mm512_dpbusd_epi32(dot_i32x16, a_u8x64, b_i8x64);
        norm_a_i32x16 = _mm512_dpbusd_epi32(norm_a_i32x16, a_u8x64, a_i8x64);
        norm_b_i32x16 = _mm512_dpbusd_epi32(norm_b_i32x16, b_u8x64, b_i8x64);
        sum_a_i32x16 = _mm512_dpbusd_epi32(sum_a_i32x16, ones_u8x64, a_i8x64);
        sum_b_i32x16 = _mm512_dpbusd_epi32(sum_b_i32x16, ones_u8x64, b_i8x64);
    }
    const std::int32_t sum_a = reduce_add_i32x16(sum_a_i32x16);
    const std::int32_t sum_b = reduce_add_i32x16(sum_b_i32x16);
    return cos_distance_from_sums(remove_bias(reduce_add_i32x16(dot_i32x16), sum_b),
                                  remove_bias(reduce_add_i32x16(norm_a_i32x16), sum_a),
                                  remove_bias(reduce_add_i32x16(norm_b_i32x16), sum_b));
}

std::int32_t dot_u8i8_avx512vnni(const std::uint8_t* a, const std::int8_t* b, std::size_t dims) {
    __m512i sum0_i32x16 = _mm512_setzero_si512();
    __m512i sum1_i32x16 = _mm512_setzero_si512();
    std::size_t i = 0;
    for (; i + 128 <= dims; i += 128) {
        sum0_i32x16 = _mm512_dpbusd_epi32(sum0_i32x16, load_i8x64(a + i), load_i8x64(b + i));
        sum1_i32x16 = _mm512_dpbusd_epi32(sum1_i32x16, load_i8x64(a + i + 64), load_i8x64(b + i + 64));
    }
    if (i + 64 <= dims) {
        sum0_i32x16 = _mm512_dpbusd_epi32(sum0_i32x16, load_i8x64(a + i), load_i8x64(b + i));
        i += 64;
    }
    if (i < dims) {
        const __mmask64 mask = first_lanes_mask64(dims - i);
        sum1_i32x16 = _mm512_dpbusd_epi32(sum1_i32x16, _mm512_maskz_loadu_epi8(mask, a + i),
                                          _mm512_maskz_loadu_epi8(mask, b + i));
    }
    return reduce_add_i32x16(_mm512_add_epi32(sum0_i32x16, sum1_i32x16));
}

}  // namespace recserve::simd
