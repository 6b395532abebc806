// Fuzzes the compact binary event record (ingest/event_record.cpp): decode_event_binary on the
// input as it is, and decode_event_record, which must route a 0xB1 record to it and agree. A
// decoded event obeys event_record.hpp's contract, field for field.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "fuzz_common.hpp"
#include "recserve/ingest/blake2b.hpp"
#include "recserve/ingest/event_record.hpp"
#include "recserve/profiles/event.hpp"

namespace {

using namespace recserve::ingest;

template <class T>
T at(const std::uint8_t* p, std::size_t offset) {
    T v;
    std::memcpy(&v, p + offset, sizeof v);
    return v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const char* bytes = reinterpret_cast<const char*>(data);
    EventRecord r;
    std::string error;
    const RecordStatus s = decode_event_binary(bytes, size, r, error);
    FUZZ_CHECK(s == RecordStatus::kOk || s == RecordStatus::kBad);
    if (s == RecordStatus::kOk) {
        FUZZ_CHECK(size == kBinarySize);
        const std::uint8_t flags = data[2];
        FUZZ_CHECK(r.type < recserve::profiles::kEventTypes && r.type == data[1]);
        FUZZ_CHECK(r.event_key == at<std::uint64_t>(data, 4) && r.user_key == at<std::uint64_t>(data, 12) &&
                   r.item_key == at<std::uint64_t>(data, 20));
        for (std::uint64_t key : {r.event_key, r.user_key, r.item_key}) FUZZ_CHECK(key != kReservedKey);
        FUZZ_CHECK(r.watch_ms == at<std::uint32_t>(data, 28) && r.duration_ms == at<std::uint32_t>(data, 32));
        FUZZ_CHECK((flags & kFlagTs) ? r.ts_ms == at<std::int64_t>(data, 36) && r.ts_ms >= 0 : r.ts_ms == -1);
        FUZZ_CHECK(!(flags & kFlagDuration) || r.duration_ms > 0);
        FUZZ_CHECK(r.type != static_cast<std::uint8_t>(recserve::profiles::EventType::kWatch) || (flags & kFlagWatch));
    } else {
        FUZZ_CHECK(!error.empty());
    }
    if (size > 0 && data[0] == kBinaryMagic) {
        EventRecord r2;
        std::string error2;
        FUZZ_CHECK(decode_event_record(bytes, size, r2, error2) == s);
        FUZZ_CHECK(error2 == (s == RecordStatus::kOk ? std::string() : error));
        if (s == RecordStatus::kOk)
            FUZZ_CHECK(r.event_key == r2.event_key && r.user_key == r2.user_key && r.item_key == r2.item_key &&
                       r.type == r2.type && r.watch_ms == r2.watch_ms && r.duration_ms == r2.duration_ms &&
                       r.ts_ms == r2.ts_ms);
    }
    return 0;
}
