//! The Python package of `python/` (the `interstate` module, imported from `python/src`, so
//! that no install is needed) against the real hub and a Rust node.
//!
//! - its encoder and decoder agree byte for byte with the Rust ones;
//! - `python/examples/echo_machine.py` joins a bus served by `interstate hub`, answers events sent from a
//!   Rust port with `X_ACK` and the same payload, acknowledges what it received, and leaves
//!   on `STOP`; it answers a Rust port's request with the reply to it;
//! - the client's `request` gets a Rust JSON machine's reply, and fails with the reason
//!   (`unknown-target`, `timeout`) when none can come.
//!
//! Skipped, with a note, when `python3` is not on PATH. Every test owns a [`Guard`] whose Drop
//! kills every child still running, prints their output if the test failed, and removes the
//! test's private bus directory.

use std::fs::File;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use interstate::bus::{Node, NodeConfig, Role, DELIVERY_ERROR_EVENT};
use interstate::core::wire::{
    Deliver, DeliveryFailed, FailReason, Frame, Hello, RegistryEntry, TopicStatus, MAGIC,
    PROTOCOL_VERSION,
};
use interstate::core::TransportKind;

const LIMIT: Duration = Duration::from_secs(20);

fn python_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../python/src")
}

fn python_examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../python/examples")
}

/// Whether a usable `python3` (3.8 or newer) is on PATH; prints a note when not.
fn have_python() -> bool {
    let ok = Command::new("python3")
        .args([
            "-c",
            "import sys; sys.exit(0 if sys.version_info >= (3, 8) else 1)",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("note: python3 (3.8+) is not on PATH; skipping the Python client test");
    }
    ok
}

/// A private bus directory and the children running on it.
struct Guard {
    dir: PathBuf,
    bus: String,
    children: Vec<(String, Child)>,
}

impl Guard {
    fn new(tag: &str) -> Guard {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let unique = format!("{}-{n}-{nanos}", std::process::id());
        let dir = std::env::temp_dir().join(format!("interstate-py-{unique}"));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .expect("create the test's bus directory");
        Guard {
            dir,
            bus: format!("{tag}-{n}"),
            children: Vec::new(),
        }
    }

    /// Starts a child with the bus environment, its output going to files in the directory.
    fn spawn(&mut self, label: &str, cmd: &mut Command) -> usize {
        let out = File::create(self.dir.join(format!("{label}.out"))).expect("stdout file");
        let err = File::create(self.dir.join(format!("{label}.err"))).expect("stderr file");
        let child = cmd
            .env("INTERSTATE_DIR", &self.dir)
            .env("INTERSTATE_BUS", &self.bus)
            .env("PYTHONPATH", python_src())
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {label}: {e}"));
        self.children.push((label.to_string(), child));
        self.children.len() - 1
    }

    fn output(&self, label: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{label}.out"))).unwrap_or_default()
    }

    fn socket(&self) -> PathBuf {
        self.dir.join(format!("{}.sock", self.bus))
    }

    /// Starts `interstate hub` on the bus and waits until it accepts connections.
    fn start_hub(&mut self) {
        self.spawn(
            "hub",
            Command::new(env!("CARGO_BIN_EXE_interstate")).args([
                "hub",
                "--bus",
                &self.bus.clone(),
            ]),
        );
        let path = self.socket();
        let start = Instant::now();
        while std::os::unix::net::UnixStream::connect(&path).is_err() {
            assert!(
                start.elapsed() < LIMIT,
                "the hub did not start serving {}",
                path.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn node(&self) -> Node {
        let mut config = NodeConfig::new(&self.bus);
        config.dir = self.dir.clone();
        config.role = Role::Client;
        Node::new(config).expect("a Rust node joins the hub")
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        for (label, child) in &mut self.children {
            if child.try_wait().ok().flatten().is_none() {
                let _ = child.kill();
            }
            let _ = child.wait();
            if std::thread::panicking() {
                for ext in ["out", "err"] {
                    let text = std::fs::read_to_string(self.dir.join(format!("{label}.{ext}")))
                        .unwrap_or_default();
                    eprintln!("----- {label} std{ext} -----\n{text}");
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn encode(frame: &Frame<'_>) -> String {
    let mut buf = vec![0u8; 4096];
    let n = frame.encode(&mut buf).expect("encode");
    hex(&buf[..n])
}

#[test]
fn python_encoder_agrees_with_the_rust_one() {
    if !have_python() {
        return;
    }
    let payload: Vec<u8> = (0..=255u8).collect();
    let frames = [
        Frame::Hello(Hello {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
            max_frame: 65536,
            pid: 4_000_000,
            executable: "naïve.py",
        }),
        Frame::Deliver(Deliver {
            from: "a",
            to: "b",
            event: "E",
            payload: &payload,
            seq: u64::MAX,
            correlation: Default::default(),
        }),
        Frame::RegistryEntry(RegistryEntry {
            machine: "x",
            pid: 1,
            uid: u32::MAX,
            executable: "",
            transport: TransportKind::Serial,
            since_ms: 0,
            durable: true,
        }),
        Frame::Ack {
            from: "b",
            to: "a",
            seq: 1 << 63,
        },
        Frame::Subscribe {
            registry: false,
            monitor: true,
        },
        Frame::DeliveryFailed(DeliveryFailed {
            from: "a",
            to: "b",
            event: "E",
            seq: 7,
            reason: FailReason::TargetStopped,
            detail: "eventless loop in state 'é'",
        }),
        Frame::Stopped {
            machine: "b",
            error: "eventless loop in state 'é'",
        },
        Frame::NodeFailure(DeliveryFailed {
            from: "a",
            to: "b",
            event: "xstate.x",
            seq: 300,
            reason: FailReason::Reserved,
            detail: "",
        }),
        Frame::TopicSubscribe {
            machine: "py",
            filter: "plant/+/alarm",
        },
        Frame::TopicResult {
            machine: "py",
            filter: "+",
            status: TopicStatus::HubFull,
        },
        Frame::TopicEntry {
            machine: "m",
            filter: "a/#",
            on: false,
        },
        Frame::TopicSnapshotEnd,
        Frame::Deliver(Deliver {
            from: "ui",
            to: "worker",
            event: "WORK",
            payload: b"{}",
            seq: 5,
            correlation: interstate::core::Correlation::Request(u32::MAX),
        }),
        Frame::Deliver(Deliver {
            from: "worker",
            to: "ui",
            event: "DONE",
            payload: b"",
            seq: 1 << 40,
            correlation: interstate::core::Correlation::Reply(7),
        }),
        Frame::StatsRequest { link: 300 },
        Frame::Stats {
            link: 0,
            expect: 2,
            report: b"{\"a\":1}",
        },
    ];
    let script = r#"
import sys
sys.path.insert(0, sys.argv[1])
from interstate.wire import *
frames = [
    Hello(MAGIC, PROTOCOL_VERSION, 65536, 4000000, "naïve.py"),
    Deliver("a", "b", "E", bytes(range(256)), 2**64 - 1),
    RegistryEntry("x", 1, 2**32 - 1, "", "Serial", 0, True),
    Ack("b", "a", 2**63),
    Subscribe(False, True),
    DeliveryFailed("a", "b", "E", 7, "TargetStopped", "eventless loop in state 'é'"),
    Stopped("b", "eventless loop in state 'é'"),
    NodeFailure("a", "b", "xstate.x", 300, "Reserved"),
    TopicSubscribe("py", "plant/+/alarm"),
    TopicResult("py", "+", "HubFull"),
    TopicEntry("m", "a/#", False),
    TopicSnapshotEnd(),
    Deliver("ui", "worker", "WORK", b"{}", 5, ("Request", 2**32 - 1)),
    Deliver("worker", "ui", "DONE", b"", 2**40, ("Reply", 7)),
    StatsRequest(300),
    Stats(0, 2, b'{"a":1}'),
]
for f in frames:
    body = encode_frame(f)
    assert decode_frame(body) == f, f
    print(" ".join(f"{b:02x}" for b in with_prefix(body)))
"#;
    let out = Command::new("python3")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .arg("-c")
        .arg(script)
        .arg(python_src())
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8 output");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), frames.len(), "{text}");
    for (frame, line) in frames.iter().zip(lines) {
        assert_eq!(line, encode(frame), "{frame:?}");
    }
}

#[test]
fn echo_machine_answers_a_rust_port_over_the_hub() {
    if !have_python() {
        return;
    }
    let mut g = Guard::new("py-echo");
    g.start_hub();
    let script = python_examples().join("echo_machine.py");
    let echo = g.spawn(
        "echo",
        Command::new("python3")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .arg(&script)
            .args(["--bus", &g.bus.clone()]),
    );

    let mut node = g.node();
    let port = "rust-port";
    node.open_port(port).expect("open a port");
    let joined = node
        .run_until(LIMIT, |n| n.registry().contains("py-echo"))
        .unwrap();
    assert!(joined, "py-echo did not join the bus");
    let info = node.registry().get("py-echo").unwrap();
    assert_eq!(info.executable, "echo_machine.py");
    assert_eq!(info.transport, TransportKind::UnixSocket);

    let binary: Vec<u8> = (0..=255u8).collect();
    let big: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    let sent: Vec<(&str, &[u8])> = vec![
        ("HELLO", br#"{"n":1,"text":"h\u00e9llo"}"#),
        ("BINARY", &binary),
        ("EMPTY", b""),
        ("BIG", &big),
        ("HELLO", br#"{"n":2}"#),
    ];
    for (event, payload) in &sent {
        node.send_from_port(port, "py-echo", event, payload)
            .expect("send to py-echo");
    }
    let mut replies = Vec::new();
    let done = node
        .run_until(LIMIT, |n| {
            while let Some(m) = n.recv_port() {
                replies.push(m);
            }
            replies.len() >= sent.len()
        })
        .unwrap();
    assert!(
        done,
        "only {} of {} replies came back: {replies:?}",
        replies.len(),
        sent.len()
    );
    for ((event, payload), reply) in sent.iter().zip(&replies) {
        assert_eq!(reply.port, port);
        assert_eq!(reply.from, "py-echo");
        assert_eq!(reply.event, format!("{event}_ACK"));
        assert_eq!(&reply.payload[..], *payload, "payload of {event}_ACK");
    }

    // A request: py-echo's answer is its reply, matched by the request's id.
    let id = node
        .request_from_port(
            port,
            "py-echo",
            "ASK",
            b"[5]",
            interstate::Duration::from_millis(20_000),
        )
        .expect("request py-echo");
    let mut answer = None;
    let done = node
        .run_until(LIMIT, |n| {
            answer = answer.take().or_else(|| n.recv_port());
            answer.is_some()
        })
        .unwrap();
    assert!(done, "no answer to the request");
    let answer = answer.unwrap();
    assert_eq!(
        (
            answer.event.as_str(),
            &answer.payload[..],
            answer.correlation
        ),
        (
            "ASK_ACK",
            &b"[5]"[..],
            interstate::core::Correlation::Reply(id.0)
        )
    );

    node.send_from_port(port, "py-echo", "STOP", b"")
        .expect("send STOP");
    let start = Instant::now();
    let status = loop {
        node.run_once(Some(Duration::from_millis(20))).unwrap();
        if let Some(s) = g.children[echo].1.try_wait().unwrap() {
            break s;
        }
        assert!(start.elapsed() < LIMIT, "py-echo did not stop");
    };
    assert!(status.success(), "py-echo exited with {status}");
    let left = node
        .run_until(LIMIT, |n| !n.registry().contains("py-echo"))
        .unwrap();
    assert!(left, "py-echo is still in the registry after it stopped");
    // py-echo acknowledged everything it received, STOP included: nothing comes back failed.
    node.run_for(Duration::from_millis(200)).unwrap();
    let mut late = Vec::new();
    while let Some(m) = node.recv_port() {
        late.push(m);
    }
    let late: Vec<String> = late
        .iter()
        .map(|m| format!("{} {}", m.event, String::from_utf8_lossy(&m.payload)))
        .collect();
    assert!(
        late.iter().all(|m| !m.starts_with(DELIVERY_ERROR_EVENT)),
        "messages py-echo received were reported as failed: {late:#?}"
    );
    assert!(late.is_empty(), "unexpected messages: {late:#?}");
    let out = g.output("echo");
    assert!(
        out.contains("py-echo: STOP from rust-port after 6 replies"),
        "{out}"
    );
}

/// The Python client's `request`: a Rust JSON machine's reply; `unknown-target` for a machine
/// nobody registered; `timeout` for one that never answers.
#[test]
fn python_requests_get_a_rust_machines_reply_or_the_reason() {
    if !have_python() {
        return;
    }
    let mut g = Guard::new("py-req");
    g.start_hub();
    let mut node = g.node();
    let echo = r#"{"id":"echo","initial":"s","states":{"s":{"on":{"PING":{"actions":
      {"type":"sendTo","to":{"sender":true},"event":"PONG","data":{"from":"event"}}}}}}}"#;
    interstate::bus::add_json_machine(&mut node, "echo", echo, interstate::Behaviors::new())
        .expect("add echo");
    let silent = r#"{"id":"silent","initial":"s","states":{"s":{}}}"#;
    interstate::bus::add_json_machine(&mut node, "silent", silent, interstate::Behaviors::new())
        .expect("add silent");
    let script = r#"
import sys
from interstate import *
with Client.connect(bus=sys.argv[1], executable="py-req", wait=10.0) as c:
    c.register("py-req")
    r = c.request("py-req", "echo", "PING", b'{"n":3}', timeout=15.0)
    print("reply", r.event, r.sender, r.payload.decode(), flush=True)
    for target, t in (("nobody", 15.0), ("silent", 0.3)):
        try:
            c.request("py-req", target, "PING", b"", timeout=t)
            print("no error", target, flush=True)
        except RequestFailed as e:
            print("failed", target, e.reason, flush=True)
"#;
    let py = g.spawn(
        "py-req",
        Command::new("python3")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .arg("-c")
            .arg(script)
            .arg(g.bus.clone()),
    );
    let start = Instant::now();
    let status = loop {
        node.run_once(Some(Duration::from_millis(10))).unwrap();
        if let Some(s) = g.children[py].1.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "py-req did not finish"
        );
    };
    let out = g.output("py-req");
    assert!(status.success(), "py-req exited with {status}: {out}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec![
            r#"reply PONG echo {"n":3}"#,
            "failed nobody unknown-target",
            "failed silent timeout",
        ],
        "{out}"
    );
}

#[test]
fn a_python_subscriber_gets_each_rust_publication_once() {
    if !have_python() {
        return;
    }
    let mut g = Guard::new("py-sub");
    g.start_hub();
    let script = r#"
import sys
from interstate import *
with Client.connect(bus=sys.argv[1], executable="py-sub") as c:
    c.register("py-sub")
    c.subscribe("py-sub", "plant/#")
    try:
        c.subscribe("py-sub", "plant/#/x")
    except TopicRefused as e:
        print("refused:", e, flush=True)
    got = 0
    while got < 2:
        f = c.recv(timeout=10.0)
        if f is None:
            break
        if isinstance(f, Message):
            print(f"{f.topic} {f.event} {f.payload.decode()} {f.sender}", flush=True)
            got += 1
"#;
    let py = g.spawn(
        "sub",
        Command::new("python3")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .arg("-c")
            .arg(script)
            .arg(g.bus.clone()),
    );
    let mut node = g.node();
    node.open_port("rust-pub").expect("open a port");
    let subscribed = node
        .run_until(LIMIT, |n| n.subscribers("plant/1/alarm") == ["py-sub"])
        .unwrap();
    assert!(subscribed, "py-sub did not subscribe");
    for n in 1..=2 {
        let data = format!("{{\"n\":{n}}}");
        let reached = node
            .publish_from_port("rust-pub", "plant/1/alarm", "ALARM", data.as_bytes())
            .expect("publish");
        assert_eq!(reached, 1);
    }
    let acknowledged = node.run_until(LIMIT, |n| n.unacknowledged() == 0).unwrap();
    assert!(acknowledged, "py-sub did not acknowledge the publications");
    let start = Instant::now();
    while g.children[py].1.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < LIMIT, "py-sub did not end");
        node.run_once(Some(Duration::from_millis(20))).unwrap();
    }
    let out = g.output("sub");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "refused: the hub refused the subscription of 'py-sub' to 'plant/#/x': BadFilter",
            r#"plant/1/alarm ALARM {"n":1} rust-pub"#,
            r#"plant/1/alarm ALARM {"n":2} rust-pub"#,
        ],
        "{out}"
    );
}
