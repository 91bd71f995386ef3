//! What watching a bus costs: `scripts/inspect_cost.sh` runs this twice, as the host of N
//! toggling machines and as the driver that sends to them as fast as backpressure allows,
//! and measures the delivery rate with and without `interstate inspect` attached.
//!
//! - `inspect_cost host N`: a client node hosting machines `toggle-0` .. `toggle-{N-1}`,
//!   each of which changes state (`a` <-> `b`) on every `T`; runs until SIGINT/SIGTERM.
//! - `inspect_cost drive N MS`: a port that sends `T` to the machines in turn for MS
//!   milliseconds, as fast as the bus takes them, waits until all are acknowledged, and
//!   prints `{"sent","secs","rate"}` (messages a second).
//!
//! The bus comes from the environment (`INTERSTATE_BUS`, `INTERSTATE_DIR`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use interstate::bus::{add_json_machine, Node, NodeConfig, Role};
use interstate::Behaviors;

const TOGGLE: &str = r#"{ "id": "toggle", "initial": "a",
  "states": { "a": { "on": { "T": "b" } }, "b": { "on": { "T": "a" } } } }"#;

fn client() -> Result<Node, String> {
    let mut config = NodeConfig::try_from_env().map_err(|e| e.to_string())?;
    config.role = Role::Client;
    Node::new(config).map_err(|e| e.to_string())
}

fn host(n: usize) -> Result<(), String> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).map_err(|e| e.to_string())?;
    }
    let mut node = client()?;
    for i in 0..n {
        add_json_machine(&mut node, &format!("toggle-{i}"), TOGGLE, Behaviors::new())
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

fn drive(n: usize, ms: u64) -> Result<(), String> {
    let mut node = client()?;
    let port = format!("inspect-cost.{}", std::process::id());
    node.open_port(&port).map_err(|e| e.to_string())?;
    let ids: Vec<String> = (0..n).map(|i| format!("toggle-{i}")).collect();
    let joined = node
        .run_until(Duration::from_secs(10), |node| {
            ids.iter().all(|id| node.registry().contains(id))
        })
        .map_err(|e| e.to_string())?;
    if !joined {
        return Err(format!("the {n} toggles are not on the bus (start `host {n}` first)"));
    }
    let window = Duration::from_millis(ms);
    let start = Instant::now();
    let mut sent = 0u64;
    let mut k = 0usize;
    while start.elapsed() < window {
        // Send until the bus pushes back, then let the loop move the messages.
        for _ in 0..256 {
            if node.send_from_port(&port, &ids[k], "T", &[]).is_err() {
                break;
            }
            sent += 1;
            k = (k + 1) % n;
        }
        node.run_once(Some(Duration::ZERO))
            .map_err(|e| e.to_string())?;
        while node.recv_port().is_some() {}
    }
    // Delivered means acknowledged: wait for the last ones.
    node.run_until(Duration::from_secs(30), |n| n.unacknowledged() == 0)
        .map_err(|e| e.to_string())?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{{\"sent\":{sent},\"secs\":{secs:.3},\"rate\":{:.0}}}",
        sent as f64 / secs
    );
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, default: u64| -> u64 {
        args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default)
    };
    let done = match args.first().map(String::as_str) {
        Some("host") => host(num(1, 64) as usize),
        Some("drive") => drive(num(1, 64) as usize, num(2, 3000)),
        _ => Err("usage: inspect_cost host N | inspect_cost drive N MS".into()),
    };
    match done {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("inspect_cost: {e}");
            std::process::ExitCode::from(2)
        }
    }
}
