//! `bus_probe`: a TEST HELPER for `tests/bus.rs`, not an example to learn the API from.
//!
//! The bus integration tests spawn it as a real process next to the `interstate` binary, to
//! count messages, to push load through a hub, and to misbehave on the wire in ways a well
//! written client never does. Every subcommand takes `--bus NAME`; the bus directory comes
//! from `$INTERSTATE_DIR` (as for every node). Output is JSON, one object per line, on
//! stdout; diagnostics go to stderr.
//!
//! ```text
//! bus_probe sink ID [--expect N] [--timeout-ms T] [--linger-ms L] [--hub]
//!     A node (client role unless --hub) with a port ID. Counts events, checks each sender's
//!     order by the sequence number in the payload (`{"n": k}`), prints
//!     {"ready":true,...} once registered, then a final tally
//!     {"received","distinct","duplicates","out_of_order","max_n",...}
//!     when it has N distinct messages (after L more ms), on timeout (default 30 s), or on
//!     SIGTERM/SIGINT. It then sends a TALLY event (the tally as payload) to every sender.
//!     Exit code 0 when the expectation was met (or none was given), 1 otherwise.
//!
//! bus_probe source ID TARGET N [--rate PER_S] [--timeout-ms T] [--linger-ms L]
//!                              [--progress-every K] [--hub]
//!     A node with a port ID that sends N events `E` with payload {"n": k}, k = 0..N-1, to
//!     TARGET (as fast as the bus takes them, or PER_S a second), driving the node loop.
//!     Counts `xstate.error.delivery` replies. Prints {"progress":k,...} every K sent (default
//!     1000), {"sending_done":true,...} after the last one, and keeps driving the loop (so
//!     buffered messages get flushed or retransmitted) until the target's TALLY arrives,
//!     every message was reported failed, L ms passed after the last send (only with
//!     --linger-ms), or the timeout (default 30 s). Then prints the final line
//!     {"sent":..,"failed":..,"errors":..,"reasons":{..},"acknowledged":bool,"tally":..}.
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
        const FLAGS: &[&str] = &["--hub", "--after-hello"];
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
        let mut config = NodeConfig::new(&self.bus()?);
        config.role = if self.flags.contains("--hub") {
            Role::Hub
        } else {
            Role::Client
        };
        Node::new(config).map_err(|e| e.to_string())
    }
}

fn emit(v: Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

fn stop_flag() -> Result<Arc<AtomicBool>, String> {
    interstate::cli_bus::stop_flag()
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
        while let Some(m) = node.recv_port() {
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
            let payload = format!("{{\"n\":{attempted}}}");
            match node.send_from_port(&id, &target, "E", payload.as_bytes()) {
                Ok(()) => sent += 1,
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
    if why == "sent" {
        why = loop {
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

fn main() -> ExitCode {
    let result = Args::parse().and_then(|args| {
        let cmd = args
            .pos(0, "a subcommand (sink, source, raw-...)")?
            .to_string();
        match cmd.as_str() {
            "sink" => sink(&args),
            "source" => source(&args),
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
