//! `invoke`: a state's invoked actors, read into a start record after its entry actions, a
//! stop record after its exit actions, and `onDone`/`onError` transitions on
//! `xstate.done.actor.<id>` and `xstate.error.actor.<id>` (in XState's order: after the
//! state's own `onDone`, before its `after`). Also the `output` an invoked chart hands back.

use interstate_core::chart::raw::{self, ActionRecord};
use interstate_core::chart::NONE;
use serde_json::{Map, Value};

use super::error::{err, suggest, CompileError};
use super::json::{as_list, index_path, join};
use super::{Compiler, DescriptorKind, PendingTransition};

/// Keys of one invocation.
const INVOKE_KEYS: &[&str] = &["src", "id", "input", "onDone", "onError", "systemId"];

/// The `output`s of an invoked chart: the root's, and each top-level final state's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Outputs {
    pub(super) root: Option<String>,
    pub(super) finals: Vec<(u16, String)>,
}

/// The invoke ids of a state's `invoke` (given, or XState's default
/// `<i>.<state id>`), with the JSON path of each invocation.
pub(super) fn invoke_ids(
    obj: &Map<String, Value>,
    state_id: &str,
    path: &str,
) -> Result<Vec<(String, String)>, CompileError> {
    let Some(v) = obj.get("invoke") else {
        return Ok(Vec::new());
    };
    let base = join(path, "invoke");
    let arr = v.is_array();
    let mut out: Vec<(String, String)> = Vec::new();
    for (i, inv) in as_list(v).into_iter().enumerate() {
        let p = index_path(&base, i, arr);
        let Some(o) = inv.as_object() else {
            return err(
                &p,
                "an invocation is an object with a 'src' (e.g. {\"src\": \"worker\", \"id\": \"job\"})",
            );
        };
        let id = match o.get("id") {
            None => format!("{i}.{state_id}"),
            Some(Value::String(s)) if !s.is_empty() && !s.contains('/') => s.clone(),
            Some(Value::String(_)) => {
                return err(
                    &join(&p, "id"),
                    "an invoke id is a non-empty name without '/' (it becomes part of the child's machine id)",
                )
            }
            Some(_) => return err(&join(&p, "id"), "an invoke id is a string"),
        };
        if out.iter().any(|(x, _)| *x == id) {
            return err(
                &join(&p, "id"),
                format!("two invocations of one state have the id '{id}'"),
            );
        }
        out.push((id, p));
    }
    Ok(out)
}

impl Compiler {
    /// A state's invocations: start records appended to `entry`, stop records to `exit`
    /// (their `c` is the invocation's position among the state's, fixed up by
    /// [`Compiler::link_invocations`]), and `onDone`/`onError` transitions appended to `on`.
    pub(super) fn invocations(
        &mut self,
        source: usize,
        obj: &Map<String, Value>,
        path: &str,
        entry: &mut Vec<ActionRecord>,
        exit: &mut Vec<ActionRecord>,
        on: &mut Vec<PendingTransition>,
    ) -> Result<(), CompileError> {
        let state_id = self.nodes[source].id.clone();
        let ids = invoke_ids(obj, &state_id, path)?;
        let list = obj.get("invoke").map(as_list).unwrap_or_default();
        for (k, ((id, p), inv)) in ids.into_iter().zip(list).enumerate() {
            let o = inv.as_object().cloned().unwrap_or_default();
            for key in o.keys() {
                if !INVOKE_KEYS.contains(&key.as_str()) {
                    let hint = suggest(key, INVOKE_KEYS.iter().copied())
                        .map(|s| format!(" (did you mean '{s}'?)"))
                        .unwrap_or_default();
                    let msg = if key == "onSnapshot" {
                        "'onSnapshot' is not supported".to_string()
                    } else {
                        format!("unknown invoke key '{key}'{hint}")
                    };
                    return err(&join(&p, key), msg);
                }
            }
            let src = match o.get("src") {
                Some(Value::String(s)) if !s.is_empty() => s.clone(),
                Some(Value::Object(_)) => {
                    return err(
                        &join(&p, "src"),
                        "an inline actor is not supported: 'src' names an actor the host binds (a chart given with --actor, a service)",
                    )
                }
                Some(_) => return err(&join(&p, "src"), "'src' is the name of an actor"),
                None => return err(&p, "missing 'src': the name of the actor to invoke"),
            };
            let a = self.intern(&src)?;
            let b = self.intern(&id)?;
            let d = match o.get("input") {
                None | Some(Value::Null) => NONE,
                Some(v) => self.intern(&v.to_string())?,
            };
            entry.push(ActionRecord {
                kind: raw::ACTION_START_CHILD,
                a,
                b,
                c: NONE,
                d,
                ..Default::default()
            });
            exit.push(ActionRecord {
                kind: raw::ACTION_STOP_CHILD,
                a,
                b,
                c: k as u16,
                d: NONE,
                ..Default::default()
            });
            for (key, event) in [
                ("onDone", format!("xstate.done.actor.{id}")),
                ("onError", format!("xstate.error.actor.{id}")),
            ] {
                if let Some(v) = o.get(key) {
                    let len = event.len();
                    self.transition_list(
                        source,
                        v,
                        &join(&p, key),
                        DescriptorKind::Exact(event),
                        len,
                        on,
                    )?;
                }
            }
        }
        Ok(())
    }

    /// Marks the sends in `entry` to one of the state's own children (those `entry` starts):
    /// they reach the child the state is about to start, as XState resolves them against
    /// its deferred actor ids.
    pub(super) fn mark_entering_sends(entry: &mut [ActionRecord]) {
        let own: Vec<u16> = entry
            .iter()
            .filter(|r| r.kind == raw::ACTION_START_CHILD)
            .map(|r| r.b)
            .collect();
        for r in entry.iter_mut() {
            if r.kind == raw::ACTION_SEND_CHILD && own.contains(&r.a) {
                r.flags |= ActionRecord::ENTERING_CHILD;
            }
        }
    }

    /// Points each stop record of `exit` at its start record in `entry`, once `entry` is
    /// known to start at `entry_start` of the action table.
    pub(super) fn link_invocations(
        entry: &[ActionRecord],
        entry_start: usize,
        exit: &mut [ActionRecord],
    ) {
        let starts: Vec<usize> = entry
            .iter()
            .enumerate()
            .filter(|(_, r)| r.kind == raw::ACTION_START_CHILD)
            .map(|(i, _)| entry_start + i)
            .collect();
        for r in exit.iter_mut() {
            if r.kind == raw::ACTION_STOP_CHILD {
                r.c = starts.get(r.c as usize).map_or(NONE, |&i| i as u16);
            }
        }
    }

    /// The root's `output` and the top-level final states' (pass 2 reads them).
    pub(super) fn output_of(&mut self, i: usize, obj: &Map<String, Value>) {
        let Some(v) = obj.get("output") else { return };
        if i == 0 {
            self.outputs.root = Some(v.to_string());
        } else if self.nodes[i].parent == Some(0)
            && self.kind(i) == interstate_core::chart::StateKind::Final
        {
            self.outputs.finals.push((i as u16, v.to_string()));
        }
    }
}
