//! What watching a bus costs: `scripts/inspect_cost.sh` runs this twice, as the host of N
//! toggling machines and as the driver that sends to them as fast as backpressure allows,
//! and measures the delivery rate with and without `interstate inspect` attached.
//!
//! - `inspect_cost host N [ack]`: a client node hosting machines `toggle-0` ..
//!   `toggle-{N-1}`, each of which changes state (`a` <-> `b`) on every `T` (and with `ack`
//!   answers `ACK` to the driver); runs until SIGINT/SIGTERM.
//! - `inspect_cost drive N MS [RATE]`: a port that sends `T` to the machines in turn for MS
//!   milliseconds, as fast as the bus takes them (or RATE a second), waits until all are
//!   acknowledged, and prints `{"sent","secs","rate","rtt_us":{"p50","p99"}}`: messages a
//!   second, and (with RATE, against `host N ack`) the time from a send to the machine's
//!   `ACK` back (its step included).
//!
//! The bus comes from the environment (`INTERSTATE_BUS`, `INTERSTATE_DIR`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use interstate::bus::{add_json_machine, Node, NodeConfig, Role};
use interstate::Behaviors;

/// Changes state on every `T`.
const TOGGLE: &str = r#"{ "id": "toggle", "initial": "a",
  "states": { "a": { "on": { "T": "b" } }, "b": { "on": { "T": "a" } } } }"#;

/// Changes state on every `T`, and acknowledges it to the driver (for the round-trip time;
/// at a fixed rate only: flooded, a machine's acknowledgements would fill its outbox).
const TOGGLE_ACK: &str = r#"{ "id": "toggle", "initial": "a",
  "states": {
    "a": { "on": { "T": { "target": "b", "actions": { "type": "xstate.sendTo", "to": "inspect-cost-driver", "event": "ACK" } } } },
    "b": { "on": { "T": { "target": "a", "actions": { "type": "xstate.sendTo", "to": "inspect-cost-driver", "event": "ACK" } } } } } }"#;

/// The driver's port: the machines acknowledge to it.
const DRIVER: &str = "inspect-cost-driver";

fn client() -> Result<Node, String> {
    let mut config = NodeConfig::try_from_env().map_err(|e| e.to_string())?;
    config.role = Role::Client;
    Node::new(config).map_err(|e| e.to_string())
}

fn host(n: usize, ack: bool) -> Result<(), String> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).map_err(|e| e.to_string())?;
    }
    let mut node = client()?;
    for i in 0..n {
        let chart = if ack { TOGGLE_ACK } else { TOGGLE };
        add_json_machine(&mut node, &format!("toggle-{i}"), chart, Behaviors::new())
            .map_err(|e| e.to_string())?;
    }
    let ids: Vec<String> = (0..n).map(|i| format!("toggle-{i}")).collect();
    node.run_until(Duration::from_secs(10), |node| {
        ids.iter().all(|id| node.registry().contains(id))
    })
    .map_err(|e| e.to_string())?;
    println!("{{\"ready\":true,\"machines\":{n}}}");
    while !stop.load(Ordering::Relaxed) {
        node.run_once(Some(Duration::from_millis(100)))
            .map_err(|e| e.to_string())?;
    }
    eprintln!("host counters: {:?}", node.stats());
    Ok(())
}

fn drive(n: usize, ms: u64, rate: Option<u64>) -> Result<(), String> {
    use std::collections::VecDeque;
    let mut node = client()?;
    node.open_port(DRIVER).map_err(|e| e.to_string())?;
    let ids: Vec<String> = (0..n).map(|i| format!("toggle-{i}")).collect();
    let joined = node
        .run_until(Duration::from_secs(10), |node| {
            ids.iter().all(|id| node.registry().contains(id))
        })
        .map_err(|e| e.to_string())?;
    if !joined {
        return Err(format!(
            "the {n} toggles are not on the bus (start `host {n}` first)"
        ));
    }
    // Each machine answers in order: its oldest unanswered send is the one an ACK answers.
    let mut pending: Vec<VecDeque<Instant>> = vec![VecDeque::new(); n];
    let mut rtts: Vec<u32> = Vec::with_capacity(1 << 20);
    let index = |from: &str| {
        from.strip_prefix("toggle-")
            .and_then(|k| k.parse::<usize>().ok())
    };
    let mut collect = |node: &mut Node, pending: &mut Vec<VecDeque<Instant>>| {
        while let Some(m) = node.recv_port() {
            if let Some(sent_at) = index(&m.from).and_then(|k| pending.get_mut(k)?.pop_front()) {
                rtts.push(sent_at.elapsed().as_micros().min(u32::MAX as u128) as u32);
            }
        }
    };
    let window = Duration::from_millis(ms);
    let start = Instant::now();
    let mut sent = 0u64;
    let mut k = 0usize;
    while start.elapsed() < window {
        let due = match rate {
            Some(r) => (start.elapsed().as_secs_f64() * r as f64) as u64 + 1,
            None => sent + 256,
        };
        // Send until due or the bus pushes back, then let the loop move the messages.
        while sent < due {
            if node.send_from_port(DRIVER, &ids[k], "T", &[]).is_err() {
                break;
            }
            if rate.is_some() {
                pending[k].push_back(Instant::now());
            }
            sent += 1;
            k = (k + 1) % n;
        }
        let wait = if rate.is_some() {
            Duration::from_micros(200)
        } else {
            Duration::ZERO
        };
        node.run_once(Some(wait)).map_err(|e| e.to_string())?;
        collect(&mut node, &mut pending);
    }
    let secs = start.elapsed().as_secs_f64();
    // Delivered means acknowledged: wait for the last ones, and their ACKs.
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end
        && (node.unacknowledged() > 0 || pending.iter().any(|q| !q.is_empty()))
    {
        node.run_once(Some(Duration::from_millis(5)))
            .map_err(|e| e.to_string())?;
        collect(&mut node, &mut pending);
    }
    rtts.sort_unstable();
    let pct = |p: f64| {
        rtts.get(((rtts.len().max(1) - 1) as f64 * p) as usize)
            .copied()
            .unwrap_or(0)
    };
    println!(
        "{{\"sent\":{sent},\"secs\":{secs:.3},\"rate\":{:.0},\"rtt_us\":{{\"p50\":{},\"p99\":{}}}}}",
        sent as f64 / secs,
        pct(0.5),
        pct(0.99)
    );
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, default: u64| -> u64 {
        args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default)
    };
    let done = match args.first().map(String::as_str) {
        Some("host") => host(num(1, 64) as usize, args.get(2).is_some_and(|a| a == "ack")),
        Some("drive") => drive(
            num(1, 64) as usize,
            num(2, 3000),
            args.get(3).and_then(|a| a.parse().ok()),
        ),
        _ => Err("usage: inspect_cost host N [ack] | inspect_cost drive N MS [RATE]".into()),
    };
    match done {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("inspect_cost: {e}");
            std::process::ExitCode::from(2)
        }
    }
}
