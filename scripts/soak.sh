#!/usr/bin/env bash
# The soak test (cli/tests/soak.rs): 8 supervised processes, >= 1 M events, random SIGKILLs of
# workers and one failover (the hub SIGKILLed, the supervisor serving in its place); prints
# the tally. Release build; bounded by SOAK_LIMIT_SECS.
#   usage: scripts/soak.sh            (defaults: SOAK_EVENTS=1000000, SOAK_LIMIT_SECS=600,
#                                      SOAK_KILL_EVERY_MS=1500, SOAK_RATE=4000 per source)
#          SOAK_EVENTS=200000 scripts/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin interstate --example bus_probe
exec cargo test --release --test soak -- --ignored --nocapture
