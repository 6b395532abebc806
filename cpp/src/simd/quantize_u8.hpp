// The first layer's row quantization (gemm_kernels.hpp, quantize_row_u8_*) in one definition:
// its parameters from the row's range, and one value, so every ISA's kernel computes them alike.
// Internal linkage on purpose: each kernel file compiles its own copy under its own target
// flags (an inline function shared by the ISA files could be linked as, say, the AVX-512 copy
// into the scalar path).
#pragma once

#include <cmath>
#include <cstdint>

namespace recserve::simd {
namespace {  // NOLINT(google-build-namespaces): see above

struct U8Quantization {
    static constexpr float kSteps = 254.0f;
    float scale, inv, z;

    // lo = min(0, min v), hi = max(0, max v) of the row.
    static U8Quantization of_range(float lo, float hi) {
        const float s = hi > lo ? (hi - lo) / kSteps : 1.0f;
        const float inv = 1.0f / s;
        const float z = std::nearbyint(-lo * inv);
        return {s, inv, z < kSteps ? z : kSteps};
    }

    std::uint8_t quantize(float v) const {
        v = std::nearbyint(v * inv) + z;
        v = v > 0.0f ? v : 0.0f;
        v = v < kSteps ? v : kSteps;
        return static_cast<std::uint8_t>(static_cast<std::int32_t>(v) + 1);
    }

    std::int32_t zero() const { return static_cast<std::int32_t>(z) + 1; }
};

}  // namespace
}  // namespace recserve::simd
