//! A chart's outline as JSON, for the live inspector (`interstate inspect`): the state tree
//! and the transitions with the labels `interstate diagram` gives them (the core's
//! `chart::label`). A node puts it in the first state report after the hub asks for reports
//! (`Frame::Report` on), never in the reports that follow each step, so that watching costs
//! a machine's steps nothing more than the short report.
//!
//! `{"states":[{"key","id","parent","kind","initial","entry","exit"}],
//!   "transitions":[{"from","to":[..],"label","always"}],"history":[{"from","to":[..]}]}`,
//! where states are numbered in document order (0 is the root), `parent`, `initial`,
//! `from` and `to` are those numbers, `kind` is `atomic`, `compound`, `parallel`, `final`,
//! `history` or `deep-history`, and `entry`/`exit` are the actions' labels (empty when none).

use std::fmt::Write as _;

use interstate_core::chart::{label, TransitionId};
use interstate_core::{Chart, StateId, StateKind};

use super::payload::json_string;

fn kind_name(kind: StateKind) -> &'static str {
    match kind {
        StateKind::Atomic => "atomic",
        StateKind::Compound => "compound",
        StateKind::Parallel => "parallel",
        StateKind::Final => "final",
        StateKind::ShallowHistory => "history",
        StateKind::DeepHistory => "deep-history",
    }
}

fn number(s: Option<StateId>) -> String {
    s.map_or_else(|| "null".to_string(), |s| s.0.to_string())
}

/// `chart`'s outline as a JSON object (see the module's documentation).
pub(super) fn outline(chart: &Chart<'_>) -> String {
    let mut out = String::with_capacity(64 * chart.state_count() + 64);
    let mut text = String::new();
    out.push_str("{\"states\":[");
    for i in 0..chart.state_count() {
        let s = StateId(i as u16);
        if i > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            "{{\"key\":{},\"id\":{},\"parent\":{},\"kind\":\"{}\",\"initial\":{}",
            json_string(chart.key(s)),
            json_string(chart.state_id(s)),
            number(chart.parent(s)),
            kind_name(chart.kind(s)),
            number(chart.initial(s)),
        );
        for (what, range) in [
            ("entry", chart.entry_actions(s)),
            ("exit", chart.exit_actions(s)),
        ] {
            text.clear();
            let _ = label::write_actions(chart, range, &mut text);
            let _ = write!(out, ",\"{what}\":{}", json_string(&text));
        }
        out.push('}');
    }
    out.push_str("],\"transitions\":[");
    let mut first = true;
    for i in 0..chart.state_count() {
        let s = StateId(i as u16);
        let on = chart.on_transitions(s).map(|t| (t, false));
        let always = chart.always_transitions(s).map(|t| (t, true));
        for (ti, is_always) in on.chain(always) {
            let t = chart.transition(TransitionId(ti));
            text.clear();
            let _ = label::write_transition(chart, &t, &mut text);
            if !first {
                out.push(',');
            }
            first = false;
            let targets: Vec<String> = chart.targets(&t).map(|s| s.0.to_string()).collect();
            let _ = write!(
                out,
                "{{\"from\":{i},\"to\":[{}],\"label\":{},\"always\":{is_always}}}",
                targets.join(","),
                json_string(&text)
            );
        }
    }
    out.push_str("],\"history\":[");
    let mut first = true;
    for i in 0..chart.state_count() {
        let s = StateId(i as u16);
        if !chart.kind(s).is_history() {
            continue;
        }
        if !first {
            out.push(',');
        }
        first = false;
        let targets: Vec<String> = chart.history_defaults(s).map(|s| s.0.to_string()).collect();
        let _ = write!(out, "{{\"from\":{i},\"to\":[{}]}}", targets.join(","));
    }
    out.push_str("]}");
    out
}
