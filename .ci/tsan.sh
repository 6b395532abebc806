#!/usr/bin/env bash
# ThreadSanitizer run of the concurrency tests: builds test_ann, test_mlp, test_embed, test_profiles and test_feed in build-tsan with
# -fsanitize=thread and runs the suites where threads meet (readers against a writer, the
# background compactor, GracePeriod; rankers scoring from many threads; embedding-table readers
# against writers for 10 s; profile and co-engagement readers against event applies; the feed
# core's item columns, served ring and open pool read beside their writer). Any data race report
# fails the run.
#
#   .ci/tsan.sh            from anywhere; the build dir is <repo>/build-tsan
#   TSAN_BUILD_DIR=/x ...  to build elsewhere
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${TSAN_BUILD_DIR:-$root/build-tsan}"
filter='*IndexConcurrency.*:IndexBackgroundCompactor.*:GracePeriod.*'
mlp_filter='QuantizedMlpConcurrency.*'
embed_filter='TableConcurrency.*'
profiles_filter='ProfilesConcurrency.*:CoEngagementConcurrency.*:ProfilesCoEngagementConcurrency.*'
feed_filter='FeedConcurrency.*'

generator=()
if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi
cmake -S "$root" -B "$build" "${generator[@]}" \
  -DRECSERVE_BUILD_TESTS=ON -DRECSERVE_SANITIZE=thread -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build "$build" --target test_ann test_mlp test_embed test_profiles test_feed --parallel

test_ann="$build/tests/cpp/test_ann"
# A filter that matches nothing would pass silently: make sure the suites are there.
if ! "$test_ann" --gtest_list_tests --gtest_filter="$filter" | grep -q '^  '; then
  echo "tsan.sh: no tests match '$filter'" >&2
  exit 1
fi

# halt_on_error: the first report ends the run with a failure (exit code 66).
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 ${TSAN_OPTIONS:-}"
# TSan's fixed shadow layout clashes with the high mmap randomisation of recent kernels
# ("unexpected memory mapping"); run without address-space randomisation where setarch allows.
run=("$test_ann")
if command -v setarch >/dev/null 2>&1 && setarch "$(uname -m)" -R true 2>/dev/null; then
  run=(setarch "$(uname -m)" -R "$test_ann")
fi
"${run[@]}" --gtest_filter="$filter"
"${run[@]/test_ann/test_mlp}" --gtest_filter="$mlp_filter"  # the same command, for test_mlp
RECSERVE_STRESS_SECONDS=10 "${run[@]/test_ann/test_embed}" --gtest_filter="$embed_filter"  # 10 s of churn
RECSERVE_STRESS_SECONDS=10 "${run[@]/test_ann/test_profiles}" --gtest_filter="$profiles_filter"
"${run[@]/test_ann/test_feed}" --gtest_filter="$feed_filter"  # page readers beside the writer
