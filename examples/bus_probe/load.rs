//! `load`: the load test's client (`cli/tests/load.rs`), sending as fast as backpressure
//! allows while receiving and timing each message by the wall clock it carries.

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use interstate::bus::{Node, PortMessage, DELIVERY_ERROR_EVENT};
use serde_json::json;

use crate::args::Args;
use crate::{emit, stop_flag};

/// This process's scheduler figures so far: `[cpu_ns, run_queue_wait_ns, voluntary switches,
/// involuntary switches]` (`/proc/self/schedstat`, `/proc/self/status`; zeros where absent),
/// to tell the time a message waits for a CPU from the time it waits in a queue.
fn sched_figures() -> [u64; 4] {
    let mut f = [0u64; 4];
    if let Ok(s) = std::fs::read_to_string("/proc/self/schedstat") {
        for (i, v) in s.split_whitespace().take(2).enumerate() {
            f[i] = v.parse().unwrap_or(0);
        }
    }
    if let Ok(s) = std::fs::read_to_string("/proc/self/status") {
        for l in s.lines() {
            let n = |l: &str| l.split_whitespace().nth(1).and_then(|v| v.parse().ok());
            if l.starts_with("voluntary_ctxt_switches") {
                f[2] = n(l).unwrap_or(0);
            } else if l.starts_with("nonvoluntary_ctxt_switches") {
                f[3] = n(l).unwrap_or(0);
            }
        }
    }
    f
}

fn wall_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// `load ID TARGET --duration-ms D [--rate PER_S] [--payload BYTES] [--linger-ms L]
/// [--event NAME]`: a port that sends events NAME (default `L`) to TARGET as fast as
/// backpressure allows (or PER_S a second) for D ms, while counting what it receives and
/// each message's latency (from its send to its `recv_port_into`, by the wall clock the payload
/// carries). Then it keeps the loop going until L ms (default 2000) pass without input and
/// its own messages are all settled, and prints
/// {"sent","received","failed","latency_us":{"p50","p99","max"},"by_event":{NAME:{"count",
/// "p50","p99","max"},..},...} (`by_event`: the latencies of what it received, by the
/// sender's event name, so that a receiver of several kinds of sender tells them apart).
pub(crate) fn load(args: &Args) -> Result<ExitCode, String> {
    let id = args.pos(1, "ID")?.to_string();
    let target = args.pos(2, "TARGET")?.to_string();
    let duration = Duration::from_millis(args.num("duration-ms")?.unwrap_or(3000));
    let rate = args.num("rate")?.filter(|&r| r > 0);
    let size = args.num("payload")?.unwrap_or(32) as usize;
    let linger = Duration::from_millis(args.num("linger-ms")?.unwrap_or(2000));
    let event = args
        .options
        .get("event")
        .cloned()
        .unwrap_or_else(|| "L".to_string());
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
    // Every message's latency, with the index of its event name in `events`.
    let mut latencies: Vec<(u32, u8)> = Vec::with_capacity(1 << 20);
    let mut events: Vec<String> = Vec::new();
    let mut received = 0u64;
    let mut failed = 0u64;
    let mut sent = 0u64;
    let mut send_errors = 0u64;
    let mut held_back = Duration::ZERO;
    // Paced: from a message's stamp to the end of the flush that wrote it (the sender's
    // own part of its latency), in us.
    let mut send_stage: Vec<u32> = Vec::new();
    let mut payload = vec![b'.'; size.max(8)];
    // INTERSTATE_LOAD_TRACE=DIR: each paced message's (stamp, receipt) in wall-clock ns, to
    // DIR/<id>.trace at the end, to join with a hub's stage probe.
    let trace_dir = std::env::var_os("INTERSTATE_LOAD_TRACE");
    let mut trace: Vec<(u64, u64)> = Vec::new();
    let tracing = trace_dir.is_some();
    // One message kept and refilled (`recv_port_into`): reading allocates nothing per
    // message, as a program that wants its CPU for its work would read.
    let mut m = PortMessage::default();
    let mut collect = |node: &mut Node,
                       received: &mut u64,
                       failed: &mut u64,
                       lat: &mut Vec<(u32, u8)>,
                       events: &mut Vec<String>,
                       trace: &mut Vec<(u64, u64)>| {
        let now = wall_ns();
        while node.recv_port_into(&mut m) {
            if m.event == DELIVERY_ERROR_EVENT {
                *failed += 1;
            } else if m.payload.len() >= 8 {
                *received += 1;
                let t = u64::from_le_bytes(m.payload[..8].try_into().expect("8 bytes"));
                let kind = match events.iter().position(|e| *e == m.event) {
                    Some(i) => i,
                    None => {
                        events.push(m.event.to_string());
                        events.len() - 1
                    }
                };
                if tracing && m.event == "P" {
                    trace.push((t, now));
                }
                let us = (now.saturating_sub(t) / 1000).min(u32::MAX as u64) as u32;
                lat.push((us, kind.min(u8::MAX as usize) as u8));
            }
        }
    };
    let start = Instant::now();
    let sched_at_go = sched_figures();
    while start.elapsed() < duration && !stop.load(Ordering::Relaxed) {
        let due = match rate {
            Some(r) => (start.elapsed().as_secs_f64() * r as f64) as u64 + 1,
            None => sent + 64,
        };
        let mut held = false;
        let mut last_stamp = None;
        while sent < due && start.elapsed() < duration {
            // Stamped when offered: a message's latency runs from when the bus accepts it
            // (a refused one is offered again, stamped anew; the time held back is counted
            // apart, as the sender's wait).
            let stamp = wall_ns();
            payload[..8].copy_from_slice(&stamp.to_le_bytes());
            match node.try_send_from_port(&id, &target, &event, &payload) {
                Ok(Some(_)) => {
                    sent += 1;
                    last_stamp = Some(stamp);
                }
                Ok(None) => {
                    held = true;
                    break;
                }
                Err(_) => send_errors += 1,
            }
        }
        collect(
            &mut node,
            &mut received,
            &mut failed,
            &mut latencies,
            &mut events,
            &mut trace,
        );
        let held_since = held.then(Instant::now);
        let wait = if held {
            // Backpressure: wait for acknowledgements (a turn ends early when they come).
            Duration::from_millis(1)
        } else if rate.is_some() {
            // Paced: what was just sent is written now, not after the loop's wait (a
            // turn waits first, then writes).
            node.flush();
            if let Some(t) = last_stamp {
                send_stage.push((wall_ns().saturating_sub(t) / 1000).min(u32::MAX as u64) as u32);
            }
            Duration::from_micros(500)
        } else {
            Duration::ZERO
        };
        node.run_once(Some(wait)).map_err(|e| e.to_string())?;
        if let Some(t) = held_since {
            held_back += t.elapsed();
        }
    }
    let send_secs = start.elapsed().as_secs_f64();
    let sched_end = sched_figures();
    // Settle: until quiet for `linger` with nothing of ours outstanding (or 4 lingers).
    let settle_start = Instant::now();
    let mut last = Instant::now();
    loop {
        let before = received + failed;
        node.run_once(Some(Duration::from_millis(10)))
            .map_err(|e| e.to_string())?;
        collect(
            &mut node,
            &mut received,
            &mut failed,
            &mut latencies,
            &mut events,
            &mut trace,
        );
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
    if let Some(dir) = trace_dir {
        let lines: String = trace.iter().map(|(t, r)| format!("{t} {r}\n")).collect();
        let _ = std::fs::write(
            std::path::Path::new(&dir).join(format!("{id}.trace")),
            lines,
        );
    }
    let pcts = |mut l: Vec<u32>| {
        l.sort_unstable();
        let pct = |p: f64| -> u64 {
            if l.is_empty() {
                0
            } else {
                l[((l.len() - 1) as f64 * p) as usize] as u64
            }
        };
        json!({"count": l.len(), "p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99), "max": pct(1.0)})
    };
    let mut by_event = serde_json::Map::new();
    for (i, e) in events.iter().enumerate() {
        let of_kind = latencies.iter().filter(|l| l.1 as usize == i.min(255));
        by_event.insert(e.clone(), pcts(of_kind.map(|l| l.0).collect()));
    }
    let all = pcts(latencies.iter().map(|l| l.0).collect());
    let d = |i: usize| sched_end[i].saturating_sub(sched_at_go[i]);
    emit(json!({
        "id": id, "sent": sent, "received": received, "failed": failed,
        "send_errors": send_errors, "send_secs": send_secs,
        "held_back_ms": held_back.as_millis() as u64,
        "unacknowledged": node.unacknowledged(),
        "latency_us": all,
        "by_event": by_event,
        "send_stage_us": pcts(send_stage),
        "sched": {"cpu_ms": d(0) / 1_000_000, "run_queue_wait_ms": d(1) / 1_000_000,
                  "voluntary": d(2), "involuntary": d(3),
                  "cpu_yields": node.stats().cpu_yields},
    }));
    Ok(ExitCode::SUCCESS)
}
