#!/usr/bin/env bash
# Before-and-after figures for the load test (scripts/load.sh): builds commit BASE (default
# 87447b3^, the bus before the sender's credit) under target/base (its sources exported to
# target/base-src), then runs the load test on it and on this checkout in turn, PAIRS times
# (3 by default), printing the load average before each run and each run's report lines.
#   usage: scripts/load_compare.sh [BASE]   (PAIRS=3; LOAD_RUNS=flood,mixed by default, and
#   the other LOAD_* settings of cli/tests/load.rs pass through)
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:-87447b3^}
pairs=${PAIRS:-3}
export LOAD_RUNS=${LOAD_RUNS:-flood,mixed}
root=$PWD
if [ ! -x target/base/release/interstate ] || [ "$(cat target/base/commit 2>/dev/null)" != "$(git rev-parse "$base")" ]; then
    rm -rf target/base-src && mkdir -p target/base-src target/base
    git archive "$base" | tar -x -C target/base-src
    (cd target/base-src && CARGO_TARGET_DIR="$root/target/base" \
        cargo build --release --bin interstate --example bus_probe)
    git rev-parse "$base" > target/base/commit
fi
cargo build --release --bin interstate --example bus_probe
cargo test --release --test load --no-run
for i in $(seq 1 "$pairs"); do
    for build in base this; do
        echo "== pair $i, $build, $(cut -d' ' -f1-3 /proc/loadavg)"
        if [ "$build" = base ]; then
            INTERSTATE_TEST_BIN="$root/target/base/release/interstate" \
                cargo test --release --test load -- --ignored --nocapture 2>&1 | grep '^load:' || true
        else
            cargo test --release --test load -- --ignored --nocapture 2>&1 | grep '^load:' || true
        fi
    done
done
