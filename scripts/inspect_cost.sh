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
# CPU time (user + system, in clock ticks) a process has used so far.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
HZ=$(getconf CLK_TCK)
hub_pid=${pids[0]}
host_pid=${pids[1]}
# Each window also reports the CPU time the bus's processes (hub and host node) spent per
# event, in microseconds: unlike the round trip, other work on the machine does not move it
# much. `inspector_cpu`: the inspector's own, in the windows with one.
drive() {
    local out b0 b1
    b0=$(( $(ticks "$hub_pid") + $(ticks "$host_pid") ))
    i0=$(ticks "${ipid:-0}")
    out=$("$COST" drive "$N" "$MS" $RATE)
    b1=$(( $(ticks "$hub_pid") + $(ticks "$host_pid") ))
    i1=$(ticks "${ipid:-0}")
    rate=$(field rate <<< "$out")
    p50=$(field p50 <<< "$out")
    p99=$(field p99 <<< "$out")
    events=$(( rate * MS / 1000 ))
    cpu=$(awk -v t=$((b1 - b0)) -v hz="$HZ" -v n="$events" 'BEGIN {printf "%.2f", n ? t * 1e6 / hz / n : 0}')
    icpu=$(awk -v t=$((i1 - i0)) -v hz="$HZ" -v n="$events" 'BEGIN {printf "%.2f", n ? t * 1e6 / hz / n : 0}')
}

r_without=(); r_with=(); cpu_without=(); cpu_with=(); p50_without=(); p50_with=(); p99_without=(); p99_with=()
for r in $(seq "$ROUNDS"); do
    ipid=
    drive
    r_without+=("$rate"); p50_without+=("$p50"); p99_without+=("$p99"); cpu_without+=("$cpu")
    echo "round $r without inspector: $rate events/s, round trip p50 ${p50} us, p99 ${p99} us, bus CPU ${cpu} us/event"

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
    r_with+=("$rate"); p50_with+=("$p50"); p99_with+=("$p99"); cpu_with+=("$cpu")
    streamed=$(grep -c '^event: state' "$INTERSTATE_DIR/events.out" || true)
    echo "round $r with inspector:    $rate events/s, round trip p50 ${p50} us, p99 ${p99} us, bus CPU ${cpu} us/event, inspector CPU ${icpu} us/event ($streamed state messages streamed)"
    kill "$cpid" "$ipid" 2>/dev/null || true
    wait "$cpid" "$ipid" 2>/dev/null || true
done

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
awk -v a="$(median "${r_without[@]}")" -v b="$(median "${r_with[@]}")" \
    -v c="$(median "${p50_without[@]}")" -v d="$(median "${p50_with[@]}")" \
    -v e="$(median "${p99_without[@]}")" -v f="$(median "${p99_with[@]}")" -v n="$N" \
    -v g="$(median "${cpu_without[@]}")" -v h="$(median "${cpu_with[@]}")" 'BEGIN {
    printf "median of %d machines: %d events/s without, %d with an inspector (%+.1f%%); ", n, a, b, (b - a) * 100 / a
    printf "round trip p50 %d us without, %d with (%+.1f%%); p99 %d us without, %d with; ", c, d, (d - c) * 100 / c, e, f
    printf "bus CPU %.2f us/event without, %.2f with (%+.1f%%)\n", g, h, (h - g) * 100 / g }'
