//! `load`: the load test's client (`cli/tests/load.rs`), sending as fast as backpressure
//! allows while receiving and timing each message by the wall clock it carries.

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use interstate::bus::{Node, DELIVERY_ERROR_EVENT};
use serde_json::json;

use crate::args::Args;
use crate::{emit, stop_flag};

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
pub(crate) fn load(args: &Args) -> Result<ExitCode, String> {
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
