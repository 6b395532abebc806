// Which format a record is in, and the compact binary one.
#include "recserve/ingest/event_record.hpp"

#include <cstdio>
#include <cstring>

#include "recserve/ingest/blake2b.hpp"
#include "recserve/profiles/event.hpp"

namespace recserve::ingest {
namespace {

// The bytes JSON counts as whitespace (RFC 8259), the only ones allowed before the '{'.
bool is_json_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

template <class T>
T load(const char* p) {
    T v;
    std::memcpy(&v, p, sizeof v);  // little-endian hosts only (byte_io.hpp asserts it)
    return v;
}

RecordStatus bad(std::string& error, const char* text) {
    error = text;
    return RecordStatus::kBad;
}

RecordStatus bad(std::string& error, const char* format, auto... args) {
    char text[160];
    std::snprintf(text, sizeof text, format, args...);
    error = text;
    return RecordStatus::kBad;
}

}  // namespace

RecordStatus decode_event_binary(const char* data, std::size_t size, EventRecord& out, std::string& error) {
    if (size != kBinarySize) return bad(error, "binary: %zu bytes, expected %zu", size, kBinarySize);
    const auto type = static_cast<std::uint8_t>(data[1]);
    const auto flags = static_cast<std::uint8_t>(data[2]);
    const auto reserved = static_cast<std::uint8_t>(data[3]);
    if (type >= profiles::kEventTypes) return bad(error, "binary: unknown type code %u", unsigned{type});
    if (flags & ~(kFlagWatch | kFlagDuration | kFlagTs))
        return bad(error, "binary: flags 0x%02x set unknown bits", unsigned{flags});
    if (reserved != 0) return bad(error, "binary: reserved byte is %u, expected 0", unsigned{reserved});
    EventRecord r;
    r.event_key = load<std::uint64_t>(data + 4);
    r.user_key = load<std::uint64_t>(data + 12);
    r.item_key = load<std::uint64_t>(data + 20);
    r.type = type;
    r.watch_ms = load<std::uint32_t>(data + 28);
    r.duration_ms = load<std::uint32_t>(data + 32);
    const auto ts = load<std::int64_t>(data + 36);
    const char* key_names[3] = {"event_key", "user_key", "item_key"};
    const std::uint64_t keys[3] = {r.event_key, r.user_key, r.item_key};
    for (int i = 0; i < 3; ++i)
        if (keys[i] == kReservedKey) return bad(error, "binary: %s is the reserved key 2^64-1", key_names[i]);
    if (!(flags & kFlagWatch) && r.watch_ms != 0)
        return bad(error, "binary: watch_ms is %u but its flag is clear", unsigned{r.watch_ms});
    if (!(flags & kFlagDuration) && r.duration_ms != 0)
        return bad(error, "binary: duration_ms is %u but its flag is clear", unsigned{r.duration_ms});
    if (!(flags & kFlagTs) && ts != 0)
        return bad(error, "binary: ts_ms is %lld but its flag is clear", static_cast<long long>(ts));
    if ((flags & kFlagDuration) && r.duration_ms == 0) return bad(error, "binary: duration_ms is 0 but its flag is set");
    if ((flags & kFlagTs) && ts < 0) return bad(error, "binary: ts_ms is negative (%lld)", static_cast<long long>(ts));
    if (type == static_cast<std::uint8_t>(profiles::EventType::kWatch) && !(flags & kFlagWatch))
        return bad(error, "binary: a watch without watch_ms");
    r.ts_ms = (flags & kFlagTs) ? ts : -1;
    out = r;
    return RecordStatus::kOk;
}

RecordStatus decode_event_record(const char* data, std::size_t size, EventRecord& out, std::string& error) {
    if (size == 0) return bad(error, "undecodable: empty record");
    if (static_cast<std::uint8_t>(data[0]) == kBinaryMagic) return decode_event_binary(data, size, out, error);
    if (size >= sizeof kKplMagic && std::memcmp(data, kKplMagic, sizeof kKplMagic) == 0) return RecordStatus::kAggregated;
    std::size_t at = 0;
    while (at < size && is_json_space(data[at])) ++at;
    if (at < size && data[at] == '{') return decode_event_json(data, size, out, error);
    return bad(error, "undecodable: starts with 0x%02x, not 0xb1 (binary), '{' (JSON) or the KPL magic",
               unsigned{static_cast<std::uint8_t>(data[0])});
}

}  // namespace recserve::ingest
