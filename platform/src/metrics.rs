//! Metrics as the operator reads them: a report of metric families (counters, gauges, one
//! histogram) that a process builds from its fixed-size counters when asked, and its two
//! renderings: JSON (what a node answers a stats request with, and `interstate stats
//! --json` prints) and the OpenMetrics text format (what `--metrics ADDR` serves).
//!
//! The counters themselves are plain integers kept where they are counted (the core hub's,
//! [`crate::node::NodeStats`], each hosted machine's); nothing here runs on the hot path:
//! a report is built only when someone asks for one. The names and meanings of every
//! metric are listed in `docs/operations.md`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// The bounds of the acknowledgement latency histogram's buckets, in microseconds (a
/// last, unbounded bucket follows).
pub const LATENCY_BOUNDS_US: [u64; 12] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 1_000_000, 10_000_000,
];

/// A latency histogram with the fixed buckets of [`LATENCY_BOUNDS_US`]: no allocation to
/// record a sample.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LatencyHistogram {
    /// Samples per bucket (not cumulative); the last is for samples above every bound.
    pub counts: [u64; LATENCY_BOUNDS_US.len() + 1],
    /// The sum of the samples, in microseconds.
    pub sum_us: u64,
}

impl LatencyHistogram {
    /// Records one sample.
    pub fn record(&mut self, us: u64) {
        let i = LATENCY_BOUNDS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(LATENCY_BOUNDS_US.len());
        self.counts[i] += 1;
        self.sum_us = self.sum_us.saturating_add(us);
    }

    /// How many samples it holds.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// What kind of metric a family is (OpenMetrics' types).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricKind {
    /// Only goes up (from the process's start); its samples are named `NAME_total`.
    Counter,
    /// A value now.
    Gauge,
    /// A distribution: buckets, sum and count.
    Histogram,
}

/// A histogram's value: bounds in seconds, per-bucket counts (the last above every bound),
/// and the sum in seconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistogramValue {
    /// The buckets' upper bounds, in seconds.
    pub bounds: Vec<f64>,
    /// Samples per bucket (not cumulative), one more than `bounds`.
    pub counts: Vec<u64>,
    /// The sum of the samples, in seconds.
    pub sum: f64,
}

impl From<&LatencyHistogram> for HistogramValue {
    fn from(h: &LatencyHistogram) -> Self {
        HistogramValue {
            bounds: LATENCY_BOUNDS_US
                .iter()
                .map(|&us| us as f64 / 1e6)
                .collect(),
            counts: h.counts.to_vec(),
            sum: h.sum_us as f64 / 1e6,
        }
    }
}

/// One sample of a family: its labels and its value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Label names and values (e.g. `machine`, `link`, `reason`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// A counter's or gauge's value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<u64>,
    /// A histogram's value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub histogram: Option<HistogramValue>,
}

/// A metric family: a name (without `_total`), its kind and meaning, its samples.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Family {
    /// The name, e.g. `interstate_hub_messages_routed` (a counter's samples add `_total`).
    pub name: String,
    /// Counter, gauge or histogram.
    pub kind: MetricKind,
    /// What it means, in one line.
    pub help: String,
    /// Its samples.
    pub samples: Vec<Sample>,
}

/// Who a report is from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Source {
    /// `hub` (the process serving the bus) or `node`.
    pub role: String,
    /// The process id.
    pub pid: u32,
    /// The executable's name.
    pub executable: String,
    /// The bus.
    pub bus: String,
    /// The machine ids the process hosts.
    #[serde(default)]
    pub machines: Vec<String>,
}

/// One process's metrics.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Who it is from.
    pub source: Source,
    /// Its metric families.
    pub metrics: Vec<Family>,
}

/// Labels from pairs.
pub fn labels<const N: usize>(pairs: [(&str, &str); N]) -> BTreeMap<String, String> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl Report {
    /// A report from `source` with no metrics yet.
    pub fn new(source: Source) -> Self {
        Report {
            source,
            metrics: Vec::new(),
        }
    }

    fn family(&mut self, name: &str, kind: MetricKind, help: &str) -> &mut Family {
        if let Some(i) = self.metrics.iter().position(|f| f.name == name) {
            return &mut self.metrics[i];
        }
        self.metrics.push(Family {
            name: name.to_string(),
            kind,
            help: help.to_string(),
            samples: Vec::new(),
        });
        self.metrics.last_mut().expect("just pushed")
    }

    /// Adds a counter sample (the family is made at its first sample).
    pub fn counter(&mut self, name: &str, help: &str, labels: BTreeMap<String, String>, v: u64) {
        self.family(name, MetricKind::Counter, help)
            .samples
            .push(Sample {
                labels,
                value: Some(v),
                histogram: None,
            });
    }

    /// Adds a gauge sample.
    pub fn gauge(&mut self, name: &str, help: &str, labels: BTreeMap<String, String>, v: u64) {
        self.family(name, MetricKind::Gauge, help)
            .samples
            .push(Sample {
                labels,
                value: Some(v),
                histogram: None,
            });
    }

    /// Adds a histogram sample.
    pub fn histogram(
        &mut self,
        name: &str,
        help: &str,
        labels: BTreeMap<String, String>,
        h: &LatencyHistogram,
    ) {
        self.family(name, MetricKind::Histogram, help)
            .samples
            .push(Sample {
                labels,
                value: None,
                histogram: Some(h.into()),
            });
    }

    /// A sample's value by family name and labels (for tests and the `stats` table).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
        let f = self.metrics.iter().find(|f| f.name == name)?;
        f.samples
            .iter()
            .find(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })?
            .value
    }

    /// The report as JSON (what a node answers a stats request with).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }

    /// A report from JSON; `None` for anything else.
    pub fn from_json(bytes: &[u8]) -> Option<Report> {
        serde_json::from_slice(bytes).ok()
    }
}

/// The OpenMetrics text exposition of `reports` (one process's, usually one report):
/// families in order, each with `# TYPE` and `# HELP`, then `# EOF`. Families of the same
/// name in several reports are merged (their samples told apart by their labels).
pub fn openmetrics(reports: &[&Report]) -> String {
    let mut order: Vec<&Family> = Vec::new();
    let mut merged: BTreeMap<&str, Vec<&Sample>> = BTreeMap::new();
    for r in reports {
        for f in &r.metrics {
            let samples = merged.entry(f.name.as_str()).or_default();
            if samples.is_empty() && !order.iter().any(|o| o.name == f.name) {
                order.push(f);
            }
            samples.extend(f.samples.iter());
        }
    }
    let mut out = String::new();
    for f in order {
        let kind = match f.kind {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        };
        let _ = writeln!(out, "# TYPE {} {kind}", f.name);
        let _ = writeln!(out, "# HELP {} {}", f.name, escape_help(&f.help));
        for s in merged.get(f.name.as_str()).into_iter().flatten() {
            match (f.kind, s.value, &s.histogram) {
                (MetricKind::Counter, Some(v), _) => {
                    let _ = writeln!(out, "{}_total{} {v}", f.name, label_text(&s.labels, None));
                }
                (MetricKind::Gauge, Some(v), _) => {
                    let _ = writeln!(out, "{}{} {v}", f.name, label_text(&s.labels, None));
                }
                (MetricKind::Histogram, _, Some(h)) => {
                    let mut cumulative = 0u64;
                    for (i, c) in h.counts.iter().enumerate() {
                        cumulative += c;
                        let le = h
                            .bounds
                            .get(i)
                            .map_or_else(|| "+Inf".to_string(), |b| format_float(*b));
                        let _ = writeln!(
                            out,
                            "{}_bucket{} {cumulative}",
                            f.name,
                            label_text(&s.labels, Some(&le))
                        );
                    }
                    let labels = label_text(&s.labels, None);
                    let _ = writeln!(out, "{}_count{labels} {cumulative}", f.name);
                    let _ = writeln!(out, "{}_sum{labels} {}", f.name, format_float(h.sum));
                }
                _ => {}
            }
        }
    }
    out.push_str("# EOF\n");
    out
}

/// The media type of [`openmetrics`]'s text.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A float as OpenMetrics writes it (always with a fraction or exponent, never `NaN`).
fn format_float(v: f64) -> String {
    let s = format!("{v}");
    if s.contains('.') || s.contains('e') || s.contains("inf") {
        s
    } else {
        format!("{s}.0")
    }
}

/// `{a="x",b="y"}` (with `le` last, for a bucket), or nothing for no labels.
fn label_text(labels: &BTreeMap<String, String>, le: Option<&str>) -> String {
    if labels.is_empty() && le.is_none() {
        return String::new();
    }
    let mut out = String::from("{");
    let mut first = true;
    let pairs = labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain(le.map(|le| ("le", le)));
    for (k, v) in pairs {
        if !first {
            out.push(',');
        }
        first = false;
        let _ = write!(out, "{k}=\"{}\"", escape_label(v));
    }
    out.push('}');
    out
}

/// A label value escaped as OpenMetrics asks: `\`, `"` and newline.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A help text escaped as OpenMetrics asks: `\`, `"` and newline.
fn escape_help(v: &str) -> String {
    escape_label(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_puts_each_sample_in_the_first_bucket_it_fits() {
        let mut h = LatencyHistogram::default();
        h.record(0);
        h.record(100);
        h.record(101);
        h.record(u64::MAX / 2);
        assert_eq!(h.counts[0], 2);
        assert_eq!(h.counts[1], 1);
        assert_eq!(h.counts[LATENCY_BOUNDS_US.len()], 1);
        assert_eq!(h.count(), 4);
    }

    #[test]
    fn openmetrics_text_has_types_totals_cumulative_buckets_and_eof() {
        let mut r = Report::new(Source::default());
        r.counter(
            "interstate_x_messages",
            "Messages \"x\".",
            labels([("machine", "a\"b")]),
            3,
        );
        r.gauge("interstate_x_depth", "Depth.", BTreeMap::new(), 2);
        let mut h = LatencyHistogram::default();
        h.record(50);
        h.record(2_000);
        r.histogram(
            "interstate_x_latency_seconds",
            "Latency.",
            BTreeMap::new(),
            &h,
        );
        let text = openmetrics(&[&r]);
        assert!(
            text.contains("# TYPE interstate_x_messages counter\n"),
            "{text}"
        );
        assert!(text.contains("# HELP interstate_x_messages Messages \\\"x\\\".\n"));
        assert!(text.contains("interstate_x_messages_total{machine=\"a\\\"b\"} 3\n"));
        assert!(text.contains("interstate_x_depth 2\n"));
        assert!(text.contains("interstate_x_latency_seconds_bucket{le=\"0.0001\"} 1\n"));
        assert!(text.contains("interstate_x_latency_seconds_bucket{le=\"0.0025\"} 2\n"));
        assert!(text.contains("interstate_x_latency_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains("interstate_x_latency_seconds_count 2\n"));
        assert!(text.contains("interstate_x_latency_seconds_sum 0.00205\n"));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn a_report_survives_json() {
        let mut r = Report::new(Source {
            role: "node".into(),
            pid: 7,
            executable: "x".into(),
            bus: "b".into(),
            machines: vec!["m".into()],
        });
        r.counter("interstate_a", "A.", labels([("k", "v")]), 1);
        let back = Report::from_json(r.to_json().as_bytes()).expect("parses");
        assert_eq!(back, r);
        assert_eq!(back.value("interstate_a", &[("k", "v")]), Some(1));
        assert_eq!(back.value("interstate_a", &[("k", "w")]), None);
    }
}
