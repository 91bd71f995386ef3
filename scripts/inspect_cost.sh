#!/usr/bin/env bash
# What `interstate inspect` costs the bus: N machines on one client node, each changing state
# on every event and acknowledging it to the driver, in alternating windows without and with
# an inspector attached (and a reader of its event stream, as a browser would be), in one run
# on one hub. Each window prints the delivery rate and the round-trip time from a send to the
# machine's acknowledgement (its step and the state report included); the end, the medians.
#
#   scripts/inspect_cost.sh [MACHINES=64] [WINDOW_MS=3000] [ROUNDS=3] [RATE]
#
# Without RATE the driver sends as fast as the bus takes events (the saturated rate; no round
# trips); with RATE (events a second, e.g. 10000) at that pace, and each event's round trip. Release build; a private bus directory,
# removed at the end (KEEP=1 keeps it, with the hub's log).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-64}
MS=${2:-3000}
ROUNDS=${3:-3}
RATE=${4:-}
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
    if [ -n "${KEEP:-}" ]; then echo "kept $INTERSTATE_DIR"; else rm -rf "$INTERSTATE_DIR"; fi
}
trap cleanup EXIT

"$BIN" hub 2> "$INTERSTATE_DIR/hub.log" & pids+=($!)
for _ in $(seq 100); do [ -S "$INTERSTATE_DIR/cost.sock" ] && break; sleep 0.05; done
# At a fixed rate the machines acknowledge each event, for the round-trip time.
"$COST" host "$N" ${RATE:+ack} > "$INTERSTATE_DIR/host.out" & pids+=($!)
for _ in $(seq 200); do grep -q ready "$INTERSTATE_DIR/host.out" 2>/dev/null && break; sleep 0.05; done

field() { sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p"; }
drive() {
    local out
    out=$("$COST" drive "$N" "$MS" $RATE)
    rate=$(field rate <<< "$out")
    p50=$(field p50 <<< "$out")
    p99=$(field p99 <<< "$out")
}

r_without=(); r_with=(); p50_without=(); p50_with=(); p99_without=(); p99_with=()
for r in $(seq "$ROUNDS"); do
    drive
    r_without+=("$rate"); p50_without+=("$p50"); p99_without+=("$p99")
    echo "round $r without inspector: $rate events/s, round trip p50 ${p50} us, p99 ${p99} us"

    "$BIN" inspect --listen 127.0.0.1:0 > "$INTERSTATE_DIR/inspect.out" 2>/dev/null &
    ipid=$!
    for _ in $(seq 200); do grep -q http "$INTERSTATE_DIR/inspect.out" 2>/dev/null && break; sleep 0.05; done
    url=$(head -1 "$INTERSTATE_DIR/inspect.out")
    # A reader of the event stream, as the page is.
    curl -sN "${url}api/events" > "$INTERSTATE_DIR/events.out" &
    cpid=$!
    # Wait until every machine is watched: the inspector has their charts.
    for _ in $(seq 200); do
        n=$(curl -s "${url}api/machines" | grep -o '"has_chart":true' | wc -l || true)
        [ "$n" -ge "$N" ] && break
        sleep 0.05
    done
    drive
    r_with+=("$rate"); p50_with+=("$p50"); p99_with+=("$p99")
    streamed=$(grep -c '^event: state' "$INTERSTATE_DIR/events.out" || true)
    echo "round $r with inspector:    $rate events/s, round trip p50 ${p50} us, p99 ${p99} us ($streamed state messages streamed)"
    kill "$cpid" "$ipid" 2>/dev/null || true
    wait "$cpid" "$ipid" 2>/dev/null || true
done

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
awk -v a="$(median "${r_without[@]}")" -v b="$(median "${r_with[@]}")" \
    -v c="$(median "${p50_without[@]}")" -v d="$(median "${p50_with[@]}")" \
    -v e="$(median "${p99_without[@]}")" -v f="$(median "${p99_with[@]}")" -v n="$N" 'BEGIN {
    printf "median of %d machines: %d events/s without, %d with an inspector (%+.1f%%); ", n, a, b, (b - a) * 100 / a
    printf "round trip p50 %d us without, %d with (%+.1f%%); p99 %d us without, %d with\n", c, d, (d - c) * 100 / c, e, f }'
