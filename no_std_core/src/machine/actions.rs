//! Running actions: the host's (through [`Behavior::action`]) in the common path, the
//! built-in ones (raise, delayed events, timers, `sendTo`, cancel, log) decoded out of line.

use crate::chart::{Action, ActionId, Data, Delay, StrId};
use crate::context::{reply_to, ActionContext, Behavior, Effects, Target};
use crate::error::Error;
use crate::time::Duration;
use crate::wire::Correlation;

use super::store::{Bytes, Message, TimerKey, TimerKind};
use super::{Machine, StepCx};

impl<
        'c,
        const W: usize,
        const Q: usize,
        const O: usize,
        const T: usize,
        const H: usize,
        const B: usize,
        const C: usize,
        const R: usize,
    > Machine<'c, W, Q, O, T, H, B, C, R>
{
    pub(super) fn resolve_delay<BH: Behavior + ?Sized>(
        &self,
        d: Delay,
        cx: &mut StepCx<'_, '_, BH>,
    ) -> Result<Duration, Error> {
        match d {
            Delay::Millis(ms) => Ok(Duration::from_millis(ms as u64)),
            Delay::Named(id) => cx
                .behavior
                .delay(id)
                .ok_or(Error::UnboundDelay { delay: id.0 }),
        }
    }

    /// Runs the actions `range` of the action table in order. User actions, the common case,
    /// are called here; the others are decoded and run by [`Self::run_builtin`].
    #[inline]
    pub(super) fn run_actions<BH: Behavior + ?Sized>(
        &mut self,
        range: core::ops::Range<u16>,
        cx: &mut StepCx<'_, '_, BH>,
    ) -> Result<(), Error> {
        for i in range {
            match self.chart.user_action_at(i) {
                Some(a) => self.run_user(a, cx)?,
                None => self.run_builtin(i, cx)?,
            }
        }
        Ok(())
    }

    /// [`Self::run_actions`] where actions are rare (transition actions, the final exit): a
    /// test inline, the loop out of line, to keep the code small.
    #[inline]
    pub(super) fn run_rare_actions<BH: Behavior + ?Sized>(
        &mut self,
        range: core::ops::Range<u16>,
        cx: &mut StepCx<'_, '_, BH>,
    ) -> Result<(), Error> {
        if range.is_empty() {
            return Ok(());
        }
        self.run_actions_outlined(range, cx)
    }

    #[inline(never)]
    fn run_actions_outlined<BH: Behavior + ?Sized>(
        &mut self,
        range: core::ops::Range<u16>,
        cx: &mut StepCx<'_, '_, BH>,
    ) -> Result<(), Error> {
        self.run_actions(range, cx)
    }

    #[inline]
    pub(super) fn run_user<BH: Behavior + ?Sized>(
        &mut self,
        a: ActionId,
        cx: &mut StepCx<'_, '_, BH>,
    ) -> Result<(), Error> {
        self.run_user_parts(a, cx.now, &cx.event, cx.behavior)
    }

    /// [`Self::run_user`] from the parts of a step context, for the generated code's host,
    /// which holds the event by reference rather than a copy in a `StepCx`.
    #[inline(always)]
    pub(super) fn run_user_parts<BH: Behavior + ?Sized>(
        &mut self,
        a: ActionId,
        now: crate::time::Instant,
        event: &crate::context::Event<'_>,
        behavior: &mut BH,
    ) -> Result<(), Error> {
        let mut context_error = None;
        let mut acx = ActionContext {
            effects: &mut self.io,
            machine_id: &self.id,
            event,
            now,
            failures: &mut self.stats.send_failures,
            context: self.context.as_ref(&mut context_error),
        };
        behavior.action(a, &mut acx);
        // A context update the action could not make fails the step (see `context_store`).
        match context_error {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }

    /// Runs action `i` of the action table, whatever its kind.
    /// A timer is about to be armed with the send id `id`: the ones armed with it before are
    /// no longer reached by `cancel` (XState's scheduler keeps one timer per id).
    pub(super) fn unmap_send_id(&mut self, id: crate::chart::StrId) {
        let chart = self.chart;
        self.io
            .unmap_where(|k| matches!(k, TimerKey::Named(x) if chart.str(x) == chart.str(id)));
    }

    #[inline(never)]
    pub(super) fn run_builtin<BH: Behavior + ?Sized>(
        &mut self,
        i: u16,
        cx: &mut StepCx<'_, '_, BH>,
    ) -> Result<(), Error> {
        match self.chart.action_at(i) {
            Action::User(a) => self.run_user(a, cx)?,
            Action::Raise { event } => {
                self.queue
                    .push_back(event)
                    .map_err(|_| Error::QueueFull { capacity: Q })?;
            }
            Action::RaiseAfter { event, delay, id } => {
                let d = self.resolve_delay(delay, cx)?;
                let key = match id {
                    Some(s) => {
                        self.unmap_send_id(s);
                        TimerKey::Named(s)
                    }
                    None => {
                        self.io.next_id = self.io.next_id.wrapping_add(1);
                        TimerKey::Id(self.io.next_id)
                    }
                };
                self.io
                    .push_timer(cx.now + d, key, TimerKind::Event(event))?;
            }
            Action::StartAfter { event, delay } => {
                let d = self.resolve_delay(delay, cx)?;
                // A state entered again without leaving (a history quirk) arms its delays again;
                // `cancel` then reaches only the latest, as XState's scheduler does.
                self.io.unmap_where(|k| k == TimerKey::After(event));
                self.io
                    .push_timer(cx.now + d, TimerKey::After(event), TimerKind::Event(event))?;
            }
            Action::CancelAfter { event } => {
                self.io.cancel_where(|k| k == TimerKey::After(event));
            }
            Action::Cancel { id } => {
                // Send ids are compared as strings: two ids for one name are one send id.
                // Only the latest timer armed with it is cancelled (see `Timer::mapped`).
                let chart = self.chart;
                self.io.cancel_where(
                    |k| matches!(k, TimerKey::Named(x) if chart.str(x) == chart.str(id)),
                );
            }
            Action::SendTo {
                target,
                event,
                payload,
                delay,
                id,
            } => {
                let d = match delay {
                    Some(d) => Some(self.resolve_delay(d, cx)?),
                    None => None,
                };
                let payload = match payload {
                    Data::FromEvent => {
                        // (The compiler refuses a delayed send that forwards data.)
                        let target = self.chart.str(target);
                        return self.send_event_data(
                            cx,
                            Target::Machine(target),
                            event,
                            Correlation::None,
                        );
                    }
                    Data::Json(s) => Some(s),
                    Data::None => None,
                };
                let target_is_self = self.chart.str(target) == self.id.as_str();
                let r = if target_is_self && d.is_none() {
                    let m = Message {
                        target: None,
                        event: Bytes::Chart(event),
                        payload: payload.map_or(Bytes::Empty, Bytes::Chart),
                    };
                    self.io
                        .outbox
                        .push(m)
                        .map_err(|_| Error::OutboxFull { capacity: O })
                } else {
                    if let (Some(s), Some(_)) = (id, d) {
                        self.unmap_send_id(s);
                    }
                    self.io.send_chart(cx.now, target, event, payload, d, id)
                };
                r?;
            }
            Action::Reply { event, payload } => {
                let Some(sender) = cx.event.sender else {
                    return Err(Error::NoSender);
                };
                let correlation = reply_to(cx.event.correlation);
                match payload {
                    Data::FromEvent => {
                        self.send_event_data(cx, Target::Machine(sender), event, correlation)?
                    }
                    Data::Json(s) => self.send_chart_payload(cx, sender, event, s, correlation)?,
                    Data::None => {
                        let e = self.chart.str(event);
                        self.io
                            .send(cx.now, Target::Machine(sender), e, &[], None, correlation)?;
                    }
                }
            }
            Action::Request {
                target,
                event,
                payload,
                timeout,
            } => {
                let timeout = self.resolve_delay(timeout, cx)?;
                let chart = self.chart;
                let data: &[u8] = match payload {
                    Data::FromEvent => cx.event.payload,
                    Data::Json(s) => chart.str(s).as_bytes(),
                    Data::None => &[],
                };
                self.io
                    .request(cx.now, chart.str(target), chart.str(event), data, timeout)?;
            }
            Action::Log { message } => {
                cx.behavior.log(&self.id, self.chart.str(message));
            }
            Action::Assign { key, op, operand } => {
                self.context.as_ref(&mut None).assign(
                    &self.chart,
                    key,
                    op,
                    operand,
                    cx.event.payload,
                )?;
            }
            Action::StartChild { start, .. } => self.start_child(start)?,
            Action::StopChild { start, id } => self.stop_child(start, id)?,
            Action::SendToChild {
                child,
                event,
                payload,
                delay,
                id,
                entering,
            } => self.send_to_child(cx, child, event, payload, delay, id, entering)?,
            Action::SendParent {
                event,
                payload,
                delay,
                id,
            } => self.send_parent(cx, event, payload, delay, id)?,
            Action::Data => {}
        }
        Ok(())
    }

    /// Sends `event` with the current event's payload (copied into the outbox's bytes).
    fn send_event_data<BH: Behavior + ?Sized>(
        &mut self,
        cx: &mut StepCx<'_, '_, BH>,
        target: Target<'_>,
        event: StrId,
        correlation: Correlation,
    ) -> Result<(), Error> {
        // (A reply keeps its target's id, even its own: only a plain message goes as
        // `ThisMachine`.)
        let target = match target {
            Target::Machine(t) if t == self.id.as_str() && correlation == Correlation::None => {
                Target::ThisMachine
            }
            t => t,
        };
        let e = self.chart.str(event);
        self.io
            .send(cx.now, target, e, cx.event.payload, None, correlation)
            .map(|_| ())
    }

    /// Sends `event` with the chart's JSON text `payload` to `to` (a string outside the
    /// chart, such as a sender's id).
    fn send_chart_payload<BH: Behavior + ?Sized>(
        &mut self,
        cx: &mut StepCx<'_, '_, BH>,
        to: &str,
        event: StrId,
        payload: StrId,
        correlation: Correlation,
    ) -> Result<(), Error> {
        let chart = self.chart;
        self.io
            .send(
                cx.now,
                Target::Machine(to),
                chart.str(event),
                chart.str(payload).as_bytes(),
                None,
                correlation,
            )
            .map(|_| ())
    }
}
