// Fuzzes the JSON form of an event (ingest/event_json.cpp): decode_event_json, and
// decode_event_record, which must route a '{' record to it and agree with it. A decoded event
// obeys event_record.hpp's contract; a second decode of the same bytes (the parser reuses
// per-thread scratch strings) gives the same answer.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_common.hpp"
#include "recserve/ingest/blake2b.hpp"
#include "recserve/ingest/event_record.hpp"
#include "recserve/profiles/event.hpp"

namespace {

using recserve::ingest::EventRecord;
using recserve::ingest::RecordStatus;

bool same(const EventRecord& a, const EventRecord& b) {
    return a.event_key == b.event_key && a.user_key == b.user_key && a.item_key == b.item_key && a.type == b.type &&
           a.watch_ms == b.watch_ms && a.duration_ms == b.duration_ms && a.ts_ms == b.ts_ms;
}

void check_record(const EventRecord& r) {
    FUZZ_CHECK(r.type < recserve::profiles::kEventTypes);
    FUZZ_CHECK(r.ts_ms >= -1);
    for (std::uint64_t key : {r.event_key, r.user_key, r.item_key}) FUZZ_CHECK(key != recserve::ingest::kReservedKey);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const char* text = reinterpret_cast<const char*>(data);
    EventRecord a, b;
    std::string error_a, error_b;
    const RecordStatus sa = recserve::ingest::decode_event_json(text, size, a, error_a);
    const RecordStatus sb = recserve::ingest::decode_event_json(text, size, b, error_b);
    FUZZ_CHECK(sa == RecordStatus::kOk || sa == RecordStatus::kBad);
    FUZZ_CHECK(sa == sb && error_a == error_b);
    if (sa == RecordStatus::kOk) {
        check_record(a);
        FUZZ_CHECK(same(a, b));
    } else {
        FUZZ_CHECK(!error_a.empty());
    }

    EventRecord c;
    std::string error_c;
    const RecordStatus sc = recserve::ingest::decode_event_record(text, size, c, error_c);
    std::size_t at = 0;
    while (at < size && (text[at] == ' ' || text[at] == '\t' || text[at] == '\n' || text[at] == '\r')) ++at;
    const bool routed_to_json = size > 0 && data[0] != recserve::ingest::kBinaryMagic &&
                                !(size >= 4 && std::equal(data, data + 4, recserve::ingest::kKplMagic)) &&
                                at < size && text[at] == '{';
    if (routed_to_json) {
        FUZZ_CHECK(sc == sa && error_c == error_a);
        if (sc == RecordStatus::kOk) FUZZ_CHECK(same(a, c));
    }
    return 0;
}
