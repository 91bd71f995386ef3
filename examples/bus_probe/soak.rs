//! The soak test's workers (`cli/tests/soak.rs`): `soak-sink`, a statechart that logs every
//! event during its step, and `soak-source`, a port that logs what it sends and what failed.

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use interstate::bus::{Node, DELIVERY_ERROR_EVENT};
use serde_json::{json, Value};

use crate::args::Args;
use crate::{emit, stop_flag};

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
pub(crate) fn soak_sink(args: &Args) -> Result<ExitCode, String> {
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
pub(crate) fn soak_source(args: &Args) -> Result<ExitCode, String> {
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
