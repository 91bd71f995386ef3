//! `interstate request TARGET EVENT [--data JSON] [--timeout 5s] [--json]`: a request from a
//! port of this process, its reply printed, or its failure as the error.

use std::time::Duration as StdDuration;

use interstate::bus::REQUEST_ERROR_EVENT;
use interstate_core::{Correlation, Duration};

use super::bus::{client, wait_registry, BusArgs};
use crate::outln;

/// `interstate request`: prints the reply's payload (or, with `json`, the reply as
/// `{"event","from","data"}`); an error names why no reply came.
pub fn request(
    args: &BusArgs,
    target: &str,
    event: &str,
    data: Option<&str>,
    timeout: &str,
    json: bool,
) -> Result<(), String> {
    if interstate_core::wire::is_reserved_event(event) {
        return Err(format!(
            "'{event}' is in the reserved xstate. namespace: only the runtime sends those; \
             choose another event name"
        ));
    }
    let timeout = crate::manifest::parse_duration(timeout).map_err(|e| format!("--timeout {e}"))?;
    let payload = match data {
        Some(d) => {
            let v: serde_json::Value =
                serde_json::from_str(d).map_err(|e| format!("--data is not JSON: {e}"))?;
            v.to_string().into_bytes()
        }
        None => Vec::new(),
    };
    let mut node = client(args)?;
    let port = format!("interstate-request.{}", std::process::id());
    node.open_port(&port).map_err(|e| e.to_string())?;
    // (An unknown target is the bus's to report: the request fails as `unknown-target`.)
    wait_registry(&mut node)?;
    let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
    let id = node
        .request_from_port(&port, target, event, &payload, Duration::from_millis(ms))
        .map_err(|e| e.to_string())?;
    // The node settles the request by its timeout at the latest; the margin only guards
    // against a node that stopped running timers.
    let mut answer = None;
    node.run_until(timeout + StdDuration::from_secs(2), |n| {
        while let Some(m) = n.recv_port() {
            if m.correlation == Correlation::Reply(id.0) {
                answer = Some(m);
                return true;
            }
        }
        false
    })
    .map_err(|e| e.to_string())?;
    let Some(m) = answer else {
        return Err(format!(
            "no reply from '{target}' to {event} within {} ms",
            timeout.as_millis()
        ));
    };
    if m.event == REQUEST_ERROR_EVENT {
        return Err(describe_failure(target, event, &m.payload));
    }
    let text = String::from_utf8_lossy(&m.payload).into_owned();
    if json {
        let data = if m.payload.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&m.payload).unwrap_or(serde_json::Value::String(text))
        };
        outln!(
            "{}",
            serde_json::json!({"event": m.event, "from": m.from, "data": data})
        )
    } else {
        outln!("{text}")
    }
}

/// A request error's payload as a sentence: `request to 'w' (WORK) failed: timeout: ...`.
fn describe_failure(target: &str, event: &str, payload: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(payload).unwrap_or_default();
    let reason = v["reason"].as_str().unwrap_or("failed");
    let message = v["message"].as_str().unwrap_or("");
    format!("request {event} to '{target}' failed: {reason}: {message}")
}
