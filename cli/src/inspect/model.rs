//! What the inspector knows about the bus, shared between its bus thread (which writes it)
//! and its HTTP threads (which read it): the registry, each machine's latest state report
//! and chart outline, and the recent event log. Everything is bounded: one latest report
//! per machine (a report replaces the one before: intermediate states are never queued),
//! [`LOG_CAPACITY`] log entries, [`DEPARTED_CAPACITY`] machines that left.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{json, Value};

/// How many log entries the inspector keeps; a reader that falls further behind is told how
/// many it skipped.
pub const LOG_CAPACITY: usize = 4096;

/// A log entry's buffer up to this size is reused for a later entry (see
/// [`Model::log_frame`]).
const REUSED_BODY: usize = 1024;

/// How many machines that left the bus stay visible (their last state, greyed).
pub const DEPARTED_CAPACITY: usize = 32;

/// One machine as the inspector sees it.
#[derive(Clone, Debug, Default)]
pub struct MachineView {
    /// The registry entry: pid, uid, executable, transport, since_ms.
    pub info: Value,
    /// The latest state report (JSON text, without its `chart` member), if any came. Kept
    /// as text: reports may come hundreds of thousands of times a second, and are parsed
    /// only when read (at most a few dozen times a second per page).
    pub report_text: Option<String>,
    /// The chart outline from the first report (`{"omitted":...}` when it did not fit).
    pub chart: Option<Value>,
    /// How many reports came: the page compares it with the last it drew to say how many
    /// states it skipped.
    pub version: u64,
    /// Whether it is on the bus now.
    pub present: bool,
    /// When it left the bus (ms since the Unix epoch), if it did.
    pub left_ms: Option<u64>,
}

impl MachineView {
    /// The latest report, parsed (`None` before the first, or for one that is not JSON).
    pub fn report(&self) -> Option<Value> {
        self.report_text
            .as_deref()
            .and_then(|t| serde_json::from_str(t).ok())
    }
}

/// One entry of the event log.
#[derive(Clone, Debug)]
pub struct LogEntry {
    /// Its number, from 1, in the order the inspector got it.
    pub seq: u64,
    /// What it records.
    pub what: Logged,
}

/// What a log entry records: as it came, until someone reads it.
#[derive(Clone, Debug)]
pub enum Logged {
    /// A monitored frame (a `Deliver`, `DeliveryFailed` or `NodeFailure` body) and when the
    /// hub saw it (ms since the Unix epoch). Most entries are never read (the log holds the
    /// last 4,096, a page reads at most a few hundred a second), so they are kept as bytes
    /// and turned into JSON only when read: a bus with an inspector attached does not wait
    /// for the inspector's JSON building on every message.
    Frame {
        /// The hub's time.
        at_ms: u64,
        /// The frame body.
        body: Vec<u8>,
    },
    /// An entry made as JSON (`{"at_ms","from","to","event","data","failed"}`).
    Json(Value),
}

/// The whole picture.
#[derive(Debug, Default)]
pub struct Model {
    /// Machines on the bus and those that left recently, by id.
    pub machines: BTreeMap<String, MachineView>,
    /// Ids of the machines that left, oldest first.
    departed: VecDeque<String>,
    /// Bumped at each registry change.
    pub registry_version: u64,
    /// The recent log, oldest first.
    pub log: VecDeque<LogEntry>,
    /// The seq the next log entry gets.
    pub next_seq: u64,
    /// Whether the bus thread is connected to the hub.
    pub connected: bool,
    /// The bus name.
    pub bus: String,
    /// Bumped at every change: SSE writers wait for it to move.
    pub generation: u64,
}

impl Model {
    /// A machine is on the bus (again), with its registry entry.
    pub fn joined(&mut self, id: &str, info: Value) {
        self.departed.retain(|d| d != id);
        let m = self.machines.entry(id.to_string()).or_default();
        if !m.present {
            // A machine that comes back may run another chart: forget the old one.
            m.report_text = None;
            m.chart = None;
        }
        m.info = info;
        m.present = true;
        m.left_ms = None;
        self.registry_version += 1;
    }

    /// A machine left the bus: it stays visible, greyed, among the last few that left.
    pub fn left(&mut self, id: &str, now_ms: u64) {
        let Some(m) = self.machines.get_mut(id) else {
            return;
        };
        m.present = false;
        m.left_ms = Some(now_ms);
        self.departed.push_back(id.to_string());
        while self.departed.len() > DEPARTED_CAPACITY {
            if let Some(old) = self.departed.pop_front() {
                self.machines.remove(&old);
            }
        }
        self.registry_version += 1;
    }

    /// A state report of `id` (JSON text): replaces the previous one. Reports of machines not
    /// (or no longer) in the registry are dropped. Only a report with a chart or folded steps is parsed here.
    pub fn reported(&mut self, id: &str, text: String) {
        let Some(m) = self.machines.get_mut(id) else {
            return;
        };
        let text = if text.contains("\"chart\":") {
            let Ok(mut v) = serde_json::from_str::<Value>(&text) else {
                return;
            };
            if let Some(chart) = v.as_object_mut().and_then(|o| o.remove("chart")) {
                m.chart = Some(chart);
            }
            v.to_string()
        } else {
            text
        };
        // A node folds the steps of a machine stepping faster than its report interval into
        // the next report (`"skipped"`): the version counts them, so that the page's count
        // of skipped states includes them.
        let folded = folded_steps(&text);
        m.report_text = Some(text);
        m.version += 1 + folded;
    }

    /// Appends a log entry (`json` without its `seq`, which is added when it is read).
    pub fn log(&mut self, json: Value) {
        self.append(Logged::Json(json));
    }

    /// Appends a monitored frame to the log (see [`Logged::Frame`]). Once the log is full,
    /// the oldest entry's buffer takes the new body: a bus stepping tens of thousands of
    /// times a second costs the inspector no allocation per message.
    pub fn log_frame(&mut self, at_ms: u64, body: &[u8]) {
        let mut buf = match self.log.len() == LOG_CAPACITY {
            true => match self.log.pop_front().map(|e| e.what) {
                // Not one that a single large message left large for good.
                Some(Logged::Frame { body: old, .. })
                    if old.capacity() <= REUSED_BODY.max(body.len()) =>
                {
                    old
                }
                _ => Vec::new(),
            },
            false => Vec::new(),
        };
        buf.clear();
        buf.extend_from_slice(body);
        self.append(Logged::Frame { at_ms, body: buf });
    }

    fn append(&mut self, what: Logged) {
        self.next_seq += 1;
        if self.log.len() == LOG_CAPACITY {
            self.log.pop_front();
        }
        self.log.push_back(LogEntry {
            seq: self.next_seq,
            what,
        });
    }

    /// The log entries after `seq`, at most `max` (the newest ones), and how many entries
    /// after `seq` are not among them (dropped from the log, or beyond `max`).
    pub fn log_since(&self, seq: u64, max: usize) -> (Vec<Value>, u64) {
        let newer = self.next_seq.saturating_sub(seq);
        let kept: Vec<&LogEntry> = self.log.iter().filter(|e| e.seq > seq).collect();
        let start = kept.len().saturating_sub(max);
        let out: Vec<Value> = kept[start..].iter().map(|e| entry_json(e)).collect();
        let skipped = newer - out.len() as u64;
        (out, skipped)
    }

    /// The registry as `/api/machines` returns it: machines on the bus, by id, each with its
    /// process, its latest state and status, and how many reports it sent.
    pub fn machine_list(&self) -> Value {
        let list: Vec<Value> = self
            .machines
            .iter()
            .filter(|(_, m)| m.present)
            .map(|(id, m)| summary(id, m))
            .collect();
        Value::Array(list)
    }

    /// The machines that left the bus recently, as `summary` gives them.
    pub fn departed_list(&self) -> Value {
        Value::Array(
            self.departed
                .iter()
                .filter_map(|id| self.machines.get(id).map(|m| summary(id, m)))
                .collect(),
        )
    }

    /// One machine in full, as `/api/machines/ID` returns it (with the chart outline).
    pub fn machine_detail(&self, id: &str) -> Option<Value> {
        let m = self.machines.get(id)?;
        let mut v = summary(id, m);
        v["report"] = m.report().unwrap_or(Value::Null);
        v["chart"] = m.chart.clone().unwrap_or(Value::Null);
        Some(v)
    }
}

/// A report's `"skipped"` (0 without one). Every report of a busy machine has one, twenty
/// times a second per machine: read where a node writes it (before any member a user's data
/// fills) instead of parsing the whole report; parsed only when it is not there.
fn folded_steps(text: &str) -> u64 {
    const KEY: &str = "\"skipped\":";
    let Some(at) = text.find(KEY) else {
        return 0;
    };
    let digits: &str = {
        let rest = &text[at + KEY.len()..];
        &rest[..rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len())]
    };
    let escaped = text[..at].ends_with('\\');
    match digits.parse::<u64>() {
        Ok(n) if !escaped => n,
        _ => serde_json::from_str::<Value>(text)
            .ok()
            .and_then(|v| v.get("skipped").and_then(Value::as_u64))
            .unwrap_or(0),
    }
}

/// A machine's line in the registry.
fn summary(id: &str, m: &MachineView) -> Value {
    let report = m.report();
    let r = report.as_ref();
    json!({
        "machine": id,
        "present": m.present,
        "left_ms": m.left_ms,
        "pid": m.info["pid"],
        "uid": m.info["uid"],
        "executable": m.info["executable"],
        "transport": m.info["transport"],
        "since_ms": m.info["since_ms"],
        "port": r.is_some_and(|r| r["port"] == json!(true)),
        "status": r.map_or(Value::Null, |r| r["status"].clone()),
        "state": r.map_or(Value::Null, |r| r["state"].clone()),
        "version": m.version,
        "has_chart": m.chart.is_some(),
    })
}

/// The model behind a lock, with a condition variable that wakes SSE writers at each change.
#[derive(Debug, Default)]
pub struct Shared {
    model: Mutex<Model>,
    changed: Condvar,
}

impl Shared {
    /// The model, locked (a panic in another thread while it held the lock does not make
    /// the picture unusable: it is only read and replaced piecewise).
    pub fn lock(&self) -> MutexGuard<'_, Model> {
        self.model.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes every waiting writer (call after changing the model, lock released).
    pub fn notify(&self) {
        self.changed.notify_all();
    }

    /// Waits until the model's generation differs from `seen`, or `timeout`; returns the
    /// model locked.
    pub fn wait_change(&self, seen: u64, timeout: Duration) -> MutexGuard<'_, Model> {
        let guard = self.lock();
        let (guard, _) = self
            .changed
            .wait_timeout_while(guard, timeout, |m| m.generation == seen)
            .unwrap_or_else(|e| e.into_inner());
        guard
    }
}

/// A log entry as the page reads it: `{"seq","at_ms","from","to","event","data",...}`.
fn entry_json(e: &LogEntry) -> Value {
    let mut json = match &e.what {
        Logged::Frame { at_ms, body } => {
            super::bus::log_entry(*at_ms, body).unwrap_or_else(|| serde_json::json!({}))
        }
        Logged::Json(v) => v.clone(),
    };
    if let Some(o) = json.as_object_mut() {
        o.insert("seq".into(), Value::from(e.seq));
    }
    json
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_replaces_the_last_and_keeps_the_chart() {
        let mut m = Model::default();
        m.joined("a", json!({"pid": 1}));
        m.reported("a", r#"{"state":"x","chart":{"states":[]}}"#.into());
        m.reported("a", r#"{"state":"y"}"#.into());
        let d = m.machine_detail("a").unwrap();
        assert_eq!(d["report"]["state"], "y");
        assert_eq!(d["chart"], json!({"states": []}));
        assert_eq!(d["version"], 2);
        // Not in the registry: dropped.
        m.reported("b", r#"{"state":"x"}"#.into());
        assert!(m.machine_detail("b").is_none());
    }

    #[test]
    fn folded_steps_are_counted_without_a_parse() {
        assert_eq!(folded_steps(r#"{"state":"a","at_ms":1}"#), 0);
        assert_eq!(folded_steps(r#"{"state":"a","at_ms":1,"skipped":41}"#), 41);
        // Not the member: a key of the user's data with a quote in it.
        assert_eq!(
            folded_steps(r#"{"state":"a","context":{"x\"skipped":7},"skipped":3}"#),
            3
        );
        assert_eq!(folded_steps(r#"{"skipped":"many"}"#), 0);
        let mut m = Model::default();
        m.joined("a", json!({}));
        m.reported("a", r#"{"state":"x"}"#.into());
        m.reported("a", r#"{"state":"y","skipped":9}"#.into());
        assert_eq!(m.machine_detail("a").unwrap()["version"], 11);
    }

    #[test]
    fn a_full_log_reuses_its_oldest_entry() {
        let mut m = Model::default();
        for i in 0..(LOG_CAPACITY + 3) {
            m.log_frame(i as u64, &[i as u8; 4]);
        }
        assert_eq!(m.log.len(), LOG_CAPACITY);
        match &m.log.back().unwrap().what {
            Logged::Frame { at_ms, body } => {
                assert_eq!(*at_ms, (LOG_CAPACITY + 2) as u64);
                assert_eq!(body, &vec![(LOG_CAPACITY + 2) as u8; 4]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(m.log.front().unwrap().seq, 4);
    }

    #[test]
    fn departed_machines_are_bounded_and_leave_the_list() {
        let mut m = Model::default();
        for i in 0..(DEPARTED_CAPACITY + 5) {
            let id = format!("m{i}");
            m.joined(&id, json!({}));
            m.left(&id, 0);
        }
        assert_eq!(m.machine_list(), json!([]));
        assert_eq!(m.machines.len(), DEPARTED_CAPACITY);
        assert!(m.machine_detail("m0").is_none());
        let last = format!("m{}", DEPARTED_CAPACITY + 4);
        assert_eq!(m.machine_detail(&last).unwrap()["present"], false);
    }

    #[test]
    fn a_reader_behind_the_log_is_told_what_it_skipped() {
        let mut m = Model::default();
        for i in 0..(LOG_CAPACITY + 10) {
            m.log(json!({ "event": i }));
        }
        let (got, skipped) = m.log_since(0, 100);
        assert_eq!(got.len(), 100);
        assert_eq!(skipped, (LOG_CAPACITY + 10 - 100) as u64);
        assert_eq!(got.last().unwrap()["seq"], (LOG_CAPACITY + 10) as u64);
        let (got, skipped) = m.log_since(m.next_seq - 3, 100);
        assert_eq!((got.len(), skipped), (3, 0));
    }
}
