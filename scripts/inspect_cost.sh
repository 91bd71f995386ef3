#!/usr/bin/env bash
# What `interstate inspect` costs the bus: N machines on one client node, each changing state
# on every event, driven as fast as the bus takes events, in alternating windows without and
# with an inspector attached (and a reader of its event stream, as a browser would be), in
# one run on one hub. Prints each window's delivery rate and the medians.
#
#   scripts/inspect_cost.sh [MACHINES=64] [WINDOW_MS=3000] [ROUNDS=3]
#
# Release build; a private bus directory, removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-64}
MS=${2:-3000}
ROUNDS=${3:-3}
cargo build --release -q --bin interstate --example inspect_cost
BIN=target/release/interstate
COST=target/release/examples/inspect_cost
export INTERSTATE_DIR
INTERSTATE_DIR=$(mktemp -d /tmp/interstate-cost.XXXXXX)
export INTERSTATE_BUS=cost
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$INTERSTATE_DIR"
}
trap cleanup EXIT

"$BIN" hub -q & pids+=($!)
for _ in $(seq 100); do [ -S "$INTERSTATE_DIR/cost.sock" ] && break; sleep 0.05; done
"$COST" host "$N" > "$INTERSTATE_DIR/host.out" & pids+=($!)
for _ in $(seq 200); do grep -q ready "$INTERSTATE_DIR/host.out" 2>/dev/null && break; sleep 0.05; done

without=(); with=()
for r in $(seq "$ROUNDS"); do
    rate=$("$COST" drive "$N" "$MS" | sed 's/.*"rate":\([0-9]*\).*/\1/')
    without+=("$rate")
    echo "round $r without inspector: $rate events/s"

    "$BIN" inspect --listen 127.0.0.1:0 > "$INTERSTATE_DIR/inspect.out" 2>/dev/null &
    ipid=$!
    for _ in $(seq 200); do grep -q http "$INTERSTATE_DIR/inspect.out" 2>/dev/null && break; sleep 0.05; done
    url=$(head -1 "$INTERSTATE_DIR/inspect.out")
    # A reader of the event stream, as the page is.
    curl -sN "${url}api/events" > "$INTERSTATE_DIR/events.out" &
    cpid=$!
    # Wait until every machine is watched: the inspector has their charts.
    for _ in $(seq 200); do
        n=$(curl -s "${url}api/machines" | grep -o '"has_chart":true' | wc -l)
        [ "$n" -ge "$N" ] && break
        sleep 0.05
    done
    rate=$("$COST" drive "$N" "$MS" | sed 's/.*"rate":\([0-9]*\).*/\1/')
    with+=("$rate")
    streamed=$(grep -c '^event: state' "$INTERSTATE_DIR/events.out" || true)
    echo "round $r with inspector:    $rate events/s ($streamed state messages streamed)"
    kill "$cpid" "$ipid" 2>/dev/null || true
    wait "$cpid" "$ipid" 2>/dev/null || true
done

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mw=$(median "${without[@]}")
mi=$(median "${with[@]}")
awk -v a="$mw" -v b="$mi" -v n="$N" 'BEGIN {
    printf "median: %d events/s without, %d with an inspector attached (%d machines): %+.1f%%\n", a, b, n, (b - a) * 100 / a }'
