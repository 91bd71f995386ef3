#!/usr/bin/env bash
# Differential testing against XState v5: generates N random charts with input sequences per
# profile, runs each through a release `interstate` and through XState 5.33.3, compares the
# traces (state value, actions in order, logs, done) and shrinks the first disagreements to
# minimal charts (written to --out, default target/difftest). See scripts/difftest/README.md.
#   usage: scripts/difftest.sh N [--profile flat|deep|parallel|history|timer|all] [--seed S]
#                                [--jobs J] [--out DIR] [--no-shrink] [--max-shrink M]
#   Without --seed the fixed seed list in scripts/difftest/difftest.mjs is used; without
#   --profile every profile gets N cases. Exits non-zero when any case disagrees.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$#" -lt 1 ]; then sed -n '2,9p' "$0" >&2; exit 2; fi
n="$1"; shift
jobs=1
args=()
while [ "$#" -gt 0 ]; do
  case "$1" in
    --jobs) jobs="$2"; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
cargo build --release --quiet --bin interstate
if [ ! -d scripts/difftest/node_modules/xstate ]; then
  (cd scripts/difftest && npm ci --silent)
fi
bin="$PWD/target/release/interstate"
out="target/difftest"
status=0
pids=()
for ((k = 0; k < jobs; k++)); do
  node scripts/difftest/difftest.mjs run --bin "$bin" --count "$n" --out "$out" --shard "$k/$jobs" "${args[@]}" \
    > "target/difftest-shard$k.log" 2>&1 &
  pids+=($!)
done
for ((k = 0; k < jobs; k++)); do
  wait "${pids[$k]}" || status=1
  cat "target/difftest-shard$k.log"
done
exit $status
