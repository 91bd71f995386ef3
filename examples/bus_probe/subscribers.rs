//! `subscribers`: a node with K ports, each subscribed to one topic filter, that counts the
//! publications each port receives (and duplicates, by the payload's `n`) and prints the
//! tally on SIGTERM/SIGINT or once every port has `--expect` messages.

use std::collections::{BTreeMap, HashSet};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use interstate::bus::DELIVERY_ERROR_EVENT;
use serde_json::{json, Value};

use crate::args::Args;
use crate::{emit, stop_flag};

/// `subscribers PREFIX K FILTER [--expect N] [--timeout-ms T]`: ports `PREFIX-0` ..
/// `PREFIX-(K-1)` subscribed to FILTER. Prints {"ready":true} once the hub holds every
/// subscription (this node's copy of the table names them all), then
/// {"received":{port:n},"duplicates":d,"topics":[..],"delivery_errors":e}.
pub(crate) fn subscribers(args: &Args) -> Result<ExitCode, String> {
    let stop = stop_flag()?;
    let prefix = args.pos(1, "a port name prefix")?.to_string();
    let k: usize = args
        .pos(2, "how many ports")?
        .parse()
        .map_err(|_| "K is a number".to_string())?;
    let filter = args.pos(3, "a topic filter")?.to_string();
    let expect = args.num("expect")?;
    let timeout = args.timeout(30_000)?;
    let mut node = args.node()?;
    let ports: Vec<String> = (0..k).map(|i| format!("{prefix}-{i}")).collect();
    for p in &ports {
        node.open_port(p).map_err(|e| e.to_string())?;
        node.subscribe(p, &filter).map_err(|e| e.to_string())?;
    }
    // Ready once the hub's table (as this node's copy shows it after the hub echoed each
    // subscription back) names every port: a publisher starting now reaches them all.
    let end = Instant::now() + timeout;
    loop {
        node.run_once(Some(Duration::from_millis(10)))
            .map_err(|e| e.to_string())?;
        if ports.iter().all(|p| node.subscription_held(p, &filter)) {
            break;
        }
        if Instant::now() > end {
            return Err("the hub never confirmed the subscriptions".into());
        }
    }
    emit(json!({"ready": true, "pid": std::process::id()}));
    let mut received: BTreeMap<String, u64> = ports.iter().map(|p| (p.clone(), 0)).collect();
    let mut seen: HashSet<(String, String, u64)> = HashSet::new();
    let mut topics: HashSet<String> = HashSet::new();
    let (mut duplicates, mut errors) = (0u64, 0u64);
    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
        node.run_once(Some(Duration::from_millis(20)))
            .map_err(|e| e.to_string())?;
        while let Some(m) = node.recv_port() {
            if m.event == DELIVERY_ERROR_EVENT {
                errors += 1;
                continue;
            }
            let n = serde_json::from_slice::<Value>(&m.payload)
                .ok()
                .and_then(|v| v.get("n").and_then(Value::as_u64))
                .unwrap_or(u64::MAX);
            if !seen.insert((m.port.clone(), m.from.clone(), n)) {
                duplicates += 1;
            }
            if let Some(t) = m.topic {
                topics.insert(t);
            }
            *received.entry(m.port).or_default() += 1;
        }
        if expect.is_some_and(|e| received.values().all(|&n| n >= e)) {
            break;
        }
    }
    // What was read is acknowledged before the tally (the publisher waits for that).
    node.flush();
    node.run_for(Duration::from_millis(20))
        .map_err(|e| e.to_string())?;
    let mut topics: Vec<String> = topics.into_iter().collect();
    topics.sort();
    emit(
        json!({"received": received, "duplicates": duplicates, "topics": topics,
                "delivery_errors": errors}),
    );
    Ok(ExitCode::SUCCESS)
}
