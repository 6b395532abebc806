// The read-only table of distance kernels for one ISA, chosen once and never mutated.
//
// Every kernel has the shape (const T* a, const T* b, size_t dims) and is named
// <op>_<dtype>_<isa> in kernels.hpp. Conventions shared by every ISA:
//   dot_f32   sum a[i]*b[i]
//   l2sq_f32  sum (a[i]-b[i])^2
//   cos_f32   cosine distance 1 - a.b / (|a| |b|); 1 when either vector is all zeros
//   dot_i8    sum a[i]*b[i] in int32 (exact)
//   l2sq_i8   sum (a[i]-b[i])^2 in int32 (exact)
//   cos_i8    cosine distance of the int8 vectors as above, in float
//   dot_u8i8  sum a[i]*b[i] with a unsigned, b signed, in int32 (exact)
// int8 sums are exact in int32 for dims <= 65536 for the dot products (128*255*65536 <= 2^31)
// and for dims <= 33025 for l2sq_i8 (255^2 per element).
#pragma once

#include <cstddef>
#include <cstdint>

#include "recserve/base/status.hpp"
#include "recserve/simd/isa.hpp"

namespace recserve::simd {

using DistF32 = float (*)(const float* a, const float* b, std::size_t dims);
using DotI8 = std::int32_t (*)(const std::int8_t* a, const std::int8_t* b, std::size_t dims);
using CosI8 = float (*)(const std::int8_t* a, const std::int8_t* b, std::size_t dims);
using DotU8I8 = std::int32_t (*)(const std::uint8_t* a, const std::int8_t* b, std::size_t dims);
// The ranker's int8 matrix product and the int8 peak probe: see gemm_kernels.hpp.
using GemmU8I8 = void (*)(const std::uint8_t* a, std::size_t lda, std::size_t rows, const std::int8_t* w,
                          std::size_t k_pad, std::size_t n_pad, std::int32_t* c, std::size_t ldc);
using Int8Peak = std::uint64_t (*)(std::size_t iterations);
using ReluRequantize = float (*)(float* y, std::size_t n, std::uint8_t* q);
using GemmS16S16 = void (*)(const std::int16_t* a, std::size_t lda, std::size_t rows, const std::int16_t* w,
                           std::size_t k_pad, std::size_t n_pad, std::int32_t* c, std::size_t ldc);
using QuantizeRowS16 = void (*)(const float* x, const float* mult, std::size_t n, std::int32_t levels,
                                std::int16_t* q, float* scale);
// The ranker's first layer on 8-bit inputs and its fused hidden-layer epilogue: gemm_kernels.hpp.
using QuantizeRowU8 = void (*)(const float* x, const float* mult, std::size_t n, std::uint8_t* q, float* scale,
                               std::int32_t* zero);
using GemmU8I8Wide = void (*)(const std::uint8_t* a, std::size_t lda, std::size_t rows, const std::int8_t* w,
                              std::size_t k_pad, std::size_t n_pad, const std::int32_t* w_sums, std::int32_t* c,
                              std::size_t ldc);
using DequantizeRequantize = float (*)(const std::int32_t* acc, std::size_t n, std::int32_t zero,
                                       const std::int32_t* w_sums, float row_scale, const float* scale,
                                       const float* bias, float* y, std::uint8_t* q);

struct KernelTable {
    Isa isa;
    const char* variant;  // e.g. "avx512+vnni", "neon+dotprod": what was actually picked
    DistF32 dot_f32;
    DistF32 l2sq_f32;
    DistF32 cos_f32;
    DotI8 dot_i8;
    DotI8 l2sq_i8;
    CosI8 cos_i8;
    DotU8I8 dot_u8i8;
    GemmU8I8 gemm_u8i8;
    Int8Peak int8_peak;
    ReluRequantize relu_requantize;
    GemmS16S16 gemm_s16s16;
    QuantizeRowS16 quantize_row_s16;
    QuantizeRowU8 quantize_row_u8;
    GemmU8I8Wide gemm_u8i8_wide;
    DequantizeRequantize dequantize_requantize;
};

// The table for one ISA; kUnavailable if this build or this CPU lacks it.
Result<const KernelTable*> kernels_for(Isa isa);

// The process-wide table: the best available ISA, or RECSERVE_ISA when set.
// Chosen on first call (thread-safe) and fixed for the life of the process;
// an unknown or unavailable RECSERVE_ISA is an error, never a silent fallback.
Result<const KernelTable*> active_kernels();

}  // namespace recserve::simd
