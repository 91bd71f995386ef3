//! `bus_probe`: a TEST HELPER for the process tests (`cli/tests/bus.rs`, `cli/tests/hostile.rs`,
//! `cli/tests/guarantees.rs`, `cli/tests/load.rs`, `cli/tests/soak.rs`), not an example to learn the API
//! from.
//!
//! The bus integration tests spawn it as a real process next to the `interstate` binary, to
//! count messages, to push load through a hub, and to misbehave on the wire in ways a well
//! written client never does. Every subcommand takes `--bus NAME`; the bus directory comes
//! from `$INTERSTATE_DIR` (as for every node). Output is JSON, one object per line, on
//! stdout; diagnostics go to stderr.
//!
//! ```text
//! Node options, for every mode that runs a node: --idle-timeout-ms, --link-queue BYTES,
//! --reconnect-buffer BYTES, --max-frame BYTES, --keepalive-ms, --machines-per-link N.
//!
//! bus_probe hub                  Serve the bus (a node in the hub role, with the node
//!                                options) until SIGTERM; its log lines are on stderr.
//!
//! bus_probe sink ID [--expect N] [--timeout-ms T] [--linger-ms L] [--hub] [--hold]
//!     A node (client role unless --hub) with a port ID. Counts events, checks each sender's
//!     order by the sequence number in the payload (`{"n": k}`), prints
//!     {"ready":true,...} once registered, then a final tally
//!     {"received","distinct","duplicates","out_of_order","max_n",...}
//!     when it has N distinct messages (after L more ms), on timeout (default 30 s), or on
//!     SIGTERM/SIGINT. It then sends a TALLY event (the tally as payload) to every sender.
//!     Exit code 0 when the expectation was met (or none was given), 1 otherwise.
//!     --hold: never read the port (its node acknowledges nothing: an unread message is not
//!     acknowledged).
//!
//! bus_probe source ID TARGET N [--rate PER_S] [--timeout-ms T] [--linger-ms L]
//!                              [--progress-every K] [--payload-bytes B] [--hub]
//!     A node with a port ID that sends N events `E` with payload {"n": k}, k = 0..N-1, to
//!     TARGET (as fast as the bus takes them, or PER_S a second), driving the node loop.
//!     Counts `xstate.error.delivery` replies. Prints {"progress":k,...} every K sent (default
//!     1000), {"sending_done":true,...} after the last one, and keeps driving the loop (so
//!     buffered messages get flushed or retransmitted) until the target's TALLY arrives,
//!     every message was reported failed, L ms passed after the last send (only with
//!     --linger-ms), or the timeout (default 30 s). Then prints the final line
//!     {"sent":..,"failed":..,"errors":..,"reasons":{..},"acknowledged":bool,"tally":..,
//!     "unacknowledged":..}; while waiting, {"waiting":true,...} every second.
//!
//! bus_probe soak-sink ID --log FILE
//! bus_probe soak-source ID --targets A,B,.. --total N --log FILE [--rate PER_S]
//!     The soak test's workers (cli/tests/soak.rs): a statechart that appends every event's
//!     payload to FILE during its step (before the node acknowledges it), and a port that
//!     logs `S n` before sending `E<n>`, `F n reason` per failure and `D` when everything is
//!     settled, resuming after its last `S` when restarted.
//!
//! bus_probe load ID TARGET [--duration-ms D] [--rate PER_S] [--payload B] [--go-file F]
//!     The load test's client (cli/tests/load.rs): sends to TARGET as fast as backpressure allows
//!     (or PER_S a second) for D ms, starting when F exists, while receiving; prints
//!     {"sent","received","failed","latency_us":{"p50","p90","p99","max"},...}.
//!
//! bus_probe raw-script STEP...   Speak the wire by hand, step by step: hello,
//!                                register:ID, unregister:ID, deliver:FROM:TO:EVENT:SEQ,
//!                                ack:FROM:TO:SEQ, ping, goodbye, bytes:HEX, shutdown,
//!                                wait:KIND, read:MS, hold:MS[:PING_MS] (read nothing);
//!                                --exit: leave at once after the last step.
//! bus_probe raw-flood N [--hold-ms H]
//!                                Open N connections, say nothing, count the Rejects.
//!
//! bus_probe raw-connect          Hello, then print the answer (Welcome or Reject).
//! bus_probe raw-garbage          A frame with a valid length and an undecodable body.
//! bus_probe raw-oversize         A length prefix larger than the largest frame.
//! bus_probe raw-truncated [--after-hello]
//!                                Part of a Hello frame, then close the writing half (with
//!                                --after-hello: after a complete handshake).
//! bus_probe raw-no-hello         Connect and send nothing.
//! bus_probe raw-spoof ID VICTIM_ID TARGET
//!     Handshake, register ID, then a Deliver to TARGET claiming to come from VICTIM_ID.
//!
//!     The raw modes speak the wire format directly (`interstate::core::wire::Frame`) and
//!     take --timeout-ms (default 10 s): how long to wait for the hub. They print each frame
//!     the hub sent as {"mode":..,"got":{"kind":..,...}} and finally
//!     {"mode":..,"closed":bool,"frames":[kinds],...}: `closed` says whether the hub closed
//!     the connection before the timeout.
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use interstate::bus::{busdir, Node, NodeConfig, PortMessage, Role, DELIVERY_ERROR_EVENT};
use interstate::core::wire::{
    split_frame, Deliver, Frame, Hello, DEFAULT_MAX_FRAME, MAGIC, PROTOCOL_VERSION,
};
use serde_json::{json, Value};

/// Parsed command line: positional arguments and `--name value` options.
struct Args {
    positional: Vec<String>,
    options: HashMap<String, String>,
    flags: HashSet<String>,
}

impl Args {
    fn parse() -> Result<Args, String> {
        const FLAGS: &[&str] = &["--hub", "--after-hello", "--hold", "--exit"];
        let mut positional = Vec::new();
        let mut options = HashMap::new();
        let mut flags = HashSet::new();
        let mut it = std::env::args().skip(1);
        while let Some(a) = it.next() {
            if FLAGS.contains(&a.as_str()) {
                flags.insert(a);
            } else if let Some(name) = a.strip_prefix("--") {
                let v = it
                    .next()
                    .ok_or_else(|| format!("option --{name} needs a value"))?;
                options.insert(name.to_string(), v);
            } else {
                positional.push(a);
            }
        }
        Ok(Args {
            positional,
            options,
            flags,
        })
    }

    fn pos(&self, i: usize, what: &str) -> Result<&str, String> {
        self.positional
            .get(i)
            .map(String::as_str)
            .ok_or_else(|| format!("missing argument: {what}"))
    }

    fn num(&self, name: &str) -> Result<Option<u64>, String> {
        self.options
            .get(name)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| format!("--{name} takes a whole number, not '{v}'"))
            })
            .transpose()
    }

    fn bus(&self) -> Result<String, String> {
        self.options
            .get("bus")
            .cloned()
            .ok_or_else(|| "--bus NAME is required".to_string())
    }

    fn timeout(&self, default_ms: u64) -> Result<Duration, String> {
        Ok(Duration::from_millis(
            self.num("timeout-ms")?.unwrap_or(default_ms),
        ))
    }

    fn node(&self) -> Result<Node, String> {
        let role = if self.flags.contains("--hub") {
            Role::Hub
        } else {
            Role::Client
        };
        self.node_as(role)
    }

    /// A node in `role`, with the settings the options give: `--idle-timeout-ms`,
    /// `--link-queue BYTES`, `--reconnect-buffer BYTES`, `--max-frame BYTES`, `--keepalive-ms`,
    /// `--machines-per-link N`.
    fn node_as(&self, role: Role) -> Result<Node, String> {
        let mut config = NodeConfig::new(&self.bus()?);
        config.role = role;
        if let Some(ms) = self.num("idle-timeout-ms")? {
            config.idle_timeout = interstate::Duration::from_millis(ms);
        }
        if let Some(b) = self.num("link-queue")? {
            config.link_queue = b as usize;
        }
        if let Some(b) = self.num("reconnect-buffer")? {
            config.reconnect_buffer = b as usize;
        }
        if let Some(b) = self.num("max-frame")? {
            config.max_frame = b as u32;
        }
        if let Some(n) = self.num("machines-per-link")? {
            config.machines_per_link = n as usize;
        }
        if let Some(ms) = self.num("keepalive-ms")? {
            config.keepalive = interstate::Duration::from_millis(ms);
        }
        Node::new(config).map_err(|e| e.to_string())
    }
}

fn emit(v: Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

/// Set by SIGINT/SIGTERM, so that a killed probe still prints its summary.
fn stop_flag() -> Result<Arc<AtomicBool>, String> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, flag.clone())
            .map_err(|e| format!("installing a signal handler: {e}"))?;
    }
    Ok(flag)
}

// ---------------------------------------------------------------------------------------------
// sink

#[derive(Default)]
struct SenderState {
    seen: HashSet<u64>,
    high: Option<u64>,
    count: u64,
}

#[derive(Default)]
struct Tally {
    received: u64,
    distinct: u64,
    duplicates: u64,
    out_of_order: u64,
    max_n: Option<u64>,
    bad_payload: u64,
    delivery_errors: u64,
    events: BTreeMap<String, u64>,
    senders: BTreeMap<String, SenderState>,
}

impl Tally {
    fn record(&mut self, m: &PortMessage) {
        if m.event == DELIVERY_ERROR_EVENT {
            self.delivery_errors += 1;
            return;
        }
        self.received += 1;
        *self.events.entry(m.event.clone()).or_default() += 1;
        let s = self.senders.entry(m.from.clone()).or_default();
        s.count += 1;
        let n = serde_json::from_slice::<Value>(&m.payload)
            .ok()
            .and_then(|v| v.get("n").and_then(Value::as_u64));
        let Some(n) = n else {
            self.bad_payload += 1;
            return;
        };
        if !s.seen.insert(n) {
            self.duplicates += 1;
            return;
        }
        self.distinct += 1;
        if s.high.is_some_and(|h| n < h) {
            self.out_of_order += 1;
        }
        s.high = Some(s.high.map_or(n, |h| h.max(n)));
        self.max_n = Some(self.max_n.map_or(n, |h| h.max(n)));
    }

    fn json(&self, id: &str, reason: &str) -> Value {
        let by_sender: BTreeMap<&str, u64> = self
            .senders
            .iter()
            .map(|(k, s)| (k.as_str(), s.count))
            .collect();
        json!({
            "id": id,
            "received": self.received,
            "distinct": self.distinct,
            "duplicates": self.duplicates,
            "out_of_order": self.out_of_order,
            "max_n": self.max_n,
            "bad_payload": self.bad_payload,
            "delivery_errors": self.delivery_errors,
            "events": self.events,
            "by_sender": by_sender,
            "reason": reason,
        })
    }
}

fn sink(args: &Args) -> Result<ExitCode, String> {
    let id = args.pos(1, "ID")?.to_string();
    let expect = args.num("expect")?;
    let timeout = args.timeout(30_000)?;
    let linger = Duration::from_millis(args.num("linger-ms")?.unwrap_or(0));
    let hold = args.flags.contains("--hold");
    let stop = stop_flag()?;
    let start = Instant::now();
    let mut node = args.node()?;
    node.open_port(&id).map_err(|e| e.to_string())?;
    emit(json!({"ready": true, "id": id, "pid": std::process::id(), "hub": node.is_hub()}));
    let mut tally = Tally::default();
    let mut reached: Option<Instant> = None;
    let reason = loop {
        if stop.load(Ordering::Relaxed) {
            break "signal";
        }
        let now = Instant::now();
        if reached.is_some_and(|r| now >= r + linger) {
            break "expected";
        }
        if now >= start + timeout {
            break "timeout";
        }
        node.run_once(Some(Duration::from_millis(20)))
            .map_err(|e| e.to_string())?;
        // --hold: the messages stay in the port's queue, unread and unacknowledged (an
        // application that never takes what arrives).
        while let Some(m) = (!hold).then(|| node.recv_port()).flatten() {
            tally.record(&m);
        }
        if reached.is_none() && expect.is_some_and(|n| tally.distinct >= n) {
            reached = Some(Instant::now());
        }
    };
    let out = tally.json(&id, reason);
    emit(out.clone());
    // Tell the senders, so that they can stop waiting.
    let body = out.to_string().into_bytes();
    let senders: Vec<String> = tally.senders.keys().cloned().collect();
    for s in &senders {
        if let Err(e) = node.send_from_port(&id, s, "TALLY", &body) {
            eprintln!("bus_probe: could not send the tally to '{s}': {e}");
        }
    }
    if !senders.is_empty() {
        let _ = node.run_for(Duration::from_millis(200));
    }
    let met = expect.is_none_or(|n| tally.distinct >= n);
    Ok(if met {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

// ---------------------------------------------------------------------------------------------
// source

fn source(args: &Args) -> Result<ExitCode, String> {
    let id = args.pos(1, "ID")?.to_string();
    let target = args.pos(2, "TARGET")?.to_string();
    let n: u64 = args
        .pos(3, "N")?
        .parse()
        .map_err(|_| "N must be a whole number".to_string())?;
    let rate = args.num("rate")?.filter(|&r| r > 0);
    let timeout = args.timeout(30_000)?;
    let linger = args.num("linger-ms")?.map(Duration::from_millis);
    let every = args.num("progress-every")?.unwrap_or(1000).max(1);
    // --payload-bytes B: pad each payload to about B bytes.
    let pad = match args.num("payload-bytes")? {
        Some(b) if b > 16 => format!(",\"pad\":\"{}\"", ".".repeat(b as usize - 16)),
        _ => String::new(),
    };
    let stop = stop_flag()?;
    let start = Instant::now();
    let mut node = args.node()?;
    node.open_port(&id).map_err(|e| e.to_string())?;
    emit(json!({"ready": true, "id": id, "pid": std::process::id()}));

    let mut sent = 0u64;
    let mut attempted = 0u64;
    let mut failed = 0u64;
    let mut errors = 0u64;
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    let mut tally: Option<Value> = None;
    let mut last_activity = Instant::now();

    let drain = |node: &mut Node,
                 failed: &mut u64,
                 reasons: &mut BTreeMap<String, u64>,
                 tally: &mut Option<Value>,
                 last: &mut Instant| {
        while let Some(m) = node.recv_port() {
            *last = Instant::now();
            if m.event == DELIVERY_ERROR_EVENT {
                *failed += 1;
                let why = serde_json::from_slice::<Value>(&m.payload)
                    .ok()
                    .and_then(|v| v.get("reason").and_then(Value::as_str).map(String::from))
                    .unwrap_or_else(|| "unknown".into());
                *reasons.entry(why).or_default() += 1;
            } else if m.event == "TALLY" && m.from == target {
                *tally = serde_json::from_slice(&m.payload).ok();
            }
        }
    };

    let mut why = "sent";
    while attempted < n {
        if stop.load(Ordering::Relaxed) {
            why = "signal";
            break;
        }
        if start.elapsed() >= timeout {
            why = "timeout";
            break;
        }
        let due = match rate {
            Some(r) => n.min((start.elapsed().as_secs_f64() * r as f64) as u64 + 1),
            None => n.min(attempted + 256),
        };
        while attempted < due {
            let payload = format!("{{\"n\":{attempted}{pad}}}");
            match node.send_from_port(&id, &target, "E", payload.as_bytes()) {
                Ok(_) => sent += 1,
                Err(e) => {
                    errors += 1;
                    eprintln!("bus_probe: sending message {attempted}: {e}");
                }
            }
            attempted += 1;
            last_activity = Instant::now();
            if attempted % every == 0 {
                emit(json!({"progress": attempted, "sent": sent, "failed": failed}));
            }
        }
        drain(
            &mut node,
            &mut failed,
            &mut reasons,
            &mut tally,
            &mut last_activity,
        );
        let wait = match rate {
            Some(r) => Duration::from_secs_f64(1.0 / r as f64).min(Duration::from_millis(20)),
            None => Duration::ZERO,
        };
        node.run_once(Some(wait)).map_err(|e| e.to_string())?;
    }
    emit(json!({"sending_done": true, "sent": sent, "failed": failed, "errors": errors}));

    // Keep the loop going: flush what is buffered, collect failures, wait for the tally.
    let mut last_status = Instant::now();
    if why == "sent" {
        why = loop {
            if last_status.elapsed() >= Duration::from_secs(1) {
                last_status = Instant::now();
                emit(
                    json!({"waiting": true, "failed": failed, "connected": node.is_connected(),
                            "unacknowledged": node.unacknowledged()}),
                );
            }
            drain(
                &mut node,
                &mut failed,
                &mut reasons,
                &mut tally,
                &mut last_activity,
            );
            if tally.is_some() {
                break "acknowledged";
            }
            if failed >= sent {
                break "all-failed";
            }
            if stop.load(Ordering::Relaxed) {
                break "signal";
            }
            if linger.is_some_and(|l| last_activity.elapsed() >= l) {
                break "linger";
            }
            if start.elapsed() >= timeout {
                break "timeout";
            }
            node.run_once(Some(Duration::from_millis(20)))
                .map_err(|e| e.to_string())?;
        };
    }
    emit(json!({
        "id": id,
        "sent": sent,
        "failed": failed,
        "errors": errors,
        "reasons": reasons,
        "acknowledged": tally.is_some(),
        "tally": tally,
        "reason": why,
        "unacknowledged": node.unacknowledged(),
        "stats": format!("{:?}", node.stats()),
    }));
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------
// raw modes

fn describe(f: &Frame<'_>) -> Value {
    let mut v = json!({ "kind": f.kind() });
    match *f {
        Frame::Welcome(w) => {
            v["link"] = json!(w.link);
            v["max_frame"] = json!(w.max_frame);
            v["hub_pid"] = json!(w.hub_pid);
        }
        Frame::Reject(r) => {
            v["code"] = json!(format!("{:?}", r.code));
            v["message"] = json!(r.message);
        }
        Frame::RegisterResult { machine, status } => {
            v["machine"] = json!(machine);
            v["status"] = json!(format!("{status:?}"));
        }
        Frame::DeliveryFailed(d) => {
            v["from"] = json!(d.from);
            v["to"] = json!(d.to);
            v["event"] = json!(d.event);
            v["seq"] = json!(d.seq);
            v["reason"] = json!(format!("{:?}", d.reason));
        }
        Frame::Deliver(d) => {
            v["from"] = json!(d.from);
            v["to"] = json!(d.to);
            v["event"] = json!(d.event);
            v["seq"] = json!(d.seq);
        }
        Frame::Goodbye { reason } => v["reason"] = json!(reason),
        _ => {}
    }
    v
}

/// A connection to the hub's socket that speaks frames by hand.
struct Raw {
    mode: String,
    stream: UnixStream,
    buf: Vec<u8>,
    frames: Vec<Value>,
    closed: bool,
    write_error: Option<String>,
    deadline: Instant,
}

impl Raw {
    fn connect(args: &Args, mode: &str) -> Result<Raw, String> {
        let path = busdir::socket_path(&busdir::default_dir(), &args.bus()?);
        let stream = UnixStream::connect(&path)
            .map_err(|e| format!("connecting to {}: {e}", path.display()))?;
        Ok(Raw {
            mode: mode.to_string(),
            stream,
            buf: Vec::new(),
            frames: Vec::new(),
            closed: false,
            write_error: None,
            deadline: Instant::now() + args.timeout(10_000)?,
        })
    }

    fn send_bytes(&mut self, bytes: &[u8]) {
        if let Err(e) = self.stream.write_all(bytes) {
            if self.write_error.is_none() {
                self.write_error = Some(e.to_string());
            }
        }
    }

    fn send(&mut self, f: &Frame<'_>) {
        let mut buf = vec![0u8; f.encoded_len()];
        match f.encode(&mut buf) {
            Ok(n) => self.send_bytes(&buf[..n]),
            Err(e) => self.write_error = Some(format!("encoding: {e}")),
        }
    }

    /// Reads frames until `done` says so for one of them (returns true), the hub closes the
    /// connection, or the deadline passes (false).
    fn read_until(&mut self, mut done: impl FnMut(&Value) -> bool) -> bool {
        let mut tmp = vec![0u8; 64 * 1024];
        loop {
            // Frames already buffered.
            while let Ok(Some((body, used))) = split_frame(&self.buf, u32::MAX) {
                let frame = match Frame::decode(body) {
                    Ok(f) => describe(&f),
                    Err(e) => json!({"kind": "undecodable", "error": e.to_string()}),
                };
                self.buf.drain(..used);
                emit(json!({"mode": self.mode, "got": frame}));
                let hit = done(&frame);
                self.frames.push(frame);
                if hit {
                    return true;
                }
            }
            if self.closed {
                return false;
            }
            let now = Instant::now();
            if now >= self.deadline {
                return false;
            }
            let wait = (self.deadline - now).max(Duration::from_millis(1));
            let _ = self.stream.set_read_timeout(Some(wait));
            match self.stream.read(&mut tmp) {
                Ok(0) => self.closed = true,
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => self.closed = true,
            }
        }
    }

    fn kinds(&self) -> Vec<Value> {
        self.frames.iter().map(|f| f["kind"].clone()).collect()
    }

    fn finish(mut self, extra: Value) -> ExitCode {
        // Whatever else the hub says before it closes (or the deadline).
        if !self.closed {
            self.read_until(|_| false);
        }
        let mut v = json!({
            "mode": self.mode,
            "closed": self.closed,
            "frames": self.kinds(),
            "leftover_bytes": self.buf.len(),
            "write_error": self.write_error,
        });
        if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
            o.extend(e);
        }
        emit(v);
        ExitCode::SUCCESS
    }
}

fn hello_frame() -> Frame<'static> {
    Frame::Hello(Hello {
        magic: MAGIC,
        version: PROTOCOL_VERSION,
        max_frame: DEFAULT_MAX_FRAME,
        pid: std::process::id(),
        executable: "bus_probe",
    })
}

fn is_kind(v: &Value, kinds: &[&str]) -> bool {
    v["kind"].as_str().is_some_and(|k| kinds.contains(&k))
}

fn raw(args: &Args, mode: &str) -> Result<ExitCode, String> {
    let mut r = Raw::connect(args, mode)?;
    match mode {
        "raw-connect" => {
            r.send(&hello_frame());
            let answered = r.read_until(|f| is_kind(f, &["welcome", "reject"]));
            if answered && r.frames.last().is_some_and(|f| is_kind(f, &["welcome"])) {
                r.send(&Frame::Goodbye {
                    reason: "bus_probe raw-connect done",
                });
            }
            Ok(r.finish(json!({})))
        }
        "raw-garbage" => {
            // A valid length prefix, then bytes that are no postcard frame.
            let mut bytes = 8u32.to_le_bytes().to_vec();
            bytes.extend_from_slice(&[0xff; 8]);
            r.send_bytes(&bytes);
            Ok(r.finish(json!({})))
        }
        "raw-oversize" => {
            let mut bytes = (DEFAULT_MAX_FRAME + 1).to_le_bytes().to_vec();
            bytes.extend_from_slice(&[0u8; 64]);
            r.send_bytes(&bytes);
            Ok(r.finish(json!({})))
        }
        "raw-truncated" => {
            if args.flags.contains("--after-hello") {
                // A complete handshake first, so that only the truncation can close the link.
                r.send(&hello_frame());
                r.read_until(|f| is_kind(f, &["welcome", "reject"]));
            }
            let h = hello_frame();
            let mut buf = vec![0u8; h.encoded_len()];
            let n = h.encode(&mut buf).map_err(|e| e.to_string())?;
            r.send_bytes(&buf[..n / 2]);
            let _ = r.stream.shutdown(std::net::Shutdown::Write);
            Ok(r.finish(json!({"sent_bytes": n / 2, "frame_bytes": n})))
        }
        "raw-no-hello" => Ok(r.finish(json!({}))),
        "raw-spoof" => {
            let id = args.pos(1, "ID")?.to_string();
            let victim = args.pos(2, "VICTIM_ID")?.to_string();
            let target = args.pos(3, "TARGET")?.to_string();
            r.send(&hello_frame());
            if !r.read_until(|f| is_kind(f, &["welcome", "reject"]))
                || !r.frames.last().is_some_and(|f| is_kind(f, &["welcome"]))
            {
                return Ok(r.finish(json!({"error": "no welcome"})));
            }
            r.send(&Frame::Register { machine: &id });
            let mut status = Value::Null;
            if r.read_until(|f| is_kind(f, &["register-result"])) {
                status = r.frames.last().map_or(Value::Null, |f| f["status"].clone());
            }
            r.send(&Frame::Deliver(Deliver {
                from: &victim,
                to: &target,
                event: "SPOOFED",
                payload: b"{\"n\":0}",
                seq: 1,
            }));
            let mut failed = Value::Null;
            if r.read_until(|f| is_kind(f, &["delivery-failed"])) {
                failed = r.frames.last().map_or(Value::Null, |f| f["reason"].clone());
            }
            r.send(&Frame::Goodbye {
                reason: "bus_probe raw-spoof done",
            });
            Ok(r.finish(json!({"register": status, "delivery_failed": failed})))
        }
        other => Err(format!("unknown mode '{other}'")),
    }
}

// ---------------------------------------------------------------------------------------------
// hub

/// `hub`: serves the bus (with the node options) until SIGTERM/SIGINT. The node's log lines
/// (one per refused connection, malformed frame, spoof, ...) go to stderr as
/// `interstate: hub: ...`.
fn hub(args: &Args) -> Result<ExitCode, String> {
    let stop = stop_flag()?;
    let mut node = args.node_as(Role::Hub)?;
    emit(json!({"ready": true, "pid": std::process::id(), "hub": true}));
    while !stop.load(Ordering::Relaxed) {
        node.run_once(Some(Duration::from_millis(100)))
            .map_err(|e| e.to_string())?;
    }
    node.shutdown();
    emit(json!({"stopped": true, "stats": format!("{:?}", node.stats())}));
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------
// soak

/// The soak sink's machine: every event runs `record`.
const SOAK_CHART: &str =
    r#"{"id":"soak","initial":"run","states":{"run":{"on":{"*":{"actions":"record"}}}}}"#;

fn append_log(path: &str) -> Result<std::fs::File, String> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("opening {path}: {e}"))
}

/// `soak-sink ID --log FILE`: a hosted statechart (not a port) whose action appends the
/// payload (`SOURCE N`) as one line to FILE, with one `write` per event, during the step. The
/// node acknowledges an event only after the step, so what the log holds is exactly what was
/// delivered before any acknowledgement left (a SIGKILL loses no logged event, and no event
/// is acknowledged unlogged). Appends `I PID` when it starts. Runs until SIGTERM.
fn soak_sink(args: &Args) -> Result<ExitCode, String> {
    use std::cell::Cell;
    use std::rc::Rc;
    let id = args.pos(1, "ID")?.to_string();
    let path = args
        .options
        .get("log")
        .cloned()
        .ok_or("--log FILE is required")?;
    let stop = stop_flag()?;
    let mut file = append_log(&path)?;
    file.write_all(format!("I {}\n", std::process::id()).as_bytes())
        .map_err(|e| e.to_string())?;
    let count = Rc::new(Cell::new(0u64));
    let seen = count.clone();
    let mut line = Vec::with_capacity(64);
    let behaviors = interstate::Behaviors::new().action("record", move |cx| {
        line.clear();
        line.extend_from_slice(cx.event().payload());
        line.push(b'\n');
        // One write: a kill leaves whole lines only.
        if file.write_all(&line).is_err() {
            std::process::abort();
        }
        seen.set(seen.get() + 1);
    });
    let mut node = args.node()?;
    interstate::bus::add_json_machine(&mut node, &id, SOAK_CHART, behaviors)
        .map_err(|e| e.to_string())?;
    emit(json!({"ready": true, "id": id, "pid": std::process::id()}));
    while !stop.load(Ordering::Relaxed) {
        node.run_once(Some(Duration::from_millis(100)))
            .map_err(|e| e.to_string())?;
    }
    emit(json!({"id": id, "recorded": count.get(), "stats": format!("{:?}", node.stats())}));
    Ok(ExitCode::SUCCESS)
}

/// `soak-source ID --targets A,B,.. --total N --log FILE [--rate PER_S] [--timeout-ms T]`:
/// a port that sends events `E<n>` with payload `ID n`, n = 0..N-1, to the targets in turn.
/// Before each send it appends `S n` to FILE (so a kill never hides a message that left);
/// each `xstate.error.delivery` becomes `F n reason`. A restarted source resumes after the
/// last `S` in its log. Once every message is acknowledged or reported failed it appends `D`
/// and exits 0 (a source that finds `D` in its log exits at once).
fn soak_source(args: &Args) -> Result<ExitCode, String> {
    let id = args.pos(1, "ID")?.to_string();
    let targets: Vec<String> = args
        .options
        .get("targets")
        .ok_or("--targets A,B,.. is required")?
        .split(',')
        .map(String::from)
        .collect();
    let total = args.num("total")?.ok_or("--total N is required")?;
    let path = args
        .options
        .get("log")
        .cloned()
        .ok_or("--log FILE is required")?;
    let rate = args.num("rate")?.filter(|&r| r > 0);
    let timeout = args.timeout(600_000)?;
    let stop = stop_flag()?;
    let start = Instant::now();

    // Resume after what an earlier incarnation logged.
    let mut next = 0u64;
    if let Ok(text) = std::fs::read_to_string(&path) {
        for l in text.lines() {
            if l == "D" {
                emit(json!({"id": id, "done_before": true}));
                return Ok(ExitCode::SUCCESS);
            }
            if let Some(n) = l.strip_prefix("S ").and_then(|n| n.parse::<u64>().ok()) {
                next = next.max(n + 1);
            }
        }
    }
    let mut log = append_log(&path)?;
    let write = |log: &mut std::fs::File, text: &str| -> Result<(), String> {
        log.write_all(text.as_bytes())
            .map_err(|e| format!("writing {path}: {e}"))
    };
    write(&mut log, &format!("I {}\n", std::process::id()))?;

    let mut node = args.node()?;
    node.open_port(&id).map_err(|e| e.to_string())?;
    emit(json!({"ready": true, "id": id, "pid": std::process::id(), "from": next}));
    let first = next;
    let mut failed = 0u64;
    let mut send_errors = 0u64;
    let drain =
        |node: &mut Node, log: &mut std::fs::File, failed: &mut u64| -> Result<(), String> {
            let mut text = String::new();
            while let Some(m) = node.recv_port() {
                if m.event != DELIVERY_ERROR_EVENT {
                    continue;
                }
                let v: Value = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
                let n = v["event"]
                    .as_str()
                    .and_then(|e| e.strip_prefix('E'))
                    .and_then(|n| n.parse::<u64>().ok());
                let reason = v["reason"].as_str().unwrap_or("unknown");
                match n {
                    Some(n) => text += &format!("F {n} {reason}\n"),
                    None => text += &format!("? {}\n", String::from_utf8_lossy(&m.payload)),
                }
                *failed += 1;
            }
            if !text.is_empty() {
                log.write_all(text.as_bytes()).map_err(|e| e.to_string())?;
            }
            Ok(())
        };
    let mut last_progress = Instant::now();
    while next < total {
        if stop.load(Ordering::Relaxed) || start.elapsed() >= timeout {
            emit(json!({"id": id, "stopped_at": next}));
            return Ok(ExitCode::FAILURE);
        }
        let due = match rate {
            Some(r) => total.min(first + (start.elapsed().as_secs_f64() * r as f64) as u64 + 1),
            None => total.min(next + 64),
        };
        while next < due {
            let target = &targets[(next % targets.len() as u64) as usize];
            write(&mut log, &format!("S {next}\n"))?;
            let payload = format!("{id} {next}");
            if let Err(e) =
                node.send_from_port(&id, target, &format!("E{next}"), payload.as_bytes())
            {
                // Not sent at all (the bus stayed full): reported to this sender, here.
                write(&mut log, &format!("F {next} send-error\n"))?;
                send_errors += 1;
                eprintln!("bus_probe: sending {next}: {e}");
            }
            next += 1;
        }
        drain(&mut node, &mut log, &mut failed)?;
        if last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            emit(
                json!({"id": id, "progress": next, "failed": failed, "unacknowledged": node.unacknowledged()}),
            );
        }
        let wait = match rate {
            Some(_) => Duration::from_millis(2),
            None => Duration::ZERO,
        };
        node.run_once(Some(wait)).map_err(|e| e.to_string())?;
    }
    // Everything acknowledged or reported failed.
    while node.unacknowledged() > 0 {
        if stop.load(Ordering::Relaxed) || start.elapsed() >= timeout {
            emit(json!({"id": id, "stopped_at": next, "unacknowledged": node.unacknowledged()}));
            return Ok(ExitCode::FAILURE);
        }
        node.run_once(Some(Duration::from_millis(20)))
            .map_err(|e| e.to_string())?;
        drain(&mut node, &mut log, &mut failed)?;
    }
    drain(&mut node, &mut log, &mut failed)?;
    write(&mut log, "D\n")?;
    emit(json!({
        "id": id, "done": true, "sent_from": first, "total": total, "failed": failed,
        "send_errors": send_errors, "stats": format!("{:?}", node.stats()),
    }));
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------
// load

fn wall_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// `load ID TARGET --duration-ms D [--rate PER_S] [--payload BYTES] [--linger-ms L]`:
/// a port that sends to TARGET as fast as backpressure allows (or PER_S a second) for D ms,
/// while counting what it receives and each message's latency (from its send to its
/// `recv_port`, by the wall clock the payload carries). Then it keeps the loop going until L
/// ms (default 2000) pass without input and its own messages are all settled, and prints
/// {"sent","received","failed","latency_us":{"p50","p99","max"},...}.
fn load(args: &Args) -> Result<ExitCode, String> {
    let id = args.pos(1, "ID")?.to_string();
    let target = args.pos(2, "TARGET")?.to_string();
    let duration = Duration::from_millis(args.num("duration-ms")?.unwrap_or(3000));
    let rate = args.num("rate")?.filter(|&r| r > 0);
    let size = args.num("payload")?.unwrap_or(32) as usize;
    let linger = Duration::from_millis(args.num("linger-ms")?.unwrap_or(2000));
    let stop = stop_flag()?;
    let mut node = args.node()?;
    node.open_port(&id).map_err(|e| e.to_string())?;
    emit(json!({"ready": true, "id": id, "pid": std::process::id()}));
    // Start together: wait for the go file, if any.
    if let Some(go) = args.options.get("go-file") {
        while !std::path::Path::new(go).exists() {
            if stop.load(Ordering::Relaxed) {
                return Ok(ExitCode::FAILURE);
            }
            node.run_once(Some(Duration::from_millis(5)))
                .map_err(|e| e.to_string())?;
        }
    }
    let mut latencies: Vec<u32> = Vec::with_capacity(1 << 20);
    let mut received = 0u64;
    let mut failed = 0u64;
    let mut sent = 0u64;
    let mut send_errors = 0u64;
    let mut payload = vec![b'.'; size.max(8)];
    let collect = |node: &mut Node, received: &mut u64, failed: &mut u64, lat: &mut Vec<u32>| {
        let now = wall_ns();
        while let Some(m) = node.recv_port() {
            if m.event == DELIVERY_ERROR_EVENT {
                *failed += 1;
            } else if m.payload.len() >= 8 {
                *received += 1;
                let t = u64::from_le_bytes(m.payload[..8].try_into().expect("8 bytes"));
                lat.push((now.saturating_sub(t) / 1000).min(u32::MAX as u64) as u32);
            }
        }
    };
    let start = Instant::now();
    while start.elapsed() < duration && !stop.load(Ordering::Relaxed) {
        let due = match rate {
            Some(r) => (start.elapsed().as_secs_f64() * r as f64) as u64 + 1,
            None => sent + 64,
        };
        while sent < due && start.elapsed() < duration {
            payload[..8].copy_from_slice(&wall_ns().to_le_bytes());
            match node.send_from_port(&id, &target, "L", &payload) {
                Ok(_) => sent += 1,
                Err(_) => send_errors += 1,
            }
        }
        collect(&mut node, &mut received, &mut failed, &mut latencies);
        let wait = if rate.is_some() {
            Duration::from_micros(500)
        } else {
            Duration::ZERO
        };
        node.run_once(Some(wait)).map_err(|e| e.to_string())?;
    }
    let send_secs = start.elapsed().as_secs_f64();
    // Settle: until quiet for `linger` with nothing of ours outstanding (or 4 lingers).
    let settle_start = Instant::now();
    let mut last = Instant::now();
    loop {
        let before = received + failed;
        node.run_once(Some(Duration::from_millis(10)))
            .map_err(|e| e.to_string())?;
        collect(&mut node, &mut received, &mut failed, &mut latencies);
        if received + failed != before {
            last = Instant::now();
        }
        if (last.elapsed() >= linger && node.unacknowledged() == 0)
            || settle_start.elapsed() >= linger * 4
            || stop.load(Ordering::Relaxed)
        {
            break;
        }
    }
    latencies.sort_unstable();
    let pct = |p: f64| -> u64 {
        if latencies.is_empty() {
            0
        } else {
            latencies[((latencies.len() - 1) as f64 * p) as usize] as u64
        }
    };
    emit(json!({
        "id": id, "sent": sent, "received": received, "failed": failed,
        "send_errors": send_errors, "send_secs": send_secs,
        "unacknowledged": node.unacknowledged(),
        "latency_us": {"p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99), "max": pct(1.0)},
    }));
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------
// raw-script, raw-flood

fn hex_bytes(h: &str) -> Result<Vec<u8>, String> {
    let h: String = h.chars().filter(|c| !c.is_whitespace()).collect();
    if h.len() % 2 != 0 {
        return Err(format!("odd hex string '{h}'"));
    }
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&h[i..i + 2], 16).map_err(|e| format!("hex '{h}': {e}")))
        .collect()
}

/// `raw-script STEP...`: speaks the wire by hand, one step after another:
///
/// - `hello`: send Hello, wait for Welcome or Reject;
/// - `register:ID`: send Register, wait for its result;
/// - `deliver:FROM:TO:EVENT:SEQ` (SEQ `max` for u64::MAX), `ack:FROM:TO:SEQ`,
///   `unregister:ID`, `ping`, `goodbye`: send the frame;
/// - `bytes:HEX`: send raw bytes; `shutdown`: close the writing half;
/// - `wait:KIND`: read until a frame of that kind;
/// - `read:MS`: read for MS milliseconds; `hold:MS`: send nothing and read nothing for MS ms
///   (`hold:MS:PING_MS`: send a Ping every PING_MS meanwhile, still reading nothing).
///
/// Then, unless `--exit`, it reads until the hub closes or the timeout. Final line as the
/// other raw modes, plus `results` (each register's status, each failure's reason) and
/// `written` (bytes written).
fn raw_script(args: &Args) -> Result<ExitCode, String> {
    let mut r = Raw::connect(args, "raw-script")?;
    let mut results: Vec<Value> = Vec::new();
    let mut written = 0usize;
    for step in &args.positional[1..] {
        let parts: Vec<&str> = step.split(':').collect();
        let before = r.write_error.is_some();
        match parts.as_slice() {
            ["hello"] => {
                r.send(&hello_frame());
                r.read_until(|f| is_kind(f, &["welcome", "reject"]));
            }
            ["register", id] => {
                r.send(&Frame::Register { machine: id });
                let id = id.to_string();
                if r.read_until(|f| is_kind(f, &["register-result"]) && f["machine"] == json!(id)) {
                    results.push(r.frames.last().map_or(Value::Null, |f| f["status"].clone()));
                }
            }
            ["unregister", id] => r.send(&Frame::Unregister { machine: id }),
            ["deliver", from, to, event, seq] => {
                let seq = if *seq == "max" {
                    u64::MAX
                } else {
                    seq.parse().map_err(|_| format!("bad seq in {step}"))?
                };
                r.send(&Frame::Deliver(Deliver {
                    from,
                    to,
                    event,
                    payload: b"{\"n\":0}",
                    seq,
                }));
            }
            ["ack", from, to, seq] => {
                let seq = if *seq == "max" {
                    u64::MAX
                } else {
                    seq.parse().map_err(|_| format!("bad seq in {step}"))?
                };
                r.send(&Frame::Ack { from, to, seq });
            }
            ["ping"] => r.send(&Frame::Ping { nonce: 1 }),
            ["goodbye"] => r.send(&Frame::Goodbye {
                reason: "bus_probe raw-script",
            }),
            ["bytes", hex] => {
                let b = hex_bytes(hex)?;
                written += b.len();
                r.send_bytes(&b);
            }
            ["shutdown"] => {
                let _ = r.stream.shutdown(std::net::Shutdown::Write);
            }
            ["wait", kind] => {
                let kind = kind.to_string();
                r.read_until(|f| f["kind"] == json!(kind));
                if let Some(f) = r.frames.last().filter(|f| f["kind"] == json!(kind)) {
                    if let Some(reason) = f.get("reason") {
                        results.push(reason.clone());
                    }
                }
            }
            ["read", ms] => {
                let ms: u64 = ms.parse().map_err(|_| format!("bad time in {step}"))?;
                let old = r.deadline;
                r.deadline = Instant::now() + Duration::from_millis(ms);
                r.read_until(|_| false);
                r.deadline = old.max(Instant::now());
            }
            ["hold", rest @ ..] => {
                let ms: u64 = rest
                    .first()
                    .and_then(|m| m.parse().ok())
                    .ok_or(format!("bad time in {step}"))?;
                let every = rest.get(1).and_then(|m| m.parse::<u64>().ok());
                let end = Instant::now() + Duration::from_millis(ms);
                let mut pings = 0u64;
                let _ = r.stream.set_write_timeout(Some(Duration::from_millis(200)));
                while Instant::now() < end {
                    match every {
                        Some(e) => {
                            std::thread::sleep(Duration::from_millis(e).min(end - Instant::now()));
                            r.send(&Frame::Ping { nonce: pings });
                            pings += 1;
                        }
                        None => std::thread::sleep(
                            (end - Instant::now()).min(Duration::from_millis(50)),
                        ),
                    }
                }
                let _ = r.stream.set_write_timeout(None);
                results.push(json!({"pings": pings}));
            }
            _ => return Err(format!("unknown step '{step}'")),
        }
        if !before && r.write_error.is_some() {
            results.push(json!({"write_error_at": step}));
        }
    }
    if args.flags.contains("--exit") {
        emit(
            json!({"mode": "raw-script", "frames": r.kinds(), "results": results, "written": written, "exited": true}),
        );
        return Ok(ExitCode::SUCCESS);
    }
    Ok(r.finish(json!({"results": results, "written": written})))
}

/// `raw-flood N [--hold-ms H]`: opens N connections at once and says nothing on any; holds
/// them H ms (default 1000) while reading what the hub sends on each. Prints
/// {"opened","rejected":{code: count},"closed_by_hub","still_open","failed_to_connect"}.
fn raw_flood(args: &Args) -> Result<ExitCode, String> {
    let n: usize = args
        .pos(1, "N")?
        .parse()
        .map_err(|_| "N must be a whole number".to_string())?;
    let hold = Duration::from_millis(args.num("hold-ms")?.unwrap_or(1000));
    let path = busdir::socket_path(&busdir::default_dir(), &args.bus()?);
    let mut conns: Vec<(UnixStream, Vec<u8>, bool)> = Vec::new();
    let mut failed_to_connect = 0usize;
    for _ in 0..n {
        match UnixStream::connect(&path) {
            Ok(s) => {
                s.set_nonblocking(true).map_err(|e| e.to_string())?;
                conns.push((s, Vec::new(), false));
            }
            Err(_) => failed_to_connect += 1,
        }
    }
    emit(json!({"opened": conns.len(), "failed_to_connect": failed_to_connect}));
    let end = Instant::now() + hold;
    let mut buf = [0u8; 4096];
    loop {
        for (s, got, closed) in conns.iter_mut().filter(|c| !c.2) {
            loop {
                match s.read(&mut buf) {
                    Ok(0) => {
                        *closed = true;
                        break;
                    }
                    Ok(k) => got.extend_from_slice(&buf[..k]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => {
                        *closed = true;
                        break;
                    }
                }
            }
        }
        if Instant::now() >= end || conns.iter().all(|c| c.2) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut rejected: BTreeMap<String, u64> = BTreeMap::new();
    for (_, got, _) in &conns {
        if let Ok(Some((body, _))) = split_frame(got, u32::MAX) {
            if let Ok(Frame::Reject(r)) = Frame::decode(body) {
                *rejected.entry(format!("{:?}", r.code)).or_default() += 1;
            }
        }
    }
    let closed = conns.iter().filter(|c| c.2).count();
    emit(json!({
        "mode": "raw-flood", "opened": conns.len(), "failed_to_connect": failed_to_connect,
        "rejected": rejected, "closed_by_hub": closed, "still_open": conns.len() - closed,
    }));
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let result = Args::parse().and_then(|args| {
        let cmd = args
            .pos(0, "a subcommand (sink, source, raw-...)")?
            .to_string();
        match cmd.as_str() {
            "sink" => sink(&args),
            "source" => source(&args),
            "hub" => hub(&args),
            "soak-sink" => soak_sink(&args),
            "soak-source" => soak_source(&args),
            "load" => load(&args),
            "raw-script" => raw_script(&args),
            "raw-flood" => raw_flood(&args),
            m if m.starts_with("raw-") => raw(&args, m),
            other => Err(format!("unknown subcommand '{other}'")),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bus_probe: {e}");
            ExitCode::from(2)
        }
    }
}
