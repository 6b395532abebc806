// Readers announce themselves; the single writer can wait until every reader that might still
// hold a reference to an unlinked node has left. (A two-phase counter scheme, as in userspace
// RCU: readers never block and never lock; only the writer waits.)
#pragma once

#include <atomic>
#include <cstdint>

namespace recserve::ann {

class GracePeriod {
  public:
    class ReadGuard {
      public:
        explicit ReadGuard(GracePeriod& gp);
        ~ReadGuard();
        ReadGuard(const ReadGuard&) = delete;
        ReadGuard& operator=(const ReadGuard&) = delete;

      private:
        GracePeriod& gp_;
        unsigned phase_;
    };

    ReadGuard enter() { return ReadGuard(*this); }

    // Returns once every reader that entered before this call has left. Writer only.
    void wait_for_readers();

  private:
    // Which of the two counters new readers join. seq_cst: the flip and the readers' join must
    // be totally ordered, or the writer could miss a reader that joined the old phase.
    std::atomic<std::uint64_t> phase_{0};
    alignas(64) std::atomic<std::int64_t> readers_[2] = {0, 0};
};

}  // namespace recserve::ann
