// ISA names and CPU feature detection. Compiled without ISA flags: it must run everywhere.
#include "recserve/simd/isa.hpp"

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#if defined(RECSERVE_ARCH_X86)
#include <cpuid.h>
#elif defined(RECSERVE_ARCH_ARM64) && defined(__linux__)
#include <sys/auxv.h>
#endif

namespace recserve::simd {
namespace {

constexpr Isa kAllIsas[] = {Isa::kScalar, Isa::kAvx2, Isa::kAvx512, Isa::kNeon};

#if defined(RECSERVE_ARCH_X86)

std::uint64_t read_xcr0() {
    std::uint32_t eax = 0;
    std::uint32_t edx = 0;
    // xgetbv with ecx = 0 (XCR0); as raw asm so this file needs no -mxsave.
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return (std::uint64_t{edx} << 32) | eax;
}

CpuFeatures detect() {
    CpuFeatures f;
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return f;
    const bool osxsave = (ecx >> 27) & 1u;
    const bool avx = (ecx >> 28) & 1u;
    const bool fma = (ecx >> 12) & 1u;
    if (!osxsave || !avx) return f;  // without OSXSAVE, xgetbv would fault

    const std::uint64_t xcr0 = read_xcr0();
    const bool os_saves_ymm = (xcr0 & 0x6) == 0x6;     // SSE (bit 1) + AVX (bit 2) state
    const bool os_saves_zmm = (xcr0 & 0xe6) == 0xe6;   // + opmask, ZMM_Hi256, Hi16_ZMM (5..7)
    if (!os_saves_ymm) return f;

    if (__get_cpuid_max(0, nullptr) < 7) return f;
    __cpuid_count(7, 0, eax, ebx, ecx, edx);
    const bool avx2 = (ebx >> 5) & 1u;
    const bool avx512f = (ebx >> 16) & 1u;
    const bool avx512dq = (ebx >> 17) & 1u;
    const bool avx512bw = (ebx >> 30) & 1u;
    const bool avx512vl = (ebx >> 31) & 1u;
    const bool avx512vnni = (ecx >> 11) & 1u;

    f.avx2_fma = avx2 && fma;
    // The avx512 kernels are also compiled with -mavx2 -mfma: require those too.
    f.avx512 = f.avx2_fma && os_saves_zmm && avx512f && avx512dq && avx512bw && avx512vl;
    f.avx512_vnni = f.avx512 && avx512vnni;
    return f;
}

#elif defined(RECSERVE_ARCH_ARM64)

CpuFeatures detect() {
    CpuFeatures f;
#if defined(__linux__)
    // Bit numbers from <asm/hwcap.h>, spelled out so older kernel headers do not matter.
    constexpr unsigned long kHwcapAsimd = 1ul << 1;    // HWCAP_ASIMD
    constexpr unsigned long kHwcapAsimdDp = 1ul << 20;  // HWCAP_ASIMDDP
    const unsigned long hwcap = getauxval(AT_HWCAP);
    f.neon = (hwcap & kHwcapAsimd) != 0;
    f.neon_dotprod = f.neon && (hwcap & kHwcapAsimdDp) != 0;
#else
    f.neon = true;  // Advanced SIMD is part of every aarch64 CPU; dotprod is not probed here
#endif
    return f;
}

#else

CpuFeatures detect() { return {}; }

#endif

}  // namespace

const char* isa_name(Isa isa) {
    switch (isa) {
        case Isa::kScalar: return "scalar";
        case Isa::kAvx2: return "avx2";
        case Isa::kAvx512: return "avx512";
        case Isa::kNeon: return "neon";
    }
    return "unknown";
}

Result<Isa> parse_isa(std::string_view name) {
    for (Isa isa : kAllIsas) {
        if (name == isa_name(isa)) return isa;
    }
    std::string message = "unknown ISA '" + std::string(name) + "'; expected one of: ";
    for (Isa isa : kAllIsas) {
        if (isa != kAllIsas[0]) message += ", ";
        message += isa_name(isa);
    }
    return Status::invalid_argument(std::move(message));
}

const CpuFeatures& cpu_features() {
    static const CpuFeatures features = detect();  // thread-safe, once
    return features;
}

std::vector<Isa> available_isas() {
    std::vector<Isa> isas{Isa::kScalar};
    [[maybe_unused]] const CpuFeatures& f = cpu_features();
#if defined(RECSERVE_ARCH_X86)
    if (f.avx2_fma) isas.push_back(Isa::kAvx2);
    if (f.avx512) isas.push_back(Isa::kAvx512);
#endif
#if defined(RECSERVE_ARCH_ARM64)
    if (f.neon) isas.push_back(Isa::kNeon);
#endif
    return isas;
}

}  // namespace recserve::simd
