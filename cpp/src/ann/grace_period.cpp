#include "recserve/ann/grace_period.hpp"

#include <thread>

namespace recserve::ann {

GracePeriod::ReadGuard::ReadGuard(GracePeriod& gp) : gp_(gp) {
    for (;;) {
        const std::uint64_t phase = gp_.phase_.load(std::memory_order_seq_cst);
        phase_ = static_cast<unsigned>(phase & 1u);
        gp_.readers_[phase_].fetch_add(1, std::memory_order_seq_cst);
        // If the writer flipped meanwhile it may already have seen this counter drained: retry.
        if (gp_.phase_.load(std::memory_order_seq_cst) == phase) return;
        gp_.readers_[phase_].fetch_sub(1, std::memory_order_release);
    }
}

GracePeriod::ReadGuard::~ReadGuard() {
    // release: everything this reader read happens-before the writer reuses the memory.
    gp_.readers_[phase_].fetch_sub(1, std::memory_order_release);
}

void GracePeriod::wait_for_readers() {
    // Two flips: after the first, old readers drain from one counter; the second drains any
    // reader that joined the other counter before the first flip.
    for (int round = 0; round < 2; ++round) {
        const std::uint64_t old = phase_.fetch_add(1, std::memory_order_seq_cst);
        auto& counter = readers_[old & 1u];
        // seq_cst: ordered after the flip, so a reader that joined before it is counted here;
        // also an acquire that pairs with the readers' release on leaving.
        while (counter.load(std::memory_order_seq_cst) != 0) std::this_thread::yield();
    }
}

}  // namespace recserve::ann
