// The int8 matrix-product kernels of the ranker, per ISA, named gemm_u8i8_<isa>; code outside
// simd/ reaches them through a KernelTable (kernel_table.hpp), never directly.
//
//   C[r][n] = sum_k A[r][k] * W[n][k]      for r < rows, n < n_pad, exact in int32
//
// A is 7-bit activations in [0, kGemmActivationMax], one byte each, row-major with leading
// dimension lda >= k_pad; every row has k_pad readable bytes (their values past the real width
// do not matter: the packed weights there are zero). W is signed 8-bit weights in
// [-kGemmWeightLimit, kGemmWeightLimit], packed (QuantizedMlp::create does it) as:
//
//   for each block of kGemmColumnBlock (16) output columns
//     for each group of kGemmKGroup (4) consecutive k
//       16 columns x 4 bytes: W[n0+0][k..k+3], W[n0+1][k..k+3], ..., W[n0+15][k..k+3]
//
// so one 64-byte step feeds 16 columns with 4 products each: one vpdpbusd (AVX-512 VNNI), two
// vpmaddubsw (AVX2), four sdot (NEON dotprod). k_pad is a multiple of 4, n_pad of 16.
//
// Why activations stop at 127: AVX2 has no int8 dot product into int32; vpmaddubsw adds two
// u8 x s8 products into int16 *with saturation*, and 2 x 127 x 127 = 32,258 cannot saturate.
// (7-bit activations with 8-bit weights lose less accuracy than 8-bit activations with 7-bit
// weights: measured on the 208-256-128-64-8 ranker, the worst probability error halves.)
// Every ISA takes the same inputs, so every ISA computes the same int32 sums and the ranker's
// scores are bit-identical on every machine; NEON's SDOT can take the 7-bit activations as
// signed bytes directly.
//
// int8_peak_<isa>(iterations) runs a register-only loop of the ISA's int8 multiply-accumulate
// sequence (the one its gemm kernel issues) with enough independent chains to fill the
// pipelines, and returns the number of multiply-accumulates done: timing it measures the
// machine's int8 peak for that ISA.
#pragma once

#include <cstddef>
#include <cstdint>

namespace recserve::simd {

inline constexpr std::size_t kGemmColumnBlock = 16;
inline constexpr std::size_t kGemmKGroup = 4;
inline constexpr int kGemmActivationMax = 127;
inline constexpr int kGemmWeightLimit = 127;

// The ranker's requantization between layers, per ISA and bit-identical on every ISA (the same
// IEEE operations per value, in the same order):
//   y[i] = max(y[i], 0)                        in place (ReLU)
//   scale = max(y) / 127, or 1 when every y is 0
//   q[i] = trunc(min(y[i] * (1 / scale), 127) + 0.5)     (7 bits, rounded half up)
// Returns the scale. Writes exactly n bytes of q.
float relu_requantize_scalar(float* y, std::size_t n, std::uint8_t* q);

// The 16-bit first layer (gemm_s16s16, quantize_row_s16): QuantizedMlp ran its first layer on
// these until it moved to 8-bit asymmetric inputs (quantize_row_u8, gemm_u8i8_wide below); they
// stay in the table, tested, for comparison. What follows is why they were written.
// The ranker's first layer reads 16-bit inputs: the input row is where 7 bits cost the most
// accuracy (measured on a trained ranker: it alone gives 2/3 of the int8-vs-float error), and
// a 16 x 16-bit product (vpmaddwd) issues as many multiply-accumulates per instruction as
// vpmaddubsw + vpmaddwd do for 8 x 8 bits on AVX2. Its 8-bit weights are stored widened to
// int16, in the same packed layout (16 columns x 4 k per step, 128 bytes), so the kernel
// loads them ready to multiply:
//   C[r][n] = sum_k A[r][k] * W[n][k],   A int16 with |A| <= levels, lda in elements,
// exact in int32 when k_pad * levels * 127 < 2^31 (QuantizedMlp picks levels so).
void gemm_s16s16_scalar(const std::int16_t* a, std::size_t lda, std::size_t rows, const std::int16_t* w,
                       std::size_t k_pad, std::size_t n_pad, std::int32_t* c, std::size_t ldc);

// Symmetric 16-bit quantization of one input row, per ISA and bit-identical on every ISA:
//   v[i] = x[i] * mult[i]   (mult may be null: v = x)
//   scale = max|v| / levels, or 1 when every v is 0
//   q[i] = nearbyint(v[i] * (1 / scale))  (round half to even), clamped to [-levels, levels]
// Writes *scale and exactly n values of q.
void quantize_row_s16_scalar(const float* x, const float* mult, std::size_t n, std::int32_t levels, std::int16_t* q,
                             float* scale);

// The ranker's first layer, on 8-bit inputs (every ISA; see QuantizedMlp for why 8 bits hold
// the accuracy targets there and 7 would not). Each input row is quantized asymmetrically to
// 254 steps, per ISA and bit-identical on every ISA:
//   v[i] = x[i] * mult[i]   (mult may be null: v = x)
//   lo = min(0, min v), hi = max(0, max v); scale = (hi - lo) / 254, or 1 when hi == lo
//   inv = 1 / scale; z = min(nearbyint(-lo * inv), 254)
//   q[i] = min(max(nearbyint(v[i] * inv) + z, 0), 254) + 1   in [1, 255]  (round half to even)
//   *zero = z + 1, so that v[i] ~ scale * (q[i] - *zero)
// Writes *scale, *zero and exactly n bytes of q.
void quantize_row_u8_scalar(const float* x, const float* mult, std::size_t n, std::uint8_t* q, float* scale,
                            std::int32_t* zero);

// The first layer's product: C[r][n] = sum_k A[r][k] * W[n][k], exact in int32, with A 8-bit
// activations in [1, 255] (all 8 bits: not the 7-bit range of gemm_u8i8) and W packed as for
// gemm_u8i8. w_sums[n] = sum_k W[n][k] for every n < n_pad (QuantizedMlp::create computes them):
// a kernel whose ISA has no unsigned x signed 8-bit product free of saturation takes
// A - 128 (a signed byte in [-127, 127], hence no 0 in A) and adds 128 * w_sums back.
// Exact when k_pad * 255 * 127 < 2^31 (k_pad < 66,000).
void gemm_u8i8_wide_scalar(const std::uint8_t* a, std::size_t lda, std::size_t rows, const std::int8_t* w,
                           std::size_t k_pad, std::size_t n_pad, const std::int32_t* w_sums, std::int32_t* c,
                           std::size_t ldc);

// A hidden layer's epilogue, fused: from one row's int32 sums to the next layer's 7-bit inputs,
// per ISA and bit-identical on every ISA:
//   y[i] = float(acc[i] - zero * w_sums[i]) * (row_scale * scale[i]) + bias[i]
//          (w_sums null: no correction; the multiplications and the addition are separate
//           IEEE operations, never fused)
//   then relu_requantize(y, n, q): y is left holding the ReLU'd values.
// Returns the new row scale. Writes exactly n floats of y and n bytes of q.
float dequantize_requantize_scalar(const std::int32_t* acc, std::size_t n, std::int32_t zero, const std::int32_t* w_sums,
                                   float row_scale, const float* scale, const float* bias, float* y, std::uint8_t* q);

#if defined(RECSERVE_ARCH_X86)
void quantize_row_u8_avx2(const float* x, const float* mult, std::size_t n, std::uint8_t* q, float* scale,
                          std::int32_t* zero);
void gemm_u8i8_wide_avx2(const std::uint8_t* a, std::size_t lda, std::size_t rows, const std::int8_t* w,
                         std::size_t k_pad, std::size_t n_pad, const std::int32_t* w_sums, std::int32_t* c,
                         std::size_t ldc);
float dequantize_requantize_avx2(const std::int32_t* acc, std::size_t n, std::int32_t zero, const std::int32_t* w_sums,
                                 float row_scale, const float* scale, const float* bias, float* y, std::uint8_t* q);
// vpdpbusd takes all 8 bits unsigned: the wide product is gemm_u8i8_avx512vnni's loop.
void gemm_u8i8_wide_avx512vnni(const std::uint8_t* a, std::size_t lda, std::size_t rows, const std::int8_t* w,
                               std::size_t k_pad, std::size_t n_pad, const std::int32_t* w_sums, std::int32_t* c,
                               std::size_t ldc);
void quantize_row_u8_avx512vnni(const float* x, const float* mult, std::size_t n, std::uint8_t* q, float* scale,
                            std::int32_t* zero);
float dequantize_requantize_avx512vnni(const std::int32_t* acc, std::size_t n, std::int32_t zero, const std::int32_t* w_sums,
                                   float row_scale, const float* scale, const float* bias, float* y, std::uint8_t* q);
#endif
#if defined(RECSERVE_ARCH_ARM64)
// Widening multiplies take all 8 bits: gemm_u8i8_neon's loop.
void gemm_u8i8_wide_neon(const std::uint8_t* a, std::size_t lda, std::size_t rows, const std::int8_t* w,
                         std::size_t k_pad, std::size_t n_pad, const std::int32_t* w_sums, std::int32_t* c,
                         std::size_t ldc);
void gemm_u8i8_wide_neondotprod(const std::uint8_t* a, std::size_t lda, std::size_t rows, const std::int8_t* w,
                                std::size_t k_pad, std::size_t n_pad, const std::int32_t* w_sums, std::int32_t* c,
                                std::size_t ldc);
#endif

#if defined(RECSERVE_ARCH_X86)
float relu_requantize_avx2(float* y, std::size_t n, std::uint8_t* q);
void gemm_s16s16_avx2(const std::int16_t* a, std::size_t lda, std::size_t rows, const std::int16_t* w,
                     std::size_t k_pad, std::size_t n_pad, std::int32_t* c, std::size_t ldc);
void quantize_row_s16_avx2(const float* x, const float* mult, std::size_t n, std::int32_t levels, std::int16_t* q,
                           float* scale);
#endif
#if defined(RECSERVE_ARCH_ARM64)
void gemm_s16s16_neon(const std::int16_t* a, std::size_t lda, std::size_t rows, const std::int16_t* w,
                     std::size_t k_pad, std::size_t n_pad, std::int32_t* c, std::size_t ldc);
#endif

void gemm_u8i8_scalar(const std::uint8_t* a, std::size_t lda, std::size_t rows, const std::int8_t* w,
                      std::size_t k_pad, std::size_t n_pad, std::int32_t* c, std::size_t ldc);
std::uint64_t int8_peak_scalar(std::size_t iterations);

#if defined(RECSERVE_ARCH_X86)
void gemm_u8i8_avx2(const std::uint8_t* a, std::size_t lda, std::size_t rows, const std::int8_t* w,
                    std::size_t k_pad, std::size_t n_pad, std::int32_t* c, std::size_t ldc);
std::uint64_t int8_peak_avx2(std::size_t iterations);
void gemm_u8i8_avx512vnni(const std::uint8_t* a, std::size_t lda, std::size_t rows, const std::int8_t* w,
                          std::size_t k_pad, std::size_t n_pad, std::int32_t* c, std::size_t ldc);
std::uint64_t int8_peak_avx512vnni(std::size_t iterations);
// The 16-bit first layer on vpdpwssd (2 x 16-bit products per 32-bit lane, non-saturating).
void gemm_s16s16_avx512vnni(const std::int16_t* a, std::size_t lda, std::size_t rows, const std::int16_t* w,
                            std::size_t k_pad, std::size_t n_pad, std::int32_t* c, std::size_t ldc);
#endif

#if defined(RECSERVE_ARCH_ARM64)
void gemm_u8i8_neon(const std::uint8_t* a, std::size_t lda, std::size_t rows, const std::int8_t* w,
                    std::size_t k_pad, std::size_t n_pad, std::int32_t* c, std::size_t ldc);
std::uint64_t int8_peak_neon(std::size_t iterations);
void gemm_u8i8_neondotprod(const std::uint8_t* a, std::size_t lda, std::size_t rows, const std::int8_t* w,
                           std::size_t k_pad, std::size_t n_pad, std::int32_t* c, std::size_t ldc);
std::uint64_t int8_peak_neondotprod(std::size_t iterations);
#endif

}  // namespace recserve::simd
