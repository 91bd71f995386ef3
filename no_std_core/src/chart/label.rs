//! How a chart's transitions and actions read in pictures: `EVENT [guard] / actions`, where
//! the event is the name, `after 500ms` or `after delayName`, `done` (`onDone`), `always`,
//! `*` or `foo.*`, `done job` and `error job` (an invocation's `onDone` and `onError`). `interstate diagram` (the facade's `diagram` module) and the state
//! reports the live inspector draws from both write labels here, so the two pictures of a
//! chart say the same thing. Written into any [`core::fmt::Write`]: no allocation.

use core::fmt::{self, Write};

use super::{
    Action, AssignOp, Chart, CompareOp, Delay, EventId, Guard, StateId, StrId, Transition, Trigger,
};
use crate::context::Target;

fn write_delay(chart: &Chart<'_>, d: Delay, out: &mut dyn Write) -> fmt::Result {
    match d {
        Delay::Millis(ms) => write!(out, "{ms}ms"),
        Delay::Named(id) => out.write_str(chart.delay_name(id)),
    }
}

/// Whether the action at `index` is one a picture shows: not the timer bookkeeping of
/// `after` (`StartAfter`, `CancelAfter`), nor the start and stop of an invocation (a
/// picture draws a state's invocations on a line of their own), nor a data record.
pub fn action_shown(chart: &Chart<'_>, index: u16) -> bool {
    !matches!(
        chart.action_at(index),
        Action::StartAfter { .. }
            | Action::CancelAfter { .. }
            | Action::StartChild { .. }
            | Action::StopChild { .. }
            | Action::Data
    )
}

/// A short description of the action at `index` (`raise X`, `sendTo T E after 5ms`,
/// `cancel id`, `log`, or the named action's name). Writes nothing for what
/// [`action_shown`] hides.
pub fn write_action(chart: &Chart<'_>, index: u16, out: &mut dyn Write) -> fmt::Result {
    match chart.action_at(index) {
        Action::User(a) => out.write_str(chart.action_name(a)),
        Action::Raise { event } => write!(out, "raise {}", chart.event_name(event)),
        Action::RaiseAfter { event, delay, .. } => {
            write!(out, "raise {} after ", chart.event_name(event))?;
            write_delay(chart, delay, out)
        }
        Action::Cancel { id } => write!(out, "cancel {}", chart.str(id)),
        Action::SendTo {
            target,
            event,
            delay,
            ..
        } => {
            match Target::from_stored(chart.str(target)) {
                Target::Topic(topic) => write!(out, "publish {topic} {}", chart.str(event))?,
                Target::Broadcast => write!(out, "broadcast {}", chart.str(event))?,
                _ => write!(out, "sendTo {} {}", chart.str(target), chart.str(event))?,
            }
            if let Some(d) = delay {
                out.write_str(" after ")?;
                write_delay(chart, d, out)?;
            }
            Ok(())
        }
        Action::StartChild { src, id, .. } => {
            write!(out, "invoke {} as {}", chart.str(src), chart.str(id))
        }
        Action::StopChild { id, .. } => write!(out, "stop {}", chart.str(id)),
        Action::SendToChild {
            child,
            event,
            delay,
            ..
        } => {
            write!(out, "sendTo {} {}", chart.str(child), chart.str(event))?;
            if let Some(d) = delay {
                out.write_str(" after ")?;
                write_delay(chart, d, out)?;
            }
            Ok(())
        }
        Action::SendParent { event, delay, .. } => {
            write!(out, "sendParent {}", chart.str(event))?;
            if let Some(d) = delay {
                out.write_str(" after ")?;
                write_delay(chart, d, out)?;
            }
            Ok(())
        }
        Action::Reply { event, .. } => write!(out, "reply {}", chart.str(event)),
        Action::Request {
            target,
            event,
            timeout,
            ..
        } => {
            write!(
                out,
                "request {} {} within ",
                chart.str(target),
                chart.str(event)
            )?;
            write_delay(chart, timeout, out)
        }
        Action::Log { .. } => out.write_str("log"),
        Action::Assign { key, op, operand } => {
            let (key, operand) = (chart.str(key), chart.str(operand));
            let key = key.trim_matches('"');
            match op {
                AssignOp::Set => write!(out, "assign {key} = {operand}"),
                AssignOp::FromEvent => {
                    write!(out, "assign {key} = event.{}", operand.trim_matches('"'))
                }
                AssignOp::Add => write!(out, "assign {key} += {operand}"),
            }
        }
        Action::StartAfter { .. } | Action::CancelAfter { .. } | Action::Data => Ok(()),
    }
}

/// The shown actions of `range`, separated by `, `.
pub fn write_actions(
    chart: &Chart<'_>,
    range: core::ops::Range<u16>,
    out: &mut dyn Write,
) -> fmt::Result {
    let mut first = true;
    for i in range.filter(|&i| action_shown(chart, i)) {
        if !first {
            out.write_str(", ")?;
        }
        first = false;
        write_action(chart, i, out)?;
    }
    Ok(())
}

/// The delay of the `after` timer that `source` arms on entry for `event`, if `event` is
/// one (the `after` transitions' events are timers the state's entry starts).
fn after_delay(chart: &Chart<'_>, source: StateId, event: u16) -> Option<Delay> {
    chart
        .entry_actions(source)
        .find_map(|a| match chart.action_at(a) {
            Action::StartAfter { event: e, delay } if e.0 == event => Some(delay),
            _ => None,
        })
}

/// `t`'s label: `EVENT [guard] / actions`, `(reenter)` at the end of a reentering one.
pub fn write_transition(chart: &Chart<'_>, t: &Transition, out: &mut dyn Write) -> fmt::Result {
    let done = chart.done_event(t.source).map(|e| e.0);
    match t.trigger {
        Trigger::Exact if Some(t.event) == done => out.write_str("done")?,
        Trigger::Exact => match after_delay(chart, t.source, t.event) {
            Some(d) => {
                out.write_str("after ")?;
                write_delay(chart, d, out)?;
            }
            None => {
                let name = chart.event_name(EventId(t.event));
                // An invocation's `onDone` and `onError`: `done job`, `error job`.
                if let Some(id) = name.strip_prefix(crate::machine::CHILD_DONE_PREFIX) {
                    write!(out, "done {id}")?
                } else if let Some(id) = name.strip_prefix(crate::machine::CHILD_ERROR_PREFIX) {
                    write!(out, "error {id}")?
                } else {
                    out.write_str(name)?
                }
            }
        },
        Trigger::Prefix => write!(out, "{}.*", chart.str(StrId(t.event)))?,
        Trigger::Any => out.write_str("*")?,
        Trigger::Always => out.write_str("always")?,
    }
    match t.guard {
        Guard::None => {}
        Guard::Named(g) => write!(out, " [{}]", chart.guard_name(g))?,
        Guard::InState(s) | Guard::InValue(s) => write!(out, " [in #{}]", chart.state_id(s))?,
        Guard::NotInState(s) => write!(out, " [not in #{}]", chart.state_id(s))?,
        Guard::Context(i) => {
            let c = chart.context_condition(i);
            let op = match c.op {
                CompareOp::Eq => "==",
                CompareOp::Ne => "!=",
                CompareOp::Lt => "<",
                CompareOp::Le => "<=",
                CompareOp::Gt => ">",
                CompareOp::Ge => ">=",
            };
            write!(
                out,
                " [{} {op} {}]",
                chart.str(c.key).trim_matches('"'),
                chart.str(c.literal)
            )?
        }
    }
    let actions = chart.transition_actions(t);
    if actions.clone().any(|i| action_shown(chart, i)) {
        out.write_str(" / ")?;
        write_actions(chart, actions, out)?;
    }
    if t.reenter {
        out.write_str(" (reenter)")?;
    }
    Ok(())
}
