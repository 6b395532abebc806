// Scalar kernels: portable C++ compiled without ISA flags. They are the reference the SIMD
// kernels are tested against, so they stay the plain loops of the definitions in
// kernel_table.hpp (float sums in index order; int8 sums in int32, exact).
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "recserve/simd/kernels.hpp"

namespace recserve::simd {

float cos_distance_from_sums(double dot, double norm2_a, double norm2_b) {
    if (norm2_a == 0.0 || norm2_b == 0.0) return 1.0f;
    return static_cast<float>(1.0 - dot / std::sqrt(norm2_a * norm2_b));
}

float dot_f32_scalar(const float* a, const float* b, std::size_t dims) {
    float sum = 0.0f;
    for (std::size_t i = 0; i < dims; ++i) sum += a[i] * b[i];
    return sum;
}

float l2sq_f32_scalar(const float* a, const float* b, std::size_t dims) {
    float sum = 0.0f;
    for (std::size_t i = 0; i < dims; ++i) {
        const float d = a[i] - b[i];
        sum += d * d;
    }
    return sum;
}

float cos_f32_scalar(const float* a, const float* b, std::size_t dims) {
    float dot = 0.0f;
    float norm2_a = 0.0f;
    float norm2_b = 0.0f;
    for (std::size_t i = 0; i < dims; ++i) {
        dot += a[i] * b[i];
        norm2_a += a[i] * a[i];
        norm2_b += b[i] * b[i];
    }
    return cos_distance_from_sums(dot, norm2_a, norm2_b);
}

std::int32_t dot_i8_scalar(const std::int8_t* a, const std::int8_t* b, std::size_t dims) {
    std::int32_t sum = 0;
    for (std::size_t i = 0; i < dims; ++i) sum += std::int32_t{a[i]} * std::int32_t{b[i]};
    return sum;
}

std::int32_t l2sq_i8_scalar(const std::int8_t* a, const std::int8_t* b, std::size_t dims) {
    std::int32_t sum = 0;
    for (std::size_t i = 0; i < dims; ++i) {
        const std::int32_t d = std::int32_t{a[i]} - std::int32_t{b[i]};
        sum += d * d;
    }
    return sum;
}

float cos_i8_scalar(const std::int8_t* a, const std::int8_t* b, std::size_t dims) {
    std::int32_t dot = 0;
    std::int32_t norm2_a = 0;
    std::int32_t norm2_b = 0;
    for (std::size_t i = 0; i < dims; ++i) {
        const std::int32_t x = a[i];
        const std::int32_t y = b[i];
        dot += x * y;
        norm2_a += x * x;
        norm2_b += y * y;
    }
    return cos_distance_from_sums(dot, norm2_a, norm2_b);
}

std::int32_t dot_u8i8_scalar(const std::uint8_t* a, const std::int8_t* b, std::size_t dims) {
    std::int32_t sum = 0;
    for (std::size_t i = 0; i < dims; ++i) sum += std::int32_t{a[i]} * std::int32_t{b[i]};
    return sum;
}

}  // namespace recserve::simd
