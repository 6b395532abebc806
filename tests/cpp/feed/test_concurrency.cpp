// The feed core's shared state read by page threads while the single writer changes it (run
// under ThreadSanitizer by .ci/tsan.sh).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#include "recserve/feed/item_columns.hpp"
#include "recserve/feed/open_pool.hpp"
#include "recserve/feed/served_memory.hpp"

namespace recserve::feed {
namespace {

constexpr auto kRun = std::chrono::milliseconds(300);

template <class Read, class Write>
void readers_beside_a_writer(Read read, Write write) {
    std::atomic<bool> stop{false};
    std::atomic<std::size_t> reads{0};
    std::vector<std::thread> readers;
    for (int t = 0; t < 2; ++t)
        readers.emplace_back([&, t] {
            for (std::uint64_t i = static_cast<std::uint64_t>(t); !stop.load(std::memory_order_relaxed); i += 2) {
                read(i);
                reads.fetch_add(1, std::memory_order_relaxed);
            }
        });
    const auto until = std::chrono::steady_clock::now() + kRun;
    for (std::uint64_t i = 0; std::chrono::steady_clock::now() < until; ++i) write(i);
    stop = true;
    for (auto& r : readers) r.join();
    EXPECT_GT(reads.load(), 0u);
}

TEST(FeedConcurrency, ItemColumnsReadersSeeWholeColumnsWhileTheTableGrows) {
    ItemColumns columns;
    readers_beside_a_writer(
        [&](std::uint64_t i) {
            const std::uint64_t key = i % 20000;
            ItemColumn c;
            columns.lookup(&key, 1, &c);
            if (c.creator != -1) {
                ASSERT_EQ(c.creator, static_cast<std::int64_t>(key % 97));  // never torn
            }
        },
        [&](std::uint64_t i) {
            const std::uint64_t key = i % 20000;
            const double created = 1.0;
            const std::int64_t creator = static_cast<std::int64_t>(key % 97);
            columns.set(&key, &created, &creator, 1);
            if (i % 3 == 0) columns.take_down(&key, 1);
        });
}

TEST(FeedConcurrency, ServedMemoryReadersBesideAWriter) {
    ServedMemory served(50, 100, 1800.0);
    readers_beside_a_writer(
        [&](std::uint64_t i) {
            std::vector<std::uint64_t> keys;
            served.recent(i % 150, &keys);
            ASSERT_LE(keys.size(), 50u);
            (void)served.session_length(i % 150, 0.0);
        },
        [&](std::uint64_t i) {
            const std::uint64_t keys[] = {i, i + 1, i + 2};
            served.add(i % 150, keys, 3, static_cast<double>(i));
            if (i % 17 == 0) served.forget(i % 150);
        });
}

TEST(FeedConcurrency, OpenPoolSamplesBesideAWriter) {
    OpenPool pool;
    readers_beside_a_writer(
        [&](std::uint64_t i) {
            std::vector<std::uint64_t> keys;
            pool.sample(16, i, &keys);
            ASSERT_LE(keys.size(), 16u);
        },
        [&](std::uint64_t i) {
            pool.add(i % 500);
            if (i % 2) pool.discard((i * 7) % 500);
        });
}

}  // namespace
}  // namespace recserve::feed
