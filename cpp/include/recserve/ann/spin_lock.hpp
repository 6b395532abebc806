// A one-byte lock per graph node, held by writers while they rewrite that node's links.
// Readers never take it: they read links through atomics.
#pragma once

#include <atomic>
#include <cstdint>
#include <thread>

namespace recserve::ann {

class NodeLockGuard {
  public:
    explicit NodeLockGuard(std::uint8_t& bit) : bit_(bit) {
        std::atomic_ref<std::uint8_t> b(bit_);
        // acquire: the previous holder's link writes are visible to us.
        while (b.exchange(1, std::memory_order_acquire) != 0) {
            while (b.load(std::memory_order_relaxed) != 0) std::this_thread::yield();
        }
    }
    // release: our link writes are visible to the next holder.
    ~NodeLockGuard() { std::atomic_ref<std::uint8_t>(bit_).store(0, std::memory_order_release); }
    NodeLockGuard(const NodeLockGuard&) = delete;
    NodeLockGuard& operator=(const NodeLockGuard&) = delete;

  private:
    std::uint8_t& bit_;
};

}  // namespace recserve::ann
