"""The fixture: a private hub of the real `interstate` binary in a temporary directory.

The binary is $INTERSTATE_BIN, else target/debug/interstate of this checkout (built by
`cargo build` or `cargo test`). The package is imported as installed (`pip install ./python`),
or from the source with PYTHONPATH=python/src. Every process a test starts is killed by its pid at the end,
and the directory is removed.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, List, Optional

import pytest

from interstate import Client

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "python" / "examples"
LIMIT = 20.0


def binary() -> str:
    path = os.environ.get("INTERSTATE_BIN") or str(ROOT / "target" / "debug" / "interstate")
    if not os.access(path, os.X_OK):
        pytest.fail(f"no interstate binary at {path}: run `cargo build` first, or set INTERSTATE_BIN")
    return path


class Bus:
    """A private bus: its directory, its hub, the processes and clients of one test."""

    def __init__(self, directory: str, name: str):
        self.dir = directory
        self.name = name
        self.bin = binary()
        # Python children import the package as this process does (installed, or PYTHONPATH).
        self.env = dict(os.environ, INTERSTATE_DIR=directory, INTERSTATE_BUS=name,
                        PYTHONDONTWRITEBYTECODE="1")
        self.hub: Optional[subprocess.Popen[bytes]] = None
        self.procs: List[subprocess.Popen[bytes]] = []
        self.clients: List[Client] = []
        self._n = 0

    @property
    def socket(self) -> str:
        return os.path.join(self.dir, self.name + ".sock")

    def spawn(self, label: str, args: List[str]) -> "subprocess.Popen[bytes]":
        """Starts a process on the bus; its output goes to LABEL.out / LABEL.err."""
        out = open(os.path.join(self.dir, label + ".out"), "wb")
        err = open(os.path.join(self.dir, label + ".err"), "wb")
        p = subprocess.Popen(args, env=self.env, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        out.close()
        err.close()
        self.procs.append(p)
        return p

    def output(self, label: str, ext: str = "out") -> str:
        with open(os.path.join(self.dir, f"{label}.{ext}"), encoding="utf-8", errors="replace") as f:
            return f.read()

    def start_hub(self) -> None:
        """Starts `interstate hub` and waits until it accepts connections."""
        self._n += 1
        self.hub = self.spawn(f"hub{self._n}", [self.bin, "hub", "--bus", self.name])
        deadline = time.monotonic() + LIMIT
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(self.socket)
                return
            except OSError:
                if self.hub.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the hub did not start: {self.output(f'hub{self._n}', 'err')}")
                time.sleep(0.02)
            finally:
                s.close()

    def kill_hub(self) -> None:
        """SIGKILLs the hub (no goodbye to anyone) and waits for it."""
        assert self.hub is not None
        self.hub.send_signal(signal.SIGKILL)
        self.hub.wait()
        self.hub = None

    def client(self, **kw: Any) -> Client:
        c = Client.connect(bus=self.name, directory=self.dir, **kw)
        self.clients.append(c)
        return c

    def run_chart(self, label: str, machine: str, chart: str) -> "subprocess.Popen[bytes]":
        """`interstate run --client` of a JSON chart file (or text) as `machine`."""
        path = chart
        if chart.lstrip().startswith("{"):
            path = os.path.join(self.dir, label + ".json")
            with open(path, "w") as f:
                f.write(chart)
        return self.spawn(label, [self.bin, "run", "--client", "--id", machine, path])

    def python(self, label: str, script: str, *args: str) -> "subprocess.Popen[bytes]":
        return self.spawn(label, [sys.executable, script, *args])

    def cli(self, *args: str) -> "subprocess.CompletedProcess[str]":
        return subprocess.run([self.bin, *args], env=self.env, capture_output=True, text=True, timeout=LIMIT)

    def close(self) -> None:
        for c in self.clients:
            try:
                c.close()
            except Exception:
                pass
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
            p.wait()


@pytest.fixture
def bus(request: pytest.FixtureRequest) -> Iterator[Bus]:
    directory = tempfile.mkdtemp(prefix="interstate-py-")
    os.chmod(directory, 0o700)
    b = Bus(directory, "py-" + request.node.name[:40].replace("[", "-").replace("]", ""))
    b.start_hub()
    try:
        yield b
    finally:
        b.close()
        failed = getattr(request.node, "rep_call", None)
        if failed is not None and failed.failed:
            for name in sorted(os.listdir(directory)):
                if name.endswith((".out", ".err")):
                    print(f"----- {name} -----\n{b.output(name.rsplit('.', 1)[0], name.rsplit('.', 1)[1])}")
        shutil.rmtree(directory, ignore_errors=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, "rep_" + rep.when, rep)


def until(cond: Any, what: str, limit: float = LIMIT, pump: Optional[List[Client]] = None) -> None:
    """Waits for `cond()`, working the given clients meanwhile (each is single-threaded)."""
    deadline = time.monotonic() + limit
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {limit} s")
        if pump:
            for c in pump:
                c.poll(0.02)
        else:
            time.sleep(0.02)
