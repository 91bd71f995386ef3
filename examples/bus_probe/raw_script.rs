//! `raw-script`: the wire spoken step by step as the test writes it; `raw-flood`: many
//! connections at once that say nothing.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use interstate::bus::busdir;
use interstate::core::wire::{split_frame, Deliver, Frame};
use serde_json::{json, Value};

use crate::args::Args;
use crate::emit;
use crate::raw::{hello_frame, is_kind, Raw};

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
/// - `pong`: read until the hub's Ping and answer it with a Pong of the same nonce, as a
///   client does (the hub holds a pair with a failure report until its link answers);
/// - `bytes:HEX`: send raw bytes; `shutdown`: close the writing half;
/// - `wait:KIND`: read until a frame of that kind;
/// - `read:MS`: read for MS milliseconds; `hold:MS`: send nothing and read nothing for MS ms
///   (`hold:MS:PING_MS`: send a Ping every PING_MS meanwhile, still reading nothing).
///
/// Then, unless `--exit`, it reads until the hub closes or the timeout. Final line as the
/// other raw modes, plus `results` (each register's status, each failure's reason) and
/// `written` (bytes written).
pub(crate) fn raw_script(args: &Args) -> Result<ExitCode, String> {
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
                    correlation: Default::default(),
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
            ["pong"] => {
                if r.read_until(|f| is_kind(f, &["ping"])) {
                    let nonce = r.frames.last().and_then(|f| f["nonce"].as_u64());
                    r.send(&Frame::Pong {
                        nonce: nonce.unwrap_or(0),
                    });
                }
            }
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
pub(crate) fn raw_flood(args: &Args) -> Result<ExitCode, String> {
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
