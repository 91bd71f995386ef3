//! The order in which a node fires the timers of its machines that are due at the same
//! instant: XState's arming order across machines.
//!
//! XState arms a machine's delayed events (`after`, delayed `raise` and sends) in its
//! deferred actions, in order with its sends and its children's starts; a child that takes
//! one of those sends, or starts, arms its own timers right then, before its parent's later
//! ones. XState's clock fires the timers due at one instant in that arming order. So a
//! parent's timer armed in a state entered after the invoking one fires after its child's
//! timer of the same delay, and one armed before a `sendTo` that makes the child arm its own
//! fires first (cases `invoke-timers-armed-in-deferred-order`, `-among-sends`).
//!
//! The core tells where among a step's messages and child changes each timer was armed
//! (`Machine::timer_armed_after`); the node gives each timer a node-wide arming number when
//! it reaches that place:
//! - before each message it delivers and each child change it makes for machine `i` (the
//!   pump), the timers of `i` armed before that point;
//! - after a machine steps (a message, a start, a timer), its timers armed before its first
//!   deferred item that makes another machine of the node step at once in XState (a child's
//!   start, a message to one of its children): the rest wait for its pump;
//! - once its outbox and its changes are all done, all of them (its counters start over).
//!
//! `fire_timers` then fires due timers by (due, arming number), a timer not numbered yet
//! (a machine the pump did not reach) after the numbered ones. What stays approximate: a
//! child's timers armed after its own sends to a grandchild are numbered when the child's
//! outbox is pumped, which XState does before its parent goes on (three levels with ties).

use interstate_core::machine::ChildChangeKind;
use interstate_core::{Instant, Target};

use super::local::{Deferred, Local};
use super::Node;
use crate::error::PlatformError;
use interstate_core::machine::Status;

/// How many timers one machine may fire in one loop turn (a zero-delay timer loop yields to
/// the rest of the node after that).
const FIRES_PER_TURN: u16 = 1024;

/// A hosted machine's timers as the node numbered them (a field of `Hosted`).
#[derive(Default)]
pub(super) struct ArmedTimers {
    /// (the machine's timer number, the node-wide arming number), for pending timers.
    armed: Vec<(u32, u64)>,
    /// The machine's last timer number given an arming number.
    seen: Option<u32>,
    /// Outbox messages consumed since the machine's counters last started over.
    pub(super) msgs_base: usize,
    /// Child changes made since then.
    pub(super) changes_made: usize,
    /// Timers fired in this loop turn.
    fired: u16,
    /// The machine's count of timers armed and cancelled when all its timers were last
    /// numbered: unchanged, there is nothing new to number.
    changes_seen: Option<u32>,
}

/// The node's side of the numbering (a field of `Local`).
#[derive(Default)]
pub(super) struct TimerOrder {
    next: u64,
    /// Reused lists: new timer numbers while numbering, machines due while firing.
    seqs: Vec<u32>,
    due: Vec<usize>,
}

impl Local {
    /// Gives machine `i`'s timers armed before the point `upto` of its deferred work
    /// (messages, changes, counted since its counters started over; `None`: all) their
    /// arming numbers.
    pub(super) fn note_timers(&mut self, i: usize, upto: Option<(usize, usize)>) {
        let h = &mut self.machines[i];
        let changes = h.machine.timer_changes();
        if h.timers.changes_seen == Some(changes) {
            return;
        }
        if upto.is_none() {
            h.timers.changes_seen = Some(changes);
        }
        if h.machine.pending_timer(0).is_none() {
            h.timers.armed.clear();
            return;
        }
        let mut seqs = std::mem::take(&mut self.timer_order.seqs);
        seqs.clear();
        let mut k = 0;
        while let Some((_, s)) = h.machine.pending_timer(k) {
            k += 1;
            if h.timers.seen.is_some_and(|x| s <= x) {
                continue;
            }
            let before = match upto {
                None => true,
                Some((m, c)) => h
                    .machine
                    .timer_armed_after(s)
                    .is_some_and(|(tm, tc)| tm <= m && tc <= c),
            };
            if before {
                seqs.push(s);
            }
        }
        if !seqs.is_empty() {
            seqs.sort_unstable();
            // Timers that fired or were cancelled since: forgotten.
            let machine = &h.machine;
            h.timers.armed.retain(|&(s, _)| {
                (0..)
                    .map_while(|k| machine.pending_timer(k))
                    .any(|(_, p)| p == s)
            });
            for &s in &seqs {
                h.timers.armed.push((s, self.timer_order.next));
                self.timer_order.next += 1;
                h.timers.seen = Some(s);
            }
        }
        self.timer_order.seqs = seqs;
    }

    /// Machine `i` stepped: numbers its timers armed before its first deferred item that
    /// makes another machine step at once in XState (a child's start, a message to one of
    /// its children).
    pub(super) fn note_timers_after_step(&mut self, i: usize) {
        let h = &self.machines[i];
        if h.machine.pending_timer(0).is_none() {
            return;
        }
        let id = h.id.as_str();
        let to_child = |t: &str| t.strip_prefix(id).is_some_and(|r| r.starts_with('/'));
        let mut first_msg = None;
        for j in 0..h.machine.outbox_len() {
            if let Some(m) = h.machine.outbox_nth(j) {
                if matches!(m.target, Target::Machine(t) if to_child(t)) {
                    first_msg = Some(j);
                    break;
                }
            }
        }
        let mut first_start = None;
        let mut k = 0;
        while let Some(c) = h.machine.child_change(k) {
            if c.kind == ChildChangeKind::Start {
                first_start = Some((c.after_messages, k));
                break;
            }
            k += 1;
        }
        let changes_before = |j: usize| {
            (0..)
                .map_while(|k| h.machine.child_change(k))
                .take_while(|c| c.after_messages <= j)
                .count()
        };
        let point = match (first_msg, first_start) {
            (None, None) => None,
            (Some(j), None) => Some((j, changes_before(j))),
            (None, Some(s)) => Some(s),
            (Some(j), Some((a, k))) if a <= j => Some((a, k)),
            (Some(j), Some(_)) => Some((j, changes_before(j))),
        };
        let (base_m, base_c) = (h.timers.msgs_base, h.timers.changes_made);
        self.note_timers(i, point.map(|(m, c)| (base_m + m, base_c + c)));
    }

    /// Machine `i`'s pump delivered the first `done` messages of its outbox: when nothing of
    /// its deferred work is left, its timers are all numbered and its counters (and the
    /// core's) start over; else the consumed messages are counted.
    pub(super) fn pumped(&mut self, i: usize, done: usize) {
        let h = &mut self.machines[i];
        if h.machine.outbox_len() == 0 && h.machine.child_change(0).is_none() {
            self.note_timers(i, None);
            let h = &mut self.machines[i];
            h.machine.clear_outbox();
            h.timers.msgs_base = 0;
            h.timers.changes_made = 0;
        } else {
            h.timers.msgs_base += done;
        }
    }

    /// When machine `i`'s next timer is due (up to `now`) and its arming number (a request's
    /// timeout, which goes before the timers due with it: 0; a timer not numbered: last).
    fn timer_key(&self, i: usize, now: Instant) -> Option<(Instant, u64)> {
        let h = &self.machines[i];
        if h.stopped || h.timers.fired >= FIRES_PER_TURN {
            return None;
        }
        let due = h.machine.poll_timeout().filter(|&t| t <= now)?;
        let next = (0..)
            .map_while(|k| h.machine.pending_timer(k))
            .min()
            .filter(|&(t, _)| t == due);
        let order = match next {
            Some((_, s)) => h
                .timers
                .armed
                .iter()
                .find(|&&(x, _)| x == s)
                .map_or(u64::MAX, |&(_, o)| o),
            None => 0,
        };
        Some((due, order))
    }
}

impl Node {
    /// Fires the machines' due timers, those due at the same instant in XState's arming
    /// order across machines (see the module's notes), then the hub's or client's.
    pub(super) fn fire_machine_timers(&mut self) -> Result<(), PlatformError> {
        let now = self.turn_now;
        for h in self.local.machines.iter_mut() {
            h.timers.fired = 0;
        }
        let mut due = std::mem::take(&mut self.local.timer_order.due);
        let r = self.fire_due(now, &mut due);
        due.clear();
        self.local.timer_order.due = due;
        r
    }

    fn fire_due(&mut self, now: Instant, due: &mut Vec<usize>) -> Result<(), PlatformError> {
        loop {
            due.clear();
            due.extend((0..self.local.machines.len()).filter(|&i| {
                let h = &self.local.machines[i];
                !h.stopped
                    && h.timers.fired < FIRES_PER_TURN
                    && h.machine.poll_timeout().is_some_and(|t| t <= now)
            }));
            if due.is_empty() {
                return Ok(());
            }
            // Timers armed while these fire (a zero delay) fire in the next round.
            while let Some(i) = due
                .iter()
                .filter_map(|&i| self.local.timer_key(i, now).map(|k| (k, i)))
                .min()
                .map(|(_, i)| i)
            {
                self.fire_one(i, now)?;
            }
        }
    }

    /// Fires machine `i`'s earliest due timer (or request timeout).
    fn fire_one(&mut self, i: usize, now: Instant) -> Result<(), PlatformError> {
        let h = &mut self.local.machines[i];
        h.timers.fired += 1;
        match h.machine.handle_timeout(now, &mut *h.behavior) {
            Ok(_) => {}
            // A delayed send came due with the outbox or its byte space full (its messages
            // wait for acknowledgements): it stays due, the machine stays active, and the
            // send goes out once there is room.
            Err(_) if h.machine.status() == Status::Active => {
                h.timers.fired = FIRES_PER_TURN;
                return self.pump();
            }
            Err(e) => {
                let mut deferred = Deferred::default();
                h.failed("on a timer", e, &mut deferred);
                self.settle(deferred);
                return Ok(());
            }
        }
        self.local.note_timers_after_step(i);
        let h = &mut self.local.machines[i];
        if h.watched {
            let mut deferred = Deferred::default();
            deferred.reports.push(h.id.clone());
            self.settle(deferred);
        }
        let h = &self.local.machines[i];
        if h.machine.outbox_len() > 0 || h.machine.child_change(0).is_some() {
            self.pump()?;
        }
        Ok(())
    }
}
