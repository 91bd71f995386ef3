//! `source`: a node with a port that sends numbered events to a target and reports what was
//! acknowledged, failed, or still outstanding.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use interstate::bus::{Node, DELIVERY_ERROR_EVENT};
use serde_json::{json, Value};

use crate::args::Args;
use crate::{emit, stop_flag};

pub(crate) fn source(args: &Args) -> Result<ExitCode, String> {
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
