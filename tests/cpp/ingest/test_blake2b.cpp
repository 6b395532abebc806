#include "recserve/ingest/blake2b.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <vector>

namespace recserve::ingest {
namespace {

std::string hex(const std::uint8_t* p, std::size_t n) {
    std::string out;
    char two[3];
    for (std::size_t i = 0; i < n; ++i) {
        std::snprintf(two, sizeof two, "%02x", p[i]);
        out += two;
    }
    return out;
}

std::uint64_t key(const std::string& s) { return blake2b_u64(s.data(), s.size()); }

TEST(Blake2b, MatchesRfc7693AppendixA) {
    std::uint8_t out[64];
    blake2b("abc", 3, 64, out);
    EXPECT_EQ(hex(out, 64),
              "ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d1"
              "7d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923");
}

TEST(Blake2b, ShorterDigestsAreTheirOwnHashNotAPrefix) {
    std::uint8_t out[20];
    blake2b("abc", 3, 20, out);  // hashlib.blake2b(b"abc", digest_size=20)
    EXPECT_EQ(hex(out, 20), "384264f676f39536840523f284921cdc68b6846b");
}

// Values from Python: int.from_bytes(hashlib.blake2b(s, digest_size=8).digest(), "little").
TEST(Blake2b, EightByteKeysMatchHashlib) {
    EXPECT_EQ(key(""), 0xb4b2797457a0a6e4ull);
    EXPECT_EQ(key("a"), 0x2f42665b399ef840ull);
    EXPECT_EQ(key("abc"), 0x5995d533d814bbd8ull);
    EXPECT_EQ(key("u123"), 0xcfdf39d64b97cc0aull);
    EXPECT_EQ(key("v456"), 0xd646602346ff7bf6ull);
    EXPECT_EQ(key("caf\xc3\xa9"), 0xe3d79231bda27757ull);
    EXPECT_EQ(key("\xf0\x9f\x98\x80\xc3\xa9"), 0x6313c0a5077878d4ull);  // U+1F600 U+00E9
}

TEST(Blake2b, BlockBoundariesMatchHashlib) {
    EXPECT_EQ(key(std::string(127, 'x')), 0xfc4f7c44afa0708eull);
    EXPECT_EQ(key(std::string(128, 'x')), 0x0224e1e874e31c90ull);
    EXPECT_EQ(key(std::string(129, 'x')), 0xa3a5eed8b914de18ull);
    EXPECT_EQ(key(std::string(256, 'x')), 0x976524b021ad5013ull);
    EXPECT_EQ(key(std::string(300, 'x')), 0x1546d9cac139b512ull);
}

// Every length 0..300 of the bytes (7i + 3) mod 256, folded as acc = acc * 31 + key (mod 2^64);
// the same fold over hashlib's keys gives the constant.
TEST(Blake2b, EveryLengthUpTo300MatchesHashlib) {
    std::uint64_t acc = 0;
    for (std::size_t n = 0; n <= 300; ++n) {
        std::vector<std::uint8_t> data(n);
        for (std::size_t i = 0; i < n; ++i) data[i] = static_cast<std::uint8_t>(i * 7 + 3);
        acc = acc * 31 + blake2b_u64(data.data(), n);
    }
    EXPECT_EQ(acc, 0x6090e42685d87de2ull);
}

TEST(Blake2b, IdKeyIsTheDigestBelowTheReservedKey) {
    EXPECT_EQ(id_key("u123", 4), 0xcfdf39d64b97cc0aull);
    EXPECT_EQ(kReservedKey, ~std::uint64_t{0});
}

}  // namespace
}  // namespace recserve::ingest
