//! `interstate bench`: bus latency and throughput between machines in two processes, each
//! beside a raw baseline measured in the same run.
//!
//! Unix transport, three paths:
//! - **raw**: two processes, a Unix socket pair; ping-pong of 64-byte messages with blocking
//!   `read`/`write`, and a one-way stream of length-prefixed 64-byte messages written in
//!   batches. No event loop, no framing logic, no statecharts: the floor.
//! - **direct**: this process serves the bus (hub role, a port as the sender) and a child
//!   process hosts a machine that answers `PING` with `PONG` and counts `DATA`.
//! - **raw relay**: the raw ping-pong and stream through a third process forwarding bytes with
//!   blocking reads and writes: the floor for any path through a hub process.
//! - **hub**: the same two endpoints as clients of a separate `interstate hub` process.
//!
//! Each message crosses the real path: encode, outstanding buffer, link queue, socket,
//! decode, duplicate check, the machine's step and action, acknowledgement.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration as StdDuration, Instant as StdInstant};

use serde_json::{json, Value};

use crate::bus::{Node, NodeConfig, Role};
use crate::Behaviors;

/// Benchmark settings.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Round trips measured (after a warm-up of a tenth as many).
    pub round_trips: usize,
    /// Messages in the one-way throughput run.
    pub messages: usize,
    /// Payload bytes per message.
    pub payload: usize,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            round_trips: 20_000,
            messages: 1_000_000,
            payload: 64,
        }
    }
}

/// Latency and throughput of one path.
#[derive(Clone, Debug, Default)]
pub struct PathResult {
    /// Round-trip latency percentiles in microseconds: p50, p99, p99.9.
    pub rtt_us: [f64; 3],
    /// One-way messages per second.
    pub throughput: f64,
}

impl PathResult {
    fn json(&self) -> Value {
        json!({"rtt_p50_us": round2(self.rtt_us[0]), "rtt_p99_us": round2(self.rtt_us[1]), "rtt_p999_us": round2(self.rtt_us[2]), "msgs_per_s": self.throughput.round()})
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn percentiles(mut ns: Vec<u64>) -> [f64; 3] {
    ns.sort_unstable();
    let at = |q: f64| {
        ns.get(((ns.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    [at(0.50), at(0.99), at(0.999)]
}

const ECHO_CHART: &str = r#"{
  "id": "bench-echo",
  "initial": "on",
  "states": {
    "on": { "on": { "PING": { "actions": "pong" }, "DATA": { "actions": "count" }, "EXPECT": { "actions": "expect" }, "QUIT": "off" } },
    "off": { "type": "final" }
  }
}"#;

/// Kills a child on drop.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_self(args: &[&str], env: &[(&str, &str)]) -> Result<ChildGuard, String> {
    let exe = std::env::current_exe().map_err(|e| format!("finding this executable: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.args(args).stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn()
        .map(ChildGuard)
        .map_err(|e| format!("starting a benchmark peer: {e}"))
}

// ----- raw baseline -----

fn raw(opts: &BenchOptions, dir: &std::path::Path) -> Result<PathResult, String> {
    let path = dir.join("raw.sock");
    let listener = UnixListener::bind(&path).map_err(|e| format!("raw baseline socket: {e}"))?;
    let _peer = spawn_self(
        &[
            "bench-peer",
            "raw",
            path.to_str().unwrap_or_default(),
            &opts.payload.to_string(),
        ],
        &[],
    )?;
    let (s, _) = listener.accept().map_err(|e| e.to_string())?;
    let r = drive_raw(opts, s);
    let _ = std::fs::remove_file(&path);
    r
}

/// Ping-pong, then a one-way stream of length-prefixed messages, over a connected socket.
fn drive_raw(opts: &BenchOptions, mut s: UnixStream) -> Result<PathResult, String> {
    let msg = vec![7u8; opts.payload];
    let mut back = vec![0u8; opts.payload];
    let mut rtts = Vec::with_capacity(opts.round_trips);
    for i in 0..opts.round_trips + opts.round_trips / 10 {
        let t = StdInstant::now();
        s.write_all(&msg).map_err(|e| e.to_string())?;
        s.read_exact(&mut back).map_err(|e| e.to_string())?;
        if i >= opts.round_trips / 10 {
            rtts.push(t.elapsed().as_nanos() as u64);
        }
    }
    // One way: length-prefixed messages, 256 per write; the peer answers one byte at the end.
    s.write_all(&[0xFF]).map_err(|e| e.to_string())?;
    s.write_all(&(opts.messages as u64).to_le_bytes())
        .map_err(|e| e.to_string())?;
    let mut batch = Vec::with_capacity(256 * (4 + opts.payload));
    let t = StdInstant::now();
    let mut sent = 0;
    while sent < opts.messages {
        batch.clear();
        for _ in 0..256.min(opts.messages - sent) {
            batch.extend_from_slice(&(opts.payload as u32).to_le_bytes());
            batch.extend_from_slice(&msg);
            sent += 1;
        }
        s.write_all(&batch).map_err(|e| e.to_string())?;
    }
    let mut done = [0u8; 1];
    s.read_exact(&mut done).map_err(|e| e.to_string())?;
    let secs = t.elapsed().as_secs_f64();
    Ok(PathResult {
        rtt_us: percentiles(rtts),
        throughput: opts.messages as f64 / secs,
    })
}

fn raw_peer(path: &str, payload: usize) -> Result<(), String> {
    let mut s = UnixStream::connect(path).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; payload];
    loop {
        let mut first = [0u8; 1];
        s.read_exact(&mut first).map_err(|e| e.to_string())?;
        if first[0] == 0xFF && payload > 1 {
            // Could be a ping starting with 0xFF? Pings are all 7s, so no.
            break;
        }
        buf[0] = first[0];
        s.read_exact(&mut buf[1..]).map_err(|e| e.to_string())?;
        s.write_all(&buf).map_err(|e| e.to_string())?;
    }
    let mut n = [0u8; 8];
    s.read_exact(&mut n).map_err(|e| e.to_string())?;
    let total = u64::from_le_bytes(n) as usize * (4 + payload);
    let mut big = vec![0u8; 1 << 16];
    let mut got = 0;
    while got < total {
        let k = s.read(&mut big).map_err(|e| e.to_string())?;
        if k == 0 {
            return Err("sender closed early".into());
        }
        got += k;
    }
    s.write_all(&[1]).map_err(|e| e.to_string())
}

/// The raw baseline through a relay process: the same two endpoints with a third process
/// forwarding bytes between them with blocking reads and writes, as a hub would at best.
fn raw_relay(opts: &BenchOptions, dir: &std::path::Path) -> Result<PathResult, String> {
    let a = dir.join("relay-a.sock");
    let b = dir.join("relay-b.sock");
    let listener = UnixListener::bind(&a).map_err(|e| format!("relay baseline socket: {e}"))?;
    let (a_s, b_s) = (
        a.to_str().unwrap_or_default().to_string(),
        b.to_str().unwrap_or_default().to_string(),
    );
    let payload = opts.payload.to_string();
    let _relay = spawn_self(&["bench-peer", "relay", &a_s, &b_s, &payload], &[])?;
    let t = StdInstant::now();
    while !b.exists() {
        if t.elapsed() > StdDuration::from_secs(10) {
            return Err("the relay did not start".into());
        }
        std::thread::sleep(StdDuration::from_millis(2));
    }
    let _echo = spawn_self(&["bench-peer", "raw", &b_s, &payload], &[])?;
    let (s, _) = listener.accept().map_err(|e| e.to_string())?;
    let r = drive_raw(opts, s);
    let _ = std::fs::remove_file(&a);
    let _ = std::fs::remove_file(&b);
    r
}

fn relay_peer(a: &str, b: &str, payload: usize) -> Result<(), String> {
    let listener = UnixListener::bind(b).map_err(|e| e.to_string())?;
    let (mut to_echo, _) = listener.accept().map_err(|e| e.to_string())?;
    let mut to_sender = UnixStream::connect(a).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; payload.max(9)];
    loop {
        let mut first = [0u8; 1];
        to_sender
            .read_exact(&mut first)
            .map_err(|e| e.to_string())?;
        if first[0] == 0xFF {
            let mut n = [0u8; 8];
            to_sender.read_exact(&mut n).map_err(|e| e.to_string())?;
            to_echo.write_all(&[0xFF]).map_err(|e| e.to_string())?;
            to_echo.write_all(&n).map_err(|e| e.to_string())?;
            let mut left = u64::from_le_bytes(n) as usize * (4 + payload);
            let mut big = vec![0u8; 1 << 16];
            while left > 0 {
                let k = to_sender
                    .read(&mut big[..left.min(1 << 16)])
                    .map_err(|e| e.to_string())?;
                if k == 0 {
                    return Err("sender closed early".into());
                }
                to_echo.write_all(&big[..k]).map_err(|e| e.to_string())?;
                left -= k;
            }
            let mut done = [0u8; 1];
            to_echo.read_exact(&mut done).map_err(|e| e.to_string())?;
            return to_sender.write_all(&done).map_err(|e| e.to_string());
        }
        buf[0] = first[0];
        to_sender
            .read_exact(&mut buf[1..payload])
            .map_err(|e| e.to_string())?;
        to_echo
            .write_all(&buf[..payload])
            .map_err(|e| e.to_string())?;
        to_echo
            .read_exact(&mut buf[..payload])
            .map_err(|e| e.to_string())?;
        to_sender
            .write_all(&buf[..payload])
            .map_err(|e| e.to_string())?;
    }
}

// ----- the bus -----

fn node_config(bus: &str, dir: &std::path::Path, role: Role) -> NodeConfig {
    let mut c = NodeConfig::new(bus);
    c.dir = dir.to_path_buf();
    c.role = role;
    c.link_queue = 4 << 20;
    c.reconnect_buffer = 8 << 20;
    c
}

fn bus_path(
    opts: &BenchOptions,
    dir: &std::path::Path,
    via_hub: bool,
) -> Result<PathResult, String> {
    let bus = if via_hub { "bench-hub" } else { "bench-direct" };
    let dir_s = dir.to_str().unwrap_or_default().to_string();
    let _hub = if via_hub {
        let g = spawn_self(&["hub", "--bus", bus], &[("INTERSTATE_DIR", &dir_s)])?;
        let sock = crate::bus::busdir::socket_path(dir, bus);
        let t = StdInstant::now();
        while UnixStream::connect(&sock).is_err() {
            if t.elapsed() > StdDuration::from_secs(10) {
                return Err("the benchmark hub did not start".into());
            }
            std::thread::sleep(StdDuration::from_millis(5));
        }
        Some(g)
    } else {
        None
    };
    let mut node = Node::new(node_config(
        bus,
        dir,
        if via_hub { Role::Client } else { Role::Hub },
    ))
    .map_err(|e| e.to_string())?;
    node.set_logger(|_| {});
    node.open_port("bench-a").map_err(|e| e.to_string())?;
    let _peer = spawn_self(&["bench-peer", "node", bus, &dir_s], &[])?;
    let joined = node
        .run_until(StdDuration::from_secs(10), |n| {
            n.registry().contains("bench-echo")
        })
        .map_err(|e| e.to_string())?;
    if !joined {
        return Err("the benchmark peer did not join the bus".into());
    }
    let payload = vec![7u8; opts.payload];
    let mut rtts = Vec::with_capacity(opts.round_trips);
    for i in 0..opts.round_trips + opts.round_trips / 10 {
        let t = StdInstant::now();
        node.send_from_port("bench-a", "bench-echo", "PING", &payload)
            .map_err(|e| e.to_string())?;
        node.flush();
        loop {
            if let Some(m) = node.recv_port() {
                if m.event == "PONG" {
                    break;
                }
            }
            node.run_once(Some(StdDuration::from_millis(100)))
                .map_err(|e| e.to_string())?;
        }
        if i >= opts.round_trips / 10 {
            rtts.push(t.elapsed().as_nanos() as u64);
        }
    }
    let count = opts.messages.to_string().into_bytes();
    node.send_from_port("bench-a", "bench-echo", "EXPECT", &count)
        .map_err(|e| e.to_string())?;
    let t = StdInstant::now();
    let mut sent = 0;
    while sent < opts.messages {
        for _ in 0..1024.min(opts.messages - sent) {
            node.send_from_port("bench-a", "bench-echo", "DATA", &payload)
                .map_err(|e| e.to_string())?;
            sent += 1;
        }
        node.run_once(Some(StdDuration::ZERO))
            .map_err(|e| e.to_string())?;
    }
    let mut done = false;
    let deadline = StdInstant::now() + StdDuration::from_secs(120);
    while !done && StdInstant::now() < deadline {
        node.run_once(Some(StdDuration::from_millis(50)))
            .map_err(|e| e.to_string())?;
        while let Some(m) = node.recv_port() {
            if m.event == "DONE" {
                done = true;
            }
        }
    }
    if !done {
        return Err("the peer did not confirm the throughput run within 120 s".into());
    }
    let secs = t.elapsed().as_secs_f64();
    node.send_from_port("bench-a", "bench-echo", "QUIT", &[])
        .map_err(|e| e.to_string())?;
    node.run_for(StdDuration::from_millis(50))
        .map_err(|e| e.to_string())?;
    Ok(PathResult {
        rtt_us: percentiles(rtts),
        throughput: opts.messages as f64 / secs,
    })
}

fn node_peer(bus: &str, dir: &str) -> Result<(), String> {
    use std::cell::Cell;
    use std::rc::Rc;
    let mut node = Node::new(node_config(bus, std::path::Path::new(dir), Role::Client))
        .map_err(|e| e.to_string())?;
    node.set_logger(|_| {});
    let count = Rc::new(Cell::new(0usize));
    let expect = Rc::new(Cell::new(usize::MAX));
    let (c1, c2, e1, e2) = (count.clone(), count.clone(), expect.clone(), expect.clone());
    let behaviors = Behaviors::new()
        .action("pong", |cx| {
            let payload = cx.payload();
            let _ = cx.send("bench-a", "PONG", payload);
        })
        .action("expect", move |cx| {
            e1.set(
                std::str::from_utf8(cx.payload())
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0),
            );
            c1.set(0);
        })
        .action("count", move |cx| {
            c2.set(c2.get() + 1);
            if c2.get() == e2.get() {
                let _ = cx.send("bench-a", "DONE", &[]);
            }
        });
    crate::bus::add_json_machine(&mut node, "bench-echo", ECHO_CHART, behaviors)
        .map_err(|e| e.to_string())?;
    let stopped = node
        .run_until(StdDuration::from_secs(600), |n| {
            n.machine("bench-echo").is_none_or(|m| m.is_done())
        })
        .map_err(|e| e.to_string())?;
    if stopped {
        Ok(())
    } else {
        Err("benchmark peer timed out".into())
    }
}

/// Runs a benchmark peer (the hidden `interstate bench-peer` command).
pub fn peer(args: &[String]) -> Result<(), String> {
    match args.first().map(String::as_str) {
        Some("raw") => raw_peer(
            args.get(1).ok_or("missing socket path")?,
            args.get(2).and_then(|p| p.parse().ok()).unwrap_or(64),
        ),
        Some("relay") => relay_peer(
            args.get(1).ok_or("missing socket path")?,
            args.get(2).ok_or("missing socket path")?,
            args.get(3).and_then(|p| p.parse().ok()).unwrap_or(64),
        ),
        Some("node") => node_peer(
            args.get(1).ok_or("missing bus")?,
            args.get(2).ok_or("missing dir")?,
        ),
        _ => Err("unknown benchmark peer".into()),
    }
}

/// Runs the Unix-socket benchmark and returns its report as JSON.
pub fn run_unix(opts: &BenchOptions) -> Result<Value, String> {
    let dir = std::env::temp_dir().join(format!("interstate-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let result = (|| {
        let raw = raw(opts, &dir)?;
        let relay = raw_relay(opts, &dir)?;
        let direct = bus_path(opts, &dir, false)?;
        let hub = bus_path(opts, &dir, true)?;
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| {
                c.lines()
                    .find(|l| l.starts_with("model name"))
                    .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
            })
            .unwrap_or_default();
        Ok(json!({
            "transport": "unix",
            "payload_bytes": opts.payload,
            "round_trips": opts.round_trips,
            "messages": opts.messages,
            "machine": {"cpu": cpu, "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)},
            "raw": raw.json(),
            "raw_relay": relay.json(),
            "direct": direct.json(),
            "hub": hub.json(),
            "ratios": {
                "direct_rtt_p50_vs_raw": round2(direct.rtt_us[0] / raw.rtt_us[0]),
                "hub_rtt_p50_vs_raw": round2(hub.rtt_us[0] / raw.rtt_us[0]),
                "hub_rtt_p50_vs_raw_relay": round2(hub.rtt_us[0] / relay.rtt_us[0]),
                "hub_throughput_vs_raw_relay": round2(hub.throughput / relay.throughput),
                "direct_throughput_vs_raw": round2(direct.throughput / raw.throughput),
                "hub_throughput_vs_raw": round2(hub.throughput / raw.throughput),
            }
        }))
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Prints a report as a table.
pub fn print_table(v: &Value) {
    println!(
        "interstate bench: transport {}, {}-byte payloads, {} round trips, {} messages one way",
        v["transport"], v["payload_bytes"], v["round_trips"], v["messages"]
    );
    println!(
        "machine: {} ({} cores)",
        v["machine"]["cpu"].as_str().unwrap_or("?"),
        v["machine"]["cores"]
    );
    println!(
        "{:<10} {:>12} {:>12} {:>12} {:>16}",
        "path", "rtt p50 us", "rtt p99 us", "rtt p99.9 us", "msgs/s one way"
    );
    for p in ["raw", "direct", "raw_relay", "hub"] {
        let r = &v[p];
        println!(
            "{:<10} {:>12} {:>12} {:>12} {:>16}",
            p,
            r["rtt_p50_us"],
            r["rtt_p99_us"],
            r["rtt_p999_us"],
            r["msgs_per_s"]
                .as_f64()
                .map(|x| format!("{:.0}", x))
                .unwrap_or_default()
        );
    }
    let q = &v["ratios"];
    println!(
        "ratios: rtt p50 direct/raw {}, hub/raw_relay {}; throughput direct/raw {}, hub/raw_relay {}",
        q["direct_rtt_p50_vs_raw"],
        q["hub_rtt_p50_vs_raw_relay"],
        q["direct_throughput_vs_raw"],
        q["hub_throughput_vs_raw_relay"]
    );
}
