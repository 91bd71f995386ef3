"""The package against the real hub (`interstate hub`) and Rust JSON machines (`interstate run`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Callable, List

import pytest

from conftest import EXAMPLES, Bus, until
from interstate import (
    Client, DeliveryError, Event, HubGone, Machine, MachineDown, MachineUp, Message,
    RegistrationRefused, RequestFailed, StateReport, TopicRefused,
)

ECHO = """{"id":"echo","initial":"s","states":{"s":{"on":{"PING":{"actions":
  {"type":"sendTo","to":{"sender":true},"event":"PONG","data":{"from":"event"}}}}}}}"""
SILENT = """{"id":"silent","initial":"s","states":{"s":{}}}"""


def take(c: Client, n: int, limit: float = 20.0) -> List[Message]:
    got: List[Message] = []
    deadline = time.monotonic() + limit
    while len(got) < n and time.monotonic() < deadline:
        item = c.recv(0.1)
        if isinstance(item, Message):
            got.append(item)
    assert len(got) == n, f"only {len(got)} of {n} messages: {got}"
    return got


def test_send_receive_and_acknowledge(bus: Bus) -> None:
    a, b = bus.client(executable="py-a"), bus.client()
    a.register("a")
    b.register("b")
    assert b.wait_for("a").executable == "py-a"
    seqs = [a.send("a", "b", "E", {"n": n}) for n in range(3)]
    a.send("a", "b", "RAW", b"\x00\xff")
    got = take(b, 4)
    assert [m.json() for m in got[:3]] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert [m.seq for m in got[:3]] == seqs and got[3].payload == b"\x00\xff"
    assert all(m.sender == "a" and m.to == "b" and m.topic is None for m in got)
    # b acknowledges what it took when it comes back for more: a hears of every message.
    assert b.recv(0.1) is None
    a.flush(timeout=10.0)
    assert a.unacknowledged == 0


def test_a_duplicate_or_bad_id_is_refused(bus: Bus) -> None:
    a, b = bus.client(), bus.client()
    a.register("worker")
    with pytest.raises(RegistrationRefused) as e:
        b.register("worker")
    assert e.value.status == "Taken" and "another process" in str(e.value)
    with pytest.raises(RegistrationRefused) as e:
        b.register("bad\nid")
    assert e.value.status == "BadId"
    a.register("worker")  # its own id again: fine


def test_a_spoofed_sender_fails_as_not_owner(bus: Bus) -> None:
    a, b = bus.client(), bus.client()
    a.register("a")
    b.register("b")
    seq = a.send("b", "a", "FORGED")  # b's id, not a's
    with pytest.raises(DeliveryError) as e:
        a.recv(10.0)
    assert (e.value.reason, e.value.from_, e.value.seq) == ("not-owner", "b", seq)
    assert b.recv(0.3) is None and a.recv(0.1) is None  # nothing arrived, reported once


def test_delivery_failures_are_exceptions_with_reason_and_detail(bus: Bus) -> None:
    a, b = bus.client(), bus.client()
    a.register("a")
    a.send("a", "nobody", "HELLO")
    with pytest.raises(DeliveryError) as e:
        a.recv(10.0)
    assert e.value.reason == "unknown-target" and e.value.to == "nobody"
    with pytest.raises(DeliveryError) as e:
        a.send("a", "nobody", "HUGE", b"x" * 70_000)  # larger than the bus's 64 KiB frames
    assert e.value.reason == "too-large" and a.unacknowledged == 0

    # A Machine whose handler raises stops as a Rust machine does: later messages to it
    # fail as target-stopped, with its error as the detail.
    m = Machine(b, "fragile")

    @m.on("BREAK")
    def crash(ev: Event) -> None:
        raise ValueError("no model loaded")

    a.wait_for("fragile")
    a.send("a", "fragile", "BREAK")
    with pytest.raises(ValueError):
        m.run(timeout=10.0)
    until(lambda: "fragile" not in a.registry(), "fragile leaving the registry", pump=[a, b])
    a.send("a", "fragile", "AGAIN")
    with pytest.raises(DeliveryError) as e:
        a.recv(10.0)
    assert e.value.reason == "target-stopped", str(e.value)
    assert e.value.detail == "ValueError in the handler of BREAK: no model loaded"


def test_requests_to_a_rust_machine_and_their_failures(bus: Bus) -> None:
    bus.run_chart("echo", "echo", ECHO)
    bus.run_chart("silent", "silent", SILENT)
    c = bus.client()
    c.register("py")
    c.wait_for("echo")
    c.wait_for("silent")
    reply = c.request("py", "echo", "PING", {"n": 3}, timeout=15.0)
    assert (reply.event, reply.sender, reply.json()) == ("PONG", "echo", {"n": 3})
    with pytest.raises(RequestFailed) as e:
        c.request("py", "nobody", "PING", timeout=15.0)
    assert e.value.reason == "unknown-target"
    with pytest.raises(RequestFailed) as e:
        c.request("py", "silent", "PING", timeout=0.3)
    assert e.value.reason == "timeout" and e.value.to == "silent"
    assert c.recv(0.2) is None  # each request settled once, nothing left over


TAKER = """
import os, sys
from interstate import Client, Message
c = Client.connect(executable="taker")
c.register("taker")
print("ready", flush=True)
while True:
    m = c.recv()
    if isinstance(m, Message) and m.request is not None:
        print("took request", m.request, flush=True)
        os._exit(0)  # took the request and died without answering it
"""


def test_a_request_whose_target_leaves_fails_target_gone(bus: Bus) -> None:
    c = bus.client()
    c.register("asker")
    taker = bus.spawn("taker", [sys.executable, "-c", TAKER])
    c.wait_for("taker")
    with pytest.raises(RequestFailed) as e:
        c.request("asker", "taker", "WORK", timeout=15.0)
    assert e.value.reason == "target-gone"
    assert taker.wait(20) == 0
    assert f"took request {e.value.request}" in bus.output("taker")


def test_a_python_machine_answers_a_rust_machines_request(bus: Bus) -> None:
    """The seed's scenario: the UI is a JSON chart run by the Rust runtime, the worker is
    python/examples/ml_worker.py (a Machine)."""
    worker = bus.python("worker", str(EXAMPLES / "ml_worker.py"))
    ui = bus.run_chart("ui", "ui", str(EXAMPLES / "ui.json"))
    c = bus.client()
    c.register("tester")
    c.wait_for("ml-worker")
    c.wait_for("ui")
    c.watch_state("ui")
    c.send("tester", "ui", "CLASSIFY", {"features": [1.2, 0.8]})
    states = []
    deadline = time.monotonic() + 20
    while "showing" not in states and time.monotonic() < deadline:
        item = c.recv(0.2)
        if isinstance(item, StateReport) and item.machine == "ui":
            states.append(item.report.get("state"))
    assert "showing" in states, states
    assert "ml-worker: PREDICT [1.2, 0.8] from ui -> b" in bus.output("worker")
    # The worker's state shows in `interstate status`, as a Rust machine's does.
    status = bus.cli("status", "--json", "ml-worker")
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["state"] == "ready" and report["context"]["served"] == 1
    # The Rust CLI asks too; it leaves before acknowledging the reply, which the worker
    # hears of (target-gone) and goes on.
    asked = bus.cli("request", "ml-worker", "PREDICT", "--data", '{"features":[-2,-1]}')
    assert asked.returncode == 0, asked.stderr
    assert json.loads(asked.stdout)["label"] == "a"
    c.send("tester", "ml-worker", "STOP")
    assert worker.wait(20) == 0
    assert ui.poll() is None


def test_publish_and_subscribe_across_languages(bus: Bus) -> None:
    sub, pub = bus.client(), bus.client()
    sub.register("py-sub")
    pub.register("py-pub")
    sub.subscribe("py-sub", "plant/+/alarm")
    with pytest.raises(TopicRefused) as e:
        sub.subscribe("py-sub", "plant/#/x")
    assert e.value.status == "BadFilter"
    with pytest.raises(TopicRefused) as e:
        sub.subscribe("not-mine", "plant/#")
    assert e.value.status == "NotOwner"
    assert pub.publish("py-pub", "plant/1/alarm", "ALARM", {"n": 1}) == ["py-sub"]
    assert pub.publish("py-pub", "plant/1/status", "OK") == []
    # The Rust CLI publishes too, and waits for the subscriber's acknowledgement.
    cli = bus.spawn("publish", [bus.bin, "publish", "plant/2/alarm", "ALARM", "--data", '{"n":2}'])
    got = take(sub, 2)
    until(lambda: cli.poll() is not None, "`interstate publish` to finish", pump=[sub])
    assert cli.returncode == 0, bus.output("publish", "err")
    assert [(m.topic, m.event, m.json(), m.sender) for m in got][0] == ("plant/1/alarm", "ALARM", {"n": 1}, "py-pub")
    assert (got[1].topic, got[1].event, got[1].json()) == ("plant/2/alarm", "ALARM", {"n": 2})
    assert sub.recv(0.3) is None
    pub.flush(timeout=10.0)


def collect(c: Client, seen: List[object], found: Callable[[object], bool], what: str) -> None:
    """Receives into `seen` until an item satisfies `found`."""
    deadline = time.monotonic() + 20
    while not any(found(i) for i in seen):
        assert time.monotonic() < deadline, f"no {what} in {seen}"
        item = c.recv(0.1)
        if item is not None:
            seen.append(item)


def test_registry_follow_and_state_watch(bus: Bus) -> None:
    c = bus.client()
    c.register("observer")
    c.follow_registry()
    c.watch_state("light")  # before it exists: the hub asks it to report when it registers
    light = bus.run_chart(
        "light", "light", '{"id":"light","initial":"red","states":{"red":{"on":{"GO":"green"}},"green":{}}}'
    )
    seen: List[object] = []
    collect(c, seen, lambda i: isinstance(i, StateReport) and i.report.get("state") == "red", "red report")
    ups = [i for i in seen if isinstance(i, MachineUp) and i.machine == "light"]
    assert ups and ups[0].entry.transport == "UnixSocket"
    assert c.registry()["light"].pid == light.pid
    c.send("observer", "light", "GO")
    collect(c, seen, lambda i: isinstance(i, StateReport) and i.report.get("state") == "green", "green report")
    light.kill()
    collect(c, seen, lambda i: isinstance(i, MachineDown) and i.machine == "light", "light leaving")


def test_the_hub_restarts_and_nothing_is_lost(bus: Bus) -> None:
    a, b = bus.client(), bus.client()
    a.register("a")
    b.register("b")
    b.subscribe("b", "news/#")
    got: List[int] = []
    for i in range(5):
        a.send("a", "b", "E", {"i": i})
    while len(got) < 2:
        m = b.recv(10.0)
        assert isinstance(m, Message)
        got.append(m.json()["i"])
    bus.kill_hub()
    for i in range(5, 10):  # sent while no hub serves the bus: they wait
        a.send("a", "b", "E", {"i": i})
    bus.start_hub()
    deadline = time.monotonic() + 20
    while len(got) < 10 and time.monotonic() < deadline:
        a.poll(0.02)
        m = b.recv(0.02)
        if isinstance(m, Message):
            got.append(m.json()["i"])
    assert got == list(range(10)), got  # every message once, in order
    assert a.reconnects == 1 and b.reconnects == 1
    # Ids and topic subscriptions are back on the new hub.
    third = bus.client()
    assert {"a", "b"} <= set(third.registry())
    until(lambda: a.publish("a", "news/1", "N") == ["b"], "b's subscription on the new hub", pump=[b])
    assert take(b, 1)[0].topic == "news/1"
    b.recv(0.05)
    a.flush(timeout=10.0)


def test_without_reconnect_a_lost_hub_is_an_exception_naming_what_is_unconfirmed(bus: Bus) -> None:
    a = bus.client(reconnect=False)
    a.register("a")
    bus.run_chart("sink", "sink", SILENT)
    a.wait_for("sink")
    bus.kill_hub()
    seq = a.send("a", "sink", "LATE")
    with pytest.raises(HubGone) as e:
        a.recv(10.0)
    assert ("a", "sink", "LATE", seq) in e.value.unconfirmed
    with pytest.raises(HubGone):
        a.send("a", "sink", "AGAIN")


def test_back_after_a_long_absence_what_was_written_is_reported_not_sent_again(
        bus: Bus, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Rust client's rule for a sender away 30 s or more (receivers may have forgotten
    it, and would take the message again): here the limit is shortened to 0.3 s."""
    import interstate.client

    monkeypatch.setattr(interstate.client, "RESEND_WITHIN_S", 0.3)
    a = bus.client()
    a.register("a")
    sink = bus.client()  # never reads, so never acknowledges
    sink.register("sink")
    a.wait_for("sink")
    written = a.send("a", "sink", "WRITTEN")
    a.ping()  # the hub has read it
    bus.kill_hub()
    time.sleep(0.5)
    bus.start_hub()
    with pytest.raises(DeliveryError) as e:
        a.recv(20.0)
    assert (e.value.reason, e.value.seq) == ("disconnected", written)
    assert a.reconnects == 1 and a.unacknowledged == 0


def test_a_machine_follows_another_and_handles_its_coming_and_going(bus: Bus) -> None:
    c = bus.client()
    m = Machine(c, "follower")
    m.follow("light")
    seen: List[str] = []

    @m.on("xstate.machine.up")
    def up(ev: Event) -> None:
        seen.append("up " + ev.data()["machine"])

    @m.on("xstate.machine.down")
    def down(ev: Event) -> None:
        seen.append("down " + ev.data()["machine"])
        m.stop()

    light = bus.run_chart("light", "light", SILENT.replace("silent", "light"))
    c.wait_for("light")
    light.kill()
    m.run(timeout=20.0)
    assert seen == ["up light", "down light"]


def test_interstate_stats_hears_a_python_process(bus: Bus) -> None:
    c = bus.client()
    c.register("py-stats")
    p = bus.spawn("stats", [bus.bin, "stats", "--json"])
    # The client answers the hub's stats request while it is worked (it is single-threaded).
    until(lambda: p.poll() is not None, "interstate stats to finish", pump=[c])
    assert p.returncode == 0, bus.output("stats", "err")
    v = json.loads(bus.output("stats"))
    assert v["missing"] == 0, v
    pythons = [r for r in v["processes"] if r["source"]["pid"] == os.getpid()]
    assert len(pythons) == 1, v
    assert pythons[0]["metrics"] == [], pythons[0]


COUNTER = """{"id":"counter","initial":"counting","context":{"count":0,"last":0},
  "states":{"counting":{"on":{"INC":{"actions":{"type":"assign",
    "assignment":{"count":{"$add":1},"last":{"$event":"n"}}}}}}}}"""


def test_a_restarted_durable_machine_gets_again_what_it_had_not_acknowledged(bus: Bus) -> None:
    """A durable machine (journalled, `run --state-dir`) killed mid-stream: the hub holds its
    id, and this client sends its restarted process again what it had not acknowledged (on
    the id's registry entry, docs/wire.md "Durable ids"); the restored machine takes each
    event once, and nothing is reported failed."""
    chart = os.path.join(bus.dir, "counter.json")
    with open(chart, "w") as f:
        f.write(COUNTER)
    state = os.path.join(bus.dir, "state")

    def start(k: int) -> "subprocess.Popen[bytes]":
        return bus.spawn(f"counter{k}", [bus.bin, "run", "--client", "--id", "counter",
                                         "--state-dir", state, chart])

    a = bus.client()
    a.register("src")
    p = start(0)
    until(lambda: a.registry().get("counter") is not None
          and a.registry()["counter"].pid == p.pid, "the counter on the bus", pump=[a])
    sent = 0
    for cycle in range(1, 4):
        for _ in range(150):
            sent += 1
            a.send("src", "counter", "INC", {"n": sent})
            a.poll(0)
        p.kill()
        p.wait()
        for _ in range(20):  # sent while it is away: held, not failed
            sent += 1
            a.send("src", "counter", "INC", {"n": sent})
        p = start(cycle)
        until(lambda: a.registry().get("counter") is not None
              and a.registry()["counter"].pid == p.pid, "the restarted counter", pump=[a])
    a.flush(timeout=20.0)  # a failure would be raised here
    assert a.recv(0.1) is None
    status = json.loads(bus.cli("status", "counter", "--json").stdout)
    assert status["context"] == {"count": sent, "last": sent}, status
