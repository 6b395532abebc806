#include <gtest/gtest.h>

#include <string>

#include "recserve/ingest/blake2b.hpp"
#include "recserve/ingest/event_record.hpp"

namespace recserve::ingest {
namespace {

std::uint64_t key(const std::string& utf8) { return id_key(utf8.data(), utf8.size()); }

EventRecord decoded(const std::string& json) {
    EventRecord r;
    std::string error;
    EXPECT_EQ(decode_event_record(json.data(), json.size(), r, error), RecordStatus::kOk) << json << ": " << error;
    return r;
}

std::string error_of(const std::string& json) {
    EventRecord r;
    std::string error;
    EXPECT_EQ(decode_event_record(json.data(), json.size(), r, error), RecordStatus::kBad) << json;
    return error;
}

// A valid event around the given fields (a like, so watch_ms is optional).
std::string with(const std::string& fields) {
    return R"({"event_id":"e1","user_id":"u1","item_id":"v1","type":"like")" + (fields.empty() ? "" : "," + fields) + "}";
}

TEST(EventJson, DecodesAFullEvent) {
    const EventRecord r = decoded(
        R"( {"event_id": "e1", "user_id": "u123", "item_id": "v456", "type": "watch", "watch_ms": 4000,)"
        R"( "duration_ms": 9000, "ts": 1700000000000, "session_id": "s", "request_id": null} )");
    EXPECT_EQ(r.event_key, key("e1"));
    EXPECT_EQ(r.user_key, 0xcfdf39d64b97cc0aull);  // hashlib's key of "u123"
    EXPECT_EQ(r.item_key, 0xd646602346ff7bf6ull);
    EXPECT_EQ(r.type, 1);
    EXPECT_EQ(r.watch_ms, 4000u);
    EXPECT_EQ(r.duration_ms, 9000u);
    EXPECT_EQ(r.ts_ms, 1700000000000);
}

TEST(EventJson, AbsentAndNullOptionalsAreTheSame) {
    const EventRecord a = decoded(with(""));
    const EventRecord b = decoded(with(R"("watch_ms":null,"duration_ms":null,"ts":null,"session_id":null)"));
    for (const EventRecord& r : {a, b}) {
        EXPECT_EQ(r.type, 3);
        EXPECT_EQ(r.watch_ms, 0u);
        EXPECT_EQ(r.duration_ms, 0u);
        EXPECT_EQ(r.ts_ms, -1);
    }
    EXPECT_EQ(decoded(with(R"("ts":0,"watch_ms":0,"duration_ms":4294967295)")).duration_ms, 4294967295u);
    EXPECT_EQ(decoded(with(R"("ts":9223372036854775807)")).ts_ms, 9223372036854775807);
    EXPECT_EQ(decoded(with(R"("ts":-0)")).ts_ms, 0);
}

TEST(EventJson, EscapesAreDecodedBeforeHashing) {
    EXPECT_EQ(decoded(R"({"event_id":"e","user_id":"caf\u00e9","item_id":"v","type":"like"})").user_key,
              key("caf\xc3\xa9"));
    EXPECT_EQ(decoded(R"({"event_id":"e","user_id":"caf\u00E9","item_id":"v","type":"like"})").user_key,
              key("caf\xc3\xa9"));
    EXPECT_EQ(decoded("{\"event_id\":\"e\",\"user_id\":\"caf\xc3\xa9\",\"item_id\":\"v\",\"type\":\"like\"}").user_key,
              key("caf\xc3\xa9"));
    EXPECT_EQ(decoded(R"({"event_id":"e","user_id":"\ud83d\ude00\u00e9","item_id":"v","type":"like"})").user_key,
              0x6313c0a5077878d4ull);  // hashlib, U+1F600 U+00E9
    EXPECT_EQ(decoded(R"({"event_id":"e","user_id":"a\"b\\c\/d\b\f\n\r\t","item_id":"v","type":"like"})").user_key,
              key("a\"b\\c/d\b\f\n\r\t"));
    EXPECT_EQ(decoded(R"({"event_id":"e","user_id":"\u0000","item_id":"v","type":"like"})").user_key,
              key(std::string(1, '\0')));
    EXPECT_EQ(decoded(R"({"event\u005fid":"e","user_id":"u","item_id":"v","typ\u0065":"like"})").event_key, key("e"));
}

TEST(EventJson, IdsCountCodePointsNotBytes) {
    std::string e256;
    for (int i = 0; i < 256; ++i) e256 += "\xc3\xa9";
    EXPECT_EQ(decoded(R"({"event_id":")" + e256 + R"(","user_id":"u","item_id":"v","type":"like"})").event_key,
              key(e256));
    EXPECT_EQ(error_of(R"({"event_id":")" + e256 + R"(e","user_id":"u","item_id":"v","type":"like"})"),
              "event_id: 257 characters, expected 1 to 256");
    EXPECT_EQ(error_of(R"({"event_id":"","user_id":"u","item_id":"v","type":"like"})"),
              "event_id: 0 characters, expected 1 to 256");
    EXPECT_EQ(error_of(with(R"("request_id":")" + std::string(257, 'r') + "\"")),
              "request_id: 257 characters, expected at most 256");
    decoded(with(R"("session_id":"")"));
}

TEST(EventJson, NamesEachFieldFault) {
    EXPECT_EQ(error_of(with(R"("color":"red")")), "unknown field \"color\"");
    EXPECT_EQ(error_of(with(R"("caf\u00e9":1)")), "unknown field \"caf?\"");
    EXPECT_EQ(error_of(with(R"("\ud800":1)")), "unknown field \"?\"");
    EXPECT_EQ(error_of(with(R"("type":"like")")), "duplicate field \"type\"");
    EXPECT_EQ(error_of(with(R"("ts":1,"t\u0073":2)")), "duplicate field \"ts\"");
    EXPECT_EQ(error_of(R"({"event_id":1,"user_id":"u","item_id":"v","type":"like"})"),
              "event_id: expected a string, got an integer");
    EXPECT_EQ(error_of(R"({"event_id":"e","user_id":null,"item_id":"v","type":"like"})"),
              "user_id: expected a string, got null");
    EXPECT_EQ(error_of(R"({"event_id":"e","user_id":"u","item_id":["v"],"type":"like"})"),
              "item_id: expected a string, got an array");
    EXPECT_EQ(error_of(R"({"event_id":"e","user_id":"u\udc00","item_id":"v","type":"like"})"),
              "user_id: lone surrogate in string");
    EXPECT_EQ(error_of(R"({"event_id":"e","user_id":"\ud800\u0041","item_id":"v","type":"like"})"),
              "user_id: lone surrogate in string");
    EXPECT_EQ(error_of(R"({"event_id":"e","user_id":"u","item_id":"v","type":"love"})"),
              "type: unknown event type \"love\"");
    EXPECT_EQ(error_of(R"({"event_id":"e","user_id":"u","item_id":"v","type":true})"),
              "type: expected a string, got a boolean");
    EXPECT_EQ(error_of(with(R"("watch_ms":1.0)")), "watch_ms: expected an integer, got a number with a fraction or exponent");
    EXPECT_EQ(error_of(with(R"("watch_ms":1e3)")), "watch_ms: expected an integer, got a number with a fraction or exponent");
    EXPECT_EQ(error_of(with(R"("watch_ms":false)")), "watch_ms: expected an integer, got a boolean");
    EXPECT_EQ(error_of(with(R"("watch_ms":"5")")), "watch_ms: expected an integer, got a string");
    EXPECT_EQ(error_of(with(R"("ts":{"ms":5})")), "ts: expected an integer, got an object");
    EXPECT_EQ(error_of(with(R"("watch_ms":4294967296)")), "watch_ms: out of range [0, 2^32)");
    EXPECT_EQ(error_of(with(R"("watch_ms":-1)")), "watch_ms: out of range [0, 2^32)");
    EXPECT_EQ(error_of(with(R"("duration_ms":0)")), "duration_ms: out of range [1, 2^32)");
    EXPECT_EQ(error_of(with(R"("ts":9223372036854775808)")), "ts: out of range [0, 2^63)");
    EXPECT_EQ(error_of(with(R"("ts":123456789012345678901234567890)")), "ts: out of range [0, 2^63)");
    EXPECT_EQ(error_of(with(R"("session_id":7)")), "session_id: expected a string, got an integer");
    EXPECT_EQ(error_of(R"({"user_id":"u","item_id":"v","type":"like"})"), "missing field \"event_id\"");
    EXPECT_EQ(error_of(R"({})"), "missing field \"event_id\"");
    EXPECT_EQ(error_of(R"({"event_id":"e","user_id":"u","item_id":"v"})"), "missing field \"type\"");
    EXPECT_EQ(error_of(R"({"event_id":"e","user_id":"u","item_id":"v","type":"watch"})"),
              "watch_ms: required for a watch");
    EXPECT_EQ(error_of(R"({"event_id":"e","user_id":"u","item_id":"v","type":"watch","watch_ms":null})"),
              "watch_ms: required for a watch");
}

TEST(EventJson, TheFirstFieldFaultInDocumentOrderIsNamed) {
    EXPECT_EQ(error_of(R"({"zzz":1,"event_id":1})"), "unknown field \"zzz\"");
    EXPECT_EQ(error_of(R"({"event_id":1,"zzz":1})"), "event_id: expected a string, got an integer");
}

TEST(EventJson, SyntaxFaultsComeBeforeFieldFaults) {
    EXPECT_EQ(error_of(R"({"zzz":1,"event_id":01})").rfind("invalid JSON: ", 0), 0u);
}

TEST(EventJson, RefusesWhatIsNotJson) {
    const char* cases[] = {
        R"({"event_id":"e",})",         R"({"event_id" "e"})",            R"({"event_id":"e"} x)",
        R"({"event_id":"e"}})",         R"({"event_id":"e")",             R"({"event_id":"e)",
        R"({"event_id":"\x"})",         R"({"event_id":"\u12"})",         R"({"event_id":"\u12g4"})",
        R"({"ts":01})",                 R"({"ts":1.})",                   R"({"ts":.5})",
        R"({"ts":+1})",                 R"({"ts":-})",                    R"({"ts":1e})",
        R"({"ts":NaN})",                R"({"ts":Infinity})",             R"({"ts":-Infinity})",
        R"({"ts":tru})",                R"({"ts":nul})",                  R"({"ts":[1,]})",
        R"({"ts":[1 2]})",              R"({"ts":{"a"}})",                R"({"ts":{"a":1,}})",
        R"({"ts":[[[]]})",              R"({'event_id':'e'})",            R"({event_id:"e"})",
        "{\"event_id\":\"a\tb\"}",      "{\"event_id\":\"a\nb\"}",        "{\"event_id\":\"e\"}\x0b",
    };
    for (const char* json : cases) EXPECT_EQ(error_of(json).rfind("invalid JSON: ", 0), 0u) << json;
}

TEST(EventJson, NestedValuesAreReadPastToTheEnd) {
    EXPECT_EQ(error_of(with(R"("ts":[1,{"a":[true,null,"x\"]"]},[]])")), "ts: expected an integer, got an array");
    EXPECT_EQ(error_of(with(R"("ts":[)" + std::string(10000, '[') + std::string(10000, ']') + "]")),
              "ts: expected an integer, got an array");
}

TEST(EventJson, RefusesInvalidUtf8AnywhereInTheRecord) {
    const char* cases[] = {
        "{\"event_id\":\"\xff\"}",          "{\"event_id\":\"\xc3\"}",         "{\"event_id\":\"\xc0\xaf\"}",
        "{\"event_id\":\"\xed\xa0\x80\"}",  "{\"event_id\":\"\xf4\x90\x80\x80\"}", "{\"event_id\":\"e\"}\xff",
        "{\"event_id\":\"\xe0\x80\xaf\"}",  "{\"event_id\":\"\xf0\x80\x80\xaf\"}",
    };
    for (const char* json : cases) EXPECT_EQ(error_of(json), "not UTF-8") << json;
}

}  // namespace
}  // namespace recserve::ingest
