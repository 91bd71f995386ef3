//! The machine context in JSON charts: the root's `context` object (the initial value),
//! `assign` actions and context guards, read into the core's records (an interstate
//! extension of XState's JSON; see `docs/json-format.md`).
//!
//! - `"context": {"count": 0}` on the root: the initial context, one record of kind 7 at
//!   the end of the action table.
//! - `{"type": "assign", "assignment": {"count": 0, "last": {"$event": "amount"},
//!   "total": {"$add": 5}}}`: one assign record per key, in JavaScript's key order (XState's
//!   `assign` with a static object for literals; `$event` copies a field of the event's data,
//!   `$add` adds to the key's number).
//! - `"guard": {"type": "context", "key": "count", "op": "<", "value": 3}`: a condition
//!   record at the end of the action table, which the transition's guard names.

use interstate_core::chart::raw::{
    ActionRecord, ACTION_ASSIGN, ACTION_CONTEXT_CONDITION, ACTION_INITIAL_CONTEXT, GUARD_CONTEXT,
};
use interstate_core::chart::{AssignOp, CompareOp};
use serde_json::{Map, Value};

use super::error::{err, CompileError};
use super::json::{join, js_key_order};
use super::Compiler;

/// The comparison operators a context guard accepts, and their spellings.
const OPS: &[(&str, CompareOp)] = &[
    ("==", CompareOp::Eq),
    ("eq", CompareOp::Eq),
    ("!=", CompareOp::Ne),
    ("ne", CompareOp::Ne),
    ("<", CompareOp::Lt),
    ("lt", CompareOp::Lt),
    ("<=", CompareOp::Le),
    ("le", CompareOp::Le),
    (">", CompareOp::Gt),
    ("gt", CompareOp::Gt),
    (">=", CompareOp::Ge),
    ("ge", CompareOp::Ge),
];

/// A JSON string literal of `s`, as the core compares keys: serde_json's escaping.
fn key_literal(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

impl Compiler {
    /// Reads the root's `context` (an object) as the initial context.
    pub(super) fn initial_context(&mut self, root: &Value) -> Result<(), CompileError> {
        match root.get("context") {
            None | Some(Value::Null) => Ok(()),
            Some(v @ Value::Object(_)) => {
                let text = v.to_string();
                if text.len() > u16::MAX as usize {
                    return err(
                        "context",
                        "the context's JSON text is longer than 65535 bytes",
                    );
                }
                let a = self.intern(&text)?;
                self.chart_data.push(ActionRecord {
                    kind: ACTION_INITIAL_CONTEXT,
                    a,
                    ..Default::default()
                });
                Ok(())
            }
            Some(_) => err("context", "the context is a JSON object"),
        }
    }

    /// The records of an `assign` action, or `None` when `v` is not one.
    pub(super) fn assign_records(
        &mut self,
        v: &Value,
        path: &str,
    ) -> Result<Option<Vec<ActionRecord>>, CompileError> {
        let Some(obj) = v.as_object() else {
            return Ok(None);
        };
        if !matches!(
            obj.get("type").and_then(Value::as_str),
            Some("assign" | "xstate.assign")
        ) {
            return Ok(None);
        }
        for k in obj.keys() {
            if !matches!(k.as_str(), "type" | "assignment") {
                return err(
                    &join(path, k),
                    format!("unknown key '{k}' of an assign action (type, assignment)"),
                );
            }
        }
        let Some(Value::Object(assignment)) = obj.get("assignment") else {
            return err(
                &join(path, "assignment"),
                "an assign action needs an 'assignment' object: {\"key\": value, ...}",
            );
        };
        let mut out = Vec::new();
        for (key, value) in js_key_order(assignment) {
            let p = join(&join(path, "assignment"), key);
            let (op, operand) = Self::assignment(value, &p)?;
            out.push(ActionRecord {
                kind: ACTION_ASSIGN,
                a: self.intern(&key_literal(key))?,
                b: self.intern(&operand)?,
                c: op as u16,
                ..Default::default()
            });
        }
        Ok(Some(out))
    }

    /// One key's assignment: a literal, `{"$event": "field"}` or `{"$add": number}`.
    fn assignment(value: &Value, path: &str) -> Result<(AssignOp, String), CompileError> {
        let op = match value {
            Value::Object(o) if o.len() == 1 && o.keys().all(|k| k.starts_with('$')) => o,
            _ => return Ok((AssignOp::Set, value.to_string())),
        };
        match op.iter().next() {
            Some((k, Value::String(field))) if k == "$event" => {
                Ok((AssignOp::FromEvent, key_literal(field)))
            }
            Some((k, n @ Value::Number(_))) if k == "$add" => Ok((AssignOp::Add, n.to_string())),
            Some((k, _)) if k == "$event" => err(
                &join(path, k),
                "'$event' names a field of the event's data (a string)",
            ),
            Some((k, _)) if k == "$add" => err(&join(path, k), "'$add' takes a number"),
            Some((k, _)) => err(
                &join(path, k),
                format!("unknown assign operator '{k}' ($event, $add)"),
            ),
            None => Ok((AssignOp::Set, value.to_string())),
        }
    }

    /// A context guard: `(guard kind, condition index)`; the index is made an action-table
    /// index when the tables are finished.
    pub(super) fn context_guard(
        &mut self,
        o: &Map<String, Value>,
        path: &str,
    ) -> Result<(u8, u16), CompileError> {
        for k in o.keys() {
            if !matches!(k.as_str(), "type" | "key" | "op" | "value") {
                return err(
                    &join(path, k),
                    format!("unknown key '{k}' of a context guard (type, key, op, value)"),
                );
            }
        }
        let key = Self::str_param(o, "key", path)?;
        let op = match o.get("op") {
            None => CompareOp::Eq,
            Some(Value::String(s)) => match OPS.iter().find(|(n, _)| n == s) {
                Some(&(_, op)) => op,
                None => {
                    return err(
                        &join(path, "op"),
                        format!("unknown comparison '{s}' (==, !=, <, <=, >, >=)"),
                    )
                }
            },
            Some(_) => return err(&join(path, "op"), "'op' is a string: ==, !=, <, <=, >, >="),
        };
        let Some(value) = o.get("value") else {
            return err(
                path,
                "missing 'value': the literal the context key is compared with",
            );
        };
        if matches!(
            op,
            CompareOp::Lt | CompareOp::Le | CompareOp::Gt | CompareOp::Ge
        ) && !value.is_number()
        {
            return err(
                &join(path, "value"),
                "'<', '<=', '>' and '>=' compare numbers",
            );
        }
        let rec = ActionRecord {
            kind: ACTION_CONTEXT_CONDITION,
            a: self.intern(&key_literal(key))?,
            b: self.intern(&value.to_string())?,
            c: op as u16,
            ..Default::default()
        };
        let index = self.chart_data.len();
        self.chart_data.push(rec);
        Ok((GUARD_CONTEXT, index as u16))
    }
}
