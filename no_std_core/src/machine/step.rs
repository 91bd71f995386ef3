//! The macrostep and the microstep of XState v5's algorithm (see the [module doc](super)):
//! the first microstep, an event's microstep, the eventless-and-internal-queue loop, exiting
//! and entering states, and what entering a final state completes.

use crate::chart::{StateId, StateKind, TransitionId, MAX_DEPTH};
use crate::context::{Behavior, Event};
use crate::error::Error;
use crate::set::StateSet;

use super::{Enabled, Machine, Status, StepCx};

/// What [`Machine::plan_microstep`] decided.
pub(super) struct MicrostepPlan<const W: usize> {
    /// The transitions left after conflict resolution, when it removed any (`None`: all).
    pub(super) resolved: Option<Enabled>,
    /// Every transition is a sibling move between atomic states.
    pub(super) simple: bool,
    /// Recording history changed it.
    pub(super) history_changed: bool,
    /// The entered states become the latest in the entry order.
    pub(super) restamp: bool,
    /// The configuration before the microstep.
    pub(super) before: StateSet<W>,
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
    pub(super) fn finish(&mut self, r: Result<(), Error>) -> Result<(), Error> {
        if let Err(e) = r {
            core_log!(
                error,
                "machine {}: stopped by an error: {}",
                self.id.as_str(),
                e
            );
            self.status = Status::Failed;
            self.queue.clear();
            return Err(e);
        }
        if self.status == Status::Done {
            // A stopped actor's scheduled events are cancelled.
            while !self.io.timers.is_empty() {
                self.io.remove_timer(0);
            }
        }
        Ok(())
    }

    pub(super) fn initial_microstep<BH: Behavior + ?Sized>(
        &mut self,
        cx: &mut StepCx<'_, '_, BH>,
    ) -> Result<(), Error> {
        let mut enter = StateSet::<W>::new();
        enter.insert(StateId(0));
        self.add_descendants(StateId(0), &mut enter);
        self.stats.microsteps += 1;
        self.enter_states(&enter, self.track_order, cx)?;
        self.after_microstep(cx)
    }

    #[inline]
    pub(super) fn event_microstep<BH: Behavior + ?Sized>(
        &mut self,
        cx: &mut StepCx<'_, '_, BH>,
    ) -> Result<(), Error> {
        if !self.chart.has_parallel() {
            // At most one transition.
            return match self.select_chain(cx) {
                Some(t) => self.microstep_one(t, cx).map(|_| ()),
                None => Ok(()),
            };
        }
        let mut enabled = Enabled::new();
        self.select(StateId(0), cx, &mut enabled, 0)?;
        self.microstep(&enabled, true, cx).map(|_| ())
    }

    /// The eventless-and-internal-queue loop of a macrostep.
    #[inline]
    pub(super) fn settle<'e, BH: Behavior + ?Sized>(
        &mut self,
        cx: &mut StepCx<'e, '_, BH>,
    ) -> Result<(), Error>
    where
        'c: 'e,
    {
        // Nothing to do (and the loop would find nothing): no eventless transitions to look
        // for and no internal event.
        if !self.chart.has_eventless() && self.queue.is_empty() && self.microstep_limit > 0 {
            return Ok(());
        }
        self.settle_loop(cx)
    }

    #[inline(never)]
    fn settle_loop<'e, BH: Behavior + ?Sized>(
        &mut self,
        cx: &mut StepCx<'e, '_, BH>,
    ) -> Result<(), Error>
    where
        'c: 'e,
    {
        let mut select_eventless = true;
        let mut iterations = 0u32;
        while self.status == Status::Active {
            iterations += 1;
            if iterations > self.microstep_limit {
                return Err(Error::MicrostepLimit {
                    limit: self.microstep_limit,
                });
            }
            let mut enabled = Enabled::new();
            if select_eventless {
                self.select_eventless(cx, &mut enabled)?;
            }
            let eventless = !enabled.is_empty();
            if !eventless {
                let Some(e) = self.queue.pop_front() else {
                    break;
                };
                cx.event = Event::from_id(&self.chart, e);
                self.select(StateId(0), cx, &mut enabled, 0)?;
            }
            let touches = self.children.touches;
            let changed = self.microstep(&enabled, true, cx)?;
            // A microstep that starts or stops a child changes XState's snapshot (its
            // children) even when the configuration stays: eventless selection goes on.
            select_eventless = !eventless || changed || self.children.touches != touches;
        }
        Ok(())
    }

    /// One microstep. Returns whether the configuration or the history changed.
    ///
    /// `sibling`: whether the transitions may all be sibling moves (see
    /// [`Self::sibling_moves`]); false skips the check when they are known not to be.
    fn microstep<BH: Behavior + ?Sized>(
        &mut self,
        enabled: &Enabled,
        sibling: bool,
        cx: &mut StepCx<'_, '_, BH>,
    ) -> Result<bool, Error> {
        if enabled.is_empty() {
            return Ok(false);
        }
        let mut exit = StateSet::<W>::new();
        let mut enter = StateSet::<W>::new();
        let plan = self.plan_microstep(enabled, sibling, &mut exit, &mut enter);
        let filtered: &Enabled = plan.resolved.as_ref().unwrap_or(enabled);
        for s in exit.iter_rev() {
            self.run_actions(self.chart.exit_actions(s), cx)?;
            self.config.remove(s);
        }
        for &t in filtered {
            self.run_rare_actions(self.chart.transition_actions_of(t), cx)?;
        }
        self.enter_states(&enter, plan.restamp, cx)?;
        self.view_after_microstep(plan.simple);
        self.after_microstep(cx)?;
        // Sibling moves: each source left the configuration for a state that was not in it.
        Ok(plan.simple
            || plan.history_changed
            || self.config != plan.before
            || self.status != Status::Active)
    }

    /// The first half of [`Self::microstep`] (`enabled` not empty), before any action runs:
    /// counts the microstep, resolves conflicts, fills the exit and entry sets (recording
    /// history between the two), and decides the entry order. Shared with the code generated
    /// for charts with history states, whose entry sets depend on what was recorded.
    #[inline(always)]
    pub(super) fn plan_microstep(
        &mut self,
        enabled: &Enabled,
        sibling: bool,
        exit: &mut StateSet<W>,
        enter: &mut StateSet<W>,
    ) -> MicrostepPlan<W> {
        self.stats.microsteps += 1;
        // The common case, sibling moves between atomic states, skips conflict removal, the
        // domain computation and history: their exit and entry sets are the sources and the
        // targets, they do not conflict (each exits only its own source), and they exit only
        // atomic states, which record no history.
        let simple = sibling && self.sibling_moves(enabled, exit, enter);
        let resolved = if simple || enabled.len() == 1 {
            None
        } else {
            Some(self.remove_conflicts(enabled))
        };
        let filtered: &Enabled = resolved.as_ref().unwrap_or(enabled);
        let before = self.config;
        let mut history_changed = false;
        if !simple {
            if self.chart.has_history() {
                // As XState's microstep: the exit set from the history as it was, the entry
                // set from the history just recorded (a transition that exits a state and
                // enters its history restores what it exited).
                for &t in filtered {
                    self.exit_set_into(t, exit);
                }
                history_changed = self.record_history(exit);
                for &t in filtered {
                    self.entry_set_of(t, enter);
                }
            } else {
                self.exit_and_entry_sets(filtered, exit, enter);
            }
        }
        // A microstep that leaves the same states active (and the history as it was) keeps
        // their entry order: XState then keeps its previous snapshot (see `order`).
        let restamp = self.track_order
            && (simple || history_changed || !enter.is_subset(&before) || !exit.is_subset(enter));
        MicrostepPlan {
            resolved,
            simple,
            history_changed,
            restamp,
            before,
        }
    }

    /// After a microstep's entries: the state value's view, when the microstep may have
    /// changed the configuration's regularity.
    #[inline(always)]
    pub(super) fn view_after_microstep(&mut self, simple: bool) {
        if !simple || self.view.irregular {
            self.update_view();
        }
    }

    /// A microstep of one transition `t`: [`Self::microstep`], with sibling moves run
    /// straight from the transition record.
    #[inline]
    fn microstep_one<BH: Behavior + ?Sized>(
        &mut self,
        t: TransitionId,
        cx: &mut StepCx<'_, '_, BH>,
    ) -> Result<bool, Error> {
        let Some((s, x)) = self.sibling_move(t) else {
            let mut enabled = Enabled::new();
            // One fits.
            let _ = enabled.push(t);
            return self.microstep(&enabled, false, cx);
        };
        #[cfg(debug_assertions)]
        self.check_sets(t, &crate::set::one(s), &crate::set::one(x));
        self.stats.microsteps += 1;
        self.run_actions(self.chart.exit_actions(s), cx)?;
        self.config.remove(s);
        self.run_rare_actions(self.chart.transition_actions_of(t), cx)?;
        self.config.insert(x);
        if self.view.irregular {
            self.entered_irregular(x);
        }
        self.children.entry_from = self.io.outbox.len() as u16;
        self.run_actions(self.chart.entry_actions(x), cx)?;
        if self.chart.has_final() && self.chart.kind(x) == StateKind::Final {
            self.entered_final(x, &mut StateSet::new())?;
            self.after_microstep(cx)?;
        }
        Ok(true)
    }

    #[inline]
    pub(super) fn after_microstep<BH: Behavior + ?Sized>(
        &mut self,
        cx: &mut StepCx<'_, '_, BH>,
    ) -> Result<(), Error> {
        if self.status == Status::Done {
            self.exit_all(cx)?;
        }
        Ok(())
    }

    /// Reaching the top-level final state exits every state, in reverse order; the
    /// configuration itself is kept, as XState keeps it in the final snapshot.
    #[inline(never)]
    fn exit_all<BH: Behavior + ?Sized>(
        &mut self,
        cx: &mut StepCx<'_, '_, BH>,
    ) -> Result<(), Error> {
        let all = self.config;
        let hi = StateId((self.chart.state_count() - 1) as u16);
        for s in all.iter_range_rev(StateId(0), hi) {
            self.run_rare_actions(self.chart.exit_actions(s), cx)?;
        }
        Ok(())
    }

    /// XState's `enterStates` after the entry set is known. `restamp`: whether entered atomic
    /// states become the latest in the entry order (see `order`; false when the chart does not
    /// need it); a state entered while still active keeps its place, as in XState's `Set`.
    #[inline]
    fn enter_states<BH: Behavior + ?Sized>(
        &mut self,
        enter: &StateSet<W>,
        restamp: bool,
        cx: &mut StepCx<'_, '_, BH>,
    ) -> Result<(), Error> {
        let mut completed = StateSet::<W>::new();
        if restamp {
            self.stamp_entering(enter);
        }
        for s in enter.iter() {
            self.config.insert(s);
            self.children.entry_from = self.io.outbox.len() as u16;
            self.run_actions(self.chart.entry_actions(s), cx)?;
            if self.chart.has_final() && self.chart.kind(s) == StateKind::Final {
                self.entered_final(s, &mut completed)?;
            }
        }
        Ok(())
    }

    /// [`Self::microstep_one`] entered `x` in an irregular configuration: `x` becomes the
    /// latest in the entry order, and the view is computed again. (Only a chart without
    /// parallel states gets there; while its configuration is regular, its one active atomic
    /// state needs no stamp: [`Self::stamp_entering`] gives it one before another enters.)
    #[cold]
    #[inline(never)]
    pub(super) fn entered_irregular(&mut self, x: StateId) {
        if self.track_order {
            self.order.stamp(x, &self.config);
        }
        self.update_view();
    }

    /// Stamps the states of `enter` that are not active as the latest in the entry order, in
    /// document order (see `order`). Nothing when the chart needs no order.
    #[inline(never)]
    pub(super) fn stamp_entering(&mut self, enter: &StateSet<W>) {
        if !self.track_order {
            return;
        }
        // The active states as the stamping goes on: a renumbering has to see the states
        // stamped before it.
        let mut active = self.config;
        if !self.chart.has_parallel() && !self.view.irregular {
            // A regular configuration without parallel states has one atomic state, whose
            // sibling moves (`microstep_one`) were not stamped: it entered before `enter`.
            for s in self.config.iter() {
                if self.chart.kind(s).is_atomic() {
                    self.order.stamp(s, &active);
                }
            }
        }
        for s in enter.iter() {
            if !active.contains(s) {
                self.order.stamp(s, &active);
                active.insert(s);
            }
        }
    }

    /// What entering the final state `s` completes: done events for its parent and for
    /// every parallel ancestor whose regions are all final (each once per microstep, in
    /// `completed`), and the machine when the top level is.
    #[inline(never)]
    pub(super) fn entered_final(
        &mut self,
        s: StateId,
        completed: &mut StateSet<W>,
    ) -> Result<(), Error> {
        let parent = self.chart.parent(s);
        let mut marker = match parent {
            Some(p) if self.chart.kind(p) == StateKind::Parallel => Some(p),
            Some(p) => self.chart.parent(p),
            None => None,
        };
        if let Some(p) = parent {
            if self.chart.kind(p) == StateKind::Compound {
                if let Some(e) = self.chart.done_event(p) {
                    self.queue
                        .push_back(e)
                        .map_err(|_| Error::QueueFull { capacity: Q })?;
                }
            }
        }
        while let Some(m) = marker {
            if self.chart.kind(m) != StateKind::Parallel
                || completed.contains(m)
                || !self.in_final_state(m, 0)
            {
                break;
            }
            completed.insert(m);
            if let Some(e) = self.chart.done_event(m) {
                self.queue
                    .push_back(e)
                    .map_err(|_| Error::QueueFull { capacity: Q })?;
            }
            marker = self.chart.parent(m);
        }
        if marker.is_none() {
            self.status = Status::Done;
        }
        Ok(())
    }

    /// Whether `s` is in a final state in the configuration (XState's `isInFinalState`).
    pub(super) fn in_final_state(&self, s: StateId, depth: usize) -> bool {
        match self.chart.kind(s) {
            StateKind::Compound => self
                .chart
                .children(s)
                .any(|c| self.chart.kind(c) == StateKind::Final && self.config.contains(c)),
            StateKind::Parallel if depth <= MAX_DEPTH => self
                .chart
                .children(s)
                .filter(|&c| !self.chart.kind(c).is_history())
                .all(|c| self.in_final_state(c, depth + 1)),
            StateKind::Final => true,
            _ => false,
        }
    }
}
