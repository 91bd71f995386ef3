#!/usr/bin/env bash
# The tests, as the README tells a developer to run them (and as .ci/run runs them): first
# what the tests start for real and a fresh machine lacks, then `cargo test --workspace`.
#
# - Debian's chromium, for the inspector's browser test (cli/tests/inspect_browser.rs),
#   installed with apt-get when missing (as root; otherwise the test says loudly it skipped);
# - Debian's mosquitto, for the InterNode tests (cli/tests/internode.rs start a private
#   broker per test);
# - the browser test's npm packages (`npm ci` in tests/browser, from its lockfile), and the
#   gRPC gateway's Node example's (`npm ci` in grpc/examples/node; grpc/tests/node_example.rs);
# - for the Python package (python/): Debian's python3-venv when `python3 -m venv` is missing,
#   then a virtual environment in target/pyenv with pytest, mypy and setuptools from PyPI
#   (made once; later runs work offline), into which the package is installed with pip.
# - the gRPC gateway's Python tests (scripts/test_grpc_python.sh: grpcio from PyPI in a venv).
#
# After `cargo test --workspace` (which builds target/debug/interstate), `mypy --strict` and
# pytest check the installed package against that binary (python/tests start private hubs).
# Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
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
    (cd grpc/examples/node && npm ci --no-audit --no-fund --loglevel=error)
fi

cargo test --workspace "$@"

# The Python package: typed (mypy --strict) and tested against the binary just built.
venv=target/pyenv
if [ ! -e "$venv/ready" ]; then
    echo "making $venv (pytest, mypy, setuptools from PyPI)"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check pytest mypy 'setuptools>=70.1'
    touch "$venv/ready"
fi
# The package as a user installs it (pip install ./python), built without fetching anything.
"$venv/bin/pip" install --quiet --disable-pip-version-check --no-build-isolation --no-deps \
    --no-index --force-reinstall ./python
rm -rf python/build python/src/*.egg-info
(cd python && "../$venv/bin/mypy" --strict --cache-dir ../target/mypy_cache)
INTERSTATE_BIN="$PWD/target/debug/interstate" PYTHONDONTWRITEBYTECODE=1 \
    "$venv/bin/pytest" -q -p no:cacheprovider python/tests

# --- gRPC gateway, Python side (issue 17): grpcio stubs generated from proto/interstate.proto
# at test time, run against interstate-grpc by pytest in a venv under target/ (see the script).
scripts/test_grpc_python.sh
# --- end of the gRPC gateway block
