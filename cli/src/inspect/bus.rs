//! The inspector's bus thread: a client node that watches every machine's state, subscribes
//! to the monitor stream, and sends the events the page asks for, writing what it learns
//! into the shared [`Model`](super::model::Model). The node lives on this thread only (it is
//! not `Send`); the HTTP threads reach it through a channel of [`SendRequest`]s.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use interstate::bus::{MachineInfo, Node, NodeConfig};
use interstate_core::wire::Frame;

use super::model::Shared;

/// The most payload bytes the log keeps of one event (the page shows them on a click).
const LOG_PAYLOAD_BYTES: usize = 2048;

/// A machine whose chart has not come (its first report was dropped by a full queue, or its
/// process does not report) is asked again this often, at most [`CHART_ASKS`] times.
const CHART_ASK_EVERY: Duration = Duration::from_secs(2);
const CHART_ASKS: u32 = 5;

/// An event the page asks to send, and where the answer goes.
pub struct SendRequest {
    /// The target machine id.
    pub to: String,
    /// The event name (not `xstate.*`: refused before it gets here).
    pub event: String,
    /// The payload (JSON text, or empty).
    pub payload: Vec<u8>,
    /// The sequence number of the send, or why it could not be sent.
    pub reply: Sender<Result<u64, String>>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A payload for the log: JSON when it is JSON, else text; cut to [`LOG_PAYLOAD_BYTES`].
fn payload_json(payload: &[u8]) -> (Value, bool) {
    if payload.is_empty() {
        return (Value::Null, false);
    }
    if payload.len() > LOG_PAYLOAD_BYTES {
        let mut n = LOG_PAYLOAD_BYTES;
        let text = String::from_utf8_lossy(payload);
        while !text.is_char_boundary(n) {
            n -= 1;
        }
        return (Value::String(text[..n].to_string()), true);
    }
    match serde_json::from_slice(payload) {
        Ok(v) => (v, false),
        Err(_) => (
            Value::String(String::from_utf8_lossy(payload).into_owned()),
            false,
        ),
    }
}

/// Whether a monitored frame belongs in the log (a message, or a failure): checked as it
/// comes, without building its JSON (see [`log_entry`]).
fn is_logged(body: &[u8]) -> bool {
    matches!(
        Frame::decode(body),
        Ok(Frame::Deliver(_) | Frame::DeliveryFailed(_) | Frame::NodeFailure(_))
    )
}

/// A monitored frame as a log entry (without `seq`), or `None` for other frames.
pub(super) fn log_entry(at_ms: u64, body: &[u8]) -> Option<Value> {
    match Frame::decode(body) {
        Ok(Frame::Deliver(d)) => {
            let (data, cut) = payload_json(d.payload);
            // A publication's event field is `TOPIC\0EVENT`: shown apart.
            let (topic, event) = interstate::core::topic::split_publication(d.event);
            let mut entry = json!({"at_ms": at_ms, "from": d.from, "to": d.to, "event": event,
                                   "data": data, "data_cut": cut, "failed": false});
            if let Some(topic) = topic {
                entry["topic"] = Value::String(topic.to_string());
            }
            Some(entry)
        }
        // Failures the hub reports and those a sending node found itself (it tells the hub,
        // for monitors): both shown as the sender receives them, `xstate.error.delivery`.
        Ok(Frame::DeliveryFailed(f)) | Ok(Frame::NodeFailure(f)) => {
            let payload = interstate_platform::node::delivery_error_payload(
                f.to, f.event, f.seq, f.reason, f.detail,
            );
            let (data, _) = payload_json(&payload);
            Some(json!({"at_ms": at_ms, "from": f.to, "to": f.from,
                        "event": interstate::bus::DELIVERY_ERROR_EVENT, "failed_event": f.event,
                        "data": data, "data_cut": false, "failed": true}))
        }
        _ => None,
    }
}

fn info_json(e: &MachineInfo) -> Value {
    json!({"pid": e.pid, "uid": e.uid, "executable": e.executable,
           "transport": format!("{:?}", e.transport), "since_ms": e.since_ms})
}

/// Connects to the bus; on success, `ready` gets `Ok` and the thread serves until `stop`.
pub fn run(
    config: NodeConfig,
    shared: Arc<Shared>,
    requests: Receiver<SendRequest>,
    stop: Arc<AtomicBool>,
    ready: Sender<Result<(), String>>,
) {
    let mut node = match connect(config) {
        Ok(n) => n,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let port = format!("interstate-inspect.{}", std::process::id());
    if let Err(e) = node.open_port(&port) {
        let _ = ready.send(Err(e.to_string()));
        return;
    }
    {
        let mut m = shared.lock();
        m.bus = node.config().bus.clone();
        m.connected = true;
    }
    let _ = ready.send(Ok(()));
    if let Err(e) = serve(&mut node, &port, &shared, &requests, &stop) {
        eprintln!("interstate: inspect: the bus connection failed: {e}");
        let mut m = shared.lock();
        m.connected = false;
        m.generation += 1;
        drop(m);
        shared.notify();
    }
}

fn connect(config: NodeConfig) -> Result<Node, String> {
    let mut node = Node::new(config).map_err(|e| crate::cmd::buses::no_hub_hint(&e))?;
    if !node.is_connected() {
        return Err(format!(
            "could not reach the hub of bus '{}'",
            node.config().bus
        ));
    }
    // Subscribed before the registry arrives: every message from then on is logged.
    node.subscribe_monitor();
    crate::cmd::bus::wait_registry(&mut node)?;
    Ok(node)
}

fn serve(
    node: &mut Node,
    port: &str,
    shared: &Shared,
    requests: &Receiver<SendRequest>,
    stop: &AtomicBool,
) -> Result<(), String> {
    let mine = std::process::id();
    let mut known: HashMap<String, MachineInfo> = HashMap::new();
    // Machines asked for their chart: when last, how many times.
    let mut asked: HashMap<String, (std::time::Instant, u32)> = HashMap::new();
    let mut was_connected = true;
    let registry = node.registry();
    let mut seen_changes = None;
    while !stop.load(Ordering::Relaxed) {
        node.run_once(Some(Duration::from_millis(50)))
            .map_err(|e| e.to_string())?;
        let mut changed = false;
        let mut model = shared.lock();
        let connected = node.is_connected();
        if connected != was_connected {
            was_connected = connected;
            model.connected = connected;
            changed = true;
        }
        // The registry (looked at only when it changed: a loop turn per message must not
        // copy it): watch each new machine, forget those that left.
        let registry_changed = seen_changes != Some(registry.changes());
        seen_changes = Some(registry.changes());
        let entries: Vec<MachineInfo> = if registry_changed {
            registry
                .entries()
                .into_iter()
                .filter(|e| e.pid != mine)
                .collect()
        } else {
            Vec::new()
        };
        for e in &entries {
            if known.get(&e.machine) != Some(e) {
                known.insert(e.machine.clone(), e.clone());
                model.joined(&e.machine, info_json(e));
                node.watch_state(&e.machine, true);
                asked.insert(e.machine.clone(), (std::time::Instant::now(), 1));
                changed = true;
            }
        }
        let gone: Vec<String> = if registry_changed {
            known
                .keys()
                .filter(|id| !entries.iter().any(|e| &e.machine == *id))
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        for id in gone {
            known.remove(&id);
            asked.remove(&id);
            node.watch_state(&id, false);
            model.left(&id, now_ms());
            changed = true;
        }
        while let Some((machine, report)) = node.next_state_report() {
            model.reported(&machine, report);
            changed = true;
        }
        node.drain_monitored(&mut |at_ms, body| {
            if is_logged(body) {
                model.log_frame(at_ms, body);
                changed = true;
            }
        });
        // A repeated watch makes the owner send a report with the chart again.
        asked.retain(|id, (at, times)| {
            let m = model.machines.get(id);
            let has_chart = m.is_some_and(|m| m.chart.is_some());
            let is_port = m
                .and_then(|m| m.report_text.as_deref())
                .is_some_and(|r| r.contains("\"port\":true"));
            if has_chart || is_port || *times >= CHART_ASKS {
                return false;
            }
            if at.elapsed() >= CHART_ASK_EVERY {
                node.watch_state(id, true);
                *at = std::time::Instant::now();
                *times += 1;
            }
            true
        });
        if changed {
            model.generation += 1;
        }
        drop(model);
        if changed {
            shared.notify();
        }
        // The port's own mail (delivery errors of the page's sends) is in the log already,
        // from the monitor stream.
        while node.recv_port().is_some() {}
        while let Ok(req) = requests.try_recv() {
            let answer = if !node.registry().contains(&req.to) {
                Err(format!("no machine '{}' is registered on the bus", req.to))
            } else {
                node.send_from_port(port, &req.to, &req.event, &req.payload)
                    .map_err(|e| e.to_string())
            };
            let _ = req.reply.send(answer);
        }
    }
    node.shutdown();
    Ok(())
}
