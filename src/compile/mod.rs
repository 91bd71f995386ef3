//! The JSON chart compiler: XState-style JSON in, validated chart tables out.
//!
//! It reads the XState v5 machine config (plus the XStateNet spellings `cond`, `internal` and
//! `""` as an eventless key), resolves every target, and lays the chart out as the core's
//! tables (see `interstate_core::chart`). Every error names the JSON path of the offending
//! value, e.g. `states.running.on.STOP[1].target: no state '#idle2'`. No input makes it panic.
//!
//! Object keys are visited in JavaScript's order (integer-like keys first, ascending, then the
//! others as written), because that is the order XState sees them in.
//!
//! The phases, one file each: `json` reads keys and paths, `tree` collects the state tree
//! (pass 1) and resolves targets, `transitions` and `actions` read transition and action
//! configs, `layout` lays each state out in the tables (pass 2), `tables` interns names and
//! encodes the result, `error` holds [`CompileError`]. This file holds the public API and the
//! compiler's working state.

mod actions;
mod assign;
mod error;
mod invoke;
mod json;
mod layout;
mod tables;
mod transitions;
mod tree;

use std::collections::{HashMap, HashSet};

use interstate_core::chart::raw::{ActionRecord, NameRecord, StateRecord, TransitionRecord};
use interstate_core::chart::{StateKind, Tables};
use interstate_core::image::Image;
use interstate_core::Chart;
use serde_json::Value;

pub use error::CompileError;
use invoke::Outputs;

/// A compiled chart: owned tables and a validated view over them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledChart {
    strings: String,
    names: Vec<u8>,
    states: Vec<u8>,
    transitions: Vec<u8>,
    targets: Vec<u8>,
    actions: Vec<u8>,
    events: Vec<u8>,
    event_index: Vec<u8>,
    action_names: Vec<u8>,
    guard_names: Vec<u8>,
    delay_names: Vec<u8>,
    history_slots: u16,
    /// The topic filters of the chart's top-level `"subscribe"` (an interstate extension):
    /// a node subscribes the machine to each when it adds it. Not part of the tables (nor of
    /// an image).
    subscriptions: Vec<String>,
    /// The `output`s an invoked chart hands back (not part of the tables).
    outputs: Outputs,
}

impl CompiledChart {
    /// The tables, borrowed.
    pub fn tables(&self) -> Tables<'_> {
        Tables {
            strings: &self.strings,
            names: &self.names,
            states: &self.states,
            transitions: &self.transitions,
            targets: &self.targets,
            actions: &self.actions,
            events: &self.events,
            event_index: &self.event_index,
            action_names: &self.action_names,
            guard_names: &self.guard_names,
            delay_names: &self.delay_names,
            history_slots: self.history_slots,
        }
    }

    /// What the chart hands back as an invoked child that reached its final state `last`
    /// (the payload of its parent's `xstate.done.actor.<id>`), as JSON text: the root's
    /// `output` (XState's machine output), else the `output` of that top-level final state.
    pub fn output(&self, last: interstate_core::StateId) -> Option<&str> {
        self.outputs.root.as_deref().or_else(|| {
            self.outputs
                .finals
                .iter()
                .find(|(s, _)| *s == last.0)
                .map(|(_, o)| o.as_str())
        })
    }

    /// The topic filters the chart's top-level `"subscribe"` lists (validated).
    pub fn subscriptions(&self) -> &[String] {
        &self.subscriptions
    }

    /// The validated chart view. The compiler only produces tables the core accepts.
    pub fn chart(&self) -> Chart<'_> {
        Chart::new(self.tables())
            .expect("the compiler produced tables the core rejects: a bug in interstate")
    }

    /// The chart as an image (see `interstate_core::image`): load it with
    /// `interstate_core::image::decode`, on any device, without allocating.
    pub fn to_image(&self) -> Vec<u8> {
        postcard::to_stdvec(&Image::of(&self.tables())).expect("encoding into a Vec cannot fail")
    }

    /// Copies the tables out of a chart (e.g. one decoded from an image).
    pub fn from_chart(chart: &Chart<'_>) -> Self {
        let t = chart.tables();
        CompiledChart {
            strings: t.strings.to_string(),
            names: t.names.to_vec(),
            states: t.states.to_vec(),
            transitions: t.transitions.to_vec(),
            targets: t.targets.to_vec(),
            actions: t.actions.to_vec(),
            events: t.events.to_vec(),
            event_index: t.event_index.to_vec(),
            action_names: t.action_names.to_vec(),
            guard_names: t.guard_names.to_vec(),
            delay_names: t.delay_names.to_vec(),
            history_slots: t.history_slots,
            subscriptions: Vec::new(),
            outputs: Outputs::default(),
        }
    }
}

/// Compiles a chart from JSON text.
pub fn compile_str(json: &str) -> Result<CompiledChart, CompileError> {
    let value: Value = serde_json::from_str(json).map_err(|e| CompileError {
        path: String::new(),
        message: format!("not valid JSON: {e}"),
    })?;
    compile_value(&value)
}

/// Compiles a chart from a parsed JSON value.
pub fn compile_value(value: &Value) -> Result<CompiledChart, CompileError> {
    let mut c = Compiler::default();
    c.build(value)?;
    c.finish()
}

#[derive(Default, Debug)]
struct Node {
    path: String,
    key: String,
    id: String,
    parent: Option<usize>,
    kind: Option<StateKind>,
    end: usize,
    config: Value,
}

#[derive(Debug, Clone)]
enum DescriptorKind {
    Exact(String),
    Prefix(String),
    Any,
    Always,
}

#[derive(Debug)]
struct PendingTransition {
    path: String,
    trigger: DescriptorKind,
    /// Length of the descriptor, for ordering partial descriptors.
    descriptor_len: usize,
    guard: (u8, u16),
    reenter: bool,
    targets: Vec<u16>,
    actions: Vec<ActionRecord>,
}

#[derive(Default)]
struct Compiler {
    nodes: Vec<Node>,
    ids: HashMap<String, usize>,
    /// (parent, key) -> child, so that resolving a target does not scan the siblings.
    children_by_key: HashMap<(usize, String), usize>,
    strings: String,
    string_ids: HashMap<String, u16>,
    names: Vec<NameRecord>,
    events: Vec<String>,
    event_ids: HashMap<String, u16>,
    action_names: Vec<String>,
    action_ids: HashMap<String, u16>,
    guard_names: Vec<String>,
    guard_ids: HashMap<String, u16>,
    delay_names: Vec<String>,
    delay_ids: HashMap<String, u16>,
    state_recs: Vec<StateRecord>,
    transitions: Vec<TransitionRecord>,
    targets: Vec<u16>,
    actions: Vec<ActionRecord>,
    /// Records that are data, not actions (the initial context, context conditions): put
    /// after every state's actions when the tables are finished (see `assign`).
    chart_data: Vec<ActionRecord>,
    history_slots: usize,
    subscriptions: Vec<String>,
    /// Every invoke id of the chart (pass 1): a `sendTo` naming one sends to that child.
    invoke_ids: HashSet<String>,
    /// The `output` of the root and of each top-level final state, as JSON text (what an
    /// invoked chart's `xstate.done.actor.<id>` carries).
    outputs: Outputs,
}
