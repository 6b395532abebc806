// Interaction events as the update rules take them: a columnar batch, one array per field.
#pragma once

#include <cstddef>
#include <cstdint>

namespace recserve::profiles {

// The order is part of the WAL and snapshot formats: append only.
enum class EventType : std::uint8_t {
    kImpression,
    kWatch,
    kReplay,
    kLike,
    kShare,
    kComment,
    kFollow,
    kSkip,
    kNotInterested,
};
inline constexpr std::size_t kEventTypes = 9;
inline constexpr const char* kEventTypeNames[kEventTypes] = {
    "impression", "watch", "replay", "like", "share", "comment", "follow", "skip", "not_interested"};

// n events; event i is (users[i], items[i], types[i], ...). Sequence numbers order each user's
// events (an event at or below the user's high-water mark is ignored); event_keys, when not
// null, also identify events (0 = none), so a redelivered event with a new sequence number is
// still recognised.
struct EventBatch {
    std::size_t n = 0;
    const std::uint64_t* users = nullptr;
    const std::uint64_t* items = nullptr;
    const std::uint8_t* types = nullptr;
    const std::uint32_t* watch_ms = nullptr;     // watch and skip: how long it played
    const std::uint32_t* duration_ms = nullptr;  // the video's length (watch: required, > 0)
    const std::int64_t* ts_ms = nullptr;         // when it happened, milliseconds since the epoch
    const std::uint64_t* seq = nullptr;          // >= 1, increasing per user
    const std::uint64_t* event_keys = nullptr;   // optional
};

}  // namespace recserve::profiles
