//! Transition configs: guards (names, `stateIn`, `in`), reentrancy, actions and targets,
//! resolved and checked (several targets must be orthogonal) into pending transitions.

use serde_json::Value;

use super::error::{err, suggest, CompileError};
use super::json::{as_list, index_path, join, TRANSITION_KEYS};
use super::{Compiler, DescriptorKind, PendingTransition};

impl Compiler {
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
                        let kind = in_kind(state);
                        Ok((kind, self.in_state(state, &join(path, "state"), source)?))
                    }
                    "context" => self.context_guard(o, path),
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
                    t.guard = (in_kind(s), self.in_state(s, &join(path, "in"), source)?);
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

    pub(super) fn transition_list(
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
}

/// The guard kind of a state-in condition: `#id` reads the active states (2), a key path the
/// state value (4), as XState's `stateIn` does (its `snapshot.matches` for a path).
fn in_kind(state: &str) -> u8 {
    if state.starts_with('#') {
        2
    } else {
        4
    }
}
