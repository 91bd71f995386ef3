//! `interstate publish` and `interstate subscribe`: publish/subscribe from the command line,
//! like `mosquitto_pub` and `mosquitto_sub`.

use std::sync::atomic::Ordering;
use std::time::{Duration as StdDuration, Instant};

use serde_json::json;

use super::bus::{client, stop_flag, BusArgs};
use crate::outln;

fn payload_of(data: Option<&str>) -> Result<Vec<u8>, String> {
    match data {
        Some(d) => {
            let v: serde_json::Value =
                serde_json::from_str(d).map_err(|e| format!("--data is not JSON: {e}"))?;
            Ok(v.to_string().into_bytes())
        }
        None => Ok(Vec::new()),
    }
}

/// `interstate publish TOPIC EVENT [--data JSON] [--wait-for N]`: one message to every
/// machine subscribed to a matching filter; waits until each has acknowledged it or was
/// reported failed, and fails (non-zero) naming those it did not reach.
pub fn publish(
    args: &BusArgs,
    topic: &str,
    event: &str,
    data: Option<&str>,
    wait_for: Option<usize>,
) -> Result<(), String> {
    if interstate_core::wire::is_reserved_event(event) {
        return Err(format!(
            "'{event}' is in the reserved xstate. namespace: only the runtime sends those; \
             choose another event name"
        ));
    }
    interstate_core::topic::check_topic(topic).map_err(|e| format!("bad topic '{topic}': {e}"))?;
    let payload = payload_of(data)?;
    let mut node = client(args)?;
    let port = format!("interstate-publish.{}", std::process::id());
    node.open_port(&port).map_err(|e| e.to_string())?;
    let want = wait_for.unwrap_or(0);
    let ok = node
        .run_until(StdDuration::from_secs(5), |n| {
            n.subscriptions_synced() && n.registry_synced() && n.subscribers(topic).len() >= want
        })
        .map_err(|e| e.to_string())?;
    if !ok {
        return Err(match wait_for {
            Some(w) => format!(
                "fewer than {w} machines subscribed to '{topic}' within 5 s ({} are)",
                node.subscribers(topic).len()
            ),
            None => "the hub did not send its subscriptions within 5 s".into(),
        });
    }
    let n = node
        .publish_from_port(&port, topic, event, &payload)
        .map_err(|e| e.to_string())?;
    // Each subscriber acknowledges it, or it comes back failed (naming the subscriber).
    let mut failures = Vec::new();
    let end = Instant::now() + StdDuration::from_secs(10);
    while node.unacknowledged() > 0 && Instant::now() < end {
        node.run_once(Some(StdDuration::from_millis(20)))
            .map_err(|e| e.to_string())?;
        while let Some(m) = node.recv_port() {
            if m.event == interstate::bus::DELIVERY_ERROR_EVENT {
                failures.push(String::from_utf8_lossy(&m.payload).into_owned());
            }
        }
    }
    while let Some(m) = node.recv_port() {
        if m.event == interstate::bus::DELIVERY_ERROR_EVENT {
            failures.push(String::from_utf8_lossy(&m.payload).into_owned());
        }
    }
    if !failures.is_empty() {
        return Err(format!(
            "published {event} to {topic}, but it was not delivered to {} of {n} subscribers: {}",
            failures.len(),
            failures.join("; ")
        ));
    }
    if node.unacknowledged() > 0 {
        return Err(format!(
            "published {event} to {topic}: {} of {n} subscribers did not acknowledge it within 10 s",
            node.unacknowledged()
        ));
    }
    let s = if n == 1 { "" } else { "s" };
    outln!("published {event} to {topic}: {n} subscriber{s}")
}

/// `interstate subscribe FILTER [--json] [--count N]`: prints every publication to a topic
/// the filter matches (and every broadcast), one line each, until Ctrl-C or N messages.
pub fn subscribe(
    args: &BusArgs,
    filter: &str,
    as_json: bool,
    count: Option<u64>,
) -> Result<(), String> {
    interstate_core::topic::check_filter(filter)
        .map_err(|e| format!("bad topic filter '{filter}': {e}"))?;
    let stop = stop_flag()?;
    let mut node = client(args)?;
    let port = format!("interstate-subscribe.{}", std::process::id());
    node.open_port(&port).map_err(|e| e.to_string())?;
    node.subscribe(&port, filter).map_err(|e| e.to_string())?;
    let held = node
        .run_until(StdDuration::from_secs(5), |n| {
            n.subscription_held(&port, filter)
        })
        .map_err(|e| e.to_string())?;
    if !held {
        return Err(format!(
            "the hub did not confirm the subscription to '{filter}' within 5 s"
        ));
    }
    eprintln!(
        "interstate: subscribed to '{filter}' on bus '{}'",
        node.config().bus
    );
    let mut seen = 0u64;
    while !stop.load(Ordering::Relaxed) && count.is_none_or(|c| seen < c) {
        node.run_once(Some(StdDuration::from_millis(200)))
            .map_err(|e| e.to_string())?;
        while count.is_none_or(|c| seen < c) {
            // Read one at a time: a message not printed (the count reached) is not
            // acknowledged, and its publisher hears it was not delivered.
            let Some(m) = node.recv_port() else {
                break;
            };
            let line = if as_json {
                let data = if m.payload.is_empty() {
                    serde_json::Value::Null
                } else {
                    serde_json::from_slice(&m.payload).unwrap_or_else(|_| {
                        serde_json::Value::String(String::from_utf8_lossy(&m.payload).into())
                    })
                };
                json!({"topic": m.topic, "event": m.event, "from": m.from, "data": data})
                    .to_string()
            } else {
                let topic = m.topic.as_deref().unwrap_or("(broadcast)");
                format!(
                    "{topic} {} {}",
                    m.event,
                    String::from_utf8_lossy(&m.payload)
                )
                .trim_end()
                .to_string()
            };
            outln!("{line}")?;
            seen += 1;
        }
    }
    // Acknowledge what was printed before leaving.
    node.flush();
    node.run_for(StdDuration::from_millis(20))
        .map_err(|e| e.to_string())?;
    Ok(())
}
