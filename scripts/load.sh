#!/usr/bin/env bash
# The load test (cli/tests/load.rs): 64 clients flooding one hub (a short and a 3x longer run)
# and a paced run; prints throughput, latency percentiles and the hub's peak memory.
#   usage: scripts/load.sh   (LOAD_CLIENTS=64 LOAD_SECS=3 LOAD_RATE=200 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin interstate --example bus_probe
exec cargo test --release --test load -- --ignored --nocapture
