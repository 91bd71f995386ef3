//! `interstate status`: a machine's state, the events it accepts now, its last events and
//! errors, once or as they change; and the state query `ps` shares. Both ask the machine's
//! node for state reports through the hub (`Node::watch_state`), which its node sends only
//! while someone watches.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration as StdDuration, Instant as StdInstant};

use serde_json::{json, Value};

use interstate::bus::Node;

use super::bus::{client, stop_flag, wait_registry, BusArgs};
use crate::outln;

/// How long a machine has to answer a state query: a node answers at once, so this only
/// bounds the wait for processes that do not report (foreign clients, devices).
const ANSWER_WITHIN: StdDuration = StdDuration::from_secs(2);

/// The most machines `ps` asks at once (the hub's watch table is bounded).
const PS_BATCH: usize = 64;

/// Milliseconds since the Unix epoch as RFC 3339 UTC with milliseconds
/// (`2026-12-06T19:14:35.123Z`).
pub fn rfc3339_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        ms % 1000
    )
}

/// The state reports of `ids`, asked in batches; machines that do not answer within
/// `ANSWER_WITHIN` are missing from the map.
pub fn states_of(node: &mut Node, ids: &[String]) -> Result<HashMap<String, Value>, String> {
    let mut got: HashMap<String, Value> = HashMap::new();
    for batch in ids.chunks(PS_BATCH) {
        for id in batch {
            node.watch_state(id, true);
        }
        let end = StdInstant::now() + ANSWER_WITHIN;
        while batch.iter().any(|id| !got.contains_key(id)) && StdInstant::now() < end {
            node.run_once(Some(StdDuration::from_millis(20)))
                .map_err(|e| e.to_string())?;
            while let Some((machine, report)) = node.next_state_report() {
                if let Ok(v) = serde_json::from_str::<Value>(&report) {
                    got.insert(machine, v);
                }
            }
        }
        for id in batch {
            node.watch_state(id, false);
        }
    }
    Ok(got)
}

fn names(v: &Value) -> String {
    match v.as_array() {
        Some(a) if !a.is_empty() => a
            .iter()
            .map(|x| x.as_str().unwrap_or("?").to_string())
            .collect::<Vec<_>>()
            .join(", "),
        _ => "-".into(),
    }
}

fn print_report(v: &Value, as_json: bool, watch: bool) -> Result<(), String> {
    if as_json {
        // The chart outline of a watch's first report is for the inspector's drawing.
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("chart");
        }
        return outln!("{v}");
    }
    let at = v["at_ms"].as_u64().map(rfc3339_ms).unwrap_or_default();
    if v["port"] == json!(true) {
        return outln!("{} is a port (no statechart behind it)", v["machine"]);
    }
    if watch {
        let last = v["last_events"]
            .as_array()
            .and_then(|a| a.last())
            .and_then(Value::as_str)
            .unwrap_or("-");
        // Steps the machine's node folded into this report (it stepped faster than the
        // node reports): said, so that a reader knows states went by unseen.
        let folded = match v["skipped"].as_u64() {
            Some(n) if n > 0 => format!("  ({n} earlier step{} not shown)", plural(n)),
            _ => String::new(),
        };
        return outln!(
            "{at}  {}  {}  after {last}  accepts {}{folded}",
            v["status"].as_str().unwrap_or("?"),
            v["state"],
            names(&v["accepts"])
        );
    }
    outln!("machine      {}", v["machine"].as_str().unwrap_or("?"))?;
    outln!("status       {}", v["status"].as_str().unwrap_or("?"))?;
    outln!("state        {}", v["state"])?;
    if let Some(context) = v.get("context") {
        outln!("context      {context}")?;
    }
    outln!("accepts      {}", names(&v["accepts"]))?;
    outln!("last events  {}", names(&v["last_events"]))?;
    outln!("errors       {}", names(&v["errors"]))?;
    if let Some(j) = v.get("journal") {
        outln!("journal      {}", journal_line(j))?;
    }
    outln!("at           {at}")
}

/// A durable machine's journal state, for a person: where it started from, and a torn or
/// corrupted tail its journal dropped.
fn journal_line(j: &Value) -> String {
    let mut line = match j["restored_from"].as_u64() {
        Some(n) => format!("durable, restored from record {n}"),
        None => "durable, started afresh".to_string(),
    };
    if let Some(d) = j["dropped"].as_str() {
        line.push_str("; ");
        line.push_str(d);
    }
    line
}

/// `interstate status ID [--json] [--watch]`.
pub fn status(args: &BusArgs, id: &str, as_json: bool, watch: bool) -> Result<(), String> {
    let stop = stop_flag()?;
    let mut node = client(args)?;
    wait_registry(&mut node)?;
    if !node.registry().contains(id) {
        return Err(format!(
            "no machine '{id}' is registered on bus '{}' (see `interstate ps`)",
            node.config().bus
        ));
    }
    node.watch_state(id, true);
    let end = StdInstant::now() + ANSWER_WITHIN;
    let mut first = None;
    while first.is_none() && StdInstant::now() < end {
        node.run_once(Some(StdDuration::from_millis(20)))
            .map_err(|e| e.to_string())?;
        first = node.next_state_report();
    }
    let Some((_, report)) = first else {
        return Err(format!(
            "machine '{id}' did not report its state within {} s (a process that is not an \
             interstate node may not answer state queries)",
            ANSWER_WITHIN.as_secs()
        ));
    };
    let v: Value = serde_json::from_str(&report).map_err(|e| format!("a bad report: {e}"))?;
    print_report(&v, as_json, watch)?;
    if !watch {
        return Ok(());
    }
    let mut present = true;
    while !stop.load(Ordering::Relaxed) {
        node.run_once(Some(StdDuration::from_millis(200)))
            .map_err(|e| e.to_string())?;
        while let Some((_, report)) = node.next_state_report() {
            if let Ok(v) = serde_json::from_str::<Value>(&report) {
                print_report(&v, as_json, true)?;
            }
        }
        let now_present = node.registry().contains(id);
        if now_present != present {
            present = now_present;
            let what = if present {
                "joined the bus"
            } else {
                "left the bus"
            };
            if as_json {
                outln!("{}", json!({"machine": id, "event": what}))?;
            } else {
                outln!("{id} {what}")?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod journal_tests {
    use serde_json::json;

    #[test]
    fn a_journal_line_says_where_the_machine_started_and_what_was_dropped() {
        let line = super::journal_line(&json!({"restored_from": 41, "dropped": null}));
        assert_eq!(line, "durable, restored from record 41");
        let line =
            super::journal_line(&json!({"restored_from": null, "dropped": "dropped 7 bytes"}));
        assert_eq!(line, "durable, started afresh; dropped 7 bytes");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(super::rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            super::rfc3339_ms(1_700_000_000_123),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(
            super::rfc3339_ms(951_825_600_000),
            "2000-02-29T12:00:00.000Z"
        );
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
