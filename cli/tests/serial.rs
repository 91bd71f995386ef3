//! A device on a serial line, end to end, over a pseudo-terminal pair:
//!
//! - this test process serves a private bus (a `Node` in `Role::Hub`, private
//!   `INTERSTATE_DIR`) and hosts the Linux machine `controller`;
//! - `interstate serial-bridge --tty /dev/pts/N` joins that bus as an ordinary client;
//! - `examples/serial_device.rs` plays the device on the pty's other end: the `lamp` chart in
//!   a `Machine`, the line driven by `interstate-core`'s `DeviceLink` only, and line noise
//!   (corrupted and truncated frames) injected in both directions.
//!
//! The example is found next to the binary (`<target>/<profile>/examples/serial_device`):
//! plain `cargo test` builds it; for this test alone, `cargo build --example serial_device`
//! first.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use interstate::bus::{Node, NodeConfig, Role};
use interstate::core::serial::encode_frame;
use interstate::core::wire::{Deliver, Frame};
use interstate::core::NoBehavior;
use interstate_platform::serial::open_pty;

/// Removes the directory when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!(
            "interstate-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process whose stderr is collected line by line; killed when dropped.
struct Proc {
    child: Child,
    err: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    fn spawn(mut cmd: Command) -> Proc {
        cmd.stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn");
        let err = Arc::new(Mutex::new(Vec::new()));
        let lines = err.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        Proc { child, err }
    }

    fn lines(&self) -> Vec<String> {
        self.err.lock().unwrap().clone()
    }

    /// SIGTERM, then wait (a bridge prints its counters when it stops).
    fn terminate(&mut self) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                // Let the reader thread take the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn interstate_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_interstate"))
}

fn device_bin() -> PathBuf {
    let bin = interstate_bin()
        .parent()
        .unwrap()
        .join("examples")
        .join("serial_device");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build --example serial_device` (plain `cargo test` \
         builds every example)",
        bin.display()
    );
    bin
}

const CONTROLLER: &str = r#"{
  "id": "controller",
  "initial": "idle",
  "states": {
    "idle": { "on": { "GO": { "target": "waiting", "actions": { "type": "sendTo", "to": "lamp", "event": "TOGGLE" } } } },
    "waiting": { "on": { "LAMP_ON": "lit" } },
    "lit": { "on": { "LAMP_OFF": "rested" } },
    "rested": { "on": { "GO": { "target": "waiting2", "actions": { "type": "sendTo", "to": "lamp", "event": "TOGGLE" } } } },
    "waiting2": { "on": { "LAMP_ON": "lit2" } },
    "lit2": { "on": { "LAMP_OFF": "done" } },
    "done": { "type": "final" }
  }
}"#;

fn value(node: &Node, id: &str) -> String {
    let mut s = String::new();
    node.machine(id).unwrap().write_value(&mut s).unwrap();
    s
}

fn dump(procs: &[(&str, &Proc)]) -> String {
    let mut s = String::new();
    for (name, p) in procs {
        s += &format!("\n--- {name}:\n  {}", p.lines().join("\n  "));
    }
    s
}

/// The number after `key=` in the last line starting with `prefix`.
fn last_count(lines: &[String], prefix: &str, key: &str) -> Option<u64> {
    lines
        .iter()
        .rev()
        .filter(|l| l.starts_with(prefix))
        .find_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
        })
}

#[test]
fn a_device_on_a_pty_exchanges_events_with_a_linux_machine_through_line_noise() {
    let dir = TempDir::new("serial");
    let bus = "serial-e2e";
    let mut config = NodeConfig::new(bus);
    config.dir = dir.0.clone();
    config.role = Role::Hub;
    let mut node = Node::new(config).expect("serve the bus");
    node.set_logger(|_| {});
    let compiled = interstate::compile_str(CONTROLLER).unwrap();
    let chart = Box::leak(Box::new(compiled)).chart();
    node.add_machine("controller", chart, Box::new(NoBehavior))
        .unwrap();

    let pty = open_pty().expect("a pseudo-terminal pair");
    let mut bridge_cmd = Command::new(interstate_bin());
    bridge_cmd
        .args(["serial-bridge", "--tty"])
        .arg(&pty.path)
        .args(["--bus", bus])
        .env("INTERSTATE_DIR", &dir.0)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let mut bridge = Proc::spawn(bridge_cmd);

    // The device's UART is the pty's controlling side, as its stdin and stdout.
    let uart_in: OwnedFd = pty.master.try_clone().unwrap();
    let uart_out: OwnedFd = pty.master.try_clone().unwrap();
    let mut device_cmd = Command::new(device_bin());
    device_cmd
        .args(["--noise", "3"])
        .stdin(Stdio::from(uart_in))
        .stdout(Stdio::from(uart_out));
    let mut device = Proc::spawn(device_cmd);

    let ok = node
        .run_until(Duration::from_secs(20), |n| {
            n.registry().get("lamp").is_some()
        })
        .unwrap();
    assert!(
        ok,
        "the device's machine never appeared on the bus{}",
        dump(&[("bridge", &bridge), ("device", &device)])
    );

    // Round one: controller -> TOGGLE -> lamp (on the device) -> LAMP_ON, then LAMP_OFF after
    // the lamp's 300 ms timer.
    node.send_local("controller", "GO", b"").unwrap();
    let ok = node
        .run_until(Duration::from_secs(10), |n| {
            value(n, "controller") == "\"rested\""
        })
        .unwrap();
    assert!(
        ok,
        "round one did not complete: controller is {}{}",
        value(&node, "controller"),
        dump(&[("bridge", &bridge), ("device", &device)])
    );

    // Line noise towards the device: a corrupted frame and a truncated one, written into the
    // line behind the bridge's back. The device drops both and reads the next frame whole.
    let mut frame = vec![0u8; 256];
    let n = encode_frame(
        &Frame::Deliver(Deliver {
            from: "controller",
            to: "lamp",
            event: "TOGGLE",
            payload: b"",
            seq: 1,
            correlation: Default::default(),
        }),
        &mut frame,
    )
    .unwrap();
    let frame = &frame[..n];
    let mut corrupted = frame.to_vec();
    corrupted[n / 2] ^= 0x20;
    let mut line = std::fs::File::from(pty.slave.try_clone().unwrap());
    line.write_all(&corrupted).unwrap();
    line.write_all(&frame[..n / 2]).unwrap();
    line.flush().unwrap();

    // Round two, through whatever the noise left on the line.
    node.send_local("controller", "GO", b"").unwrap();
    let ok = node
        .run_until(Duration::from_secs(10), |n| {
            n.machine("controller").unwrap().is_done()
        })
        .unwrap();
    assert!(
        ok,
        "round two did not complete: controller is {}{}",
        value(&node, "controller"),
        dump(&[("bridge", &bridge), ("device", &device)])
    );

    // The device dropped and counted the two damaged frames.
    let deadline = Instant::now() + Duration::from_secs(5);
    let device_dropped = loop {
        let d = last_count(&device.lines(), "device: stats", "dropped").unwrap_or(0);
        if d >= 2 || Instant::now() > deadline {
            break d;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        device_dropped,
        2,
        "the device should have dropped exactly the two damaged frames{}",
        dump(&[("device", &device)])
    );

    // The bridge dropped and counted the device's noise: two damaged frames per injection.
    bridge.terminate();
    let lines = bridge.lines();
    let summary = lines
        .iter()
        .find(|l| l.contains("serial bridge stopped"))
        .unwrap_or_else(|| panic!("no summary from the bridge{}", dump(&[("bridge", &bridge)])));
    assert!(
        summary.contains("dropped 6 "),
        "the bridge should have dropped the 6 damaged frames the device injected: {summary}{}",
        dump(&[("bridge", &bridge), ("device", &device)])
    );
    assert!(
        summary.contains("4 messages from the device, 2 to it"),
        "{summary}"
    );
    device.terminate();
    if std::env::var_os("SERIAL_TEST_LOG").is_some() {
        eprintln!("{}", dump(&[("bridge", &bridge), ("device", &device)]));
    }
    drop(node);
}
