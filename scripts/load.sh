#!/usr/bin/env bash
# The load test (cli/tests/load.rs): 64 clients flooding one hub (a short and a 3x longer run),
# a paced run, and paced clients beside flooders; prints throughput, latency percentiles (per
# group in the mixed run) and the hub's peak memory.
#   usage: scripts/load.sh   (LOAD_CLIENTS=64 LOAD_SECS=3 LOAD_RATE=200 LOAD_PACED=8 by default;
#   LOAD_RUNS=flood,long,paced,mixed,control picks runs; INTERSTATE_TEST_BIN=.../interstate runs
#   another build, with examples/bus_probe beside it, for before-and-after figures)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin interstate --example bus_probe
exec cargo test --release --test load -- --ignored --nocapture
