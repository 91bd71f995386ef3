//! Chart pictures and summaries.
//!
//! [`render`] draws a compiled [`Chart`] as a Mermaid `stateDiagram-v2` or a Graphviz DOT
//! graph. Both pictures show the same things, read from the chart's tables rather than from
//! the JSON, so a chart image draws exactly like the JSON it was compiled from:
//!
//! - compound and parallel states as boxes holding their children (parallel regions side by
//!   side, separated by `--` in Mermaid, a dashed border in DOT), the root included;
//! - the initial state of each compound state (an arrow from a start dot), final states
//!   (an arrow to an end dot in Mermaid, a double border in DOT), history states as `H`
//!   (shallow) and `H*` (deep) nodes with a dashed arrow to their default targets;
//! - every transition as an arrow labelled `EVENT [guard] / actions`, where the event is the
//!   name, `after 500ms` or `after delayName`, `done` (`onDone`), `always`, `*` or `foo.*`.
//!   A targetless transition is drawn as an arrow from its state to itself; a transition into
//!   several parallel regions as one arrow per target;
//! - invocations as an `invoke / src as id` line of a state's label, their `onDone` and
//!   `onError` as `done id` and `error id` edges;
//! - entry and exit actions as `entry / ...` and `exit / ...` lines of a state's label (for
//!   Mermaid, only on states without children: Mermaid has no place for them on a box).
//!
//! Node names are the state ids with every character other than ASCII letters, digits and `_`
//! replaced by `_` (Mermaid's ids allow no `.`, `-`, `:` or spaces), made unique when two ids
//! map to the same name.

use std::collections::HashSet;
use std::fmt::Write as _;

use interstate_core::chart::{label, Transition, TransitionId};
use interstate_core::{Chart, StateId, StateKind};

/// A picture format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// Mermaid `stateDiagram-v2`.
    Mermaid,
    /// Graphviz DOT.
    Dot,
}

/// One line: states, transitions, events, actions, guards.
pub fn summary(chart: &Chart<'_>) -> String {
    format!(
        "{} states, {} transitions, {} events, {} actions, {} guards",
        chart.state_count(),
        chart.transition_count(),
        chart.event_count(),
        chart.action_count(),
        chart.guard_count()
    )
}

/// Renders a chart as a picture in `format`. The text ends with a newline.
pub fn render(chart: &Chart<'_>, format: Format) -> String {
    let picture = Picture::of(chart);
    match format {
        Format::Mermaid => picture.mermaid(),
        Format::Dot => picture.dot(),
    }
}

/// An arrow between two states.
struct Edge {
    from: StateId,
    to: StateId,
    label: String,
    /// History default arrows are drawn dashed.
    history_default: bool,
}

/// What both formats draw, computed once from the chart.
struct Picture<'c, 'a> {
    chart: &'c Chart<'a>,
    names: Vec<String>,
    edges: Vec<Edge>,
}

fn has_children(chart: &Chart<'_>, s: StateId) -> bool {
    matches!(chart.kind(s), StateKind::Compound | StateKind::Parallel)
}

/// A state id as a node name: ASCII letters, digits and `_` only.
fn sanitize(id: &str) -> String {
    let mut name: String = id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    // Mermaid's lexer reads a leading `default` as a keyword, whatever follows it.
    if name.is_empty()
        || name.starts_with(|c: char| c.is_ascii_digit())
        || name.to_ascii_lowercase().starts_with("default")
    {
        name.insert_str(0, "s_");
    }
    name
}

/// Unique node names, one per state. Mermaid names the start and end dots of a box `X_start`
/// and `X_end` and the top level `root`, so those are kept free too.
fn node_names(chart: &Chart<'_>) -> Vec<String> {
    let mut taken: HashSet<String> = ["root", "root_start", "root_end"]
        .into_iter()
        .map(String::from)
        .collect();
    let mut names = Vec::with_capacity(chart.state_count());
    for i in 0..chart.state_count() {
        let s = StateId(i as u16);
        let base = sanitize(chart.state_id(s));
        let reserve = |n: &str| -> Vec<String> {
            if has_children(chart, s) {
                vec![n.to_string(), format!("{n}_start"), format!("{n}_end")]
            } else {
                vec![n.to_string()]
            }
        };
        let mut candidate = base.clone();
        let mut k = 2;
        while reserve(&candidate).iter().any(|n| taken.contains(n)) {
            candidate = format!("{base}_{k}");
            k += 1;
        }
        taken.extend(reserve(&candidate));
        names.push(candidate);
    }
    names
}

/// The shown actions of `range` (not the timer bookkeeping of `after`), each described.
fn action_list(chart: &Chart<'_>, range: std::ops::Range<u16>) -> Vec<String> {
    range
        .filter(|&i| label::action_shown(chart, i))
        .map(|i| {
            let mut text = String::new();
            let _ = label::write_action(chart, i, &mut text);
            text
        })
        .collect()
}

/// `EVENT [guard] / actions` (the core's labels, shared with the live inspector).
fn transition_label(chart: &Chart<'_>, t: &Transition) -> String {
    let mut text = String::new();
    let _ = label::write_transition(chart, t, &mut text);
    text
}

impl<'c, 'a> Picture<'c, 'a> {
    fn of(chart: &'c Chart<'a>) -> Self {
        let mut edges = Vec::new();
        for i in 0..chart.state_count() {
            let s = StateId(i as u16);
            for ti in chart.on_transitions(s).chain(chart.always_transitions(s)) {
                let t = chart.transition(TransitionId(ti));
                let label = transition_label(chart, &t);
                let mut targets = chart.targets(&t).peekable();
                if targets.peek().is_none() {
                    edges.push(Edge {
                        from: s,
                        to: s,
                        label,
                        history_default: false,
                    });
                    continue;
                }
                for to in targets {
                    edges.push(Edge {
                        from: s,
                        to,
                        label: label.clone(),
                        history_default: false,
                    });
                }
            }
            if chart.kind(s).is_history() {
                for to in chart.history_defaults(s) {
                    edges.push(Edge {
                        from: s,
                        to,
                        label: String::new(),
                        history_default: true,
                    });
                }
            }
        }
        Picture {
            chart,
            names: node_names(chart),
            edges,
        }
    }

    fn name(&self, s: StateId) -> &str {
        &self.names[s.index()]
    }

    /// A state's title: its key, or the machine id for the root.
    fn title(&self, s: StateId) -> &'a str {
        match self.chart.parent(s) {
            None => self.chart.state_id(s),
            Some(_) => self.chart.key(s),
        }
    }

    /// `entry / a, b`, `exit / c` and `invoke / src as id` lines.
    fn action_lines(&self, s: StateId) -> Vec<String> {
        let mut lines = Vec::new();
        for (what, range) in [
            ("entry", self.chart.entry_actions(s)),
            ("exit", self.chart.exit_actions(s)),
        ] {
            let list = action_list(self.chart, range);
            if !list.is_empty() {
                lines.push(format!("{what} / {}", list.join(", ")));
            }
        }
        // The state's invocations: `invoke / worker as job`.
        let invoked: Vec<String> = self
            .chart
            .entry_actions(s)
            .filter_map(|i| match self.chart.action_at(i) {
                interstate_core::chart::Action::StartChild { src, id, .. } => {
                    Some(format!("{} as {}", self.chart.str(src), self.chart.str(id)))
                }
                _ => None,
            })
            .collect();
        if !invoked.is_empty() {
            lines.push(format!("invoke / {}", invoked.join(", ")));
        }
        lines
    }

    // ----- Mermaid -----

    fn mermaid(&self) -> String {
        let mut out = String::from("stateDiagram-v2\n");
        let root = StateId(0);
        let _ = writeln!(out, "    [*] --> {}", self.name(root));
        self.mermaid_state(&mut out, root, 1);
        for e in &self.edges {
            let _ = write!(out, "    {} --> {}", self.name(e.from), self.name(e.to));
            if !e.label.is_empty() {
                let _ = write!(out, " : {}", mermaid_text(&e.label));
            }
            out.push('\n');
        }
        out
    }

    fn mermaid_state(&self, out: &mut String, s: StateId, depth: usize) {
        let pad = "    ".repeat(depth);
        let name = self.name(s);
        let title = mermaid_text(self.title(s));
        let kind = self.chart.kind(s);
        match kind {
            StateKind::ShallowHistory | StateKind::DeepHistory => {
                let h = if kind == StateKind::DeepHistory {
                    "H*"
                } else {
                    "H"
                };
                let _ = writeln!(out, "{pad}state \"{h}\" as {name}");
            }
            StateKind::Atomic | StateKind::Final => {
                let _ = writeln!(out, "{pad}state \"{title}\" as {name}");
                for line in self.action_lines(s) {
                    let _ = writeln!(out, "{pad}{name} : {}", mermaid_text(&line));
                }
            }
            StateKind::Compound => {
                let _ = writeln!(out, "{pad}state \"{title}\" as {name} {{");
                if let Some(init) = self.chart.initial(s) {
                    let _ = writeln!(out, "{pad}    [*] --> {}", self.name(init));
                }
                for c in self.chart.children(s) {
                    self.mermaid_state(out, c, depth + 1);
                }
                for c in self.chart.children(s) {
                    if self.chart.kind(c) == StateKind::Final {
                        let _ = writeln!(out, "{pad}    {} --> [*]", self.name(c));
                    }
                }
                let _ = writeln!(out, "{pad}}}");
            }
            StateKind::Parallel => {
                let _ = writeln!(out, "{pad}state \"{title}\" as {name} {{");
                // History states are not regions: they go with the first region.
                let mut first = true;
                for c in self.chart.children(s) {
                    if self.chart.kind(c).is_history() {
                        self.mermaid_state(out, c, depth + 1);
                    }
                }
                for c in self.chart.children(s) {
                    if self.chart.kind(c).is_history() {
                        continue;
                    }
                    if !first {
                        let _ = writeln!(out, "{pad}    --");
                    }
                    first = false;
                    self.mermaid_state(out, c, depth + 1);
                }
                let _ = writeln!(out, "{pad}}}");
            }
        }
    }

    // ----- DOT -----

    fn dot(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "digraph {} {{",
            dot_quote(self.chart.state_id(StateId(0)))
        );
        out.push_str("    compound=true;\n    rankdir=LR;\n");
        out.push_str("    node [shape=box, style=rounded, fontname=\"Helvetica\"];\n");
        out.push_str("    edge [fontname=\"Helvetica\", fontsize=10];\n");
        out.push_str("    \"__start\" [shape=point, width=0.15, label=\"\"];\n");
        let root = StateId(0);
        self.dot_state(&mut out, root, 1);
        let _ = write!(out, "    \"__start\" -> {}", self.dot_endpoint(root));
        if has_children(self.chart, root) {
            let _ = write!(out, " [lhead={}]", dot_quote(&self.cluster(root)));
        }
        out.push_str(";\n");
        for e in &self.edges {
            let mut attrs = Vec::new();
            if !e.label.is_empty() {
                attrs.push(format!("label={}", dot_quote(&e.label)));
            }
            if e.history_default {
                attrs.push("style=dashed".to_string());
            }
            // Clipping to a box only works for an arrow that leaves (enters) it: Graphviz
            // ignores, with a warning, a tail (head) box holding the other end.
            let inside = |a: StateId, b: StateId| a == b || self.chart.is_descendant(a, b);
            if has_children(self.chart, e.from) && !inside(e.to, e.from) {
                attrs.push(format!("ltail={}", dot_quote(&self.cluster(e.from))));
            }
            if has_children(self.chart, e.to) && !inside(e.from, e.to) {
                attrs.push(format!("lhead={}", dot_quote(&self.cluster(e.to))));
            }
            let _ = write!(
                out,
                "    {} -> {}",
                self.dot_endpoint(e.from),
                self.dot_endpoint(e.to)
            );
            if !attrs.is_empty() {
                let _ = write!(out, " [{}]", attrs.join(", "));
            }
            out.push_str(";\n");
        }
        out.push_str("}\n");
        out
    }

    fn cluster(&self, s: StateId) -> String {
        format!("cluster_{}", self.name(s))
    }

    /// The node an arrow to or from `s` attaches to: the state's node, or for a box the
    /// invisible anchor inside it (the arrow is clipped to the box by `lhead`/`ltail`).
    fn dot_endpoint(&self, s: StateId) -> String {
        if has_children(self.chart, s) {
            dot_quote(&format!("{}__anchor", self.name(s)))
        } else {
            dot_quote(self.name(s))
        }
    }

    fn dot_label(&self, s: StateId) -> String {
        let mut lines = vec![self.title(s).to_string()];
        lines.extend(self.action_lines(s));
        // Graphviz's `\n` line break, written after quoting so it is not escaped.
        lines
            .iter()
            .map(|l| dot_escape(l))
            .collect::<Vec<_>>()
            .join("\\n")
    }

    fn dot_state(&self, out: &mut String, s: StateId, depth: usize) {
        let pad = "    ".repeat(depth);
        let name = dot_quote(self.name(s));
        let kind = self.chart.kind(s);
        match kind {
            StateKind::ShallowHistory | StateKind::DeepHistory => {
                let h = if kind == StateKind::DeepHistory {
                    "H*"
                } else {
                    "H"
                };
                let _ = writeln!(out, "{pad}{name} [shape=circle, label=\"{h}\"];");
            }
            StateKind::Atomic => {
                let _ = writeln!(out, "{pad}{name} [label=\"{}\"];", self.dot_label(s));
            }
            StateKind::Final => {
                let _ = writeln!(
                    out,
                    "{pad}{name} [label=\"{}\", peripheries=2];",
                    self.dot_label(s)
                );
            }
            StateKind::Compound | StateKind::Parallel => {
                let _ = writeln!(out, "{pad}subgraph {} {{", dot_quote(&self.cluster(s)));
                let _ = writeln!(out, "{pad}    label=\"{}\";", self.dot_label(s));
                let style = if kind == StateKind::Parallel {
                    "rounded,dashed"
                } else {
                    "rounded"
                };
                let _ = writeln!(out, "{pad}    style=\"{style}\";");
                let _ = writeln!(
                    out,
                    "{pad}    {} [shape=point, style=invis, width=0.01, label=\"\"];",
                    self.dot_endpoint(s)
                );
                if let Some(init) = self.chart.initial(s) {
                    let start = dot_quote(&format!("{}__initial", self.name(s)));
                    let _ = writeln!(
                        out,
                        "{pad}    {start} [shape=point, width=0.12, label=\"\"];"
                    );
                    let _ = write!(out, "{pad}    {start} -> {}", self.dot_endpoint(init));
                    if has_children(self.chart, init) {
                        let _ = write!(out, " [lhead={}]", dot_quote(&self.cluster(init)));
                    }
                    out.push_str(";\n");
                }
                for c in self.chart.children(s) {
                    self.dot_state(out, c, depth + 1);
                }
                let _ = writeln!(out, "{pad}}}");
            }
        }
    }
}

/// Text Mermaid shows as written: `:` and `;` end a label and `"` a state title, so they are
/// written as Mermaid's entity codes; line breaks become spaces.
fn mermaid_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            ':' => out.push_str("#58;"),
            ';' => out.push_str("#59;"),
            '"' => out.push_str("#quot;"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Escapes text for inside a DOT double-quoted string.
fn dot_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

fn dot_quote(s: &str) -> String {
    format!("\"{}\"", dot_escape(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile_str;

    /// Hierarchy, a parallel state, shallow and deep history, a final state, `after` timers
    /// (fixed and named), guards (named and `in`), wildcards, `always`, `onDone`, a
    /// targetless transition and entry/exit actions.
    const CHART: &str = r##"{
        "id": "player",
        "initial": "off",
        "on": { "RESET": ".off" },
        "states": {
            "off": { "on": { "POWER": { "target": "on", "guard": "hasBattery" } } },
            "on": {
                "type": "parallel",
                "entry": ["lightUp"],
                "exit": ["dim"],
                "onDone": "off",
                "states": {
                    "deck": {
                        "initial": "stopped",
                        "states": {
                            "stopped": { "on": { "PLAY": "playing", "EJECT": "ejected" } },
                            "playing": {
                                "after": { "500": { "target": "stopped", "actions": "tick" }, "idleTimeout": "stopped" },
                                "on": { "media.*": { "actions": "note" } }
                            },
                            "ejected": { "type": "final" },
                            "hist": { "type": "history", "target": "playing" }
                        }
                    },
                    "volume": {
                        "initial": "normal",
                        "states": {
                            "normal": { "on": { "LOUD": { "target": "loud", "guard": { "type": "stateIn", "state": "#player.on.deck.playing" } } } },
                            "loud": { "always": { "target": "normal", "guard": "tooLoud" }, "on": { "*": "normal" } },
                            "done": { "type": "final" },
                            "deepest": { "type": "history", "history": "deep" }
                        }
                    }
                }
            }
        }
    }"##;

    fn render_chart(format: Format) -> String {
        let compiled = compile_str(CHART).expect("the test chart compiles");
        render(&compiled.chart(), format)
    }

    #[test]
    fn mermaid_draws_hierarchy_regions_history_and_labels() {
        let m = render_chart(Format::Mermaid);
        assert!(
            m.starts_with("stateDiagram-v2\n    [*] --> player\n"),
            "{m}"
        );
        for line in [
            "    state \"player\" as player {",
            "        [*] --> player_off",
            "        state \"off\" as player_off",
            "        state \"on\" as player_on {",
            "            state \"deck\" as player_on_deck {",
            "                [*] --> player_on_deck_stopped",
            "                state \"ejected\" as player_on_deck_ejected",
            "                state \"H\" as player_on_deck_hist",
            "                player_on_deck_ejected --> [*]",
            "            --",
            "            state \"volume\" as player_on_volume {",
            "                state \"H*\" as player_on_volume_deepest",
            "    player_off --> player_on : POWER [hasBattery]",
            "    player --> player_off : RESET",
            "    player_on --> player_off : done",
            "    player_on_deck_playing --> player_on_deck_stopped : after 500ms / tick",
            "    player_on_deck_playing --> player_on_deck_stopped : after idleTimeout",
            "    player_on_deck_playing --> player_on_deck_playing : media.* / note",
            "    player_on_volume_normal --> player_on_volume_loud : LOUD [in #player.on.deck.playing]",
            "    player_on_volume_loud --> player_on_volume_normal : always [tooLoud]",
            "    player_on_volume_loud --> player_on_volume_normal : *",
            "    player_on_deck_hist --> player_on_deck_playing",
        ] {
            assert!(m.lines().any(|l| l == line), "missing line {line:?} in\n{m}");
        }
        // Entry/exit actions of a box have no place in Mermaid; of a leaf, they do.
        assert!(!m.contains("lightUp"), "{m}");
        // The `after` timer bookkeeping is not shown as actions.
        assert!(!m.contains("xstate.after"), "{m}");
        // Braces balance.
        assert_eq!(m.matches('{').count(), m.matches('}').count(), "{m}");
    }

    #[test]
    fn dot_draws_clusters_and_the_same_labels() {
        let d = render_chart(Format::Dot);
        assert!(d.starts_with("digraph \"player\" {\n"), "{d}");
        assert!(d.ends_with("}\n"), "{d}");
        for needle in [
            "subgraph \"cluster_player\" {",
            "subgraph \"cluster_player_on\" {",
            "label=\"on\\nentry / lightUp\\nexit / dim\";",
            "style=\"rounded,dashed\";",
            "\"player_on_deck_ejected\" [label=\"ejected\", peripheries=2];",
            "\"player_on_deck_hist\" [shape=circle, label=\"H\"];",
            "\"player_on_volume_deepest\" [shape=circle, label=\"H*\"];",
            "\"player_off\" -> \"player_on__anchor\" [label=\"POWER [hasBattery]\", lhead=\"cluster_player_on\"];",
            "\"player_on__anchor\" -> \"player_off\" [label=\"done\", ltail=\"cluster_player_on\"];",
            "\"player_on_deck_playing\" -> \"player_on_deck_stopped\" [label=\"after 500ms / tick\"];",
            "\"player_on_deck_hist\" -> \"player_on_deck_playing\" [style=dashed];",
            "\"player_on_deck__initial\" -> \"player_on_deck_stopped\";",
            "\"__start\" -> \"player__anchor\" [lhead=\"cluster_player\"];",
        ] {
            assert!(d.contains(needle), "missing {needle:?} in\n{d}");
        }
        assert_eq!(d.matches('{').count(), d.matches('}').count(), "{d}");
    }

    #[test]
    fn invocations_are_drawn_on_their_states() {
        let compiled = compile_str(
            r#"{"id":"r","initial":"w","states":{"w":{"entry":"go","exit":"bye",
            "invoke":[{"src":"worker","id":"job","onDone":"x","onError":"x"},{"src":"log","id":"l"}]},
            "x":{}}}"#,
        )
        .expect("compiles");
        let m = render(&compiled.chart(), Format::Mermaid);
        for needle in [
            "r_w : entry / go\n",
            "r_w : exit / bye\n",
            "r_w : invoke / worker as job, log as l\n",
            "r_w --> r_x : done job\n",
            "r_w --> r_x : error job\n",
        ] {
            assert!(m.contains(needle), "missing {needle:?} in\n{m}");
        }
    }

    #[test]
    fn an_atomic_root_is_one_node() {
        let compiled = compile_str(r#"{"id":"lamp","entry":"glow"}"#).expect("compiles");
        let chart = compiled.chart();
        let m = render(&chart, Format::Mermaid);
        assert_eq!(
            m,
            "stateDiagram-v2\n    [*] --> lamp\n    state \"lamp\" as lamp\n    lamp : entry / glow\n"
        );
        let d = render(&chart, Format::Dot);
        assert!(
            d.contains("\"lamp\" [label=\"lamp\\nentry / glow\"];"),
            "{d}"
        );
        assert!(d.contains("\"__start\" -> \"lamp\";"), "{d}");
    }

    #[test]
    fn node_names_are_sanitized_and_unique() {
        // `a-b` and `a_b` both sanitize to `a_b`; `root` and `default` are Mermaid words; the
        // compound `x` needs `x_start` free, which the atomic `x_start` took first.
        let compiled = compile_str(
            r##"{"id":"root","initial":"a-b","states":{
                "a-b":{}, "a_b":{}, "default":{}, "9lives":{},
                "q":{"id":"x_start"}, "w":{"id":"x","initial":"k","states":{"k":{}}}
            }}"##,
        )
        .expect("compiles");
        let chart = compiled.chart();
        let names = node_names(&chart);
        assert_eq!(
            names,
            [
                "root_2",
                "root_a_b",
                "root_a_b_2",
                "root_default",
                "root_9lives",
                "x_start",
                "x_2",
                "x_k"
            ]
        );
        let unique: HashSet<&String> = names.iter().collect();
        assert_eq!(unique.len(), names.len());
        assert_eq!(sanitize("default.x"), "s_default_x");
        assert_eq!(sanitize("1"), "s_1");
        assert_eq!(sanitize(""), "s_");
    }

    #[test]
    fn labels_escape_what_each_format_cannot_hold() {
        assert_eq!(mermaid_text("a:b;c\"d"), "a#58;b#59;c#quot;d");
        assert_eq!(dot_escape("say \"hi\" \\ now"), "say \\\"hi\\\" \\\\ now");
    }
}
