// A batch of Kinesis records decoded into event columns in one pass (see event_record.hpp for
// the formats). Pure C++: the binding collects the records' bytes, then calls this without
// the GIL.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "recserve/ingest/event_record.hpp"

namespace recserve::ingest {

// One record's bytes. Null data marks an input that was not a record at all: its row is bad,
// and the caller, who knows what it was, names the fault.
struct RecordSpan {
    const char* data = nullptr;
    std::size_t size = 0;
};

// n rows each, caller-owned. Row i is record i; a row that is not kOk is all zeros.
struct EventColumns {
    std::uint64_t* event_keys;
    std::uint64_t* users;
    std::uint64_t* items;
    std::uint8_t* types;
    std::uint32_t* watch_ms;
    std::uint32_t* duration_ms;
    std::int64_t* ts_ms;  // -1 = absent
    std::uint8_t* status;  // RecordStatus
};

struct RecordError {
    std::size_t index;
    std::string message;
};

// Fills row i of `out` from records[i]; returns the errors of the bad records (null-data
// spans excepted), in index order.
std::vector<RecordError> decode_event_records(std::span<const RecordSpan> records, const EventColumns& out);

}  // namespace recserve::ingest
