//! The bus subcommands of the `interstate` tool: hub, send, ps, monitor, run.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use interstate_core::wire::{DeliveryFailed, Frame};
use serde_json::json;

use interstate::bus::{Node, NodeConfig, Role};
use interstate::Behaviors;

use super::Values;
use crate::metrics_http::MetricsServer;
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

/// The `log` target of the command's own lines.
const CLI: &str = interstate_platform::logging::CLI;

/// `--metrics ADDR`: the endpoint, started, its address logged.
fn metrics_server(addr: Option<&str>) -> Result<Option<MetricsServer>, String> {
    let Some(addr) = addr else { return Ok(None) };
    let server = MetricsServer::start(addr)?;
    log::info!(target: CLI, "metrics at http://{}/metrics", server.addr());
    Ok(Some(server))
}

/// Renders the node's metrics for a scrape that waits.
fn serve_metrics(server: &Option<MetricsServer>, node: &Node) {
    if let Some(s) = server {
        s.serve_pending(|| interstate_platform::metrics::openmetrics(&[&node.metrics()]));
    }
}

/// `--nice` (else `INTERSTATE_HUB_NICE`) as the hub's scheduling; a bad value is an error
/// naming it.
pub fn hub_scheduling(
    nice: Option<i32>,
) -> Result<interstate_platform::sched::HubScheduling, String> {
    let nice =
        match (nice, std::env::var("INTERSTATE_HUB_NICE")) {
            (Some(n), _) => Some(n),
            (None, Ok(v)) => Some(v.parse().map_err(|_| {
                format!("INTERSTATE_HUB_NICE: '{v}' is not a nice value (-20 to 19)")
            })?),
            (None, Err(_)) => None,
        };
    Ok(interstate_platform::sched::HubScheduling { nice })
}

/// `interstate hub`: serve the bus until SIGINT/SIGTERM; `metrics`: serve the OpenMetrics
/// text there (`--metrics ADDR`); `nice`: see [`hub_scheduling`].
pub fn hub(args: &BusArgs, metrics: Option<&str>, nice: Option<i32>) -> Result<(), String> {
    let stop = stop_flag()?;
    let scheduling = hub_scheduling(nice)?;
    scheduling.apply().map_err(|e| e.to_string())?;
    let mut config = args.config(Role::Hub)?;
    // Socket activation: serve on the listening socket a service manager passed, if any.
    if let Some(fd) = interstate_platform::activation::listen_fd_from_env()? {
        config.listen_fd = Some(std::sync::Arc::new(fd));
    }
    let mut node = Node::new(config).map_err(|e| e.to_string())?;
    // (`--quiet` leaves out the connection lines: the logger's level is `warn` then.)
    log::info!(
        target: CLI,
        "hub serving bus '{}' at {}",
        node.config().bus,
        node.config().socket_path().display()
    );
    let server = metrics_server(metrics)?;
    {
        let c = node.config();
        log::debug!(
            target: CLI,
            "hub settings: links up to {} bytes queued each, frames up to {} bytes, \
             idle links closed after {} ms, other users allowed: uids {:?} gids {:?}",
            c.link_queue,
            c.max_frame,
            c.idle_timeout.as_millis(),
            c.allowed_uids,
            c.allowed_gids
        );
        log::debug!(target: CLI, "hub scheduling: {scheduling:?}");
    }
    // A service manager (systemd Type=notify, `interstate up`) learns that the bus is served.
    interstate_platform::notify::ready_with_status(&format!("serving bus '{}'", node.config().bus))
        .ok();
    while !stop.load(Ordering::Relaxed) {
        node.run_once(Some(StdDuration::from_millis(200)))
            .map_err(|e| e.to_string())?;
        serve_metrics(&server, &node);
    }
    interstate_platform::notify::stopping().ok();
    log::debug!(target: CLI, "hub counters: {:?}", node.stats());
    node.shutdown();
    log::info!(target: CLI, "hub stopped");
    Ok(())
}

/// A client node on the bus `args` names, connected.
pub fn client(args: &BusArgs) -> Result<Node, String> {
    let node = Node::new(args.config(Role::Client)?).map_err(|e| super::buses::no_hub_hint(&e))?;
    if !node.is_connected() {
        return Err(format!(
            "could not reach the hub of bus '{}'",
            node.config().bus
        ));
    }
    Ok(node)
}

/// Waits for the registry snapshot (5 s at most).
pub fn wait_registry(node: &mut Node) -> Result<(), String> {
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
    if interstate_core::wire::is_reserved_event(event) {
        return Err(format!(
            "'{event}' is in the reserved xstate. namespace: only the runtime sends those \
             (delivery errors, machine up/down); choose another event name"
        ));
    }
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
    let bus = node.config().bus.clone();
    let missing =
        || format!("no machine '{target}' is registered on bus '{bus}' (see `interstate ps`)");
    // Not in the registry: sent anyway, so that the hub says why (a machine that stopped on
    // an error is remembered, with its error); its answer is waited for.
    let registered = node.registry().contains(target);
    if !registered {
        // The registry copy is current (waited for above): no point holding the message
        // for the target to appear.
        node.end_connect_grace();
    }
    node.send_from_port(&port, target, event, &payload)
        .map_err(|e| e.to_string())?;
    // A short wait for a delivery failure coming back (e.g. the target just went away).
    let wait = if registered { 200 } else { 5_000 };
    let mut failure = None;
    node.run_until(StdDuration::from_millis(wait), |n| {
        if let Some(m) = n.recv_port() {
            if m.event == interstate::bus::DELIVERY_ERROR_EVENT {
                failure = Some(m.payload);
                return true;
            }
        }
        false
    })
    .map_err(|e| e.to_string())?;
    let Some(f) = failure else {
        return if registered {
            outln!("sent {event} to {target}")
        } else {
            Err(missing())
        };
    };
    let f: serde_json::Value = serde_json::from_slice(&f)
        .unwrap_or_else(|_| json!({"message": String::from_utf8_lossy(&f)}));
    let text = |k: &str| f[k].as_str().unwrap_or("").to_string();
    let reason = text("reason");
    if !registered && reason == "unknown-target" {
        return Err(missing());
    }
    let detail = text("detail");
    let detail = if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    };
    Err(format!(
        "{event} not delivered to '{target}' ({reason}): {}{detail}",
        text("message")
    ))
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
    let ids: Vec<String> = entries.iter().map(|e| e.machine.clone()).collect();
    let states = super::status::states_of(&mut node, &ids)?;
    // Machines of other hosts, reached through an MQTT bridge: the bridge says where they
    // live (docs/internode.md); every other entry is of this host.
    let bridged = interstate_platform::mqtt::read_hosts(&node.config().socket_path());
    let this_host = interstate_platform::mqtt::host_name();
    let where_of = |e: &interstate_platform::registry::MachineInfo| {
        bridged
            .get(&(e.pid, e.machine.clone()))
            .map(|(host, node)| (host.clone(), Some(node.clone())))
            .unwrap_or_else(|| (this_host.clone(), None))
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    if as_json {
        let list: Vec<_> = entries
            .iter()
            .map(|e| {
                let state = states.get(&e.machine);
                let (host, bridged_from) = where_of(e);
                let mut row = json!({
                    "machine": e.machine, "host": host, "pid": e.pid, "uid": e.uid,
                    "executable": e.executable, "transport": format!("{:?}", e.transport),
                    "state": state.map_or(serde_json::Value::Null, |s| s["state"].clone()),
                    "status": state.map_or(serde_json::Value::Null, |s| s["status"].clone()),
                    "age_ms": now_ms.saturating_sub(e.since_ms),
                    "registered_at": super::status::rfc3339_ms(e.since_ms),
                });
                // The node of a machine of another host (its pid is its bridge's).
                if let Some(n) = bridged_from {
                    row["node"] = json!(n);
                }
                // A JSON chart's context, when its state report carries one.
                if let Some(context) = state.and_then(|s| s.get("context")) {
                    row["context"] = context.clone();
                }
                row
            })
            .collect();
        outln!("{}", serde_json::Value::Array(list))?;
    } else {
        outln!(
            "{:<24} {:<16} {:>8} {:>6} {:<20} {:<12} {:<24} AGE",
            "MACHINE",
            "HOST",
            "PID",
            "UID",
            "EXECUTABLE",
            "TRANSPORT",
            "STATE"
        )?;
        for e in entries {
            let age = now_ms.saturating_sub(e.since_ms) / 1000;
            let state = match states.get(&e.machine) {
                Some(s) if s["port"] == json!(true) => "(port)".to_string(),
                Some(s) => s["state"].to_string(),
                None => "-".to_string(),
            };
            let (host, _) = where_of(&e);
            outln!(
                "{:<24} {:<16} {:>8} {:>6} {:<20} {:<12} {:<24} {}s",
                e.machine,
                host,
                e.pid,
                e.uid,
                e.executable,
                format!("{:?}", e.transport),
                state,
                age
            )?;
        }
    }
    Ok(())
}

/// Whether `name` matches `pattern`, where `*` stands for any run of characters.
pub fn glob(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for p in middle {
        match rest.find(p) {
            Some(at) => rest = &rest[at + p.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// What `interstate monitor` shows, besides the output format.
#[derive(Clone, Debug, Default)]
pub struct MonitorFilter {
    /// Machine id patterns (`*` wildcards); a message matches when its sender or its target
    /// matches one. None: every machine.
    pub machines: Vec<String>,
    /// Event name patterns (`*` wildcards). None: every event.
    pub events: Vec<String>,
}

impl MonitorFilter {
    fn shows(&self, from: &str, to: &str, event: &str) -> bool {
        let any = |pats: &[String], names: &[&str]| {
            pats.is_empty() || pats.iter().any(|p| names.iter().any(|n| glob(p, n)))
        };
        any(&self.machines, &[from, to]) && any(&self.events, &[event])
    }
}

/// A payload as JSON when it is JSON, else as a string (none: null).
fn payload_json(payload: &[u8]) -> serde_json::Value {
    if payload.is_empty() {
        return serde_json::Value::Null;
    }
    serde_json::from_slice(payload)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(payload).into()))
}

/// `interstate monitor [--json] [--count N] [--machine ID].. [--event NAME]..`: every message
/// crossing the hub, every delivery failure it reports, and every failure a sending node found
/// itself (a `NodeFailure`, marked so), each shown as the `xstate.error.delivery` its sender
/// receives, one line each with the hub's time.
pub fn monitor(
    args: &BusArgs,
    as_json: bool,
    limit: Option<u64>,
    filter: &MonitorFilter,
) -> Result<(), String> {
    let stop = stop_flag()?;
    let mut node = client(args)?;
    node.subscribe_monitor();
    let mut seen = 0u64;
    while !stop.load(Ordering::Relaxed) && limit.is_none_or(|l| seen < l) {
        node.run_once(Some(StdDuration::from_millis(200)))
            .map_err(|e| e.to_string())?;
        while let Some((at_ms, body)) = node.next_monitored_at() {
            if limit.is_some_and(|l| seen >= l) {
                break;
            }
            let at = super::status::rfc3339_ms(at_ms);
            let line = match Frame::decode(&body) {
                Ok(Frame::Deliver(d)) => {
                    // A publication's event field is TOPIC \0 EVENT.
                    let (topic, event) = interstate_core::topic::split_publication(d.event);
                    if !filter.shows(d.from, d.to, event) {
                        continue;
                    }
                    if as_json {
                        json!({"at": at, "at_ms": at_ms, "from": d.from, "to": d.to,
                               "event": event, "topic": topic, "seq": d.seq,
                               "data": payload_json(d.payload)})
                        .to_string()
                    } else {
                        let data = String::from_utf8_lossy(d.payload);
                        let topic = topic.map(|t| format!(" (topic {t})")).unwrap_or_default();
                        format!("{at}  {} -> {}  {event}{topic}  {data}", d.from, d.to)
                    }
                }
                Ok(Frame::DeliveryFailed(f)) => {
                    match failure_line(&at, at_ms, &f, false, as_json, filter) {
                        Some(line) => line,
                        None => continue,
                    }
                }
                Ok(Frame::NodeFailure(f)) => {
                    match failure_line(&at, at_ms, &f, true, as_json, filter) {
                        Some(line) => line,
                        None => continue,
                    }
                }
                _ => continue,
            };
            outln!("{line}")?;
            seen += 1;
        }
    }
    Ok(())
}

/// A failure as `monitor` shows it: as the `xstate.error.delivery` its sender receives, from
/// its target. `by_node`: found by the sending node itself (a `NodeFailure`), not by the hub.
/// `None` when the filter hides it.
fn failure_line(
    at: &str,
    at_ms: u64,
    f: &DeliveryFailed<'_>,
    by_node: bool,
    as_json: bool,
    filter: &MonitorFilter,
) -> Option<String> {
    let event = interstate::bus::DELIVERY_ERROR_EVENT;
    if !filter.shows(f.from, f.to, f.event) && !filter.shows(f.from, f.to, event) {
        return None;
    }
    let payload =
        interstate_platform::node::delivery_error_payload(f.to, f.event, f.seq, f.reason, f.detail);
    let found_by = if by_node { "node" } else { "hub" };
    Some(if as_json {
        json!({"at": at, "at_ms": at_ms, "from": f.to, "to": f.from, "event": event,
               "failed": true, "found_by": found_by, "data": payload_json(&payload)})
        .to_string()
    } else {
        let mark = if by_node {
            "not delivered, found by the sending node"
        } else {
            "not delivered"
        };
        format!(
            "{at}  {} -> {}  {event}  {}  ({mark})",
            f.to,
            f.from,
            String::from_utf8_lossy(&payload)
        )
    })
}

/// How `interstate run` hosts its machine: the guard and named-delay values (every one the
/// chart uses must have a value), and how much it says.
#[derive(Clone, Debug, Default)]
pub struct Host {
    /// `--guard` and `--delay` values.
    pub values: Values,
    /// `--keep-going`: serve on when the machine stops on an error (it leaves the bus either
    /// way); without it, `run` then ends with an error (exit status 2).
    pub keep_going: bool,
    /// `--state-dir` and `--durability`: where the machine is journalled, and the policy.
    pub state: Option<(std::path::PathBuf, interstate_platform::journal::Durability)>,
    /// `--metrics ADDR`: serve the OpenMetrics text there.
    pub metrics: Option<String>,
    /// `--actor`: what the machine's `invoke`s run, by src.
    pub actors: Vec<(String, super::child::RunActor)>,
    /// `--max-children`: the most invoked children at once, of every kind.
    pub max_children: usize,
    /// `--child-grace`: a stopped child process's time between SIGTERM and SIGKILL.
    pub child_grace: std::time::Duration,
}

/// `--state-dir DIR` (else `INTERSTATE_STATE_DIR`) and `--durability POLICY` (else
/// `INTERSTATE_DURABILITY`, else `fsync`), as `run` uses them.
pub fn state_setting(
    dir: Option<std::path::PathBuf>,
    durability: Option<String>,
) -> Result<Option<(std::path::PathBuf, interstate_platform::journal::Durability)>, String> {
    let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let dir = dir.or_else(|| env("INTERSTATE_STATE_DIR").map(Into::into));
    let policy = match durability {
        Some(p) => p.parse().map_err(|e| format!("--durability: {e}"))?,
        None => match env("INTERSTATE_DURABILITY") {
            Some(p) => p
                .to_string_lossy()
                .parse()
                .map_err(|e| format!("INTERSTATE_DURABILITY: {e}"))?,
            None => interstate_platform::journal::Durability::Fsync,
        },
    };
    Ok(dir.map(|d| (d, policy)))
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
    for (src, actor) in &host.actors {
        if let super::child::RunActor::Chart(child) = actor {
            host.values
                .check_complete(&child.chart())
                .map_err(|e| format!("--actor {src}: {e}"))?;
        }
    }
    let stop = stop_flag()?;
    let mut config = args.config(role)?;
    if let Some((dir, durability)) = &host.state {
        config.state_dir = Some(dir.clone());
        config.durability = *durability;
    }
    config.max_children = host.max_children;
    config.child_grace = host.child_grace;
    let mut node = Node::new(config).map_err(|e| super::buses::no_hub_hint(&e))?;
    // A closed stdout is noted by `outln!` and ends the loop below. (A child's lines carry
    // its own id, `ID/INVOKE-ID`.)
    let values = host.values.clone();
    let logged = move || {
        values.bind(Behaviors::new().on_log(move |who, msg| {
            let _ = outln!("[{who}] {msg}");
        }))
    };
    let mut behaviors = logged();
    for (src, actor) in &host.actors {
        behaviors = match actor {
            super::child::RunActor::Chart(child) => {
                behaviors.child_chart(src, (**child).clone(), logged.clone())
            }
            super::child::RunActor::Process(p) => behaviors.process(src, p.clone()),
        };
    }
    let outputs = super::child::Outputs::of(&compiled);
    let unbound = interstate::bus::add_chart_lenient(&mut node, id, compiled, behaviors).map_err(
        |e| match e {
            interstate::Error::Unbound(u) if !u.actors.is_empty() => format!(
                "{}: {u} (give each one with --actor SRC=CHILD.json, SRC=process:CHILD.json or SRC=exec:PROGRAM)",
                super::display_name(file)
            ),
            e => e.to_string(),
        },
    )?;
    for target in watch {
        node.watch(id, target).map_err(|e| e.to_string())?;
    }
    if !unbound.actions.is_empty() {
        log::info!(
            target: CLI,
            "note: actions {} have no code in `interstate run` and do nothing",
            unbound.actions.join(", ")
        );
    }
    {
        log::info!(
            target: CLI,
            "machine '{id}' joined bus '{}' ({})",
            node.config().bus,
            if node.is_hub() {
                "serving as hub"
            } else {
                "client"
            }
        );
    }
    if let Some(j) = node.journal() {
        log::info!(
            target: CLI,
            "machine '{id}' is durable: journal in {} ({})",
            j.dir().display(),
            j.durability()
        );
    }
    let server = metrics_server(host.metrics.as_deref())?;
    if log::log_enabled!(target: CLI, log::Level::Debug) {
        let mut guards: Vec<_> = host.values.guards.iter().collect();
        guards.sort();
        let mut delays: Vec<_> = host.values.delays.iter().collect();
        delays.sort();
        log::debug!(target: CLI, "machine '{id}': guards {guards:?}, delays (ms) {delays:?}");
    }
    // Registered (and watching): a service manager learns the machine is on the bus.
    interstate_platform::notify::ready_with_status(&format!("machine '{id}' on the bus")).ok();
    let mut reported = false;
    while !stop.load(Ordering::Relaxed) {
        node.run_once(Some(StdDuration::from_millis(200)))
            .map_err(|e| e.to_string())?;
        serve_metrics(&server, &node);
        if output::closed() {
            // The reader of the machine's log lines went away: end quietly.
            break;
        }
        let status = node.machine(id).map(|m| m.status());
        if status == Some(interstate_core::machine::Status::Done) {
            log::info!(target: CLI, "machine '{id}' reached its final state");
            super::child::hand_back(&mut node, id, &outputs)?;
            break;
        }
        if status == Some(interstate_core::machine::Status::Failed) && !reported {
            // The node has taken it off the bus; its senders hear that it is gone.
            let error = node.machine_errors(id).last().unwrap_or("").to_string();
            if !host.keep_going {
                node.flush();
                return Err(format!(
                    "machine '{id}' stopped on an error and left the bus: {error} \
                     (--keep-going keeps the process serving)"
                ));
            }
            reported = true;
        }
    }
    log::debug!(target: CLI, "counters: {:?}", node.stats());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn globs_match_with_stars_anywhere() {
        assert!(glob("lamp", "lamp") && !glob("lamp", "lamps"));
        assert!(glob("*", "") && glob("*", "anything"));
        assert!(glob("worker-*", "worker-1") && !glob("worker-*", "xworker-1"));
        assert!(glob("*.done", "job.done") && !glob("*.done", "job.done.x"));
        assert!(glob("a*b*c", "aXbYc") && glob("a*b*c", "abc") && !glob("a*b*c", "acb"));
        assert!(glob("xstate.*", "xstate.error.delivery"));
    }
}
