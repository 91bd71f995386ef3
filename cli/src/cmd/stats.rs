//! `interstate stats [--json]`: every process's counters on the bus. The command asks the
//! hub (a `StatsRequest` frame); the hub answers with its own report and the number of
//! other processes it passed the request on to, and forwards their reports as they come
//! (see `docs/operations.md`). A process that does not answer within the wait (an older
//! build skips the request) is counted as missing.

use std::time::{Duration, Instant};

use interstate_platform::metrics::{MetricKind, Report};
use serde_json::json;

use super::bus::{client, BusArgs};
use crate::outln;

/// How long the command waits for the answers.
const WAIT: Duration = Duration::from_secs(3);

/// The reports gathered, and how many processes did not answer.
pub struct Gathered {
    /// The reports, the hub's first.
    pub reports: Vec<Report>,
    /// Processes asked that did not answer in time.
    pub missing: u32,
}

/// Asks the bus for every process's report.
pub fn gather(args: &BusArgs) -> Result<Gathered, String> {
    let mut node = client(args)?;
    node.request_stats().map_err(|e| e.to_string())?;
    let deadline = Instant::now() + WAIT;
    let mut reports = Vec::new();
    let mut expected: Option<u32> = None;
    let mut from_nodes = 0u32;
    while Instant::now() < deadline {
        node.run_once(Some(Duration::from_millis(20)))
            .map_err(|e| e.to_string())?;
        while let Some(a) = node.next_stats_answer() {
            let Some(report) = Report::from_json(&a.report) else {
                continue;
            };
            if a.link == 0 {
                expected = Some(a.expect);
                reports.insert(0, report);
            } else {
                from_nodes += 1;
                reports.push(report);
            }
        }
        if expected.is_some_and(|n| from_nodes >= n) {
            break;
        }
    }
    let Some(expected) = expected else {
        return Err(format!(
            "the hub of bus '{}' did not answer the stats request within {} s (an older hub \
             does not know it)",
            node.config().bus,
            WAIT.as_secs()
        ));
    };
    Ok(Gathered {
        reports,
        missing: expected.saturating_sub(from_nodes),
    })
}

/// `interstate stats`.
pub fn stats(args: &BusArgs, as_json: bool) -> Result<(), String> {
    let g = gather(args)?;
    if as_json {
        let v = json!({ "processes": g.reports, "missing": g.missing });
        return outln!("{v}");
    }
    for r in &g.reports {
        print_report(r)?;
    }
    if g.missing > 0 {
        outln!(
            "({} process(es) did not answer within {} s)",
            g.missing,
            WAIT.as_secs()
        )?;
    }
    Ok(())
}

/// One process's report as text: a heading, then every sample that is not zero.
fn print_report(r: &Report) -> Result<(), String> {
    let s = &r.source;
    let machines = if s.machines.is_empty() {
        String::from("no machines")
    } else {
        s.machines.join(", ")
    };
    outln!(
        "{} pid {} ({}) on bus '{}': {machines}",
        s.role,
        s.pid,
        s.executable,
        s.bus
    )?;
    for f in &r.metrics {
        let name = f.name.strip_prefix("interstate_").unwrap_or(&f.name);
        for sample in &f.samples {
            let labels: Vec<String> = sample
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let labels = if labels.is_empty() {
                String::new()
            } else {
                format!(" {{{}}}", labels.join(", "))
            };
            match (f.kind, sample.value, &sample.histogram) {
                (MetricKind::Counter | MetricKind::Gauge, Some(v), _) if v != 0 => {
                    outln!("  {name}{labels} {v}")?;
                }
                (MetricKind::Histogram, _, Some(h)) => {
                    let count: u64 = h.counts.iter().sum();
                    if count > 0 {
                        let mean_ms = h.sum / count as f64 * 1e3;
                        outln!("  {name}{labels} {count} samples, mean {mean_ms:.3} ms")?;
                    }
                }
                _ => {}
            }
        }
    }
    Ok(())
}
