#!/usr/bin/env bash
# Runs every fuzz target for SECONDS seconds each (default 60), one after the other.
#   usage: fuzz/run-all.sh [SECONDS] [extra libFuzzer flags...]
#          FUZZ_TARGETS="hub serial" fuzz/run-all.sh 120     (only some targets)
# New inputs go to fuzz/target/corpus/<target>/ (not checked in); the checked-in seeds in
# fuzz/corpus/<target>/ are only read. Crashes land in fuzz/artifacts/<target>/: add them to
# fuzz/corpus/<target>/ once fixed, so tests/fuzz_corpus.rs replays them on every cargo test.
# Needs cargo-fuzz (cargo install cargo-fuzz). Uses RUSTC_BOOTSTRAP=1 so a stable toolchain works.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
seconds="${1:-60}"
shift || true
cd "$here"
targets=(json_chart chart_image drive_machine frame_decode hub endpoint conn serial shm_ring restore_snapshot)
if [ -n "${FUZZ_TARGETS:-}" ]; then read -r -a targets <<< "$FUZZ_TARGETS"; fi
export RUSTC_BOOTSTRAP=1
cargo fuzz build
status=0
for t in "${targets[@]}"; do
  work="$here/target/corpus/$t"
  mkdir -p "$work"
  echo "== $t: ${seconds}s"
  dict=()
  if [ -f "$here/$t.dict" ]; then dict=(-dict="$here/$t.dict"); fi
  cargo fuzz run "$t" "$work" "$here/corpus/$t" -- \
      -max_total_time="$seconds" -print_final_stats=1 "${dict[@]}" "$@" 2>&1 \
    | tee "$here/target/$t.log" \
    | grep -E '^#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units|==[0-9]+==|SUMMARY|Test unit written|panicked' \
    || true
  if grep -qE 'Test unit written|panicked|SUMMARY: (Address|libFuzzer)' "$here/target/$t.log"; then
    echo "!! $t: crash, see fuzz/target/$t.log and fuzz/artifacts/$t/"
    status=1
  fi
done
exit "$status"
