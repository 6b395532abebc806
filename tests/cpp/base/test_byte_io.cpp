// ByteReader: reads what is there, fails (reading nothing) on a short buffer.
#include "recserve/base/byte_io.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

namespace recserve {
namespace {

TEST(ByteReader, ReadsValuesInOrderAndStopsAtTheEnd) {
    const char bytes[] = {1, 0, 0, 0, 2, 0};
    ByteReader r(bytes, sizeof bytes);
    std::uint32_t a = 0;
    std::uint16_t b = 0;
    ASSERT_TRUE(r.get(a));
    ASSERT_TRUE(r.get(b));
    EXPECT_EQ(a, 1u);
    EXPECT_EQ(b, 2u);
    EXPECT_TRUE(r.at_end());
}

TEST(ByteReader, AShortBufferFailsAndReadsNothing) {
    const char bytes[] = {1, 2, 3};
    ByteReader r(bytes, sizeof bytes);
    std::uint32_t v = 7;
    EXPECT_FALSE(r.get(v));
    EXPECT_EQ(v, 7u);
    std::uint8_t first = 0;
    ASSERT_TRUE(r.get(first));  // the failed read consumed nothing
    EXPECT_EQ(first, 1u);
}

// Regression (found by cpp/fuzz under UBSan): a zero-length read into an empty vector passed
// its data(), a null pointer, to memcpy, which is undefined even for zero bytes. Every model
// file without input scales did this (load_model's input_scale, count 0). Under
// -fsanitize=undefined this test aborted; it must read nothing and succeed, at the end of the
// buffer as well as before it.
TEST(ByteReader, ReadingZeroBytesIntoAnEmptyVectorSucceeds) {
    const char bytes[] = {5};
    ByteReader r(bytes, sizeof bytes);
    std::vector<float> empty;
    EXPECT_TRUE(r.bytes(empty.data(), 0));
    std::uint8_t v = 0;
    ASSERT_TRUE(r.get(v));
    EXPECT_EQ(v, 5u);
    EXPECT_TRUE(r.bytes(empty.data(), 0));
    EXPECT_TRUE(r.at_end());
    ByteReader none(nullptr, 0);
    EXPECT_TRUE(none.bytes(empty.data(), 0));
}

}  // namespace
}  // namespace recserve
