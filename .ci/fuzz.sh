#!/usr/bin/env bash
# Coverage-guided fuzzing of every decoder and loader: builds the libFuzzer harnesses of
# cpp/fuzz with clang (-fsanitize=fuzzer,address,undefined, UBSan fatal) into build/fuzz and
# runs each for a bounded time from its seed corpus (cpp/fuzz/corpus/<harness>), then the KPL
# harness (Python, atheris). Any finding (crash, overread, leak, UBSan report, timeout, out of
# memory, a broken invariant) fails the run; its input is kept in build/fuzz/findings/.
# Installs nothing: needs clang++ with libFuzzer (Debian: clang, libclang-rt-14-dev) and, for
# KPL, a Python with atheris (FUZZ_PYTHON, default build/fuzz-venv/bin/python).
#
#   .ci/fuzz.sh                        every harness, FUZZ_SECONDS (default 30) each
#   FUZZ_SECONDS=600 .ci/fuzz.sh       longer
#   FUZZ_ONLY="snapshot kpl" ...       some harnesses only
#   FUZZ_BUILD_DIR=/x ...              build elsewhere (default <repo>/build/fuzz)
#   FUZZ_CXX=clang++-16 ...            another clang
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${FUZZ_BUILD_DIR:-$root/build/fuzz}"
seconds="${FUZZ_SECONDS:-30}"
python="${FUZZ_PYTHON:-$root/build/fuzz-venv/bin/python}"
corpus="$root/cpp/fuzz/corpus"

# harness:max_len. Lengths cover the seeds with room to grow (files of a few KiB hold indexes,
# models and snapshots with dozens of rows); a binary record is 44 bytes.
harnesses=(index_file:8192 model_file:4096 snapshot:8192 user_state:4096 event_json:2048
           event_binary:64 record_batch:4096 kpl:4096)
only="${FUZZ_ONLY:-}"

wanted() { [ -z "$only" ] || [[ " $only " == *" $1 "* ]]; }

cpp_targets=()
for entry in "${harnesses[@]}"; do
  name="${entry%%:*}"
  if [ "$name" != kpl ] && wanted "$name"; then cpp_targets+=("fuzz_$name"); fi
done

if [ "${#cpp_targets[@]}" -gt 0 ]; then
  generator=()
  if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi
  # -O1 -g without NDEBUG: the core's assertions stay on.
  cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_CXX_COMPILER="${FUZZ_CXX:-clang++}" \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" \
    -DRECSERVE_BUILD_FUZZERS=ON >/dev/null
  cmake --build "$build" --target "${cpp_targets[@]}" --parallel
fi
if wanted kpl && ! "$python" -c "import atheris" 2>/dev/null; then
  echo "fuzz.sh: $python has no atheris (pip install atheris), needed for the KPL harness" >&2
  exit 1
fi

# Leaks count as findings; UBSan reports abort (and print where); ASan's too.
export ASAN_OPTIONS="detect_leaks=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"

findings="$build/findings"
mkdir -p "$findings"
failed=()
for entry in "${harnesses[@]}"; do
  name="${entry%%:*}"
  max_len="${entry##*:}"
  wanted "$name" || continue
  # New inputs go to a scratch corpus under the build dir; the committed seeds are read only.
  work="$build/corpus/$name"
  mkdir -p "$work"
  flags=(-max_total_time="$seconds" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048
         -print_final_stats=1 -artifact_prefix="$findings/$name-")
  if [ -f "$root/cpp/fuzz/$name.dict" ]; then flags+=(-dict="$root/cpp/fuzz/$name.dict"); fi
  if [ "$name" = kpl ]; then
    run=("$python" "$root/cpp/fuzz/fuzz_kpl.py")
  else
    run=("$build/cpp/fuzz/fuzz_$name")
  fi
  log="$build/fuzz_$name.log"
  echo "-- fuzz_$name: ${seconds} s, max_len $max_len"
  if "${run[@]}" "${flags[@]}" "$work" "$corpus/$name" >"$log" 2>&1; then
    # The closing statistics: how many inputs ran, how fast, and the coverage reached.
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added)|^Done ' "$log" | tr '\n' ' '
    echo
  else
    echo "fuzz.sh: fuzz_$name found a problem (log: $log):" >&2
    grep -E 'ERROR|runtime error|invariant failed|Traceback|Error|SUMMARY|Test unit written' "$log" | head -20 >&2 || tail -30 "$log" >&2
    failed+=("$name")
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz.sh: findings in: ${failed[*]} (inputs in $findings)" >&2
  exit 1
fi
echo "fuzz.sh: no findings"
