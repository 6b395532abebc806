// One event as a Kinesis record carries it, decoded to the columns the update rules take
// (profiles::EventBatch). The first byte tells the format:
//
//   0xB1                  compact binary v1, exactly 44 bytes, little-endian, no padding:
//
//     offset  size  field
//          0     1  magic 0xB1
//          1     1  type code (the index of its name in profiles::kEventTypeNames)
//          2     1  flags: bit 0 watch_ms present, bit 1 duration_ms present, bit 2 ts present;
//                   the other bits are 0
//          3     1  reserved, 0
//          4     8  event_key    recserve.ids.key_of of the ids;
//         12     8  user_key     2^64-1 is never a key
//         20     8  item_key
//         28     4  watch_ms     0 when its flag is clear
//         32     4  duration_ms  0 when its flag is clear, > 0 when set
//         36     8  ts_ms        0 when its flag is clear, >= 0 when set
//
//   0xF3 0x89 0x9A 0xC2   a KPL aggregate of user records: reported, not read (Python
//                         de-aggregates it and passes the user records back).
//   '{' (after JSON       one flat JSON object, the HTTP API's event: event_id, user_id, item_id
//   whitespace)           (strings of 1..256 code points), type (a name); optional watch_ms
//                         (0 <= x < 2^32), duration_ms (0 < x < 2^32), ts (ms, 0 <= x < 2^63),
//                         session_id, request_id (strings of <= 256 code points), each may be
//                         null. Strict: UTF-8, no unknown or repeated fields, integers only.
//
// A watch must carry watch_ms in both formats (duration_ms may be absent: the consumer fills it
// from the catalogue). The error of a bad record names its first fault in the order
// python/recserve/ingest/records.py checks them, so the two decoders agree word for word.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace recserve::ingest {

inline constexpr std::uint8_t kBinaryMagic = 0xB1;
inline constexpr std::size_t kBinarySize = 44;
inline constexpr std::uint8_t kFlagWatch = 1, kFlagDuration = 2, kFlagTs = 4;
inline constexpr unsigned char kKplMagic[4] = {0xF3, 0x89, 0x9A, 0xC2};

struct EventRecord {
    std::uint64_t event_key = 0;
    std::uint64_t user_key = 0;
    std::uint64_t item_key = 0;
    std::uint8_t type = 0;
    std::uint32_t watch_ms = 0;     // 0 = absent
    std::uint32_t duration_ms = 0;  // 0 = absent
    std::int64_t ts_ms = -1;        // -1 = absent
};

// The values are the status column of a decoded batch: part of the binding's contract.
enum class RecordStatus : std::uint8_t {
    kOk = 0,
    kAggregated = 1,  // a KPL aggregate: de-aggregate and decode its user records
    kBad = 2,         // `error` says why
};

// Decodes one record into `out` (left as it was unless kOk). `error` is written only for kBad.
RecordStatus decode_event_record(const char* data, std::size_t size, EventRecord& out, std::string& error);

// The two formats, for callers that already know which one they hold.
RecordStatus decode_event_binary(const char* data, std::size_t size, EventRecord& out, std::string& error);
RecordStatus decode_event_json(const char* data, std::size_t size, EventRecord& out, std::string& error);

}  // namespace recserve::ingest
