// Instruction-set levels recserve has kernels for, and how one is chosen at start-up.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "recserve/base/status.hpp"

namespace recserve::simd {

enum class Isa : std::uint8_t {
    kScalar = 0,  // portable C++, every machine
    kAvx2 = 1,    // x86-64 with AVX2 + FMA
    kAvx512 = 2,  // x86-64 with AVX-512 F/BW/VL/DQ; uses VNNI kernels where the CPU has them
    kNeon = 3,    // aarch64 Advanced SIMD; uses dotprod kernels where the CPU has them
};

const char* isa_name(Isa isa);
Result<Isa> parse_isa(std::string_view name);  // "scalar" | "avx2" | "avx512" | "neon"

struct CpuFeatures {
    bool avx2_fma = false;
    bool avx512 = false;       // F + BW + VL + DQ, and the OS saves ZMM state
    bool avx512_vnni = false;
    bool neon = false;
    bool neon_dotprod = false;
};

// What this CPU and OS support, read once (cpuid/xgetbv on x86, getauxval on aarch64).
const CpuFeatures& cpu_features();

// ISAs this build has kernels for and this machine can run, scalar first, best last.
std::vector<Isa> available_isas();

}  // namespace recserve::simd
