//! Events per second into a durable machine, per durability policy, beside the same machine
//! not durable, in one run: two nodes of one process (the machine in the hub's node, a
//! sending port in a client node, over a Unix socket), the sender keeping up to 256 events
//! unacknowledged, each event a step that changes the machine's context. An event counts
//! once it is acknowledged (for a durable machine: once its step's journal record is synced,
//! as the policy says).
//!
//! ```text
//! cargo run --release --example durable_bench -- [EVENTS] [STATE_BASE_DIR]
//! ```
//!
//! `STATE_BASE_DIR` (default: the system's temporary directory) decides what is measured:
//! a tmpfs makes `fsync` free. See docs/persistence.md for figures and their conditions.

use std::time::{Duration, Instant};

use interstate::bus::{add_json_machine, Node, NodeConfig, Role, Transport};
use interstate::Behaviors;
use interstate_platform::journal::Durability;

const COUNTER: &str = r#"{"id":"counter","initial":"counting","context":{"count":0,"last":0},
  "states":{"counting":{"on":{"INC":{"actions":{"type":"assign",
    "assignment":{"count":{"$add":1},"last":{"$event":"n"}}}}}}}}"#;

const WINDOW: usize = 256;

fn config(dir: &std::path::Path, role: Role) -> NodeConfig {
    let mut c = NodeConfig::new("durable-bench");
    c.dir = dir.to_path_buf();
    c.role = role;
    c.transport = Transport::UnixSocket;
    c
}

/// Sends `events` events into the machine; returns (events per second, journal syncs).
fn run(
    base: &std::path::Path,
    events: u64,
    policy: Option<Durability>,
) -> Result<(f64, u64), Box<dyn std::error::Error>> {
    let name = policy.map_or("off".to_string(), |p| p.to_string().replace(':', "_"));
    let root = base.join(format!(
        "interstate-durable-bench-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&root);
    let mut hub_config = config(&root.join("bus"), Role::Hub);
    if let Some(p) = policy {
        hub_config.state_dir = Some(root.join("state"));
        hub_config.durability = p;
    }
    let mut hub = Node::new(hub_config)?;
    hub.set_logger(|_| {});
    add_json_machine(&mut hub, "counter", COUNTER, Behaviors::new())?;
    let mut far = Node::new(config(&root.join("bus"), Role::Client))?;
    far.set_logger(|_| {});
    far.open_port("src")?;
    while !far.registry().contains("counter") {
        hub.run_once(Some(Duration::from_millis(1)))?;
        far.run_once(Some(Duration::from_millis(1)))?;
    }
    let started = Instant::now();
    let mut sent = 0u64;
    let mut payload = String::new();
    while sent < events || far.unacknowledged() > 0 {
        while sent < events && far.unacknowledged() < WINDOW {
            payload.clear();
            use std::fmt::Write;
            let _ = write!(payload, "{{\"n\":{}}}", sent + 1);
            far.send_from_port("src", "counter", "INC", payload.as_bytes())?;
            sent += 1;
        }
        far.run_once(Some(Duration::ZERO))?;
        hub.run_once(Some(Duration::ZERO))?;
    }
    let secs = started.elapsed().as_secs_f64();
    let expected = format!("{{\"count\":{events},\"last\":{events}}}");
    let m = hub.machine("counter").ok_or("the machine is gone")?;
    if m.context_json() != Some(expected.as_str()) {
        return Err(format!("the machine counted {:?}", m.context_json()).into());
    }
    let syncs = hub.journal().map_or(0, |j| j.stats().syncs);
    drop((hub, far));
    let _ = std::fs::remove_dir_all(&root);
    Ok((events as f64 / secs, syncs))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let events: u64 = args.next().map_or(Ok(20_000), |a| a.parse())?;
    let base = args.next().map_or_else(std::env::temp_dir, Into::into);
    println!(
        "{events} events into one machine, up to {WINDOW} unacknowledged, state under {}",
        base.display()
    );
    println!("{:<12} {:>12} {:>10}", "durability", "events/s", "syncs");
    for policy in [
        None,
        Some(Durability::None),
        Some(Durability::GROUP),
        Some(Durability::Fsync),
    ] {
        let (rate, syncs) = run(&base, events, policy)?;
        let name = policy.map_or("not durable".to_string(), |p| p.to_string());
        println!("{name:<12} {rate:>12.0} {syncs:>10}");
    }
    Ok(())
}
