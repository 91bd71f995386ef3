//! Pass 2: one state at a time, its record (initial state, done event, history memory and
//! defaults) and its transitions and actions, in XState's selection order, appended to the
//! tables.

use interstate_core::chart::raw::{ActionRecord, StateRecord, TransitionRecord};
use interstate_core::chart::{StateKind, Trigger, NONE};
use serde_json::Value;

use super::error::{err, CompileError};
use super::json::{as_list, index_path, join, js_key_order};
use super::{Compiler, DescriptorKind, PendingTransition};

impl Compiler {
    /// Pass 2: one state's record, transitions and actions.
    pub(super) fn lay_out(&mut self, i: usize) -> Result<(), CompileError> {
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
            // The memory is a bit set over the parent's subtree, 16 states a slot (bit 0, the
            // parent itself, marks it recorded): room for whatever XState records, which after
            // a history quirk can be several children of one compound state (see the core's
            // `record_history`).
            let need = (self.nodes[parent].end - parent + 1).div_ceil(16);
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
            for k in ["on", "always", "after", "entry", "exit", "onDone", "invoke"] {
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
        // Invocations start after every entry action (the `after` timers included) and stop
        // after every exit action, as XState appends them.
        let (mut inv_entry, mut inv_exit) = (Vec::new(), Vec::new());
        self.invocations(i, &obj, &path, &mut inv_entry, &mut inv_exit, &mut on)?;
        self.output_of(i, &obj);
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
                    let tv = after_items(tv);
                    self.transition_list(
                        i,
                        &tv,
                        &tpath,
                        DescriptorKind::Exact(name),
                        len,
                        &mut on,
                    )?;
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
        entry.extend(inv_entry);
        exit.extend(inv_exit);
        Self::mark_entering_sends(&mut entry);
        Self::link_invocations(&entry, self.actions.len(), &mut exit);
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
}

/// XState reads an array under an `after` delay by spreading each item into a transition
/// object, so an item that is a string (a target anywhere else) or `null` is a targetless
/// transition with no guard and no actions there: `"after": {"500": ["b"]}` goes nowhere.
fn after_items(v: &Value) -> Value {
    match v {
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|x| match x {
                    Value::String(_) | Value::Null => Value::Object(Default::default()),
                    other => other.clone(),
                })
                .collect(),
        ),
        other => other.clone(),
    }
}
