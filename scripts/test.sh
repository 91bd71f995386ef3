#!/usr/bin/env bash
# The tests, as the README tells a developer to run them (and as .ci/run runs them): first
# what the tests start for real and a fresh machine lacks, then `cargo test --workspace`.
#
# - Debian's chromium, for the inspector's browser test (cli/tests/inspect_browser.rs),
#   installed with apt-get when missing (as root; otherwise the test says loudly it skipped);
# - Debian's mosquitto, for the InterNode tests (cli/tests/internode.rs start a private
#   broker per test);
# - the browser test's npm packages (`npm ci` in tests/browser, from its lockfile);
# - the gRPC gateway's Python tests (scripts/test_grpc_python.sh: grpcio from PyPI in a venv).
#
# Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
if ((${#missing[@]})); then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        echo "installing ${missing[*]} (apt-get)"
        (timeout 600 apt-get update \
            && DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y "${missing[@]}") \
            || echo "could not install ${missing[*]}: the tests that need them will say so"
    else
        echo "missing: ${missing[*]}; as root: apt-get install -y ${missing[*]}"
    fi
fi
if command -v npm >/dev/null 2>&1; then
    (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
fi

# --- gRPC gateway, Python side (issue 17): grpcio stubs generated from proto/interstate.proto
# at test time, run against interstate-grpc by pytest in a venv under target/ (see the script).
scripts/test_grpc_python.sh
# --- end of the gRPC gateway block

exec cargo test --workspace "$@"
