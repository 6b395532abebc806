#include "recserve/ingest/record_batch.hpp"

namespace recserve::ingest {

std::vector<RecordError> decode_event_records(std::span<const RecordSpan> records, const EventColumns& out) {
    std::vector<RecordError> errors;
    std::string error;
    for (std::size_t i = 0; i < records.size(); ++i) {
        EventRecord r;
        RecordStatus status = RecordStatus::kBad;
        if (records[i].data != nullptr) {
            status = decode_event_record(records[i].data, records[i].size, r, error);
            if (status == RecordStatus::kBad) errors.push_back({i, std::move(error)});
        }
        if (status != RecordStatus::kOk) {
            r = EventRecord{};
            r.ts_ms = 0;
        }
        out.event_keys[i] = r.event_key;
        out.users[i] = r.user_key;
        out.items[i] = r.item_key;
        out.types[i] = r.type;
        out.watch_ms[i] = r.watch_ms;
        out.duration_ms[i] = r.duration_ms;
        out.ts_ms[i] = r.ts_ms;
        out.status[i] = static_cast<std::uint8_t>(status);
    }
    return errors;
}

}  // namespace recserve::ingest
