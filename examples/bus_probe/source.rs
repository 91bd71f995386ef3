//! `source`: a node with a port that sends numbered events to a target and reports what was
//! acknowledged, failed, or still outstanding.

use std::collections::{BTreeMap, HashMap};
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
    // --announce-done: once every message is settled, send DONE naming what failed.
    let announce_done = args.flags.contains("--announce-done");
    // --payload-bytes B: pad each payload to about B bytes.
    let pad = match args.num("payload-bytes")? {
        Some(b) if b > 16 => format!(",\"pad\":\"{}\"", ".".repeat(b as usize - 16)),
        _ => String::new(),
    };
    let stop = stop_flag()?;
    let start = Instant::now();
    let mut node = args.node()?;
    node.open_port(&id).map_err(|e| e.to_string())?;
    emit(json!({"ready": true, "id": id, "pid": std::process::id(), "hub": node.is_hub()}));

    let mut sent = 0u64;
    let mut attempted = 0u64;
    let mut failed = 0u64;
    let mut errors = 0u64;
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    let mut tally: Option<Value> = None;
    let mut last_activity = Instant::now();
    // With --announce-done: each message's `n` by its sequence number, the `n`s reported
    // failed by reason, and the DONE message's sequence number while it is out.
    let mut n_by_seq: HashMap<u64, u64> = HashMap::new();
    let mut failed_n: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut done_seq: Option<u64> = None;

    let drain = |node: &mut Node,
                 failed: &mut u64,
                 reasons: &mut BTreeMap<String, u64>,
                 tally: &mut Option<Value>,
                 last: &mut Instant,
                 n_by_seq: &mut HashMap<u64, u64>,
                 failed_n: &mut BTreeMap<String, Vec<u64>>,
                 done_seq: &mut Option<u64>| {
        while let Some(m) = node.recv_port() {
            *last = Instant::now();
            if m.event == DELIVERY_ERROR_EVENT {
                let v = serde_json::from_slice::<Value>(&m.payload).ok();
                let seq = v
                    .as_ref()
                    .and_then(|v| v.get("seq"))
                    .and_then(Value::as_u64);
                if seq.is_some() && seq == *done_seq {
                    // DONE itself failed: it goes again once everything is settled.
                    *done_seq = None;
                    continue;
                }
                *failed += 1;
                let why = v
                    .as_ref()
                    .and_then(|v| v.get("reason").and_then(Value::as_str).map(String::from))
                    .unwrap_or_else(|| "unknown".into());
                if let Some(n) = seq.and_then(|s| n_by_seq.get(&s)) {
                    failed_n.entry(why.clone()).or_default().push(*n);
                }
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
                Ok(seq) => {
                    sent += 1;
                    if announce_done {
                        n_by_seq.insert(seq, attempted);
                    }
                }
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
            &mut n_by_seq,
            &mut failed_n,
            &mut done_seq,
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
    let mut replied: Option<Instant> = None;
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
                &mut n_by_seq,
                &mut failed_n,
                &mut done_seq,
            );
            if tally.is_some() {
                // Acknowledgements may follow the reply (the policy holds up to 15 for at
                // most ACK_DELAY a hop): the summary counts what is unacknowledged once they
                // had time to come.
                let since = *replied.get_or_insert_with(Instant::now);
                if node.unacknowledged() == 0 || since.elapsed() >= Duration::from_secs(2) {
                    break "acknowledged";
                }
            }
            if announce_done && done_seq.is_none() && node.unacknowledged() == 0 {
                // Everything is settled: what arrived is before DONE in the sender's order.
                let body = json!({"sent": sent, "failed_n": failed_n}).to_string();
                match node.send_from_port(&id, &target, "DONE", body.as_bytes()) {
                    Ok(seq) => done_seq = Some(seq),
                    Err(e) => eprintln!("bus_probe: sending DONE: {e}"),
                }
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
