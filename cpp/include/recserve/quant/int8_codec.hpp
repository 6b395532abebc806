// Symmetric per-vector int8 codes: x[i] ~= scale * code[i], code in [-127, 127].
//
// -128 is never produced, so negating a code never overflows and the int8 kernels may treat
// both operands alike.
#pragma once

#include <cstddef>
#include <cstdint>

namespace recserve::quant {

// Writes dims codes and returns the scale (max |x| / 127; 0 for the zero vector).
float quantize_i8(const float* x, std::size_t dims, std::int8_t* codes);

// out[i] = scale * codes[i].
void dequantize_i8(const std::int8_t* codes, float scale, std::size_t dims, float* out);

}  // namespace recserve::quant
