#include "recserve/ingest/record_batch.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "recserve/ingest/blake2b.hpp"

namespace recserve::ingest {
namespace {

struct Columns {
    explicit Columns(std::size_t n)
        : event_keys(n, 7), users(n, 7), items(n, 7), types(n, 7), watch_ms(n, 7), duration_ms(n, 7), ts_ms(n, 7),
          status(n, 7) {}
    EventColumns view() {
        return {event_keys.data(), users.data(),       items.data(), types.data(),
                watch_ms.data(),   duration_ms.data(), ts_ms.data(), status.data()};
    }
    std::vector<std::uint64_t> event_keys, users, items;
    std::vector<std::uint8_t> types;
    std::vector<std::uint32_t> watch_ms, duration_ms;
    std::vector<std::int64_t> ts_ms;
    std::vector<std::uint8_t> status;
};

TEST(RecordBatch, OneBadRecordKeepsItsNeighbours) {
    const std::string good = R"({"event_id":"e","user_id":"u","item_id":"v","type":"watch","watch_ms":5,"ts":9})";
    const std::string bad = R"({"event_id":"e","user_id":"u","item_id":"v","type":"watch"})";
    const std::string kpl = "\xF3\x89\x9A\xC2";
    const RecordSpan spans[] = {{good.data(), good.size()}, {bad.data(), bad.size()}, {nullptr, 0},
                                {kpl.data(), kpl.size()},   {good.data(), good.size()}};
    Columns c(5);
    const std::vector<RecordError> errors = decode_event_records(spans, c.view());
    EXPECT_EQ(c.status, (std::vector<std::uint8_t>{0, 2, 2, 1, 0}));
    ASSERT_EQ(errors.size(), 1u);
    EXPECT_EQ(errors[0].index, 1u);
    EXPECT_EQ(errors[0].message, "watch_ms: required for a watch");
    for (std::size_t i : {0u, 4u}) {
        EXPECT_EQ(c.users[i], id_key("u", 1));
        EXPECT_EQ(c.types[i], 1);
        EXPECT_EQ(c.watch_ms[i], 5u);
        EXPECT_EQ(c.ts_ms[i], 9);
    }
    for (std::size_t i : {1u, 2u, 3u}) {
        EXPECT_EQ(c.event_keys[i] | c.users[i] | c.items[i], 0u);
        EXPECT_EQ(c.types[i] + c.watch_ms[i] + c.duration_ms[i], 0u);
        EXPECT_EQ(c.ts_ms[i], 0);
    }
}

TEST(RecordBatch, EmptyBatchIsFine) {
    Columns c(0);
    EXPECT_TRUE(decode_event_records({}, c.view()).empty());
}

}  // namespace
}  // namespace recserve::ingest
