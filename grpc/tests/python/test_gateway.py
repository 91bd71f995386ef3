"""The gRPC gateway from Python (grpcio, stubs generated from proto/interstate.proto at test
time by scripts/test_grpc_python.sh): a private hub, a JSON machine run by `interstate run`,
and `interstate-grpc`, each a child process killed by its pid when the test ends."""

from __future__ import annotations

import os
import queue
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

import grpc
import pytest

import interstate_pb2 as pb
import interstate_pb2_grpc as pb_grpc

INTERSTATE = os.environ["INTERSTATE_BIN"]
GATEWAY = os.environ["INTERSTATE_GRPC_BIN"]
CHARTS = Path(__file__).resolve().parent.parent / "charts"
STEP_LIMIT = 20.0


def wait_for(what: str, done) -> None:
    end = time.monotonic() + STEP_LIMIT
    while not done():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def accepts(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(str(path))
            return True
        except OSError:
            return False


class Bus:
    """A private bus directory with its hub, machines and gateway as children."""

    def __init__(self, name: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=f"istr-grpc-py-{name}-"))
        os.chmod(self.dir, 0o700)
        self.name = f"py-{name}"
        self.env = dict(os.environ, INTERSTATE_DIR=str(self.dir), INTERSTATE_BUS=self.name)
        self.env.pop("INTERSTATE_TRANSPORT", None)
        self.children: list[subprocess.Popen[str]] = []
        self.outputs: dict[int, list[str]] = {}

    def spawn(self, *args: str) -> subprocess.Popen[str]:
        child = subprocess.Popen(
            list(args),
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        lines: list[str] = []
        self.outputs[child.pid] = lines

        def read() -> None:
            assert child.stdout is not None
            for line in child.stdout:
                lines.append(line.rstrip("\n"))

        threading.Thread(target=read, daemon=True).start()
        self.children.append(child)
        return child

    def start(self) -> Path:
        self.spawn(INTERSTATE, "hub")
        wait_for("the hub's socket", lambda: accepts(self.dir / f"{self.name}.sock"))
        self.lamp = self.spawn(INTERSTATE, "run", str(CHARTS / "lamp.json"), "--id", "lamp")
        self.spawn(GATEWAY)
        sock = self.dir / f"{self.name}.grpc.sock"
        wait_for("the gateway's socket", lambda: accepts(sock))
        return sock

    def close(self) -> None:
        for child in reversed(self.children):
            child.kill()
            child.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def stub(request: pytest.FixtureRequest) -> Iterator[tuple[Bus, pb_grpc.BusStub]]:
    bus = Bus(request.node.name[5:20].replace("_", "-"))
    try:
        sock = bus.start()
        # grpcio names a Unix socket's path as the HTTP/2 authority, which the gateway's
        # HTTP/2 stack refuses as malformed: any plain host name does.
        with grpc.insecure_channel(
            f"unix:{sock}", options=[("grpc.default_authority", "localhost")]
        ) as channel:
            s = pb_grpc.BusStub(channel)
            wait_for(
                "lamp on the bus",
                lambda: any(m.id == "lamp" for m in s.ListMachines(pb.ListMachinesRequest()).machines),
            )
            yield bus, s
    finally:
        bus.close()


class Stream:
    """A Receive stream: its outgoing messages from a queue, its responses iterated."""

    def __init__(self, s: pb_grpc.BusStub, ids: list[str]) -> None:
        self.up: queue.Queue[pb.ReceiveRequest | None] = queue.Queue()
        self.up.put(pb.ReceiveRequest(register=pb.Register(ids=ids)))
        self.call = s.Receive(self._requests(), timeout=STEP_LIMIT * 2)

    def _requests(self) -> Iterator[pb.ReceiveRequest]:
        while True:
            item = self.up.get()
            if item is None:
                return
            yield item

    def next(self) -> pb.ReceiveResponse:
        return next(self.call)

    def close(self) -> None:
        self.up.put(None)
        self.call.cancel()


def test_an_event_round_trip_with_a_json_machine(stub: tuple[Bus, pb_grpc.BusStub]) -> None:
    bus, s = stub
    rx = Stream(s, ["py-rx"])
    try:
        first = rx.next()
        assert first.WhichOneof("kind") == "registered"
        assert list(first.registered.ids) == ["py-rx"]
        sent = s.Send(pb.SendRequest(to="lamp", event="PING", data=b'{"n":1}', **{"from": "py-rx"}))
        assert sent.seq > 0
        got = rx.next()
        assert got.WhichOneof("kind") == "event"
        e = got.event
        assert (e.to, getattr(e, "from"), e.event, e.data) == ("py-rx", "lamp", "PONG", b'{"n":1}')
        rx.up.put(pb.ReceiveRequest(ack=pb.Ack(delivery=e.delivery)))
        wait_for("the machine's log line", lambda: "[lamp] got PING" in bus.outputs[bus.lamp.pid])
        reply = s.Request(pb.RequestRequest(to="lamp", event="PING", data=b'{"n":2}', timeout_ms=10000))
        assert (reply.event, getattr(reply, "from"), reply.data) == ("PONG", "lamp", b'{"n":2}')
    finally:
        rx.close()


def test_a_request_without_a_reply_times_out(stub: tuple[Bus, pb_grpc.BusStub]) -> None:
    _, s = stub
    with pytest.raises(grpc.RpcError) as failed:
        s.Request(pb.RequestRequest(to="lamp", event="IGNORE", timeout_ms=300))
    assert failed.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "timeout" in failed.value.details()


def test_a_spoofed_id_is_refused(stub: tuple[Bus, pb_grpc.BusStub]) -> None:
    _, s = stub
    rx = Stream(s, ["lamp"])
    try:
        with pytest.raises(grpc.RpcError) as refused:
            rx.next()
        assert refused.value.code() == grpc.StatusCode.ALREADY_EXISTS
    finally:
        rx.close()
    with pytest.raises(grpc.RpcError) as denied:
        s.Send(pb.SendRequest(to="lamp", event="PING", **{"from": "lamp"}))
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
