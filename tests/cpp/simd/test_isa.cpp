// ISA names, CPU features, and how the kernel table is chosen.
#include "recserve/simd/isa.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "recserve/simd/kernel_table.hpp"

namespace recserve::simd {
namespace {

constexpr Isa kAllIsas[] = {Isa::kScalar, Isa::kAvx2, Isa::kAvx512, Isa::kNeon};

bool contains(const std::string& haystack, const std::string& needle) {
    return haystack.find(needle) != std::string::npos;
}

TEST(IsaName, RoundTripsThroughParse) {
    for (Isa isa : kAllIsas) {
        Result<Isa> parsed = parse_isa(isa_name(isa));
        ASSERT_TRUE(parsed.is_ok()) << isa_name(isa) << ": " << parsed.status().message();
        EXPECT_EQ(parsed.value(), isa);
    }
    EXPECT_STREQ(isa_name(Isa::kScalar), "scalar");
    EXPECT_STREQ(isa_name(Isa::kAvx2), "avx2");
    EXPECT_STREQ(isa_name(Isa::kAvx512), "avx512");
    EXPECT_STREQ(isa_name(Isa::kNeon), "neon");
}

TEST(IsaName, UnknownNamesAreRejectedWithTheValidNames) {
    for (const char* bad : {"", "sse9", "AVX2", "avx", "avx512vnni", "avx512+vnni", "neon+dotprod", " scalar"}) {
        Result<Isa> parsed = parse_isa(bad);
        ASSERT_FALSE(parsed.is_ok()) << "'" << bad << "' was accepted";
        EXPECT_EQ(parsed.status().code(), StatusCode::kInvalidArgument);
        const std::string& message = parsed.status().message();
        EXPECT_TRUE(contains(message, std::string("'") + bad + "'")) << message;
        for (Isa isa : kAllIsas) EXPECT_TRUE(contains(message, isa_name(isa))) << message;
    }
}

TEST(CpuFeatures, AreConsistent) {
    const CpuFeatures& f = cpu_features();
    EXPECT_EQ(&f, &cpu_features()) << "detected once";
    EXPECT_TRUE(!f.avx512 || f.avx2_fma);
    EXPECT_TRUE(!f.avx512_vnni || f.avx512);
    EXPECT_TRUE(!f.neon_dotprod || f.neon);
#if defined(RECSERVE_ARCH_X86)
    EXPECT_FALSE(f.neon);
#elif defined(RECSERVE_ARCH_ARM64)
    EXPECT_TRUE(f.neon) << "Advanced SIMD is part of every aarch64 Linux machine";
    EXPECT_FALSE(f.avx2_fma);
#endif
    std::cout << "[ features ] avx2_fma=" << f.avx2_fma << " avx512=" << f.avx512
              << " avx512_vnni=" << f.avx512_vnni << " neon=" << f.neon << " neon_dotprod=" << f.neon_dotprod
              << "\n";
}

TEST(AvailableIsas, StartWithScalarAndGrowBestLast) {
    const std::vector<Isa> isas = available_isas();
    ASSERT_FALSE(isas.empty());
    EXPECT_EQ(isas.front(), Isa::kScalar);
    EXPECT_TRUE(std::is_sorted(isas.begin(), isas.end()));
    EXPECT_EQ(std::adjacent_find(isas.begin(), isas.end()), isas.end()) << "no duplicates";
    std::string names;
    for (Isa isa : isas) names += std::string(" ") + isa_name(isa);
    std::cout << "[ isas     ] available:" << names << "\n";
}

TEST(KernelsFor, EveryAvailableIsaHasACompleteTableNamedAfterIt) {
    for (Isa isa : available_isas()) {
        Result<const KernelTable*> k = kernels_for(isa);
        ASSERT_TRUE(k.is_ok()) << isa_name(isa) << ": " << k.status().message();
        const KernelTable& t = *k.value();
        EXPECT_EQ(t.isa, isa);
        ASSERT_NE(t.variant, nullptr);
        EXPECT_EQ(std::string(t.variant).rfind(isa_name(isa), 0), 0u) << t.variant;
        EXPECT_NE(t.dot_f32, nullptr);
        EXPECT_NE(t.l2sq_f32, nullptr);
        EXPECT_NE(t.cos_f32, nullptr);
        EXPECT_NE(t.dot_i8, nullptr);
        EXPECT_NE(t.l2sq_i8, nullptr);
        EXPECT_NE(t.cos_i8, nullptr);
        EXPECT_NE(t.dot_u8i8, nullptr);
        EXPECT_EQ(kernels_for(isa).value(), &t) << "one table per ISA, never rebuilt";
    }
}

TEST(KernelsFor, PicksTheVnniAndDotprodVariantsWhereTheCpuHasThem) {
    const CpuFeatures& f = cpu_features();
    if (f.avx512) {
        EXPECT_STREQ(kernels_for(Isa::kAvx512).value()->variant, f.avx512_vnni ? "avx512+vnni" : "avx512");
    }
    if (f.neon) {
        EXPECT_STREQ(kernels_for(Isa::kNeon).value()->variant, f.neon_dotprod ? "neon+dotprod" : "neon");
    }
    EXPECT_STREQ(kernels_for(Isa::kScalar).value()->variant, "scalar");
}

TEST(KernelsFor, AnUnavailableIsaIsAnErrorThatListsTheAvailableOnes) {
    const std::vector<Isa> available = available_isas();
    int checked = 0;
    for (Isa isa : kAllIsas) {
        if (std::find(available.begin(), available.end(), isa) != available.end()) continue;
        Result<const KernelTable*> k = kernels_for(isa);
        ASSERT_FALSE(k.is_ok()) << isa_name(isa);
        EXPECT_EQ(k.status().code(), StatusCode::kUnavailable);
        const std::string& message = k.status().message();
        EXPECT_TRUE(contains(message, std::string(isa_name(isa)) + " is not available on this machine")) << message;
        EXPECT_TRUE(contains(message, "available: scalar")) << message;
        ++checked;
    }
    EXPECT_GE(checked, 1) << "no build runs every ISA: one architecture's are always missing";
}

// Follows whatever RECSERVE_ISA this process was started with; ctest runs this test again with
// RECSERVE_ISA=scalar, =sse9, =avx512 and =neon (see tests/cpp/CMakeLists.txt).
TEST(ActiveKernels, FollowRecserveIsaLikeKernelsFor) {
    Result<const KernelTable*> active = active_kernels();
    const char* env = std::getenv("RECSERVE_ISA");
    if (env == nullptr || *env == '\0') {
        ASSERT_TRUE(active.is_ok()) << active.status().message();
        EXPECT_EQ(active.value(), kernels_for(available_isas().back()).value()) << "the best available ISA";
        return;
    }
    Result<Isa> requested = parse_isa(env);
    if (!requested.is_ok()) {
        ASSERT_FALSE(active.is_ok()) << "unknown RECSERVE_ISA=" << env << " must not fall back";
        EXPECT_EQ(active.status().code(), StatusCode::kInvalidArgument);
        EXPECT_TRUE(contains(active.status().message(), env)) << active.status().message();
        EXPECT_TRUE(contains(active.status().message(), "scalar, avx2, avx512, neon")) << active.status().message();
        return;
    }
    Result<const KernelTable*> expected = kernels_for(requested.value());
    if (!expected.is_ok()) {
        ASSERT_FALSE(active.is_ok()) << "unavailable RECSERVE_ISA=" << env << " must not fall back";
        EXPECT_EQ(active.status().code(), StatusCode::kUnavailable);
        EXPECT_TRUE(contains(active.status().message(),
                             std::string("RECSERVE_ISA=") + env + " is not available on this machine"))
            << active.status().message();
        EXPECT_TRUE(contains(active.status().message(), "available: scalar")) << active.status().message();
        return;
    }
    ASSERT_TRUE(active.is_ok()) << active.status().message();
    EXPECT_EQ(active.value(), expected.value());
}

TEST(ActiveKernels, AreChosenOnceAndNeverChange) {
    Result<const KernelTable*> first = active_kernels();
    Result<const KernelTable*> second = active_kernels();
    ASSERT_EQ(first.is_ok(), second.is_ok());
    if (first.is_ok()) {
        EXPECT_EQ(first.value(), second.value());
    } else {
        EXPECT_EQ(first.status().message(), second.status().message());
    }
}

}  // namespace
}  // namespace recserve::simd
