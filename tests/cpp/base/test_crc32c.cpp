#include "recserve/base/crc32c.hpp"

#include <gtest/gtest.h>

#include <string>

namespace recserve {
namespace {

TEST(Crc32c, MatchesTheStandardCheckValue) {
    const std::string s = "123456789";
    EXPECT_EQ(crc32c(s.data(), s.size()), 0xE3069283u);
}

TEST(Crc32c, EmptyInputIsZero) { EXPECT_EQ(crc32c(nullptr, 0), 0u); }

TEST(Crc32c, ExtendingInPiecesEqualsOneCall) {
    std::string s;
    for (int i = 0; i < 1000; ++i) s.push_back(static_cast<char>(i * 7 + 3));
    const std::uint32_t whole = crc32c(s.data(), s.size());
    for (std::size_t cut : {0u, 1u, 7u, 8u, 9u, 500u, 999u}) {
        std::uint32_t part = crc32c(s.data(), cut);
        part = crc32c(s.data() + cut, s.size() - cut, part);
        EXPECT_EQ(part, whole) << "cut at " << cut;
    }
}

TEST(Crc32c, DetectsASingleFlippedBit) {
    std::string s(4096, 'x');
    const std::uint32_t before = crc32c(s.data(), s.size());
    s[1234] ^= 0x10;
    EXPECT_NE(crc32c(s.data(), s.size()), before);
}

}  // namespace
}  // namespace recserve
