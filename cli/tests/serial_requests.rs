//! Requests over the serial bridge, with the real binaries and a pseudo-terminal:
//!
//! - `interstate hub` serves a private bus; `interstate serial-bridge --tty /dev/pts/N` joins
//!   it; `examples/serial_device.rs` plays the device on the pty's other end, with its
//!   `sensor` machine (`examples/charts/sensor.json`), which answers `READ` with `READING`
//!   sent to `{"sender": true}`;
//! - a request from Linux (`interstate request`, a JSON machine's `request`) gets the device
//!   machine's reply, relayed with its request id in both directions;
//! - a machine on the device asks a Linux machine (`ASK` makes the sensor `request` `PING`
//!   from `echo`) and gets its reply, which it passes on as `ANSWERED`;
//! - a device that dies with a request in hand (its process killed: the line hangs up), or a
//!   bridge killed with one, ends the request with exactly one `xstate.error.request`.
//!
//! The device example is found next to the binary (`<target>/<profile>/examples/
//! serial_device`): plain `cargo test` builds it; for this file alone, `cargo build
//! --example serial_device` first.

mod support;

use std::io::{BufRead, BufReader};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use interstate_platform::serial::{open_pty, PtyPair};
use support::*;

/// The device on the pty's controlling side; its stderr collected; killed when dropped.
struct Device {
    child: Child,
    err: Arc<Mutex<Vec<String>>>,
}

impl Device {
    fn start(pty: &PtyPair) -> Device {
        let bin = interstate_bin()
            .parent()
            .unwrap()
            .join("examples")
            .join("serial_device");
        assert!(
            bin.exists(),
            "{} is missing: build it with `cargo build --example serial_device`",
            bin.display()
        );
        let uart_in: OwnedFd = pty.master.try_clone().unwrap();
        let uart_out: OwnedFd = pty.master.try_clone().unwrap();
        let mut child = Command::new(bin)
            .stdin(Stdio::from(uart_in))
            .stdout(Stdio::from(uart_out))
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the device");
        let err = Arc::new(Mutex::new(Vec::new()));
        let lines = err.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        Device { child, err }
    }

    fn lines(&self) -> String {
        self.err.lock().unwrap().join("\n    ")
    }

    /// Waits until a line of the device's log contains `what`.
    fn wait_line(&self, what: &str, bus: &Bus) {
        let end = Instant::now() + STEP_LIMIT;
        while !self.err.lock().unwrap().iter().any(|l| l.contains(what)) {
            assert!(
                Instant::now() < end,
                "the device never logged '{what}':\n    {}{}",
                self.lines(),
                bus.dump()
            );
            std::thread::sleep(POLL);
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A hub, a bridge on a fresh pty, and the device on its other end, once the device's
/// `sensor` is on the bus. Only the device holds the pty's controlling side: when it dies,
/// the line hangs up. The terminal side is returned, to be kept open for the test.
fn bridged_device(test: &str) -> (Bus, P, OwnedFd, Device) {
    let mut bus = Bus::new(test);
    bus.start_hub();
    let pty = open_pty().expect("a pseudo-terminal pair");
    let tty: PathBuf = pty.path.clone();
    let bridge = bus.interstate(
        "serial-bridge",
        &["serial-bridge", "--tty", tty.to_str().unwrap()],
    );
    let device = Device::start(&pty);
    let PtyPair { master, slave, .. } = pty;
    drop(master);
    bus.wait_line(bridge, true, "the sensor's registration", STEP_LIMIT, |l| {
        l.contains("registered 'sensor'")
    });
    (bus, bridge, slave, device)
}

/// Asks the sensor on the device on start; ends in `answered` on the reply, logging its data.
const ASKER: &str = r#"{"id":"asker","initial":"asking","states":{
  "asking":{"entry":{"type":"request","to":"sensor","event":"READ","data":{"n":7},"timeout":20000},
    "on":{"READING":{"target":"answered","actions":{"type":"log","message":"answered"}},
          "xstate.error.request":{"target":"failed","actions":{"type":"log","message":"failed"}}}},
  "answered":{},"failed":{}}}"#;

#[test]
fn a_request_from_linux_gets_the_reply_of_a_machine_on_the_device() {
    let (mut bus, _bridge, _pty, device) = bridged_device("serial-req");

    // The CLI's request: the device's sensor sends READING to {"sender": true}, with the
    // request's data, and the reply comes back as the answer to the request.
    let (status, out, err) = bus.run(&["request", "sensor", "READ", "--data", r#"{"n":1}"#]);
    assert!(
        status.success(),
        "{err}\n  device:\n    {}{}",
        device.lines(),
        bus.dump()
    );
    assert_eq!(out, r#"{"n":1}"#);
    let (status, out, err) = bus.run(&["request", "sensor", "READ", "--json"]);
    assert!(status.success(), "{err}");
    let v = parse_json(&out).expect("a JSON line");
    assert_eq!(
        (v["event"].as_str(), v["from"].as_str()),
        (Some("READING"), Some("sensor")),
        "{out}"
    );

    // A JSON machine's `request` built-in, in another process, gets it the same way.
    let asker = bus.write("asker.json", ASKER);
    let p = bus.start_machine(&asker, "asker");
    let line = bus.wait_line(p, false, "the requester's outcome", STEP_LIMIT, |l| {
        l.contains("answered") || l.contains("failed")
    });
    assert_eq!(line, "[asker] answered", "{}", bus.dump());
    device.wait_line("sent READING to asker", &bus);
}

/// The device takes the request (`HOLD` sends the sensor to `busy`, where it never answers)
/// and its process is killed: the line hangs up, the bridge ends the session, and the
/// sensor's id stays on the bus, held by the bridge for the device's next session. Nobody
/// can answer any more: the request ends once, by its timeout.
#[test]
fn a_device_killed_with_a_request_in_hand_ends_it_once_by_timeout() {
    let (mut bus, bridge, _pty, mut device) = bridged_device("serial-req-dev");
    let req = bus.interstate("request", &["request", "sensor", "HOLD", "--timeout", "3s"]);
    device.wait_line("got HOLD from", &bus);
    device.kill();
    let status = bus.wait_exit(req, STEP_LIMIT);
    let err = bus.err(req).join("\n");
    assert_eq!(status.code(), Some(2), "{err}{}", bus.dump());
    assert!(err.contains("failed: timeout"), "{err}");
    assert_eq!(err.matches("failed:").count(), 1, "{err}");
    bus.wait_line(bridge, true, "the hang-up", STEP_LIMIT, |l| {
        l.contains("the line hung up")
    });
}

/// The device takes the request and the bridge process is killed: the sensor's id leaves
/// the registry with the bridge's link, and the request ends once, as `target-gone`, long
/// before its timeout.
#[test]
fn a_bridge_killed_with_a_request_in_hand_ends_it_once_as_target_gone() {
    let (mut bus, bridge, _pty, device) = bridged_device("serial-req-bridge");
    let req = bus.interstate(
        "request",
        &["request", "sensor", "HOLD", "--timeout", "60s"],
    );
    device.wait_line("got HOLD from", &bus);
    bus.kill(bridge);
    let status = bus.wait_exit(req, STEP_LIMIT);
    let err = bus.err(req).join("\n");
    assert_eq!(status.code(), Some(2), "{err}{}", bus.dump());
    assert!(err.contains("failed: target-gone"), "{err}");
    assert_eq!(err.matches("failed:").count(), 1, "{err}");
}

/// Answers PING with PONG to the sender, forwarding the event's data; logs what the sensor
/// passes on from its own request.
const ECHO: &str = r#"{"id":"echo","initial":"ready","states":{"ready":{"on":{
  "PING":{"actions":{"type":"sendTo","to":{"sender":true},"event":"PONG","data":{"from":"event"}}},
  "ANSWERED":{"actions":{"type":"log","message":"answered"}},
  "UNANSWERED":{"actions":{"type":"log","message":"unanswered"}}}}}}"#;

/// The other way round: the device's sensor makes a request (its machine keeps the
/// request's table) and the Linux machine's reply, relayed down the line with the request's
/// id, settles it.
#[test]
fn a_request_from_the_device_gets_the_reply_of_a_linux_machine() {
    let (mut bus, _bridge, _pty, device) = bridged_device("serial-req-up");
    let echo = bus.write("echo.json", ECHO);
    let p = bus.start_machine(&echo, "echo");
    let (status, _, err) = bus.run(&["send", "sensor", "ASK"]);
    assert!(status.success(), "{err}");
    let line = bus.wait_line(p, false, "the sensor's outcome", STEP_LIMIT, |l| {
        l.contains("answered")
    });
    assert_eq!(
        line,
        "[echo] answered",
        "\n  device:\n    {}{}",
        device.lines(),
        bus.dump()
    );
    // The reply came down the line as the answer to the sensor's request.
    device.wait_line("got PONG from echo for sensor (Reply(", &bus);
}
