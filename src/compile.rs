//! The JSON chart compiler: XState-style JSON in, validated chart tables out.
//!
//! It reads the XState v5 machine config (plus the XStateNet spellings `cond`, `internal` and
//! `""` as an eventless key), resolves every target, and lays the chart out as the core's
//! tables (see `interstate_core::chart`). Every error names the JSON path of the offending
//! value, e.g. `states.running.on.STOP[1].target: no state '#idle2'`. No input makes it panic.
//!
//! Object keys are visited in JavaScript's order (integer-like keys first, ascending, then the
//! others as written), because that is the order XState sees them in.

use std::collections::HashMap;
use std::fmt;

use interstate_core::chart::raw::{ActionRecord, NameRecord, StateRecord, TransitionRecord};
use interstate_core::chart::{StateKind, Tables, Trigger, NONE};
use interstate_core::image::Image;
use interstate_core::Chart;
use serde_json::{Map, Value};

/// A compile error: where in the JSON, and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    /// The JSON path, e.g. `states.running.on.STOP[1].target` (empty for the whole document).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for CompileError {}

fn err<T>(path: &str, message: impl Into<String>) -> Result<T, CompileError> {
    Err(CompileError {
        path: path.to_string(),
        message: message.into(),
    })
}

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

// ---------------------------------------------------------------------------------------------

/// Keys of a state config this compiler reads.
const STATE_KEYS: &[&str] = &[
    "id", "key", "type", "initial", "states", "on", "always", "after", "entry", "exit", "onDone",
    "history", "target",
];
/// Keys XState accepts that have no effect on stepping here (documentation, typing, data).
const IGNORED_KEYS: &[&str] = &[
    "context",
    "description",
    "meta",
    "tags",
    "output",
    "version",
    "predictableActionArguments",
    "preserveActionOrder",
    "schema",
    "tsTypes",
    "types",
    "data",
    "strict",
    "$schema",
];
const TRANSITION_KEYS: &[&str] = &[
    "target",
    "guard",
    "cond",
    "actions",
    "reenter",
    "internal",
    "in",
    "description",
    "meta",
];

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
    history_slots: usize,
}

/// JavaScript's own-property order: array-index keys ascending, then the rest as inserted.
fn js_key_order(map: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let is_index = |k: &str| {
        !k.is_empty()
            && k.bytes().all(|b| b.is_ascii_digit())
            && (k == "0" || !k.starts_with('0'))
            && k.parse::<u64>().is_ok_and(|n| n < u32::MAX as u64)
    };
    let mut idx: Vec<_> = map.iter().filter(|(k, _)| is_index(k)).collect();
    idx.sort_by_key(|(k, _)| k.parse::<u64>().unwrap_or(0));
    idx.extend(map.iter().filter(|(k, _)| !is_index(k)));
    idx
}

fn as_list(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(a) => a.iter().collect(),
        Value::Null => Vec::new(),
        v => vec![v],
    }
}

fn index_path(path: &str, i: usize, is_array: bool) -> String {
    if is_array {
        format!("{path}[{i}]")
    } else {
        path.to_string()
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn suggest<'a>(word: &str, options: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1];
            for (j, cb) in b.iter().enumerate() {
                cur.push(
                    (prev[j] + usize::from(ca != *cb))
                        .min(prev[j + 1] + 1)
                        .min(cur[j] + 1),
                );
            }
            prev = cur;
        }
        prev[b.len()]
    }
    options
        .into_iter()
        .map(|o| (distance(word, o), o))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, o)| o)
}

impl Compiler {
    fn intern(&mut self, s: &str) -> Result<u16, CompileError> {
        if let Some(&id) = self.string_ids.get(s) {
            return Ok(id);
        }
        if s.len() > u16::MAX as usize {
            return err(
                "",
                format!("a name or string is {} bytes long; at most 65535", s.len()),
            );
        }
        if self.names.len() >= NONE as usize {
            return err("", "too many distinct strings (at most 65534)");
        }
        let id = self.names.len() as u16;
        let offset = u32::try_from(self.strings.len()).map_err(|_| CompileError {
            path: String::new(),
            message: "string table over 4 GiB".into(),
        })?;
        self.names.push(NameRecord {
            offset,
            len: s.len() as u16,
        });
        self.strings.push_str(s);
        self.string_ids.insert(s.to_string(), id);
        Ok(id)
    }

    fn table_id(
        names: &mut Vec<String>,
        ids: &mut HashMap<String, u16>,
        s: &str,
        what: &str,
    ) -> Result<u16, CompileError> {
        if let Some(&id) = ids.get(s) {
            return Ok(id);
        }
        if names.len() >= NONE as usize {
            return err("", format!("too many distinct {what} (at most 65534)"));
        }
        let id = names.len() as u16;
        names.push(s.to_string());
        ids.insert(s.to_string(), id);
        Ok(id)
    }
    fn event(&mut self, s: &str) -> Result<u16, CompileError> {
        Self::table_id(&mut self.events, &mut self.event_ids, s, "events")
    }
    fn action_name(&mut self, s: &str) -> Result<u16, CompileError> {
        Self::table_id(
            &mut self.action_names,
            &mut self.action_ids,
            s,
            "action names",
        )
    }
    fn guard_name(&mut self, s: &str) -> Result<u16, CompileError> {
        Self::table_id(&mut self.guard_names, &mut self.guard_ids, s, "guard names")
    }
    fn delay_name(&mut self, s: &str) -> Result<u16, CompileError> {
        Self::table_id(&mut self.delay_names, &mut self.delay_ids, s, "delay names")
    }

    fn build(&mut self, root: &Value) -> Result<(), CompileError> {
        if !root.is_object() {
            return err("", "a chart is a JSON object (an XState machine config)");
        }
        let root_id = root
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or("(machine)")
            .to_string();
        self.collect(root, String::new(), String::new(), root_id, None, 0)?;
        let leaves = self.max_leaves(0);
        if leaves > interstate_core::chart::MAX_ACTIVE_LEAVES {
            return err("", format!("up to {leaves} atomic states can be active at once across parallel regions; the limit is {}", interstate_core::chart::MAX_ACTIVE_LEAVES));
        }
        for i in 0..self.nodes.len() {
            self.lay_out(i)?;
        }
        Ok(())
    }

    /// Pass 1: the state tree in document order, with kinds and ids.
    fn collect(
        &mut self,
        config: &Value,
        path: String,
        key: String,
        id: String,
        parent: Option<usize>,
        depth: usize,
    ) -> Result<usize, CompileError> {
        let Some(obj) = config.as_object() else {
            return err(&path, "a state is a JSON object");
        };
        if depth > interstate_core::chart::MAX_DEPTH {
            return err(
                &path,
                format!(
                    "states nested deeper than {} levels",
                    interstate_core::chart::MAX_DEPTH
                ),
            );
        }
        if self.nodes.len() >= interstate_core::chart::MAX_STATES {
            return err(&path, "too many states (at most 65534)");
        }
        for k in obj.keys() {
            if !STATE_KEYS.contains(&k.as_str()) && !IGNORED_KEYS.contains(&k.as_str()) {
                let hint = suggest(k, STATE_KEYS.iter().copied())
                    .map(|s| format!(" (did you mean '{s}'?)"))
                    .unwrap_or_default();
                let msg = match k.as_str() {
                    "invoke" => "invoked actors are not supported".to_string(),
                    _ => format!("unknown key '{k}'{hint}"),
                };
                return err(&join(&path, k), msg);
            }
        }
        if let Some(v) = obj.get("id") {
            if !v.is_string() {
                return err(&join(&path, "id"), "an id is a string");
            }
        }
        let states = match obj.get("states") {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => Some(m),
            Some(_) => {
                return err(
                    &join(&path, "states"),
                    "'states' is an object of child states",
                )
            }
        };
        let has_children = states.is_some_and(|m| !m.is_empty());
        let kind = match obj.get("type") {
            None => {
                if has_children {
                    StateKind::Compound
                } else if obj.contains_key("history") {
                    history_kind(obj, &path)?
                } else {
                    StateKind::Atomic
                }
            }
            Some(Value::String(t)) => match t.as_str() {
                "atomic" => StateKind::Atomic,
                "compound" => StateKind::Compound,
                "parallel" => StateKind::Parallel,
                "final" => StateKind::Final,
                "history" => history_kind(obj, &path)?,
                other => {
                    return err(&join(&path, "type"), format!("unknown state type '{other}' (atomic, compound, parallel, final or history)"))
                }
            },
            Some(_) => return err(&join(&path, "type"), "'type' is a string"),
        };
        if parent.is_none()
            && !matches!(
                kind,
                StateKind::Atomic | StateKind::Compound | StateKind::Parallel
            )
        {
            return err(
                &join(&path, "type"),
                "the root state must be atomic, compound or parallel",
            );
        }
        if has_children && !matches!(kind, StateKind::Compound | StateKind::Parallel) {
            return err(
                &join(&path, "states"),
                "only compound and parallel states have child states",
            );
        }
        if kind == StateKind::Compound && !has_children {
            return err(&path, "a compound state needs child states");
        }
        if kind.is_history()
            && parent.is_some_and(|p| {
                !matches!(
                    self.nodes[p].kind,
                    Some(StateKind::Compound | StateKind::Parallel)
                )
            })
        {
            return err(
                &path,
                "a history state must be the child of a compound or parallel state",
            );
        }
        let id = obj
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or(id);
        if let Some(&other) = self.ids.get(&id) {
            let other_path = self.nodes[other].path.clone();
            return err(
                &join(&path, "id"),
                format!("duplicate state id '{id}' (also used by '{other_path}')"),
            );
        }
        let index = self.nodes.len();
        self.ids.insert(id.clone(), index);
        self.nodes.push(Node {
            path: path.clone(),
            key,
            id: id.clone(),
            parent,
            kind: Some(kind),
            end: index,
            config: config.clone(),
        });
        if let Some(states) = states {
            for (k, child) in js_key_order(states) {
                let child_path = join(&join(&path, "states"), k);
                if k.is_empty() {
                    return err(&child_path, "a state key cannot be empty");
                }
                self.collect(
                    child,
                    child_path,
                    k.clone(),
                    format!("{id}.{k}"),
                    Some(index),
                    depth + 1,
                )?;
            }
        }
        self.nodes[index].end = self.nodes.len() - 1;
        Ok(index)
    }

    fn kind(&self, i: usize) -> StateKind {
        self.nodes[i].kind.unwrap_or(StateKind::Atomic)
    }

    fn children(&self, i: usize) -> Vec<usize> {
        let mut out = Vec::new();
        let mut c = i + 1;
        while c <= self.nodes[i].end {
            out.push(c);
            c = self.nodes[c].end + 1;
        }
        out
    }

    fn child_by_key(&self, i: usize, key: &str) -> Option<usize> {
        self.children(i)
            .into_iter()
            .find(|&c| self.nodes[c].key == key)
    }

    /// XState's `getStateNodeByPath`: dotted keys from `from`; a leading `#id` segment first.
    fn by_path(&self, from: usize, path: &str) -> Result<usize, String> {
        if let Some(rest) = path.strip_prefix('#') {
            let mut segs = rest.split('.');
            let id = segs.next().unwrap_or("");
            let Some(&mut_node) = self.ids.get(id) else {
                return Err(format!("no state '#{id}'"));
            };
            let mut node = mut_node;
            for seg in segs {
                if seg.is_empty() {
                    break;
                }
                node = self
                    .child_by_key(node, seg)
                    .ok_or_else(|| format!("no state '{seg}' in '#{}'", self.nodes[node].id))?;
            }
            return Ok(node);
        }
        let mut node = from;
        for seg in path.split('.') {
            if seg.is_empty() {
                break;
            }
            node = self
                .child_by_key(node, seg)
                .ok_or_else(|| format!("no state '{seg}' in '#{}'", self.nodes[node].id))?;
        }
        Ok(node)
    }

    /// XState's `resolveTarget` for one target string of a transition of `source`.
    fn resolve_target(&self, source: usize, target: &str) -> Result<usize, String> {
        if target.starts_with('#') {
            return self.by_path(source, target);
        }
        if let Some(rest) = target.strip_prefix('.') {
            return match self.nodes[source].parent {
                None => self.by_path(source, rest),
                Some(_) => self.by_path(source, rest),
            };
        }
        match self.nodes[source].parent {
            Some(p) => self.by_path(p, target),
            None => Err(format!(
                "'{target}' is not a valid target from the root state; did you mean '.{target}'?"
            )),
        }
    }

    fn str_param<'v>(
        obj: &'v Map<String, Value>,
        key: &str,
        path: &str,
    ) -> Result<&'v str, CompileError> {
        match obj.get(key) {
            Some(Value::String(s)) => Ok(s),
            Some(_) => err(&join(path, key), format!("'{key}' is a string")),
            None => err(path, format!("missing '{key}'")),
        }
    }

    fn delay_of(&mut self, v: &Value, path: &str) -> Result<(u8, u32), CompileError> {
        match v {
            Value::Number(n) => match n.as_u64().and_then(|n| u32::try_from(n).ok()) {
                Some(ms) => Ok((ActionRecord::HAS_DELAY, ms)),
                None => err(
                    path,
                    "a delay is a whole number of milliseconds (0 to 4294967295) or a delay name",
                ),
            },
            Value::String(s) => match s.parse::<u32>() {
                Ok(ms) => Ok((ActionRecord::HAS_DELAY, ms)),
                Err(_) => Ok((
                    ActionRecord::HAS_DELAY | ActionRecord::NAMED_DELAY,
                    self.delay_name(s)? as u32,
                )),
            },
            _ => err(path, "a delay is a number of milliseconds or a delay name"),
        }
    }

    fn event_name_of<'v>(
        v: &'v Value,
        path: &str,
    ) -> Result<(&'v str, Option<&'v Value>), CompileError> {
        match v {
            Value::String(s) => Ok((s, None)),
            Value::Object(o) => match o.get("type") {
                Some(Value::String(s)) => Ok((s, o.get("data"))),
                _ => err(path, "an event object needs a string 'type'"),
            },
            _ => err(path, "an event is a name or an object with a 'type'"),
        }
    }

    fn action(&mut self, v: &Value, path: &str) -> Result<ActionRecord, CompileError> {
        let user = |c: &mut Self, name: &str| -> Result<ActionRecord, CompileError> {
            if name.is_empty() {
                return err(path, "an action name cannot be empty");
            }
            Ok(ActionRecord {
                kind: 0,
                a: c.action_name(name)?,
                ..Default::default()
            })
        };
        let obj = match v {
            Value::String(s) => return user(self, s),
            Value::Object(o) => o,
            _ => return err(path, "an action is a name or an object with a 'type'"),
        };
        let ty = Self::str_param(obj, "type", path)?;
        let builtin = ty.strip_prefix("xstate.").unwrap_or(ty);
        let reserved =
            ty.starts_with("xstate.") || matches!(ty, "raise" | "sendTo" | "cancel" | "log");
        if !reserved {
            return user(self, ty);
        }
        let mut rec = ActionRecord {
            c: NONE,
            d: NONE,
            ..Default::default()
        };
        let delay = match obj.get("delay") {
            Some(d) => Some(self.delay_of(d, &join(path, "delay"))?),
            None => None,
        };
        if let Some((flags, ms)) = delay {
            rec.flags = flags;
            rec.delay = ms;
        }
        let id = match obj.get("id") {
            Some(Value::String(s)) => Some(self.intern(s)?),
            Some(_) => return err(&join(path, "id"), "a send id is a string"),
            None => None,
        };
        match builtin {
            "raise" => {
                let (name, data) = Self::event_name_of(
                    obj.get("event").unwrap_or(&Value::Null),
                    &join(path, "event"),
                )?;
                if data.is_some() {
                    return err(&join(path, "event.data"), "raised events carry no payload");
                }
                rec.kind = 1;
                rec.a = self.event(name)?;
                rec.c = id.unwrap_or(NONE);
            }
            "cancel" => {
                rec.kind = 2;
                rec.c = match id {
                    Some(id) => id,
                    None => return err(path, "missing 'id': the send id to cancel"),
                };
            }
            "sendTo" => {
                let to = Self::str_param(obj, "to", path)?;
                let (name, data) = Self::event_name_of(
                    obj.get("event").unwrap_or(&Value::Null),
                    &join(path, "event"),
                )?;
                let data = data.or(obj.get("data"));
                rec.kind = 3;
                rec.a = self.intern(to)?;
                rec.b = self.intern(name)?;
                rec.c = id.unwrap_or(NONE);
                rec.d = match data {
                    Some(d) => self.intern(&d.to_string())?,
                    None => NONE,
                };
            }
            "log" => {
                let msg = match obj.get("message").or(obj.get("label")) {
                    Some(Value::String(s)) => s.clone(),
                    Some(v) => v.to_string(),
                    None => String::new(),
                };
                rec.kind = 4;
                rec.a = self.intern(&msg)?;
            }
            other => {
                return err(
                    &join(path, "type"),
                    format!(
                        "unknown built-in action 'xstate.{other}' (raise, sendTo, cancel, log)"
                    ),
                );
            }
        }
        if delay.is_some() && !matches!(rec.kind, 1 | 3) {
            return err(&join(path, "delay"), "only raise and sendTo take a delay");
        }
        Ok(rec)
    }

    fn actions(
        &mut self,
        v: Option<&Value>,
        path: &str,
    ) -> Result<Vec<ActionRecord>, CompileError> {
        let Some(v) = v else { return Ok(Vec::new()) };
        let arr = v.is_array();
        as_list(v)
            .into_iter()
            .enumerate()
            .map(|(i, a)| self.action(a, &index_path(path, i, arr)))
            .collect()
    }

    fn guard(&mut self, v: &Value, path: &str, source: usize) -> Result<(u8, u16), CompileError> {
        match v {
            Value::String(s) if !s.is_empty() => Ok((1, self.guard_name(s)?)),
            Value::String(_) => err(path, "a guard name cannot be empty"),
            Value::Object(o) => {
                let ty = Self::str_param(o, "type", path)?;
                match ty {
                    "xstate.stateIn" | "stateIn" => {
                        let state = Self::str_param(o, "state", path)
                            .or_else(|e| Self::str_param(o, "stateValue", path).map_err(|_| e))?;
                        Ok((2, self.in_state(state, &join(path, "state"), source)?))
                    }
                    "" => err(&join(path, "type"), "a guard name cannot be empty"),
                    name => Ok((1, self.guard_name(name)?)),
                }
            }
            _ => err(path, "a guard is a name or an object with a 'type'"),
        }
    }

    fn in_state(&self, state: &str, path: &str, _source: usize) -> Result<u16, CompileError> {
        // `#id...` or a key path from the root.
        match self.by_path(0, state) {
            Ok(i) if i > 0 => Ok(i as u16),
            Ok(_) => err(path, "the root is always active; name a state below it"),
            Err(e) => err(path, e),
        }
    }

    /// Parses one transition config of state `source`.
    fn transition(
        &mut self,
        source: usize,
        v: &Value,
        path: &str,
        trigger: DescriptorKind,
        descriptor_len: usize,
    ) -> Result<PendingTransition, CompileError> {
        let mut t = PendingTransition {
            path: path.to_string(),
            trigger,
            descriptor_len,
            guard: (0, 0),
            reenter: false,
            targets: Vec::new(),
            actions: Vec::new(),
        };
        let targets: Vec<(String, &Value)> = match v {
            Value::String(_) => vec![(path.to_string(), v)],
            Value::Null => Vec::new(),
            Value::Object(o) => {
                for k in o.keys() {
                    if !TRANSITION_KEYS.contains(&k.as_str()) {
                        let hint = suggest(k, TRANSITION_KEYS.iter().copied())
                            .map(|s| format!(" (did you mean '{s}'?)"))
                            .unwrap_or_default();
                        return err(
                            &join(path, k),
                            format!("unknown transition key '{k}'{hint}"),
                        );
                    }
                }
                if o.contains_key("guard") && o.contains_key("cond") {
                    return err(path, "both 'guard' and 'cond' given; 'cond' is the older name of 'guard', use one");
                }
                if let Some(g) = o.get("guard").or(o.get("cond")) {
                    let key = if o.contains_key("guard") {
                        "guard"
                    } else {
                        "cond"
                    };
                    t.guard = self.guard(g, &join(path, key), source)?;
                }
                if let Some(s) = o.get("in") {
                    if t.guard.0 != 0 {
                        return err(
                            &join(path, "in"),
                            "'in' and a guard cannot be combined on one transition",
                        );
                    }
                    let Some(s) = s.as_str() else {
                        return err(&join(path, "in"), "'in' is a state id or path");
                    };
                    t.guard = (2, self.in_state(s, &join(path, "in"), source)?);
                }
                let reenter = match o.get("reenter") {
                    None => None,
                    Some(Value::Bool(b)) => Some(*b),
                    Some(_) => return err(&join(path, "reenter"), "'reenter' is true or false"),
                };
                let internal = match o.get("internal") {
                    None => None,
                    Some(Value::Bool(b)) => Some(!*b),
                    Some(_) => return err(&join(path, "internal"), "'internal' is true or false"),
                };
                if let (Some(a), Some(b)) = (reenter, internal) {
                    if a != b {
                        return err(path, "'reenter' and 'internal' contradict each other");
                    }
                }
                t.reenter = reenter.or(internal).unwrap_or(false);
                t.actions = self.actions(o.get("actions"), &join(path, "actions"))?;
                match o.get("target") {
                    None | Some(Value::Null) => Vec::new(),
                    Some(Value::Array(a)) => a
                        .iter()
                        .enumerate()
                        .map(|(i, x)| (format!("{}[{i}]", join(path, "target")), x))
                        .collect(),
                    Some(x) => vec![(join(path, "target"), x)],
                }
            }
            _ => {
                return err(
                    path,
                    "a transition is a target string, an object or an array of them",
                )
            }
        };
        for (tpath, tv) in targets {
            let Some(ts) = tv.as_str() else {
                return err(&tpath, "a target is a string");
            };
            match self.resolve_target(source, ts) {
                Ok(i) => t.targets.push(i as u16),
                Err(e) => return err(&tpath, e),
            }
        }
        if t.targets.len() > interstate_core::chart::MAX_ACTIVE_LEAVES {
            return err(
                &join(path, "target"),
                format!(
                    "{} targets; at most {}",
                    t.targets.len(),
                    interstate_core::chart::MAX_ACTIVE_LEAVES
                ),
            );
        }
        if t.targets.len() > 1 && !self.orthogonal(&t.targets) {
            return err(
                &t.path,
                "several targets must each lie in a different region of one parallel state",
            );
        }
        Ok(t)
    }

    fn orthogonal(&self, targets: &[u16]) -> bool {
        for (i, &a) in targets.iter().enumerate() {
            for &b in &targets[i + 1..] {
                let (lo, hi) = (a.min(b) as usize, a.max(b) as usize);
                if lo == hi || hi <= self.nodes[lo].end {
                    return false;
                }
                let mut anc = self.nodes[lo].parent;
                while let Some(x) = anc {
                    if self.nodes[x].end >= hi {
                        break;
                    }
                    anc = self.nodes[x].parent;
                }
                if !anc.is_some_and(|x| self.kind(x) == StateKind::Parallel) {
                    return false;
                }
            }
        }
        true
    }

    fn transition_list(
        &mut self,
        source: usize,
        v: &Value,
        path: &str,
        trigger: DescriptorKind,
        len: usize,
        out: &mut Vec<PendingTransition>,
    ) -> Result<(), CompileError> {
        let arr = v.is_array();
        for (i, tv) in as_list(v).into_iter().enumerate() {
            out.push(self.transition(
                source,
                tv,
                &index_path(path, i, arr),
                trigger.clone(),
                len,
            )?);
        }
        Ok(())
    }

    /// Pass 2: one state's record, transitions and actions.
    fn lay_out(&mut self, i: usize) -> Result<(), CompileError> {
        let config = std::mem::take(&mut self.nodes[i].config);
        let obj = config.as_object().cloned().unwrap_or_default();
        let path = self.nodes[i].path.clone();
        let kind = self.kind(i);
        let id = self.nodes[i].id.clone();
        let mut rec = StateRecord {
            kind: kind as u8,
            parent: self.nodes[i].parent.map_or(NONE, |p| p as u16),
            end: self.nodes[i].end as u16,
            initial: NONE,
            done_event: NONE,
            history_slot: 0,
            ..Default::default()
        };
        rec.key = self.intern(&self.nodes[i].key.clone())?;
        rec.id = self.intern(&id)?;
        if matches!(kind, StateKind::Compound | StateKind::Parallel) {
            rec.done_event = self.event(&format!("xstate.done.state.{id}"))?;
        }
        match (kind, obj.get("initial")) {
            (StateKind::Compound, None) => {
                let first = self
                    .children(i)
                    .into_iter()
                    .find(|&c| !self.kind(c).is_history())
                    .map(|c| self.nodes[c].key.clone());
                return err(
                    &path,
                    format!(
                        "no initial state for this compound state; add \"initial\": \"{}\"",
                        first.unwrap_or_default()
                    ),
                );
            }
            (StateKind::Compound, Some(v)) => {
                let key = match v {
                    Value::String(s) => s.as_str(),
                    Value::Object(o) if o.contains_key("actions") => {
                        return err(&join(&path, "initial.actions"), "actions on the initial transition are not supported; use the initial state's entry actions");
                    }
                    Value::Object(o) => match o.get("target") {
                        Some(Value::String(s)) => s.as_str(),
                        _ => {
                            return err(
                                &join(&path, "initial"),
                                "'initial' is the key of a child state",
                            )
                        }
                    },
                    _ => {
                        return err(
                            &join(&path, "initial"),
                            "'initial' is the key of a child state",
                        )
                    }
                };
                match self.child_by_key(i, key.trim_start_matches('.')) {
                    Some(c) => {
                        let no_default = self.nodes[c]
                            .config
                            .get("target")
                            .is_none_or(Value::is_null)
                            && c > i;
                        if self.kind(c).is_history() && no_default {
                            return err(&join(&path, "initial"), format!("initial state '{key}' is a history state with no default 'target'; give it one"));
                        }
                        rec.initial = c as u16
                    }
                    None => {
                        let keys: Vec<String> = self
                            .children(i)
                            .iter()
                            .map(|&c| self.nodes[c].key.clone())
                            .collect();
                        return err(
                            &join(&path, "initial"),
                            format!("no child state '{key}' (children: {})", keys.join(", ")),
                        );
                    }
                }
            }
            (_, Some(_)) if kind != StateKind::Parallel && kind != StateKind::Atomic => {
                return err(
                    &join(&path, "initial"),
                    "only compound states have an initial state",
                );
            }
            _ => {}
        }
        if kind.is_history() {
            let parent = self.nodes[i].parent.unwrap_or(0);
            let need = if kind == StateKind::ShallowHistory {
                if self.kind(parent) == StateKind::Parallel {
                    self.children(parent)
                        .into_iter()
                        .filter(|&c| !self.kind(c).is_history())
                        .count()
                } else {
                    1
                }
            } else {
                self.max_leaves(parent)
            };
            let need = need.max(1);
            if self.history_slots + need > u16::MAX as usize {
                return err(
                    &path,
                    "too much history memory needed (at most 65535 slots)",
                );
            }
            rec.history_slot = self.history_slots as u16;
            rec.history_len = need as u16;
            self.history_slots += need;
            rec.default_start = self.targets.len() as u16;
            if let Some(tv) = obj.get("target") {
                let arr = tv.is_array();
                let mut defaults = Vec::new();
                for (k, t) in as_list(tv).into_iter().enumerate() {
                    let tpath = index_path(&join(&path, "target"), k, arr);
                    let Some(ts) = t.as_str() else {
                        return err(&tpath, "a target is a string");
                    };
                    let r = if ts.starts_with('#') {
                        self.by_path(parent, ts)
                    } else {
                        self.by_path(parent, ts.trim_start_matches('.'))
                    };
                    match r {
                        Ok(x) if x > parent && x <= self.nodes[parent].end && !self.kind(x).is_history() => defaults.push(x as u16),
                        Ok(_) => return err(&tpath, "a history default target must be a state inside the history state's parent, not a history state"),
                        Err(e) => return err(&tpath, e),
                    }
                }
                if defaults.len() > 1 && !self.orthogonal(&defaults) {
                    return err(
                        &join(&path, "target"),
                        "several default targets must lie in different parallel regions",
                    );
                }
                rec.default_len = defaults.len() as u16;
                self.targets.extend(defaults);
            }
            for k in ["on", "always", "after", "entry", "exit", "onDone"] {
                if obj.contains_key(k) {
                    return err(
                        &join(&path, k),
                        "a history state has no transitions or actions of its own",
                    );
                }
            }
        } else if obj.contains_key("target") {
            return err(
                &join(&path, "target"),
                "only history states have a 'target' (transitions go in 'on')",
            );
        }

        // Event transitions, in XState's map order: `on` keys, `onDone`, then `after`.
        let mut on = Vec::new();
        let mut always = Vec::new();
        let mut entry = self.actions(obj.get("entry"), &join(&path, "entry"))?;
        let mut exit = self.actions(obj.get("exit"), &join(&path, "exit"))?;
        match obj.get("on") {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) => {
                for (key, tv) in js_key_order(m) {
                    let tpath = join(&join(&path, "on"), key);
                    let (trigger, len) = if key.is_empty() {
                        (DescriptorKind::Always, 0)
                    } else if key == "*" {
                        (DescriptorKind::Any, 1)
                    } else if let Some(prefix) = key.strip_suffix(".*") {
                        if prefix.contains('*') {
                            return err(&tpath, "a wildcard '*' may only stand as the last segment of an event descriptor");
                        }
                        (DescriptorKind::Prefix(prefix.to_string()), key.len())
                    } else if key.contains('*') {
                        return err(&tpath, "a wildcard '*' may only stand as the last segment of an event descriptor");
                    } else {
                        (DescriptorKind::Exact(key.clone()), key.len())
                    };
                    let into = if matches!(trigger, DescriptorKind::Always) {
                        &mut always
                    } else {
                        &mut on
                    };
                    let mut list = Vec::new();
                    self.transition_list(i, tv, &tpath, trigger, len, &mut list)?;
                    into.extend(list);
                }
            }
            Some(_) => {
                return err(
                    &join(&path, "on"),
                    "'on' is an object of event names to transitions",
                )
            }
        }
        if let Some(v) = obj.get("onDone") {
            if !matches!(kind, StateKind::Compound | StateKind::Parallel) {
                return err(
                    &join(&path, "onDone"),
                    "only compound and parallel states complete; 'onDone' needs one",
                );
            }
            let name = format!("xstate.done.state.{id}");
            let len = name.len();
            self.transition_list(
                i,
                v,
                &join(&path, "onDone"),
                DescriptorKind::Exact(name),
                len,
                &mut on,
            )?;
        }
        match obj.get("after") {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) => {
                for (key, tv) in js_key_order(m) {
                    let tpath = join(&join(&path, "after"), key);
                    let (flags, delay) = self.delay_of(&Value::String(key.clone()), &tpath)?;
                    let name = format!("xstate.after.{key}.{id}");
                    let ev = self.event(&name)?;
                    entry.push(ActionRecord {
                        kind: 5,
                        flags,
                        a: ev,
                        delay,
                        c: NONE,
                        d: NONE,
                        ..Default::default()
                    });
                    exit.push(ActionRecord {
                        kind: 6,
                        a: ev,
                        c: NONE,
                        d: NONE,
                        ..Default::default()
                    });
                    let len = name.len();
                    self.transition_list(i, tv, &tpath, DescriptorKind::Exact(name), len, &mut on)?;
                }
            }
            Some(_) => {
                return err(
                    &join(&path, "after"),
                    "'after' is an object of delays to transitions",
                )
            }
        }
        if let Some(v) = obj.get("always") {
            let mut list = Vec::new();
            self.transition_list(
                i,
                v,
                &join(&path, "always"),
                DescriptorKind::Always,
                0,
                &mut list,
            )?;
            // `always` first, then XStateNet's `""` keys.
            list.extend(always);
            always = list;
        }
        // Exact descriptors keep map order; partial ones follow, longest first (stable).
        let (mut exact, mut partial): (Vec<_>, Vec<_>) = on
            .into_iter()
            .partition(|t| matches!(t.trigger, DescriptorKind::Exact(_)));
        partial.sort_by_key(|t| std::cmp::Reverse(t.descriptor_len));
        exact.extend(partial);

        rec.on_start = self.transitions.len() as u16;
        rec.on_len = exact.len() as u16;
        for t in exact {
            self.push_transition(i, t)?;
        }
        rec.always_start = self.transitions.len() as u16;
        rec.always_len = always.len() as u16;
        for t in always {
            self.push_transition(i, t)?;
        }
        rec.entry_start = self.actions.len() as u16;
        rec.entry_len = entry.len() as u16;
        self.actions.extend(entry);
        rec.exit_start = self.actions.len() as u16;
        rec.exit_len = exit.len() as u16;
        self.actions.extend(exit);
        if self.actions.len() >= NONE as usize
            || self.transitions.len() >= NONE as usize
            || self.targets.len() >= NONE as usize
        {
            return err(
                &path,
                "the chart is too large (at most 65534 actions, transitions and targets)",
            );
        }
        self.state_recs.push(rec);
        Ok(())
    }

    fn max_leaves(&self, s: usize) -> usize {
        let ch: Vec<usize> = self
            .children(s)
            .into_iter()
            .filter(|&c| !self.kind(c).is_history())
            .collect();
        if ch.is_empty() {
            return 1;
        }
        let each = ch.iter().map(|&c| self.max_leaves(c));
        if self.kind(s) == StateKind::Parallel {
            each.sum()
        } else {
            each.max().unwrap_or(1)
        }
    }

    fn push_transition(&mut self, source: usize, t: PendingTransition) -> Result<(), CompileError> {
        let (trigger, event) = match &t.trigger {
            DescriptorKind::Exact(name) => (Trigger::Exact, self.event(name)?),
            DescriptorKind::Prefix(p) => (Trigger::Prefix, self.intern(p)?),
            DescriptorKind::Any => (Trigger::Any, NONE),
            DescriptorKind::Always => (Trigger::Always, NONE),
        };
        let rec = TransitionRecord {
            trigger: trigger as u8,
            flags: if t.reenter {
                TransitionRecord::REENTER
            } else {
                0
            },
            source: source as u16,
            event,
            guard_kind: t.guard.0,
            guard: t.guard.1,
            targets_start: self.targets.len() as u16,
            targets_len: t.targets.len() as u16,
            actions_start: self.actions.len() as u16,
            actions_len: t.actions.len() as u16,
        };
        self.targets.extend(&t.targets);
        self.actions.extend(t.actions);
        self.transitions.push(rec);
        Ok(())
    }

    fn finish(mut self) -> Result<CompiledChart, CompileError> {
        // Intern the names of the id tables (events, actions, guards, delays).
        let mut events = Vec::new();
        for e in self.events.clone() {
            events.extend_from_slice(&self.intern(&e)?.to_le_bytes());
        }
        let mut order: Vec<u16> = (0..self.events.len() as u16).collect();
        order.sort_by(|&a, &b| self.events[a as usize].cmp(&self.events[b as usize]));
        let event_index = order.iter().flat_map(|e| e.to_le_bytes()).collect();
        let table = |names: Vec<String>, c: &mut Self| -> Result<Vec<u8>, CompileError> {
            let mut out = Vec::new();
            for n in names {
                out.extend_from_slice(&c.intern(&n)?.to_le_bytes());
            }
            Ok(out)
        };
        let action_names = table(self.action_names.clone(), &mut self)?;
        let guard_names = table(self.guard_names.clone(), &mut self)?;
        let delay_names = table(self.delay_names.clone(), &mut self)?;
        let mut states = vec![0u8; self.state_recs.len() * StateRecord::SIZE];
        for (i, r) in self.state_recs.iter().enumerate() {
            r.encode(&mut states[i * StateRecord::SIZE..]);
        }
        let targets: Vec<u8> = self.targets.iter().flat_map(|t| t.to_le_bytes()).collect();
        let mut transitions = vec![0u8; self.transitions.len() * TransitionRecord::SIZE];
        for (i, r) in self.transitions.iter().enumerate() {
            let mut r = *r;
            if interstate_core::chart::raw::sibling_move(&states, &targets, &r) {
                r.flags |= TransitionRecord::SIBLING;
            }
            r.encode(&mut transitions[i * TransitionRecord::SIZE..]);
        }
        let mut actions = vec![0u8; self.actions.len() * ActionRecord::SIZE];
        for (i, r) in self.actions.iter().enumerate() {
            r.encode(&mut actions[i * ActionRecord::SIZE..]);
        }
        let mut names = vec![0u8; self.names.len() * NameRecord::SIZE];
        for (i, r) in self.names.iter().enumerate() {
            r.encode(&mut names[i * NameRecord::SIZE..]);
        }
        let compiled = CompiledChart {
            strings: self.strings,
            names,
            states,
            transitions,
            targets,
            actions,
            events,
            event_index,
            action_names,
            guard_names,
            delay_names,
            history_slots: self.history_slots as u16,
        };
        if let Err(e) = Chart::new(compiled.tables()) {
            return err(
                "",
                format!("internal error, please report: the compiled tables were rejected: {e}"),
            );
        }
        Ok(compiled)
    }
}

fn history_kind(obj: &Map<String, Value>, path: &str) -> Result<StateKind, CompileError> {
    match obj.get("history") {
        None => Ok(StateKind::ShallowHistory),
        Some(Value::String(s)) if s == "shallow" => Ok(StateKind::ShallowHistory),
        Some(Value::String(s)) if s == "deep" => Ok(StateKind::DeepHistory),
        Some(Value::Bool(true)) => Ok(StateKind::ShallowHistory),
        _ => err(
            &join(path, "history"),
            "'history' is \"shallow\" or \"deep\"",
        ),
    }
}
