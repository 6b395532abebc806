// Fuzzes the batch decoder of Kinesis records (ingest/record_batch.cpp,
// decode_event_records). The input is chunks (fuzz_common.hpp), one per record, at most 64; a
// chunk of exactly one byte 0x00 stands for a null-data span (an input that was not a record).
// Each row must agree with decode_event_record on its record alone; rows that are not kOk are
// all zeros; errors come in index order, one per bad record that had data.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_common.hpp"
#include "recserve/ingest/event_record.hpp"
#include "recserve/ingest/record_batch.hpp"

namespace {

using namespace recserve::ingest;

constexpr std::size_t kMaxRecords = 64;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    recserve::fuzz::Chunks chunks(data, size);
    std::vector<RecordSpan> records;
    std::string_view chunk;
    while (records.size() < kMaxRecords && chunks.next(chunk)) {
        if (chunk.size() == 1 && chunk[0] == '\0') {
            records.push_back({nullptr, 0});
        } else {
            records.push_back({chunk.data(), chunk.size()});
        }
    }
    const std::size_t n = records.size();
    std::vector<std::uint64_t> event_keys(n, 7), users(n, 7), items(n, 7);
    std::vector<std::uint8_t> types(n, 7), status(n, 7);
    std::vector<std::uint32_t> watch(n, 7), duration(n, 7);
    std::vector<std::int64_t> ts(n, 7);
    const EventColumns out{event_keys.data(), users.data(), items.data(), types.data(),
                           watch.data(),      duration.data(), ts.data(), status.data()};
    const std::vector<RecordError> errors = decode_event_records(records, out);

    std::size_t next_error = 0;
    for (std::size_t i = 0; i < n; ++i) {
        RecordStatus expected = RecordStatus::kBad;
        EventRecord r;
        std::string error;
        if (records[i].data != nullptr) expected = decode_event_record(records[i].data, records[i].size, r, error);
        FUZZ_CHECK(status[i] == static_cast<std::uint8_t>(expected));
        if (expected == RecordStatus::kOk) {
            FUZZ_CHECK(event_keys[i] == r.event_key && users[i] == r.user_key && items[i] == r.item_key &&
                       types[i] == r.type && watch[i] == r.watch_ms && duration[i] == r.duration_ms &&
                       ts[i] == r.ts_ms);
        } else {
            FUZZ_CHECK(event_keys[i] == 0 && users[i] == 0 && items[i] == 0 && types[i] == 0 && watch[i] == 0 &&
                       duration[i] == 0 && ts[i] == 0);
        }
        if (expected == RecordStatus::kBad && records[i].data != nullptr) {
            FUZZ_CHECK(next_error < errors.size());
            FUZZ_CHECK(errors[next_error].index == i && errors[next_error].message == error);
            ++next_error;
        }
    }
    FUZZ_CHECK(next_error == errors.size());
    return 0;
}
