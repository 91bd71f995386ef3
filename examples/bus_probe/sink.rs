//! `sink`: a node with a port that counts what arrives, checks each sender's order, and
//! prints and sends back the tally.

use std::collections::{BTreeMap, HashSet};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use interstate::bus::{PortMessage, DELIVERY_ERROR_EVENT};
use serde_json::{json, Value};

use crate::args::Args;
use crate::{emit, stop_flag};

#[derive(Default)]
struct SenderState {
    seen: HashSet<u64>,
    high: Option<u64>,
    count: u64,
}

#[derive(Default)]
struct Tally {
    received: u64,
    distinct: u64,
    duplicates: u64,
    out_of_order: u64,
    max_n: Option<u64>,
    bad_payload: u64,
    delivery_errors: u64,
    events: BTreeMap<String, u64>,
    senders: BTreeMap<String, SenderState>,
    /// A sender's DONE (`bus_probe source --announce-done`): how many it sent, and the
    /// `n`s reported failed to it, by reason.
    done: Option<(String, u64, BTreeMap<String, Vec<u64>>)>,
}

impl Tally {
    fn record(&mut self, m: &PortMessage) {
        if m.event == DELIVERY_ERROR_EVENT {
            self.delivery_errors += 1;
            return;
        }
        if m.event == "DONE" {
            let v = serde_json::from_slice::<Value>(&m.payload).unwrap_or_default();
            let sent = v.get("sent").and_then(Value::as_u64).unwrap_or(0);
            let failed = serde_json::from_value(v.get("failed_n").cloned().unwrap_or_default())
                .unwrap_or_default();
            self.done = Some((m.from.clone(), sent, failed));
            return;
        }
        self.received += 1;
        *self.events.entry(m.event.clone()).or_default() += 1;
        let s = self.senders.entry(m.from.clone()).or_default();
        s.count += 1;
        let n = serde_json::from_slice::<Value>(&m.payload)
            .ok()
            .and_then(|v| v.get("n").and_then(Value::as_u64));
        let Some(n) = n else {
            self.bad_payload += 1;
            return;
        };
        if !s.seen.insert(n) {
            self.duplicates += 1;
            return;
        }
        self.distinct += 1;
        if s.high.is_some_and(|h| n < h) {
            self.out_of_order += 1;
        }
        s.high = Some(s.high.map_or(n, |h| h.max(n)));
        self.max_n = Some(self.max_n.map_or(n, |h| h.max(n)));
    }

    fn json(&self, id: &str, reason: &str) -> Value {
        let by_sender: BTreeMap<&str, u64> = self
            .senders
            .iter()
            .map(|(k, s)| (k.as_str(), s.count))
            .collect();
        // With the sender's DONE: every `n` it sent is accounted for exactly, as arrived,
        // reported failed, both (by reason), or neither (lost silently).
        let accounting = self.done.as_ref().map(|(from, sent, failed)| {
            let empty = HashSet::new();
            let seen = self.senders.get(from).map_or(&empty, |s| &s.seen);
            let failed_set: HashSet<u64> = failed.values().flatten().copied().collect();
            let lost: Vec<u64> = (0..*sent)
                .filter(|n| !seen.contains(n) && !failed_set.contains(n))
                .collect();
            let both: BTreeMap<&str, usize> = failed
                .iter()
                .map(|(r, ns)| (r.as_str(), ns.iter().filter(|n| seen.contains(n)).count()))
                .filter(|(_, k)| *k > 0)
                .collect();
            json!({
                "from": from,
                "sent": sent,
                "lost_silently": lost.len(),
                "lost_first": lost.iter().take(20).collect::<Vec<_>>(),
                "delivered_and_failed": both,
            })
        });
        json!({
            "id": id,
            "accounting": accounting,
            "received": self.received,
            "distinct": self.distinct,
            "duplicates": self.duplicates,
            "out_of_order": self.out_of_order,
            "max_n": self.max_n,
            "bad_payload": self.bad_payload,
            "delivery_errors": self.delivery_errors,
            "events": self.events,
            "by_sender": by_sender,
            "reason": reason,
        })
    }
}

pub(crate) fn sink(args: &Args) -> Result<ExitCode, String> {
    let id = args.pos(1, "ID")?.to_string();
    let expect = args.num("expect")?;
    let timeout = args.timeout(30_000)?;
    let linger = Duration::from_millis(args.num("linger-ms")?.unwrap_or(0));
    let hold = args.flags.contains("--hold");
    let stop = stop_flag()?;
    let start = Instant::now();
    let hold_until = args
        .num("hold-ms")?
        .map(|ms| start + Duration::from_millis(ms));
    let mut node = args.node()?;
    node.open_port(&id).map_err(|e| e.to_string())?;
    emit(json!({"ready": true, "id": id, "pid": std::process::id(), "hub": node.is_hub()}));
    let mut tally = Tally::default();
    // One message kept and refilled (`recv_port_into`): the node reuses its buffers, so
    // reading allocates nothing per message.
    let mut message = PortMessage::default();
    let mut reached: Option<Instant> = None;
    let reason = loop {
        if stop.load(Ordering::Relaxed) {
            break "signal";
        }
        let now = Instant::now();
        if reached.is_some_and(|r| now >= r + linger) {
            break if tally.done.is_some() {
                "done"
            } else {
                "expected"
            };
        }
        if now >= start + timeout {
            break "timeout";
        }
        node.run_once(Some(Duration::from_millis(20)))
            .map_err(|e| e.to_string())?;
        // --hold: the messages stay in the port's queue, unread and unacknowledged (an
        // application that never takes what arrives).
        let holding = hold || hold_until.is_some_and(|t| Instant::now() < t);
        while !holding && node.recv_port_into(&mut message) {
            tally.record(&message);
        }
        if reached.is_none()
            && (expect.is_some_and(|n| tally.distinct >= n) || tally.done.is_some())
        {
            reached = Some(Instant::now());
        }
    };
    let out = tally.json(&id, reason);
    emit(out.clone());
    // Tell the senders, so that they can stop waiting.
    let body = out.to_string().into_bytes();
    let senders: Vec<String> = tally.senders.keys().cloned().collect();
    for s in &senders {
        if let Err(e) = node.send_from_port(&id, s, "TALLY", &body) {
            eprintln!("bus_probe: could not send the tally to '{s}': {e}");
        }
    }
    if !senders.is_empty() {
        let _ = node.run_for(Duration::from_millis(200));
    }
    let met = expect.is_none_or(|n| tally.distinct >= n);
    Ok(if met {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
