//! Invoked children (XState's `invoke`) as a machine keeps them: which of its chart's
//! invocations are live, and the starts and stops of one step, in order with its messages,
//! for the host that runs the children.
//!
//! The machine does not run its children: a child is another machine (or another actor) the
//! host runs, known to the machine by its invoke id. XState's rules, as the machine applies
//! them:
//! - a state's invocations start after its entry actions and stop after its exit actions
//!   (also when the state is re-entered, and when the machine reaches its final state); the
//!   start and the stop are [`ChildChange`]s the host reads beside the outbox, each placed
//!   after the messages sent before it;
//! - a `sendTo` by invoke id reaches a live child, or one that the state being entered is
//!   about to start (XState's deferred actor ids); any other is an error, as in XState;
//! - a `sendParent` goes to the machine whose id this one's is derived from: a child's
//!   machine id is its parent's, a slash, and its invoke id (see [`write_child_id`]);
//! - delayed sends to a child die with it: its stop cancels them (XState's scheduler drops
//!   events to a stopped actor);
//! - a child's failure (`xstate.error.actor.<id>`) that no transition takes fails the
//!   machine too;
//! - the number of live children is a capacity: a start beyond it fails the invoking step
//!   with [`Error::ChildrenFull`].
//!
//! Nothing here allocates: the live table and the changes are fixed-size, and a child's
//! machine id is composed on the stack.

use heapless::Vec;

use crate::chart::{Data, Delay, Invocation, StrId};
use crate::context::{Behavior, Effects, Target};
use crate::error::Error;
use crate::wire::Correlation;

use super::store::{TimerKey, TimerKind};
use super::{Machine, StepCx, MAX_MACHINE_ID};

/// The most children one machine can have live at once (its capacity, see
/// [`Machine::set_child_capacity`], is at most this).
pub const MAX_LIVE_CHILDREN: usize = 8;

/// The most starts and stops one step can make before the host drains the outbox.
pub const MAX_CHILD_CHANGES: usize = 2 * MAX_LIVE_CHILDREN;

/// The longest machine id of a child: its parent's id, a slash, its invoke id.
pub const MAX_CHILD_ID: usize = 2 * MAX_MACHINE_ID + 1;

/// The prefix of the event a failed child sends its parent (`xstate.error.actor.<id>`).
pub const CHILD_ERROR_PREFIX: &str = "xstate.error.actor.";

/// The prefix of the event a finished child sends its parent (`xstate.done.actor.<id>`).
pub const CHILD_DONE_PREFIX: &str = "xstate.done.actor.";

/// Whether a child starts or stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ChildChangeKind {
    /// The invoking state was entered: start the child (after delivering the messages
    /// before it).
    Start,
    /// The invoking state was exited: stop the child; events it sends later are dropped.
    Stop,
}

/// A start or a stop of an invoked child, as the host reads it after a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChildChange<'a> {
    /// Start or stop.
    pub kind: ChildChangeKind,
    /// The invocation: its `src`, invoke id and `input`.
    pub invocation: Invocation<'a>,
    /// How many of the outbox's messages (see [`Machine::outbox`]) were sent before this
    /// change: the host delivers those first, as XState runs its deferred actions in order.
    pub after_messages: usize,
    /// For a start: the messages from this index up to `after_messages` were sent by the
    /// entry actions of the invoking state. XState resolves the sends among them that name
    /// this child's id to the child this start makes (its deferred actor ids), also when a
    /// child of that id is still live: a transition to a history state can enter a state
    /// again without exiting it, so its old child keeps running beside the new one.
    pub entry_messages_from: usize,
}

/// Writes the machine id of the child `invoke_id` of the machine `parent` (`parent/invoke_id`).
pub fn write_child_id(
    parent: &str,
    invoke_id: &str,
    out: &mut heapless::String<MAX_CHILD_ID>,
) -> Result<(), Error> {
    out.clear();
    let too_long = Error::MachineIdTooLong {
        len: parent.len() + 1 + invoke_id.len(),
        capacity: MAX_MACHINE_ID,
    };
    out.push_str(parent).map_err(|_| too_long)?;
    out.push('/').map_err(|_| too_long)?;
    out.push_str(invoke_id).map_err(|_| too_long)
}

/// The parent's machine id of the machine `id`, if another machine invoked it.
pub fn parent_id(id: &str) -> Option<&str> {
    id.rsplit_once('/').map(|(p, _)| p)
}

#[derive(Clone, Copy, Debug)]
struct Change {
    kind: ChildChangeKind,
    start: u16,
    after_messages: u16,
    entry_from: u16,
}

/// The live children and the changes of the step (a field of [`Machine`]).
#[derive(Debug)]
pub(super) struct Children {
    /// The start records of the live invocations, in the order they started.
    live: Vec<u16, MAX_LIVE_CHILDREN>,
    capacity: u8,
    changes: Vec<Change, MAX_CHILD_CHANGES>,
    /// The outbox's length when the entry actions of the state entered last began (see
    /// [`ChildChange::entry_messages_from`]).
    pub(super) entry_from: u16,
    /// Counts the starts and stops run (a stop of no child too): XState's microstep makes a
    /// new snapshot whenever it runs one, so the eventless loop goes on (see `settle_loop`).
    pub(super) touches: u32,
}

impl Default for Children {
    fn default() -> Self {
        Children {
            live: Vec::new(),
            capacity: MAX_LIVE_CHILDREN as u8,
            changes: Vec::new(),
            entry_from: 0,
            touches: 0,
        }
    }
}

impl Children {
    pub(super) fn clear_changes(&mut self) {
        self.changes.clear();
        self.entry_from = 0;
    }

    /// The host delivered the first `n` messages of the outbox: changes before them are
    /// behind it too.
    pub(super) fn consumed(&mut self, n: usize) {
        self.changes.retain(|c| c.after_messages as usize >= n);
        for c in self.changes.iter_mut() {
            c.after_messages -= n as u16;
            c.entry_from = c.entry_from.saturating_sub(n as u16);
        }
        self.entry_from = self.entry_from.saturating_sub(n as u16);
    }
}

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
    /// Sets how many children may be live at once (default and most:
    /// [`MAX_LIVE_CHILDREN`]). An `invoke` beyond it fails its step with
    /// [`Error::ChildrenFull`].
    pub fn set_child_capacity(&mut self, capacity: usize) -> Result<(), Error> {
        if capacity > MAX_LIVE_CHILDREN {
            return Err(Error::ChildrenFull {
                capacity: MAX_LIVE_CHILDREN,
            });
        }
        self.children.capacity = capacity as u8;
        Ok(())
    }

    /// The invocations whose children are live (started, not stopped), in the order they
    /// started.
    pub fn live_children(&self) -> impl Iterator<Item = Invocation<'c>> + '_ {
        let chart = self.chart;
        self.children
            .live
            .iter()
            .filter_map(move |&s| chart.invocation(s))
    }

    /// The children started and stopped since the outbox was last cleared, in order, each
    /// with the number of outbox messages sent before it. [`clear_outbox`](Self::clear_outbox)
    /// clears them too.
    pub fn child_changes(&self) -> impl Iterator<Item = ChildChange<'c>> + '_ {
        let chart = self.chart;
        self.children.changes.iter().filter_map(move |c| {
            Some(ChildChange {
                kind: c.kind,
                invocation: chart.invocation(c.start)?,
                after_messages: c.after_messages as usize,
                entry_messages_from: c.entry_from as usize,
            })
        })
    }

    /// Whether any change of [`child_changes`](Self::child_changes) waits: a look at a
    /// length, for hosts that ask before every message of the outbox.
    pub fn has_child_changes(&self) -> bool {
        !self.children.changes.is_empty()
    }

    /// The host made the first `n` of [`child_changes`](Self::child_changes): they are
    /// forgotten, so that a host whose outbox waits (backpressure) across steps never makes
    /// one twice, and a later step's stop never takes back a start the host already made.
    pub fn forget_child_changes(&mut self, n: usize) {
        let n = n.min(self.children.changes.len());
        for _ in 0..n {
            self.children.changes.remove(0);
        }
    }

    fn push_change(&mut self, kind: ChildChangeKind, start: u16) -> Result<(), Error> {
        let change = Change {
            kind,
            start,
            after_messages: self.io.outbox.len() as u16,
            entry_from: self.children.entry_from.min(self.io.outbox.len() as u16),
        };
        self.children
            .changes
            .push(change)
            .map_err(|_| Error::ChildChangesFull {
                capacity: MAX_CHILD_CHANGES,
            })?;
        self.io.child_changes_made = self.io.child_changes_made.saturating_add(1);
        Ok(())
    }

    /// `invoke`: the state that lists invocation `start` was entered.
    #[inline(never)]
    pub(super) fn start_child(&mut self, start: u16) -> Result<(), Error> {
        self.children.touches = self.children.touches.wrapping_add(1);
        // Live already: its state was entered again without an exit (a history quirk). The
        // new child takes the id's place, as in XState's children map (the old one runs on,
        // unnamed): one entry in the table still.
        if self.children.live.contains(&start) {
            return self.push_change(ChildChangeKind::Start, start);
        }
        let capacity = self.children.capacity as usize;
        if self.children.live.len() >= capacity {
            return Err(Error::ChildrenFull { capacity });
        }
        self.push_change(ChildChangeKind::Start, start)?;
        // (Fits: the capacity is at most the table's.)
        let _ = self.children.live.push(start);
        Ok(())
    }

    /// The state that lists invocation `start` was exited: its child stops, and the delayed
    /// sends to it are cancelled.
    #[inline(never)]
    pub(super) fn stop_child(&mut self, start: u16, id: StrId) -> Result<(), Error> {
        self.children.touches = self.children.touches.wrapping_add(1);
        let Some(i) = self.children.live.iter().position(|&s| s == start) else {
            return Ok(());
        };
        self.children.live.remove(i);
        let mut target = heapless::String::<MAX_CHILD_ID>::new();
        write_child_id(&self.id, self.chart.str(id), &mut target)?;
        // Started in this step and stopped again: the child never starts (XState's deferred
        // start finds it stopped), so neither change reaches the host. An eventless loop
        // through an invoking state thus makes no changes.
        let started_here = self
            .children
            .changes
            .iter()
            .rposition(|c| c.start == start && c.kind == ChildChangeKind::Start);
        match started_here {
            Some(j) => {
                self.children.changes.remove(j);
                self.io.child_changes_made = self.io.child_changes_made.saturating_sub(1);
                for t in self.io.timers.iter_mut() {
                    if t.after_changes as usize > j {
                        t.after_changes -= 1;
                    }
                }
                self.drop_messages_to_unstarted(j, id, &target);
            }
            None => self.push_change(ChildChangeKind::Stop, start)?,
        }
        let mut i = 0;
        while i < self.io.timers.len() {
            let to_child = match self.io.timers[i].kind {
                TimerKind::Send(m) => m.target.is_some_and(|b| {
                    super::store::Io::<O, T, B, R>::bytes_in(self.chart, b, &self.io.timer_bytes)
                        == target.as_bytes()
                }),
                TimerKind::Event(_) => false,
            };
            if to_child {
                self.io.remove_timer(i);
                self.io.changes = self.io.changes.wrapping_add(1);
            } else {
                i += 1;
            }
        }
        Ok(())
    }

    /// The messages of this step addressed to a child that never starts (its start, change
    /// `j`, was just taken back): XState resolved each to that child, which is stopped before
    /// it starts, so they are dropped. Those are the ones sent since the last stop of a child
    /// of that id in this step (before it, the id named that child): the sends of the
    /// invoking state's entry actions and the sends while it was active.
    fn drop_messages_to_unstarted(&mut self, j: usize, id: StrId, target: &str) {
        let chart = self.chart;
        let name = chart.str(id);
        let same_id = |c: &Change| chart.invocation(c.start).is_some_and(|inv| inv.id == name);
        let from = self.children.changes[..j]
            .iter()
            .rev()
            .find(|c| c.kind == ChildChangeKind::Stop && same_id(c))
            .map_or(0, |c| c.after_messages as usize);
        let mut k = from;
        while k < self.io.outbox.len() {
            let to_child = self.io.outbox[k].target.is_some_and(|b| {
                super::store::Io::<O, T, B, R>::bytes_in(chart, b, &self.io.out_bytes)
                    == target.as_bytes()
            });
            if !to_child {
                k += 1;
                continue;
            }
            self.io.outbox.remove(k);
            for c in self.children.changes.iter_mut() {
                if c.after_messages as usize > k {
                    c.after_messages -= 1;
                }
                if c.entry_from as usize > k {
                    c.entry_from -= 1;
                }
            }
            if self.children.entry_from as usize > k {
                self.children.entry_from -= 1;
            }
            for t in self.io.timers.iter_mut() {
                if t.after_messages as usize > k {
                    t.after_messages -= 1;
                }
            }
        }
    }

    /// XState's rule for `xstate.error.actor.<id>`: a child's failure that no transition
    /// takes fails this machine too ([`Error::UnhandledChildError`]). Checked before the
    /// event's microstep; any other event costs one prefix comparison.
    #[inline]
    pub(super) fn check_child_error<BH: Behavior + ?Sized>(
        &self,
        cx: &mut StepCx<'_, '_, BH>,
    ) -> Result<(), Error> {
        if !cx.event.name.starts_with(CHILD_ERROR_PREFIX) {
            return Ok(());
        }
        self.check_child_error_handled(cx)
    }

    #[inline(never)]
    fn check_child_error_handled<BH: Behavior + ?Sized>(
        &self,
        cx: &mut StepCx<'_, '_, BH>,
    ) -> Result<(), Error> {
        let mut enabled = super::Enabled::new();
        self.select(crate::chart::StateId(0), cx, &mut enabled, 0)?;
        if enabled.is_empty() {
            return Err(Error::UnhandledChildError);
        }
        Ok(())
    }

    /// Whether the child `id` is live.
    fn child_live(&self, id: &str) -> bool {
        let chart = self.chart;
        self.children
            .live
            .iter()
            .any(|&s| chart.invocation(s).is_some_and(|inv| inv.id == id))
    }

    /// `sendTo` an invoked child. `entering`: the send is in the entry actions of the state
    /// that invokes the child, which XState resolves against the child about to start.
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn send_to_child<BH: Behavior + ?Sized>(
        &mut self,
        cx: &mut StepCx<'_, '_, BH>,
        child: StrId,
        event: StrId,
        payload: Data,
        delay: Option<Delay>,
        id: Option<StrId>,
        entering: bool,
    ) -> Result<(), Error> {
        let chart = self.chart;
        if !entering && !self.child_live(chart.str(child)) {
            return Err(Error::NoSuchChild);
        }
        let mut target = heapless::String::<MAX_CHILD_ID>::new();
        write_child_id(&self.id, chart.str(child), &mut target)?;
        self.send_to_id(cx, &target, event, payload, delay, id)
    }

    /// `sendParent`.
    #[inline(never)]
    pub(super) fn send_parent<BH: Behavior + ?Sized>(
        &mut self,
        cx: &mut StepCx<'_, '_, BH>,
        event: StrId,
        payload: Data,
        delay: Option<Delay>,
        id: Option<StrId>,
    ) -> Result<(), Error> {
        let mut target = heapless::String::<MAX_MACHINE_ID>::new();
        let parent = parent_id(&self.id).ok_or(Error::NoParent)?;
        // (Shorter than this machine's id, which fits.)
        let _ = target.push_str(parent);
        self.send_to_id(cx, &target, event, payload, delay, id)
    }

    fn send_to_id<BH: Behavior + ?Sized>(
        &mut self,
        cx: &mut StepCx<'_, '_, BH>,
        target: &str,
        event: StrId,
        payload: Data,
        delay: Option<Delay>,
        id: Option<StrId>,
    ) -> Result<(), Error> {
        let chart = self.chart;
        let d = match delay {
            Some(d) => Some(self.resolve_delay(d, cx)?),
            None => None,
        };
        let data: &[u8] = match payload {
            Data::FromEvent => cx.event.payload,
            Data::Json(s) => chart.str(s).as_bytes(),
            Data::None => &[],
        };
        if let (Some(s), Some(_)) = (id, d) {
            self.unmap_send_id(s);
        }
        let sent = self.io.send(
            cx.now,
            Target::Machine(target),
            chart.str(event),
            data,
            d,
            Correlation::None,
        )?;
        if let (Some(s), Some(_)) = (id, d) {
            // A named send: `cancel` reaches it by its send id.
            if let Some(t) = self
                .io
                .timers
                .iter_mut()
                .find(|t| t.key == TimerKey::Id(sent.0))
            {
                t.key = TimerKey::Named(s);
            }
        }
        Ok(())
    }
}
