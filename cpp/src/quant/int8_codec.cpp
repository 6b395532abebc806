#include "recserve/quant/int8_codec.hpp"

#include <cmath>

namespace recserve::quant {

float quantize_i8(const float* x, std::size_t dims, std::int8_t* codes) {
    float max_abs = 0.0f;
    for (std::size_t i = 0; i < dims; ++i) max_abs = std::fmax(max_abs, std::fabs(x[i]));
    if (max_abs == 0.0f) {
        for (std::size_t i = 0; i < dims; ++i) codes[i] = 0;
        return 0.0f;
    }
    const float scale = max_abs / 127.0f;
    const float inv = 127.0f / max_abs;
    for (std::size_t i = 0; i < dims; ++i) {
        float q = std::nearbyint(x[i] * inv);
        q = std::fmin(127.0f, std::fmax(-127.0f, q));  // rounding can reach 127.5 at the max
        codes[i] = static_cast<std::int8_t>(q);
    }
    return scale;
}

void dequantize_i8(const std::int8_t* codes, float scale, std::size_t dims, float* out) {
    for (std::size_t i = 0; i < dims; ++i) out[i] = scale * static_cast<float>(codes[i]);
}

}  // namespace recserve::quant
