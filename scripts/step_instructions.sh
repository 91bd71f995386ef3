#!/usr/bin/env bash
# Instructions per event of the three benchmark charts (benches/step.rs), counted by valgrind's
# callgrind, which wall-clock noise does not touch: the difference between 21 000 and 1 000
# events through examples/step_events.rs, divided by 20 000; for the interpreter and for the
# charts compiled to native Rust (interstate compile --native) and for the benchmark's
# hand-written machines.
#   usage: scripts/step_instructions.sh   (needs valgrind)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --release --example step_events
bin=target/release/examples/step_events
count() {
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$@" 2>&1 |
        sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
for case in flat deep parallel; do
    a=$(count "$case" 1000)
    b=$(count "$case" 21000)
    echo "$case: $(((b - a) / 20000)) instructions per event"
    a=$(count "$case" 1000 native)
    b=$(count "$case" 21000 native)
    echo "$case (native): $(((b - a) / 20000)) instructions per event"
    a=$(count "$case" 1000 hand)
    b=$(count "$case" 21000 hand)
    echo "$case (hand-written): $(((b - a) / 20000)) instructions per event"
done
