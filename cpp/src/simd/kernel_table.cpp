// The per-ISA kernel tables and the one-time choice of the process-wide table.
#include "recserve/simd/kernel_table.hpp"

#include <cstdlib>
#include <string>
#include <vector>

#include "recserve/simd/isa.hpp"
#include "recserve/simd/gemm_kernels.hpp"
#include "recserve/simd/kernels.hpp"

namespace recserve::simd {
namespace {

// Constant-initialised: no start-up order to worry about, nothing to mutate.
constexpr KernelTable kScalarTable{
    .isa = Isa::kScalar,
    .variant = "scalar",
    .dot_f32 = dot_f32_scalar,
    .l2sq_f32 = l2sq_f32_scalar,
    .cos_f32 = cos_f32_scalar,
    .dot_i8 = dot_i8_scalar,
    .l2sq_i8 = l2sq_i8_scalar,
    .cos_i8 = cos_i8_scalar,
    .dot_u8i8 = dot_u8i8_scalar,
    .gemm_u8i8 = gemm_u8i8_scalar,
    .int8_peak = int8_peak_scalar,
    .relu_requantize = relu_requantize_scalar,
    .gemm_s16s16 = gemm_s16s16_scalar,
    .quantize_row_s16 = quantize_row_s16_scalar,
    .quantize_row_u8 = quantize_row_u8_scalar,
    .gemm_u8i8_wide = gemm_u8i8_wide_scalar,
    .dequantize_requantize = dequantize_requantize_scalar,
};

#if defined(RECSERVE_ARCH_X86)
constexpr KernelTable kAvx2Table{
    .isa = Isa::kAvx2,
    .variant = "avx2",
    .dot_f32 = dot_f32_avx2,
    .l2sq_f32 = l2sq_f32_avx2,
    .cos_f32 = cos_f32_avx2,
    .dot_i8 = dot_i8_avx2,
    .l2sq_i8 = l2sq_i8_avx2,
    .cos_i8 = cos_i8_avx2,
    .dot_u8i8 = dot_u8i8_avx2,
    .gemm_u8i8 = gemm_u8i8_avx2,
    .int8_peak = int8_peak_avx2,
    .relu_requantize = relu_requantize_avx2,
    .gemm_s16s16 = gemm_s16s16_avx2,
    .quantize_row_s16 = quantize_row_s16_avx2,
    .quantize_row_u8 = quantize_row_u8_avx2,
    .gemm_u8i8_wide = gemm_u8i8_wide_avx2,
    .dequantize_requantize = dequantize_requantize_avx2,
};
constexpr KernelTable kAvx512Table{
    .isa = Isa::kAvx512,
    .variant = "avx512",
    .dot_f32 = dot_f32_avx512,
    .l2sq_f32 = l2sq_f32_avx512,
    .cos_f32 = cos_f32_avx512,
    .dot_i8 = dot_i8_avx512,
    .l2sq_i8 = l2sq_i8_avx512,
    .cos_i8 = cos_i8_avx512,
    .dot_u8i8 = dot_u8i8_avx512,
    .gemm_u8i8 = gemm_u8i8_avx2,  // without VNNI, AVX-512BW adds nothing to the int8 product here
    .int8_peak = int8_peak_avx2,
    .relu_requantize = relu_requantize_avx2,
    .gemm_s16s16 = gemm_s16s16_avx2,
    .quantize_row_s16 = quantize_row_s16_avx2,
    .quantize_row_u8 = quantize_row_u8_avx2,
    .gemm_u8i8_wide = gemm_u8i8_wide_avx2,
    .dequantize_requantize = dequantize_requantize_avx2,
};
// VNNI changes the int8 kernels and the 16-bit first layer (vpdpwssd).
constexpr KernelTable kAvx512VnniTable{
    .isa = Isa::kAvx512,
    .variant = "avx512+vnni",
    .dot_f32 = dot_f32_avx512,
    .l2sq_f32 = l2sq_f32_avx512,
    .cos_f32 = cos_f32_avx512,
    .dot_i8 = dot_i8_avx512vnni,
    .l2sq_i8 = l2sq_i8_avx512vnni,
    .cos_i8 = cos_i8_avx512vnni,
    .dot_u8i8 = dot_u8i8_avx512vnni,
    .gemm_u8i8 = gemm_u8i8_avx512vnni,
    .int8_peak = int8_peak_avx512vnni,
    .relu_requantize = relu_requantize_avx2,
    .gemm_s16s16 = gemm_s16s16_avx512vnni,
    .quantize_row_s16 = quantize_row_s16_avx2,
    .quantize_row_u8 = quantize_row_u8_avx512vnni,
    .gemm_u8i8_wide = gemm_u8i8_wide_avx512vnni,
    .dequantize_requantize = dequantize_requantize_avx512vnni,
};
#endif

#if defined(RECSERVE_ARCH_ARM64)
constexpr KernelTable kNeonTable{
    .isa = Isa::kNeon,
    .variant = "neon",
    .dot_f32 = dot_f32_neon,
    .l2sq_f32 = l2sq_f32_neon,
    .cos_f32 = cos_f32_neon,
    .dot_i8 = dot_i8_neon,
    .l2sq_i8 = l2sq_i8_neon,
    .cos_i8 = cos_i8_neon,
    .dot_u8i8 = dot_u8i8_neon,
    .gemm_u8i8 = gemm_u8i8_neon,
    .int8_peak = int8_peak_neon,
    .relu_requantize = relu_requantize_scalar,
    .gemm_s16s16 = gemm_s16s16_neon,
    .quantize_row_s16 = quantize_row_s16_scalar,
    .quantize_row_u8 = quantize_row_u8_scalar,
    .gemm_u8i8_wide = gemm_u8i8_wide_neon,
    .dequantize_requantize = dequantize_requantize_scalar,
};
// dotprod changes only the int8 kernels.
constexpr KernelTable kNeonDotprodTable{
    .isa = Isa::kNeon,
    .variant = "neon+dotprod",
    .dot_f32 = dot_f32_neon,
    .l2sq_f32 = l2sq_f32_neon,
    .cos_f32 = cos_f32_neon,
    .dot_i8 = dot_i8_neondotprod,
    .l2sq_i8 = l2sq_i8_neondotprod,
    .cos_i8 = cos_i8_neondotprod,
    .dot_u8i8 = dot_u8i8_neondotprod,
    .gemm_u8i8 = gemm_u8i8_neondotprod,
    .int8_peak = int8_peak_neondotprod,
    .relu_requantize = relu_requantize_scalar,
    .gemm_s16s16 = gemm_s16s16_neon,
    .quantize_row_s16 = quantize_row_s16_scalar,
    .quantize_row_u8 = quantize_row_u8_scalar,
    .gemm_u8i8_wide = gemm_u8i8_wide_neondotprod,
    .dequantize_requantize = dequantize_requantize_scalar,
};
#endif

std::string available_list() {
    std::string names;
    for (Isa isa : available_isas()) {
        if (!names.empty()) names += ", ";
        names += isa_name(isa);
    }
    return names;
}

// Why `isa` cannot run here, or "" when it can.
std::string why_unavailable(Isa isa) {
    [[maybe_unused]] const CpuFeatures& f = cpu_features();
    switch (isa) {
        case Isa::kScalar: return "";
        case Isa::kAvx2:
#if defined(RECSERVE_ARCH_X86)
            return f.avx2_fma ? "" : "this CPU lacks AVX2 + FMA, or the OS does not save YMM state";
#else
            return "this build is not for x86-64";
#endif
        case Isa::kAvx512:
#if defined(RECSERVE_ARCH_X86)
            return f.avx512 ? ""
                            : "this CPU lacks AVX-512 F/BW/VL/DQ, or the OS does not save ZMM state";
#else
            return "this build is not for x86-64";
#endif
        case Isa::kNeon:
#if defined(RECSERVE_ARCH_ARM64)
            return f.neon ? "" : "this CPU lacks Advanced SIMD";
#else
            return "this build is not for aarch64";
#endif
    }
    return "it is not a known ISA";
}

}  // namespace

Result<const KernelTable*> kernels_for(Isa isa) {
    const std::string why = why_unavailable(isa);
    if (!why.empty()) {
        return Status::unavailable(std::string(isa_name(isa)) + " is not available on this machine (" + why +
                                   "); available: " + available_list());
    }
    [[maybe_unused]] const CpuFeatures& f = cpu_features();
    switch (isa) {
        case Isa::kScalar: return &kScalarTable;
#if defined(RECSERVE_ARCH_X86)
        case Isa::kAvx2: return &kAvx2Table;
        case Isa::kAvx512: return f.avx512_vnni ? &kAvx512VnniTable : &kAvx512Table;
#endif
#if defined(RECSERVE_ARCH_ARM64)
        case Isa::kNeon: return f.neon_dotprod ? &kNeonDotprodTable : &kNeonTable;
#endif
        default: break;
    }
    return Status::unavailable(std::string("ISA ") + isa_name(isa) + " has no kernels in this build");
}

namespace {

Result<const KernelTable*> choose_kernels() {
    const char* requested = std::getenv("RECSERVE_ISA");
    if (requested == nullptr || *requested == '\0') return kernels_for(available_isas().back());

    Result<Isa> isa = parse_isa(requested);
    if (!isa.is_ok()) return Status::invalid_argument("RECSERVE_ISA: " + isa.status().message());
    Result<const KernelTable*> table = kernels_for(isa.value());
    if (!table.is_ok()) {
        // kernels_for's message starts with the ISA's name: "RECSERVE_ISA=avx512 is not available..."
        return Status::unavailable("RECSERVE_ISA=" + table.status().message());
    }
    return table;
}

}  // namespace

Result<const KernelTable*> active_kernels() {
    static const Result<const KernelTable*> chosen = choose_kernels();  // thread-safe, once
    return chosen;
}

}  // namespace recserve::simd
