//! Action configs: user action names and the built-ins (`raise`, `sendTo`, `request`,
//! `cancel`, `log`) with their events, payloads, send ids and delays, read into action
//! records.

use interstate_core::chart::raw::{self, ActionRecord};
use interstate_core::chart::NONE;
use serde_json::{Map, Value};

use super::error::{err, CompileError};
use super::json::{as_list, index_path, join};
use super::Compiler;

/// Whether a `data` value asks for the current event's payload: `{"from": "event"}`.
fn is_forward(d: &Value) -> bool {
    matches!(d, Value::Object(o) if o.len() == 1 && o.get("from") == Some(&Value::String("event".into())))
}

impl Compiler {
    pub(super) fn str_param<'v>(
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

    pub(super) fn delay_of(&mut self, v: &Value, path: &str) -> Result<(u8, u32), CompileError> {
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
        // `publish` and `broadcast` (interstate extensions) are built-ins when they carry
        // what they need (a topic, an event): otherwise the name stays a user action's, as it
        // was before they existed.
        let extension = (ty == "publish" && obj.contains_key("topic"))
            || (ty == "broadcast" && obj.contains_key("event"));
        let reserved = extension
            || ty.starts_with("xstate.")
            || matches!(
                ty,
                "raise" | "sendTo" | "sendParent" | "request" | "cancel" | "log"
            );
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
            "publish" | "broadcast" => {
                let target = if builtin == "publish" {
                    let topic = Self::str_param(obj, "topic", path)?;
                    if let Err(e) = interstate_core::topic::check_topic(topic) {
                        return err(&join(path, "topic"), format!("bad topic '{topic}': {e}"));
                    }
                    format!("{}{topic}", interstate_core::context::PUBLISH_MARK as char)
                } else {
                    (interstate_core::context::BROADCAST_MARK as char).to_string()
                };
                let (name, data) = Self::event_name_of(
                    obj.get("event").unwrap_or(&Value::Null),
                    &join(path, "event"),
                )?;
                let data = data.or(obj.get("data"));
                rec.kind = 3;
                rec.a = self.intern(&target)?;
                rec.b = self.intern(name)?;
                rec.c = id.unwrap_or(NONE);
                rec.d = match data {
                    Some(d) => self.intern(&d.to_string())?,
                    None => NONE,
                };
            }
            "sendParent" => {
                let (name, data) = Self::event_name_of(
                    obj.get("event").unwrap_or(&Value::Null),
                    &join(path, "event"),
                )?;
                let data = data.or(obj.get("data"));
                rec.kind = raw::ACTION_SEND_PARENT;
                rec.b = self.intern(name)?;
                rec.c = id.unwrap_or(NONE);
                match data {
                    Some(d) if is_forward(d) => {
                        if delay.is_some() {
                            return err(
                                &join(path, "delay"),
                                "a send that forwards the event's data is not delayed",
                            );
                        }
                        rec.flags |= ActionRecord::FORWARD_DATA
                    }
                    Some(d) => rec.d = self.intern(&d.to_string())?,
                    None => {}
                }
            }
            "sendTo" | "request" => {
                let to_path = join(path, "to");
                let to = match obj.get("to") {
                    Some(Value::String(s)) => Some(s.as_str()),
                    Some(Value::Object(o))
                        if builtin == "sendTo"
                            && o.len() == 1
                            && o.get("sender") == Some(&Value::Bool(true)) =>
                    {
                        None
                    }
                    Some(_) if builtin == "sendTo" => {
                        return err(
                            &to_path,
                            "'to' is a machine id or {\"sender\": true} (the event's sender)",
                        )
                    }
                    Some(_) => return err(&to_path, "'to' is a machine id"),
                    None => return err(path, "missing 'to'"),
                };
                let (name, data) = Self::event_name_of(
                    obj.get("event").unwrap_or(&Value::Null),
                    &join(path, "event"),
                )?;
                let data = data.or(obj.get("data"));
                // The target first, then the event, then the data: the order in which the
                // strings are interned is the order of the chart's string table.
                if let Some(to) = to {
                    rec.a = self.intern(to)?;
                }
                rec.b = self.intern(name)?;
                match data {
                    Some(d) if is_forward(d) => rec.flags |= ActionRecord::FORWARD_DATA,
                    Some(d) => rec.d = self.intern(&d.to_string())?,
                    None => {}
                }
                let forward = rec.flags & ActionRecord::FORWARD_DATA != 0;
                if builtin == "request" {
                    if delay.is_some() {
                        return err(&join(path, "delay"), "a request is not delayed (its 'timeout' is how long it waits for the reply)");
                    }
                    let Some(t) = obj.get("timeout") else {
                        return err(path, "missing 'timeout': how long to wait for the reply (milliseconds or a delay name)");
                    };
                    let (flags, ms) = self.delay_of(t, &join(path, "timeout"))?;
                    rec.flags |= flags;
                    rec.delay = ms;
                    rec.kind = raw::ACTION_REQUEST;
                    return Ok(rec);
                }
                match to {
                    Some(_) => {
                        if forward && delay.is_some() {
                            return err(
                                &join(path, "delay"),
                                "a send that forwards the event's data is not delayed",
                            );
                        }
                        rec.kind = 3;
                        rec.c = id.unwrap_or(NONE);
                        // `to` names one of the chart's invocations: the send goes to
                        // that child (XState looks children up by invoke id first).
                        if to.is_some_and(|t| self.invoke_ids.contains(t)) {
                            rec.kind = raw::ACTION_SEND_CHILD;
                        }
                    }
                    None => {
                        if delay.is_some() {
                            return err(
                                &join(path, "delay"),
                                "a send to the sender is not delayed",
                            );
                        }
                        rec.kind = raw::ACTION_REPLY;
                    }
                }
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
                        "unknown built-in action 'xstate.{other}' (raise, sendTo, sendParent, request, cancel, log, assign, publish, broadcast)"
                    ),
                );
            }
        }
        if delay.is_some()
            && !matches!(
                rec.kind,
                1 | 3 | raw::ACTION_REQUEST | raw::ACTION_SEND_CHILD | raw::ACTION_SEND_PARENT
            )
        {
            return err(
                &join(path, "delay"),
                "only raise, sendTo, sendParent, publish and broadcast take a delay",
            );
        }
        Ok(rec)
    }

    pub(super) fn actions(
        &mut self,
        v: Option<&Value>,
        path: &str,
    ) -> Result<Vec<ActionRecord>, CompileError> {
        let Some(v) = v else { return Ok(Vec::new()) };
        let arr = v.is_array();
        let mut out = Vec::new();
        for (i, a) in as_list(v).into_iter().enumerate() {
            let p = index_path(path, i, arr);
            // `assign` is one record per key (see `assign.rs`).
            match self.assign_records(a, &p)? {
                Some(records) => out.extend(records),
                None => out.push(self.action(a, &p)?),
            }
        }
        Ok(out)
    }
}
