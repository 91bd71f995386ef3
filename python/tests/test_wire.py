"""What needs no hub: frames against docs/wire.md's worked examples, the bus directory rules,
topic matching and payload encoding. (cli/tests/python_client.rs checks the encoder against
the Rust one byte for byte.)"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from interstate import BadBusSetting, busdir
from interstate.errors import ProtocolError
from interstate.items import encode_payload
from interstate.pubsub import matches
from interstate.wire import (
    Deliver, Hello, Unknown, decode_frame, encode_frame, split_publication, with_prefix,
)

WIRE_MD = Path(__file__).resolve().parents[2] / "docs" / "wire.md"


def test_every_frame_in_the_wire_spec_decodes_and_encodes_back() -> None:
    text = WIRE_MD.read_text(encoding="utf-8")
    dumps = re.findall(r"\| `((?:[0-9a-f]{2} )+[0-9a-f]{2})` \|$", text, re.M)
    dumps += re.findall(r"```text\n((?:[0-9a-f]{2} )+[0-9a-f]{2})\n```", text)
    assert len(dumps) >= 30, "the wire spec's examples were not found"
    for dump in dumps:
        raw = bytes.fromhex(dump.replace(" ", ""))
        body = raw[4:]
        assert int.from_bytes(raw[:4], "little") == len(body), dump
        frame = decode_frame(body)
        assert not isinstance(frame, Unknown), dump
        assert with_prefix(encode_frame(frame)) == raw, dump


def test_the_hello_example_field_by_field() -> None:
    f = decode_frame(bytes.fromhex("00c9a6d19204028080049221") + b"\x0fecho_machine.py")
    assert f == Hello(0x42545349, 2, 65536, 4242, "echo_machine.py")


def test_malformed_bodies_are_refused_and_new_kinds_skipped() -> None:
    for body in [b"", b"\x06\x01", b"\x0d\x80", b"\x08\x02\x00", b"\x0b\x00", b"\x1c" + encode_frame(
            Deliver("a", "b", "E", b"", 1))[1:] + b"\x00"]:
        with pytest.raises(ProtocolError):
            decode_frame(body)
    assert decode_frame(b"\x7f\x01\x02") == Unknown(0x7F, b"\x7f\x01\x02")


def test_publications_split_at_the_first_zero() -> None:
    assert split_publication("plant/1\0ALARM") == ("plant/1", "ALARM")
    assert split_publication("ALARM") == (None, "ALARM")


@pytest.mark.parametrize("flt,topic,ok", [
    ("plant/#", "plant", True), ("plant/#", "plant/1/alarm", True), ("#", "a/b", True),
    ("plant/+/alarm", "plant/1/alarm", True), ("plant/+/alarm", "plant/1/2/alarm", False),
    ("+", "", True), ("a/+", "a/", True), ("+/x", "$SYS/x", False), ("#", "$SYS", False),
    ("a/b", "a/b/c", False),
])
def test_topic_filters_match_as_mqtt(flt: str, topic: str, ok: bool) -> None:
    assert matches(flt, topic) is ok


def test_payloads() -> None:
    assert encode_payload({"n": 1}) == b'{"n":1}'
    assert encode_payload("h\u00e9") == "h\u00e9".encode()
    assert encode_payload(None) == b"" and encode_payload(b"\x00") == b"\x00"


def test_the_bus_directory_is_resolved_as_the_rust_side_does(monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:
    monkeypatch.delenv("INTERSTATE_DIR", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.delenv("INTERSTATE_BUS", raising=False)
    assert busdir.socket_path() == f"/tmp/interstate-{os.getuid()}/default.sock"
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/7")
    monkeypatch.setenv("INTERSTATE_BUS", "plant")
    assert busdir.socket_path() == "/run/user/7/interstate/plant.sock"
    monkeypatch.setenv("INTERSTATE_DIR", str(tmp_path))
    assert busdir.socket_path("b.1") == f"{tmp_path}/b.1.sock"
    monkeypatch.setenv("INTERSTATE_DIR", "relative/dir")
    with pytest.raises(BadBusSetting, match="absolute path"):
        busdir.bus_dir()
    for bad in [".hidden", "a/b", "x" * 65, "caf\u00e9"]:
        with pytest.raises(BadBusSetting):
            busdir.check_bus_name(bad)
    os.chmod(tmp_path, 0o777)
    with pytest.raises(BadBusSetting, match="chmod 700"):
        busdir.check_dir(str(tmp_path))


def test_a_durable_senders_numbers_carry_over_to_its_new_process() -> None:
    from interstate.delivery import Received
    r = Received()
    for seq in range(1, 11):
        assert r.accept(Deliver("src", "dst", "E", b"", seq), 41)
    r.taken("dst", "src", 41, 10)
    r.carry_over("src", 41, 77)
    assert not r.accept(Deliver("src", "dst", "E", b"", 9), 77), "taken before: a duplicate"
    assert r.accept(Deliver("src", "dst", "E", b"", 11), 77)
    # Another sender's state, and a new process of a non-durable one, are untouched.
    assert r.accept(Deliver("other", "dst", "E", b"", 1), 77)
