//! A serial bridge that cannot get a message to its device tells the sender: the message
//! is refused through the hub and comes back to the sender as `xstate.error.delivery` (with
//! the reason `disconnected` when the device is away and the hold queue is full,
//! `too-large` when the device's frames are smaller), and a held message stays
//! unacknowledged until it went down the line.
//!
//! The test plays the device on a pseudo-terminal with the core's frames; the hub, with the
//! sender's port, runs on a thread of its own; a private bus directory.

use std::io::Write;
use std::sync::mpsc;
use std::time::Duration;

use interstate_core::serial::encode_frame;
use interstate_core::wire::{Frame, Hello, MAGIC, PROTOCOL_VERSION};
use interstate_platform::serial::{open_pty, BridgeConfig, SerialBridge};
use interstate_platform::{Node, NodeConfig, Role, DELIVERY_ERROR_EVENT};

fn config(dir: &std::path::Path, role: Role) -> NodeConfig {
    let mut c = NodeConfig::new("serial-fail");
    c.dir = dir.to_path_buf();
    c.role = role;
    c.transport = interstate_platform::node::Transport::UnixSocket;
    c
}

/// Writes `frame` to the device end of the line.
fn device_says(line: &mut std::fs::File, frame: &Frame<'_>) {
    let mut buf = [0u8; 512];
    let n = encode_frame(frame, &mut buf).unwrap();
    line.write_all(&buf[..n]).unwrap();
}

fn hello(max_frame: u32) -> Frame<'static> {
    Frame::Hello(Hello {
        magic: MAGIC,
        version: PROTOCOL_VERSION,
        max_frame,
        pid: std::process::id(),
        executable: "test-device",
    })
}

/// Drives `bridge` until `done` or 20 s (a limit for a broken build, not a timing goal).
fn drive(bridge: &mut SerialBridge, mut done: impl FnMut(&mut SerialBridge) -> bool) {
    let end = std::time::Instant::now() + Duration::from_secs(20);
    while !done(bridge) {
        assert!(
            std::time::Instant::now() < end,
            "gave up waiting: {:?} {:?}",
            bridge.stats(),
            bridge.node().stats()
        );
        bridge.run_once(Some(Duration::from_millis(5))).unwrap();
    }
}

/// What the hub thread is told to do next.
enum Step {
    /// Send `n` messages of `size` bytes to the device's machine and collect the failures
    /// that come back, until `failures` arrived.
    Send {
        n: u8,
        size: usize,
        failures: usize,
    },
    Stop,
}

#[test]
fn undeliverable_messages_come_back_to_their_sender() {
    let dir = std::env::temp_dir().join(format!("interstate-serial-fail-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (ready_tx, ready_rx) = mpsc::channel();
    let (step_tx, step_rx) = mpsc::channel::<Step>();
    let (report_tx, report_rx) = mpsc::channel::<(Vec<String>, usize)>();
    let hub_dir = dir.clone();
    let hub = std::thread::spawn(move || {
        let mut hub = Node::new(config(&hub_dir, Role::Hub)).unwrap();
        hub.open_port("sender").unwrap();
        ready_tx.send(()).unwrap();
        let mut sent = 0u8;
        loop {
            let step = loop {
                if let Ok(s) = step_rx.try_recv() {
                    break s;
                }
                hub.run_once(Some(Duration::from_millis(5))).unwrap();
            };
            let Step::Send { n, size, failures } = step else {
                break;
            };
            for _ in 0..n {
                let payload = vec![sent; size];
                sent += 1;
                hub.send_from_port("sender", "dev", "DATA", &payload)
                    .unwrap();
            }
            let mut got = Vec::new();
            hub.run_until(Duration::from_secs(20), |n| {
                while let Some(m) = n.recv_port() {
                    if m.event == DELIVERY_ERROR_EVENT {
                        got.push(String::from_utf8(m.payload).unwrap());
                    }
                }
                got.len() >= failures
            })
            .unwrap();
            // Let acknowledgements that are due arrive before counting what is open.
            hub.run_for(Duration::from_millis(100)).unwrap();
            report_tx.send((got, hub.unacknowledged())).unwrap();
        }
    });
    ready_rx.recv().unwrap();

    let pty = open_pty().unwrap();
    let mut line = std::fs::File::from(pty.master.try_clone().unwrap());
    let node = Node::new(config(&dir, Role::Client)).unwrap();
    let mut bridge = SerialBridge::new(
        node,
        &pty.path,
        None,
        BridgeConfig {
            hold: 2,
            ..BridgeConfig::default()
        },
    )
    .unwrap();
    bridge.set_logger(|l| eprintln!("{l}"));
    // The device connects, registers `dev`, then leaves: the port stays open on the bus.
    device_says(&mut line, &hello(256));
    device_says(&mut line, &Frame::Register { machine: "dev" });
    drive(&mut bridge, |b| b.node().registry().contains("dev"));
    device_says(
        &mut line,
        &Frame::Goodbye {
            reason: "going away",
        },
    );
    drive(&mut bridge, |b| !b.device_connected());

    // Four messages while it is away: two are held, two refused (hold queue full).
    step_tx
        .send(Step::Send {
            n: 4,
            size: 8,
            failures: 2,
        })
        .unwrap();
    let mut report = None;
    drive(&mut bridge, |_| {
        report = report_rx.try_recv().ok();
        report.is_some()
    });
    let (failures, unacknowledged) = report.unwrap();
    assert_eq!(failures.len(), 2, "{failures:?}");
    for f in &failures {
        assert!(f.contains(r#""to":"dev","event":"DATA""#), "{f}");
        assert!(f.contains(r#""reason":"disconnected""#), "{f}");
        assert!(f.contains("hold queue is full"), "{f}");
    }
    assert_eq!(
        unacknowledged, 2,
        "the two held messages are not delivered yet"
    );
    assert_eq!(bridge.stats().failed_back, 2);

    // The device comes back with the smallest frames: the held messages go down the line
    // (and are acknowledged), a message larger than its frames is refused as too large.
    device_says(&mut line, &hello(96));
    device_says(&mut line, &Frame::Register { machine: "dev" });
    drive(&mut bridge, |b| b.stats().to_device == 2);
    step_tx
        .send(Step::Send {
            n: 1,
            size: 200,
            failures: 1,
        })
        .unwrap();
    let mut report = None;
    drive(&mut bridge, |_| {
        report = report_rx.try_recv().ok();
        report.is_some()
    });
    let (failures, unacknowledged) = report.unwrap();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(
        failures[0].contains(r#""reason":"too-large""#),
        "{}",
        failures[0]
    );
    assert_eq!(unacknowledged, 0, "everything is settled");
    assert_eq!(bridge.stats().to_device, 2);

    step_tx.send(Step::Stop).unwrap();
    hub.join().unwrap();
    drop(bridge);
    let _ = std::fs::remove_dir_all(&dir);
}
