#!/usr/bin/env bash
# The gRPC gateway's tests from Python (grpc/tests/python/), as scripts/test.sh runs them:
# - a virtualenv under target/ with grpcio, grpcio-tools and pytest from PyPI (made once;
#   reused while it has them);
# - the Python messages and stubs generated from proto/interstate.proto now, with
#   grpcio-tools' protoc (nothing generated is checked in);
# - the `interstate` and `interstate-grpc` binaries built, then pytest.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

target="${CARGO_TARGET_DIR:-target}"
case "$target" in /*) ;; *) target="$PWD/$target" ;; esac
venv="$target/grpc-python/venv"
gen="$target/grpc-python/gen"

if ! "$venv/bin/python" -c "import grpc, grpc_tools, pytest" >/dev/null 2>&1; then
    echo "making $venv (grpcio, grpcio-tools, pytest from PyPI)"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "grpcio>=1.60,<2" "grpcio-tools>=1.60,<2" "pytest>=7"
fi

rm -rf "$gen"
mkdir -p "$gen"
"$venv/bin/python" -m grpc_tools.protoc -Iproto --python_out="$gen" --grpc_python_out="$gen" \
    proto/interstate.proto

cargo build -p interstate-cli -p interstate-grpc
INTERSTATE_BIN="$target/debug/interstate" \
INTERSTATE_GRPC_BIN="$target/debug/interstate-grpc" \
PYTHONPATH="$gen" \
    "$venv/bin/python" -m pytest -q -p no:cacheprovider grpc/tests/python "$@"
