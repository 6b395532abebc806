// Every distance kernel of every ISA, named <op>_<dtype>_<isa>. Their semantics are in
// kernel_table.hpp; code outside simd/ reaches them through a KernelTable, never directly
// (only kernel_table.cpp and the kernel tests name them).
//
// Each ISA lives in its own translation unit compiled with its own flags (cpp/CMakeLists.txt):
//   scalar       kernels_scalar.cpp          no flags: runs everywhere
//   avx2         kernels_avx2.cpp            -mavx2 -mfma
//   avx512       kernels_avx512.cpp          + AVX-512 F/BW/VL/DQ
//   avx512vnni   kernels_avx512vnni.cpp      + AVX-512 VNNI (int8 kernels only; floats are avx512's)
//   neon         kernels_neon.cpp            aarch64 Advanced SIMD (the aarch64 baseline)
//   neondotprod  kernels_neon_dotprod.cpp    armv8.2-a+dotprod (int8 kernels only; floats are neon's)
//
// Calling a kernel whose ISA the CPU lacks is SIGILL: check cpu_features() first.
//
// Nothing here is inline: an inline function compiled in an ISA translation unit could be the
// copy the linker keeps for the whole program, and then run on a CPU without that ISA.
#pragma once

#include <cstddef>
#include <cstdint>

namespace recserve::simd {

// The shared end of every cosine kernel, so that all ISAs finish alike (and the int8 kernels
// give bit-identical floats): 1 - dot / sqrt(norm2_a * norm2_b), computed in double;
// 1 when either squared norm is 0. Defined in kernels_scalar.cpp (compiled without ISA flags).
float cos_distance_from_sums(double dot, double norm2_a, double norm2_b);

// ---- scalar: portable C++, the reference every other ISA is tested against -----------------
float dot_f32_scalar(const float* a, const float* b, std::size_t dims);
float l2sq_f32_scalar(const float* a, const float* b, std::size_t dims);
float cos_f32_scalar(const float* a, const float* b, std::size_t dims);
std::int32_t dot_i8_scalar(const std::int8_t* a, const std::int8_t* b, std::size_t dims);
std::int32_t l2sq_i8_scalar(const std::int8_t* a, const std::int8_t* b, std::size_t dims);
float cos_i8_scalar(const std::int8_t* a, const std::int8_t* b, std::size_t dims);
std::int32_t dot_u8i8_scalar(const std::uint8_t* a, const std::int8_t* b, std::size_t dims);

#if defined(RECSERVE_ARCH_X86)

// ---- avx2: AVX2 + FMA ------------------------------------------------------------------------
float dot_f32_avx2(const float* a, const float* b, std::size_t dims);
float l2sq_f32_avx2(const float* a, const float* b, std::size_t dims);
float cos_f32_avx2(const float* a, const float* b, std::size_t dims);
std::int32_t dot_i8_avx2(const std::int8_t* a, const std::int8_t* b, std::size_t dims);
std::int32_t l2sq_i8_avx2(const std::int8_t* a, const std::int8_t* b, std::size_t dims);
float cos_i8_avx2(const std::int8_t* a, const std::int8_t* b, std::size_t dims);
std::int32_t dot_u8i8_avx2(const std::uint8_t* a, const std::int8_t* b, std::size_t dims);

// ---- avx512: AVX-512 F/BW/VL/DQ --------------------------------------------------------------
float dot_f32_avx512(const float* a, const float* b, std::size_t dims);
float l2sq_f32_avx512(const float* a, const float* b, std::size_t dims);
float cos_f32_avx512(const float* a, const float* b, std::size_t dims);
std::int32_t dot_i8_avx512(const std::int8_t* a, const std::int8_t* b, std::size_t dims);
std::int32_t l2sq_i8_avx512(const std::int8_t* a, const std::int8_t* b, std::size_t dims);
float cos_i8_avx512(const std::int8_t* a, const std::int8_t* b, std::size_t dims);
std::int32_t dot_u8i8_avx512(const std::uint8_t* a, const std::int8_t* b, std::size_t dims);

// ---- avx512vnni: AVX-512 F/BW/VL/DQ + VNNI (the int8 kernels; floats use avx512) ------------
std::int32_t dot_i8_avx512vnni(const std::int8_t* a, const std::int8_t* b, std::size_t dims);
std::int32_t l2sq_i8_avx512vnni(const std::int8_t* a, const std::int8_t* b, std::size_t dims);
float cos_i8_avx512vnni(const std::int8_t* a, const std::int8_t* b, std::size_t dims);
std::int32_t dot_u8i8_avx512vnni(const std::uint8_t* a, const std::int8_t* b, std::size_t dims);

#endif  // RECSERVE_ARCH_X86

#if defined(RECSERVE_ARCH_ARM64)

// ---- neon: aarch64 Advanced SIMD -------------------------------------------------------------
float dot_f32_neon(const float* a, const float* b, std::size_t dims);
float l2sq_f32_neon(const float* a, const float* b, std::size_t dims);
float cos_f32_neon(const float* a, const float* b, std::size_t dims);
std::int32_t dot_i8_neon(const std::int8_t* a, const std::int8_t* b, std::size_t dims);
std::int32_t l2sq_i8_neon(const std::int8_t* a, const std::int8_t* b, std::size_t dims);
float cos_i8_neon(const std::int8_t* a, const std::int8_t* b, std::size_t dims);
std::int32_t dot_u8i8_neon(const std::uint8_t* a, const std::int8_t* b, std::size_t dims);

// ---- neondotprod: Advanced SIMD + SDOT/UDOT (the int8 kernels; floats use neon) --------------
std::int32_t dot_i8_neondotprod(const std::int8_t* a, const std::int8_t* b, std::size_t dims);
std::int32_t l2sq_i8_neondotprod(const std::int8_t* a, const std::int8_t* b, std::size_t dims);
float cos_i8_neondotprod(const std::int8_t* a, const std::int8_t* b, std::size_t dims);
std::int32_t dot_u8i8_neondotprod(const std::uint8_t* a, const std::int8_t* b, std::size_t dims);

#endif  // RECSERVE_ARCH_ARM64

}  // namespace recserve::simd
