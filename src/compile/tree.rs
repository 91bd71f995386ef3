//! Pass 1 and target resolution: the state tree in document order (kinds, ids, `end` bounds),
//! the checks on its shape, and XState's rules for finding a state by a target string, an
//! `#id` or a key path.

use interstate_core::chart::StateKind;
use serde_json::{Map, Value};

use super::error::{err, suggest, CompileError};
use super::json::{join, js_key_order, IGNORED_KEYS, STATE_KEYS};
use super::{Compiler, Node};

impl Compiler {
    pub(super) fn build(&mut self, root: &Value) -> Result<(), CompileError> {
        if !root.is_object() {
            return err("", "a chart is a JSON object (an XState machine config)");
        }
        let root_id = root
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or("(machine)")
            .to_string();
        self.subscriptions = Self::subscriptions_of(root)?;
        self.collect(root, String::new(), String::new(), root_id, None, 0)?;
        self.initial_context(root)?;
        let leaves = self.max_leaves(0);
        if leaves > interstate_core::chart::MAX_ACTIVE_LEAVES {
            return err("", format!("up to {leaves} atomic states can be active at once across parallel regions; the limit is {}", interstate_core::chart::MAX_ACTIVE_LEAVES));
        }
        for i in 0..self.nodes.len() {
            self.lay_out(i)?;
        }
        Ok(())
    }

    /// The root's `"subscribe"`: a filter or a list of them, each checked against MQTT's
    /// rules (an interstate extension: see `docs/json-format.md`).
    fn subscriptions_of(root: &Value) -> Result<Vec<String>, CompileError> {
        let Some(v) = root.get("subscribe") else {
            return Ok(Vec::new());
        };
        let arr = v.is_array();
        let mut out = Vec::new();
        for (i, f) in super::json::as_list(v).into_iter().enumerate() {
            let path = super::json::index_path("subscribe", i, arr);
            let Some(f) = f.as_str() else {
                return err(
                    &path,
                    "a subscription is a topic filter string, e.g. \"plant/+/alarm\"",
                );
            };
            if let Err(e) = interstate_core::topic::check_filter(f) {
                return err(&path, format!("bad topic filter '{f}': {e}"));
            }
            out.push(f.to_string());
        }
        Ok(out)
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
            // `subscribe` (topic filters) is the machine's, read at the root only.
            let root_only = depth == 0 && k == "subscribe";
            if !root_only
                && !STATE_KEYS.contains(&k.as_str())
                && !IGNORED_KEYS.contains(&k.as_str())
            {
                let hint = suggest(k, STATE_KEYS.iter().copied())
                    .map(|s| format!(" (did you mean '{s}'?)"))
                    .unwrap_or_default();
                return err(&join(&path, k), format!("unknown key '{k}'{hint}"));
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
        for (invoke_id, _) in super::invoke::invoke_ids(obj, &id, &path)? {
            self.invoke_ids.insert(invoke_id);
        }
        let index = self.nodes.len();
        self.ids.insert(id.clone(), index);
        if let Some(p) = parent {
            self.children_by_key.insert((p, key.clone()), index);
        }
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

    pub(super) fn kind(&self, i: usize) -> StateKind {
        self.nodes[i].kind.unwrap_or(StateKind::Atomic)
    }

    pub(super) fn children(&self, i: usize) -> Vec<usize> {
        let mut out = Vec::new();
        let mut c = i + 1;
        while c <= self.nodes[i].end {
            out.push(c);
            c = self.nodes[c].end + 1;
        }
        out
    }

    pub(super) fn child_by_key(&self, i: usize, key: &str) -> Option<usize> {
        self.children_by_key.get(&(i, key.to_string())).copied()
    }

    /// XState's `getStateNodeByPath`: dotted keys from `from`; a leading `#id` segment first.
    pub(super) fn by_path(&self, from: usize, path: &str) -> Result<usize, String> {
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
    pub(super) fn resolve_target(&self, source: usize, target: &str) -> Result<usize, String> {
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

    pub(super) fn orthogonal(&self, targets: &[u16]) -> bool {
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

    pub(super) fn max_leaves(&self, s: usize) -> usize {
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
}

pub(super) fn history_kind(
    obj: &Map<String, Value>,
    path: &str,
) -> Result<StateKind, CompileError> {
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
