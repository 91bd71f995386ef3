//! The bus subcommands of the `interstate` tool: hub, send, ps, monitor, run.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use interstate_core::wire::Frame;
use serde_json::json;

use interstate::bus::{Node, NodeConfig, Role};
use interstate::Behaviors;

use super::{Level, Values};
use crate::{outln, output};

/// Bus selection shared by the subcommands.
#[derive(Clone, Debug, Default)]
pub struct BusArgs {
    /// `--bus NAME` (else `INTERSTATE_BUS`, else `default`).
    pub bus: Option<String>,
}

impl BusArgs {
    /// The node settings for this bus and role; a bad `INTERSTATE_*` value is an error.
    pub fn config(&self, role: Role) -> Result<NodeConfig, String> {
        let mut c = super::node_config(self.bus.as_deref())?;
        c.role = role;
        Ok(c)
    }
}

/// Set by SIGINT/SIGTERM.
pub fn stop_flag() -> Result<Arc<AtomicBool>, String> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, flag.clone())
            .map_err(|e| format!("installing a signal handler: {e}"))?;
    }
    Ok(flag)
}

/// `interstate hub`: serve the bus until SIGINT/SIGTERM.
pub fn hub(args: &BusArgs, level: Level) -> Result<(), String> {
    let stop = stop_flag()?;
    let mut config = args.config(Role::Hub)?;
    // Socket activation: serve on the listening socket a service manager passed, if any.
    if let Some(fd) = interstate_platform::activation::listen_fd_from_env()? {
        config.listen_fd = Some(std::sync::Arc::new(fd));
    }
    let mut node = Node::new(config).map_err(|e| e.to_string())?;
    if level > Level::Quiet {
        eprintln!(
            "interstate: hub serving bus '{}' at {}",
            node.config().bus,
            node.config().socket_path().display()
        );
    }
    if level == Level::Verbose {
        let c = node.config();
        eprintln!(
            "interstate: hub settings: links up to {} bytes queued each, frames up to {} bytes, \
             idle links closed after {} ms, other users allowed: uids {:?} gids {:?}",
            c.link_queue,
            c.max_frame,
            c.idle_timeout.as_millis(),
            c.allowed_uids,
            c.allowed_gids
        );
    }
    // A service manager (systemd Type=notify, `interstate up`) learns that the bus is served.
    interstate_platform::notify::ready_with_status(&format!("serving bus '{}'", node.config().bus))
        .ok();
    while !stop.load(Ordering::Relaxed) {
        node.run_once(Some(StdDuration::from_millis(200)))
            .map_err(|e| e.to_string())?;
    }
    interstate_platform::notify::stopping().ok();
    if level == Level::Verbose {
        eprintln!("interstate: hub counters: {:?}", node.stats());
    }
    node.shutdown();
    if level > Level::Quiet {
        eprintln!("interstate: hub stopped");
    }
    Ok(())
}

fn client(args: &BusArgs) -> Result<Node, String> {
    let node = Node::new(args.config(Role::Client)?).map_err(|e| super::buses::no_hub_hint(&e))?;
    if !node.is_connected() {
        return Err(format!(
            "could not reach the hub of bus '{}'",
            node.config().bus
        ));
    }
    Ok(node)
}

fn wait_registry(node: &mut Node) -> Result<(), String> {
    let ok = node
        .run_until(StdDuration::from_secs(5), |n| n.registry_synced())
        .map_err(|e| e.to_string())?;
    if ok {
        Ok(())
    } else {
        Err("the hub did not send its registry within 5 s".into())
    }
}

/// `interstate send TARGET EVENT [--data JSON]`.
pub fn send(args: &BusArgs, target: &str, event: &str, data: Option<&str>) -> Result<(), String> {
    let payload = match data {
        Some(d) => {
            let v: serde_json::Value =
                serde_json::from_str(d).map_err(|e| format!("--data is not JSON: {e}"))?;
            v.to_string().into_bytes()
        }
        None => Vec::new(),
    };
    let mut node = client(args)?;
    let port = format!("interstate-send.{}", std::process::id());
    node.open_port(&port).map_err(|e| e.to_string())?;
    wait_registry(&mut node)?;
    if !node.registry().contains(target) {
        return Err(format!(
            "no machine '{target}' is registered on bus '{}' (see `interstate ps`)",
            node.config().bus
        ));
    }
    node.send_from_port(&port, target, event, &payload)
        .map_err(|e| e.to_string())?;
    // A short wait for a delivery failure coming back (e.g. the target just went away).
    let mut failure = None;
    node.run_until(StdDuration::from_millis(200), |n| {
        if let Some(m) = n.recv_port() {
            if m.event == interstate::bus::DELIVERY_ERROR_EVENT {
                failure = Some(String::from_utf8_lossy(&m.payload).into_owned());
                return true;
            }
        }
        false
    })
    .map_err(|e| e.to_string())?;
    match failure {
        Some(f) => Err(format!("not delivered: {f}")),
        None => {
            outln!("sent {event} to {target}")
        }
    }
}

/// `interstate ps [--json]`.
pub fn ps(args: &BusArgs, as_json: bool) -> Result<(), String> {
    let mut node = client(args)?;
    wait_registry(&mut node)?;
    let mine = std::process::id();
    let entries: Vec<_> = node
        .registry()
        .entries()
        .into_iter()
        .filter(|e| e.pid != mine)
        .collect();
    if as_json {
        let list: Vec<_> = entries
            .iter()
            .map(|e| json!({"machine": e.machine, "pid": e.pid, "uid": e.uid, "executable": e.executable, "transport": format!("{:?}", e.transport), "since_ms": e.since_ms}))
            .collect();
        outln!("{}", serde_json::Value::Array(list))?;
    } else {
        outln!(
            "{:<24} {:>8} {:>6} {:<20} {:<12} SINCE",
            "MACHINE",
            "PID",
            "UID",
            "EXECUTABLE",
            "TRANSPORT"
        )?;
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        for e in entries {
            let age = now_ms.saturating_sub(e.since_ms) / 1000;
            outln!(
                "{:<24} {:>8} {:>6} {:<20} {:<12} {}s ago",
                e.machine,
                e.pid,
                e.uid,
                e.executable,
                format!("{:?}", e.transport),
                age
            )?;
        }
    }
    Ok(())
}

/// `interstate monitor [--json]`: every message crossing the hub, one line each.
pub fn monitor(args: &BusArgs, as_json: bool, limit: Option<u64>) -> Result<(), String> {
    let stop = stop_flag()?;
    let mut node = client(args)?;
    node.subscribe_monitor();
    let mut seen = 0u64;
    while !stop.load(Ordering::Relaxed) && limit.is_none_or(|l| seen < l) {
        node.run_once(Some(StdDuration::from_millis(200)))
            .map_err(|e| e.to_string())?;
        while let Some(body) = node.next_monitored() {
            let Ok(frame) = Frame::decode(&body) else {
                continue;
            };
            if let Frame::Deliver(d) = frame {
                let data = String::from_utf8_lossy(d.payload);
                if as_json {
                    outln!(
                        "{}",
                        json!({"from": d.from, "to": d.to, "event": d.event, "seq": d.seq, "data": data})
                    )?;
                } else {
                    outln!("{} -> {}  {}  {}", d.from, d.to, d.event, data)?;
                }
            }
            seen += 1;
        }
    }
    Ok(())
}

/// How `interstate run` hosts its machine: the guard and named-delay values (every one the
/// chart uses must have a value), and how much it says.
#[derive(Clone, Debug, Default)]
pub struct Host {
    /// `--guard` and `--delay` values.
    pub values: Values,
    /// `--quiet`, `--verbose`.
    pub level: Level,
}

/// `interstate run FILE --id ID`: a declarative JSON machine joins the bus.
pub fn run(
    args: &BusArgs,
    file: &std::path::Path,
    id: &str,
    role: Role,
    watch: &[String],
    host: &Host,
) -> Result<(), String> {
    let compiled = super::load_chart(file)?;
    host.values
        .check_complete(&compiled.chart())
        .map_err(|e| format!("{}: {e}", super::display_name(file)))?;
    let stop = stop_flag()?;
    let mut node = Node::new(args.config(role)?).map_err(|e| super::buses::no_hub_hint(&e))?;
    let who = id.to_string();
    // A closed stdout is noted by `outln!` and ends the loop below.
    let behaviors = Behaviors::new().on_log(move |_, msg| {
        let _ = outln!("[{who}] {msg}");
    });
    let behaviors = host.values.bind(behaviors);
    let unbound = interstate::bus::add_chart_lenient(&mut node, id, compiled, behaviors)
        .map_err(|e| e.to_string())?;
    for target in watch {
        node.watch(id, target).map_err(|e| e.to_string())?;
    }
    let say = host.level > Level::Quiet;
    if say && !unbound.actions.is_empty() {
        eprintln!(
            "interstate: note: actions {} have no code in `interstate run` and do nothing",
            unbound.actions.join(", ")
        );
    }
    if say {
        eprintln!(
            "interstate: machine '{id}' joined bus '{}' ({})",
            node.config().bus,
            if node.is_hub() {
                "serving as hub"
            } else {
                "client"
            }
        );
    }
    if host.level == Level::Verbose {
        let mut guards: Vec<_> = host.values.guards.iter().collect();
        guards.sort();
        let mut delays: Vec<_> = host.values.delays.iter().collect();
        delays.sort();
        eprintln!("interstate: machine '{id}': guards {guards:?}, delays (ms) {delays:?}");
    }
    // Registered (and watching): a service manager learns the machine is on the bus.
    interstate_platform::notify::ready_with_status(&format!("machine '{id}' on the bus")).ok();
    while !stop.load(Ordering::Relaxed) {
        node.run_once(Some(StdDuration::from_millis(200)))
            .map_err(|e| e.to_string())?;
        if output::closed() {
            // The reader of the machine's log lines went away: end quietly.
            break;
        }
        if node.machine(id).is_some_and(|m| m.is_done()) {
            if say {
                eprintln!("interstate: machine '{id}' reached its final state");
            }
            break;
        }
    }
    if host.level == Level::Verbose {
        eprintln!("interstate: counters: {:?}", node.stats());
    }
    Ok(())
}
