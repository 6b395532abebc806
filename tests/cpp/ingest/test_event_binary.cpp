#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "recserve/ingest/blake2b.hpp"
#include "recserve/ingest/event_record.hpp"

namespace recserve::ingest {
namespace {

// A well-formed binary watch; tests break one thing at a time.
struct Fields {
    std::uint8_t magic = kBinaryMagic, type = 1, flags = kFlagWatch | kFlagDuration | kFlagTs, reserved = 0;
    std::uint64_t event_key = 11, user_key = 22, item_key = 33;
    std::uint32_t watch_ms = 4000, duration_ms = 9000;
    std::int64_t ts_ms = 1700000000000;
};

std::string encode(const Fields& f) {
    std::string b(kBinarySize, '\0');
    b[0] = static_cast<char>(f.magic);
    b[1] = static_cast<char>(f.type);
    b[2] = static_cast<char>(f.flags);
    b[3] = static_cast<char>(f.reserved);
    std::memcpy(b.data() + 4, &f.event_key, 8);
    std::memcpy(b.data() + 12, &f.user_key, 8);
    std::memcpy(b.data() + 20, &f.item_key, 8);
    std::memcpy(b.data() + 28, &f.watch_ms, 4);
    std::memcpy(b.data() + 32, &f.duration_ms, 4);
    std::memcpy(b.data() + 36, &f.ts_ms, 8);
    return b;
}

std::string error_of(const std::string& bytes) {
    EventRecord r;
    std::string error;
    EXPECT_EQ(decode_event_record(bytes.data(), bytes.size(), r, error), RecordStatus::kBad);
    return error;
}

TEST(EventBinary, DecodesEveryField) {
    const std::string b = encode({});
    EventRecord r;
    std::string error;
    ASSERT_EQ(decode_event_record(b.data(), b.size(), r, error), RecordStatus::kOk) << error;
    EXPECT_EQ(r.event_key, 11u);
    EXPECT_EQ(r.user_key, 22u);
    EXPECT_EQ(r.item_key, 33u);
    EXPECT_EQ(r.type, 1);
    EXPECT_EQ(r.watch_ms, 4000u);
    EXPECT_EQ(r.duration_ms, 9000u);
    EXPECT_EQ(r.ts_ms, 1700000000000);
}

TEST(EventBinary, AbsentFieldsReadAsZeroAndTsAsMinusOne) {
    Fields f;
    f.type = 3;  // like
    f.flags = 0;
    f.watch_ms = f.duration_ms = 0;
    f.ts_ms = 0;
    const std::string b = encode(f);
    EventRecord r;
    std::string error;
    ASSERT_EQ(decode_event_record(b.data(), b.size(), r, error), RecordStatus::kOk) << error;
    EXPECT_EQ(r.watch_ms, 0u);
    EXPECT_EQ(r.duration_ms, 0u);
    EXPECT_EQ(r.ts_ms, -1);
}

TEST(EventBinary, NamesEachFault) {
    const std::string ok = encode({});
    EXPECT_EQ(error_of(ok.substr(0, 43)), "binary: 43 bytes, expected 44");
    EXPECT_EQ(error_of(ok + '\0'), "binary: 45 bytes, expected 44");
    EXPECT_EQ(error_of("\xB1"), "binary: 1 bytes, expected 44");
    Fields f;
    f.type = 9;
    EXPECT_EQ(error_of(encode(f)), "binary: unknown type code 9");
    f = {};
    f.flags = 0x0F;
    EXPECT_EQ(error_of(encode(f)), "binary: flags 0x0f set unknown bits");
    f = {};
    f.reserved = 3;
    EXPECT_EQ(error_of(encode(f)), "binary: reserved byte is 3, expected 0");
    for (int k = 0; k < 3; ++k) {
        f = {};
        (k == 0 ? f.event_key : k == 1 ? f.user_key : f.item_key) = kReservedKey;
        const char* name = k == 0 ? "event_key" : k == 1 ? "user_key" : "item_key";
        EXPECT_EQ(error_of(encode(f)), std::string("binary: ") + name + " is the reserved key 2^64-1");
    }
    f = {};
    f.flags = kFlagDuration | kFlagTs;
    EXPECT_EQ(error_of(encode(f)), "binary: watch_ms is 4000 but its flag is clear");
    f = {};
    f.flags = kFlagWatch | kFlagTs;
    EXPECT_EQ(error_of(encode(f)), "binary: duration_ms is 9000 but its flag is clear");
    f = {};
    f.flags = kFlagWatch | kFlagDuration;
    EXPECT_EQ(error_of(encode(f)), "binary: ts_ms is 1700000000000 but its flag is clear");
    f = {};
    f.duration_ms = 0;
    EXPECT_EQ(error_of(encode(f)), "binary: duration_ms is 0 but its flag is set");
    f = {};
    f.ts_ms = -5;
    EXPECT_EQ(error_of(encode(f)), "binary: ts_ms is negative (-5)");
    f = {};
    f.flags = kFlagDuration | kFlagTs;
    f.watch_ms = 0;
    EXPECT_EQ(error_of(encode(f)), "binary: a watch without watch_ms");
}

TEST(EventRecordFormat, TellsAggregatesAndUndecodableBytesApart) {
    EventRecord r;
    std::string error;
    const std::string kpl = "\xF3\x89\x9A\xC2 and the rest";
    EXPECT_EQ(decode_event_record(kpl.data(), kpl.size(), r, error), RecordStatus::kAggregated);
    EXPECT_EQ(error_of(""), "undecodable: empty record");
    EXPECT_EQ(error_of("hello"), "undecodable: starts with 0x68, not 0xb1 (binary), '{' (JSON) or the KPL magic");
    EXPECT_EQ(error_of("  \n"), "undecodable: starts with 0x20, not 0xb1 (binary), '{' (JSON) or the KPL magic");
}

TEST(EventBinary, EveryTruncationAndBitFlipDecodesOrIsBad) {
    const std::string ok = encode({});
    for (std::size_t n = 0; n < ok.size(); ++n) error_of(ok.substr(0, n));
    for (std::size_t at = 0; at < ok.size(); ++at) {
        for (int bit = 0; bit < 8; ++bit) {
            std::string b = ok;
            b[at] = static_cast<char>(b[at] ^ (1 << bit));
            EventRecord r;
            std::string error;
            const RecordStatus s = decode_event_record(b.data(), b.size(), r, error);
            EXPECT_TRUE(s == RecordStatus::kOk || (s == RecordStatus::kBad && !error.empty()));
        }
    }
}

}  // namespace
}  // namespace recserve::ingest
