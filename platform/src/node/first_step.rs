//! A machine's first step and the child charts it invokes, in XState's order.
//!
//! XState makes an exception for a machine's first step: the children of its first
//! configuration start (their own first steps, actions included) before the machine's own
//! first actions run; in every later step the children start after the step's actions, in
//! the step's deferred turn (see `children`). `interstate simulate` follows that order
//! (`src/simulate/system.rs`), and so does a node:
//!
//! 1. a dry run of the machine's first step on a scratch machine of the same chart finds the
//!    child charts that step starts and does not stop again; its guards and delays are the
//!    machine's own, its actions and `log`s do nothing (it happens only for a machine that
//!    has actors bound, once per machine);
//! 2. each of those whose own first step leaves it running (found by a dry run of that step
//!    too: XState starts a child that finishes at once in its deferred turn) is started now,
//!    as the machine's deferred turn would start it;
//! 3. the machine's real first step runs; its start of such a child finds the child running
//!    and adopts it (an id's last start does: see `children`), and its messages reach the child then (after the child's first step, as
//!    in XState). The child's own first messages (a `sendParent` in its entry) go out after
//!    the machine's: a child's slot in the node's table comes after its parent's.
//!
//! Only child charts start early: a service's `make` may send its parent events at once,
//! which a machine that has not run its first step cannot take, and a child process runs its
//! actions in another process, in no order with this one's. Should the real step differ from
//! the dry run (an action of the machine's own code changing what its guards see), a child
//! started early that the real step does not start is stopped again, and one it starts that
//! did not start early starts in the deferred turn.
//!
//! A child chart's first step is dry-run first too: XState runs a machine's first actions
//! after that step, and none of them when it fails (an eventless loop); the child then fails
//! to start without running any (its parent's `xstate.error.actor.<id>`).

use interstate_core::chart::Invocation;
use interstate_core::machine::{write_child_id, ChildChangeKind, MAX_CHILD_ID};
use interstate_core::{
    ActionContext, ActionId, Behavior, DelayId, Duration, GuardContext, GuardId, Instant,
};

use super::invoked::Actor;
use super::local::Deferred;
use super::machines::sized_for;
use super::Node;

/// A machine's behavior in a dry run of its first step: its guards and delays answer as in
/// the real step; its actions and logs do nothing.
struct DryRun<'a>(&'a mut dyn Behavior);

impl Behavior for DryRun<'_> {
    fn action(&mut self, _: ActionId, _: &mut ActionContext<'_>) {}
    fn guard(&mut self, guard: GuardId, cx: &GuardContext<'_>) -> bool {
        self.0.guard(guard, cx)
    }
    fn delay(&mut self, delay: DelayId) -> Option<Duration> {
        self.0.delay(delay)
    }
}

impl Node {
    /// Runs the first step of machine `i` (in the node's table, not started; `data` is the
    /// payload of its `xstate.init`), the child charts that step invokes started first (see
    /// the module's notes). The machine's failure is returned; the caller stops the children
    /// it started then.
    pub(super) fn start_first_step(
        &mut self,
        i: usize,
        now: Instant,
        data: &[u8],
        deferred: &mut Deferred,
    ) -> Result<(), interstate_core::Error> {
        // XState runs a child's first actions after its first step, none if it failed.
        if self.local.machines[i].child.is_some() {
            self.dry_run_first_step(i, now, data)?;
        }
        let mut started = Vec::new();
        for inv in self.early_starts(i, now, data) {
            let mut id = heapless::String::<MAX_CHILD_ID>::new();
            if write_child_id(&self.local.machines[i].id, inv.id, &mut id).is_err() {
                continue;
            }
            // A start that fails here is made again in the deferred turn, which reports it.
            if self.start_child(i, &id, inv, deferred).is_ok() {
                started.push(id.to_string());
            }
        }
        let h = &mut self.local.machines[i];
        let r = h.machine.start_with_data(now, data, &mut *h.behavior);
        if started.is_empty() {
            return r;
        }
        let kept = starts_kept(&*h.machine);
        for id in started {
            let invoke_id = id.rsplit_once('/').map_or("", |(_, k)| k);
            let slot = self.local.by_id.get(&id).copied();
            if let Some(slot) = slot.filter(|_| r.is_ok() && kept.contains(&invoke_id)) {
                self.local.machines[i].early.push((id, slot));
            } else {
                self.stop_child(&id, deferred);
            }
        }
        r
    }

    /// Takes machine `idx` (`id`), the last added, out of the table again, with the children
    /// its first step started (their slots, after its own, are vacant then).
    pub(super) fn remove_added(&mut self, idx: usize, id: &str, mut deferred: Deferred) {
        self.stop_children_of(id, &mut deferred);
        self.local.machines.truncate(idx);
        self.local.by_id.remove(id);
        self.settle(deferred);
    }

    /// Runs machine `i`'s first step on a scratch machine (see [`DryRun`]): its failure, if
    /// it fails (a scratch that cannot be made fails nothing).
    fn dry_run_first_step(
        &mut self,
        i: usize,
        now: Instant,
        data: &[u8],
    ) -> Result<(), interstate_core::Error> {
        let per_machine = self.config.children_per_machine;
        let h = &mut self.local.machines[i];
        let Ok(mut scratch) = sized_for(*h.machine.chart(), &h.id) else {
            return Ok(());
        };
        if scratch.set_child_capacity(per_machine).is_err() {
            return Ok(());
        }
        scratch.start_with_data(now, data, &mut DryRun(&mut *h.behavior))
    }

    /// The invocations of child charts that machine `i`'s first step starts and leaves
    /// running, each still running after its own first step, found by dry runs.
    fn early_starts(&mut self, i: usize, now: Instant, data: &[u8]) -> Vec<Invocation<'static>> {
        let per_machine = self.config.children_per_machine;
        let h = &mut self.local.machines[i];
        let Some(actors) = h.actors.clone() else {
            return Vec::new();
        };
        let chart = *h.machine.chart();
        if chart.invocations().next().is_none() {
            return Vec::new();
        }
        let Ok(mut scratch) = sized_for(chart, &h.id) else {
            return Vec::new();
        };
        if scratch.set_child_capacity(per_machine).is_err()
            || scratch
                .start_with_data(now, data, &mut DryRun(&mut *h.behavior))
                .is_err()
            || scratch.is_done()
        {
            return Vec::new();
        }
        let kept = starts_kept(&*scratch);
        let mut early = Vec::new();
        let mut k = 0;
        while let Some(c) = scratch.child_change(k) {
            k += 1;
            let inv = c.invocation;
            if c.kind != ChildChangeKind::Start || !kept.contains(&inv.id) {
                continue;
            }
            let Some(actor) = actors.get(inv.src) else {
                continue;
            };
            let Ok(mut actor) = actor.try_borrow_mut() else {
                continue;
            };
            let Actor::Chart(child) = &mut *actor else {
                continue;
            };
            let mut id = heapless::String::<MAX_CHILD_ID>::new();
            if write_child_id(&h.id, inv.id, &mut id).is_err() {
                continue;
            }
            let Ok(mut m) = sized_for(child.chart, &id) else {
                continue;
            };
            let mut behavior = (child.behavior)(&id);
            let init = super::invoked::child_init_data(inv.input);
            let runs = m.set_child_capacity(per_machine).is_ok()
                && m.start_with_data(now, &init, &mut DryRun(&mut *behavior))
                    .is_ok()
                && !m.is_done();
            if runs && !early.iter().any(|e: &Invocation<'_>| e.id == inv.id) {
                early.push(inv);
            }
        }
        early
    }
}

/// The invoke ids of the children a step starts and does not stop again (in its child
/// changes not made yet).
fn starts_kept(m: &dyn super::machines::RunningMachine) -> Vec<&'static str> {
    let mut changes = Vec::new();
    let mut k = 0;
    while let Some(c) = m.child_change(k) {
        changes.push(c);
        k += 1;
    }
    changes
        .iter()
        .enumerate()
        .filter(|(n, c)| {
            c.kind == ChildChangeKind::Start
                && !changes[n + 1..]
                    .iter()
                    .any(|l| l.kind == ChildChangeKind::Stop && l.invocation.id == c.invocation.id)
        })
        .map(|(_, c)| c.invocation.id)
        .collect()
}
