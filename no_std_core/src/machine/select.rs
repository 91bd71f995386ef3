//! Selection: which transitions an event enables (deepest active states first, then their
//! ancestors; every region of a parallel state), which eventless transitions are enabled, and
//! which of them survive conflicts between regions.

use heapless::Vec;

use crate::chart::{Guard, StateId, StateKind, StrId, TransitionId, Trigger, MAX_DEPTH};
use crate::context::{Behavior, GuardContext};
use crate::error::Error;
use crate::set::StateSet;

use super::{Enabled, Machine, StepCx, MAX_ENABLED};

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
    /// [`Self::select`] from the root in a chart without parallel states.
    ///
    /// Without parallel states the configuration is one chain from the root down to one
    /// atomic state, the highest index in it (descendants come after their ancestors).
    /// `select` walks that chain down and asks the deepest state first, then its ancestors:
    /// the same, from the bottom up.
    #[inline]
    pub(super) fn select_chain<BH: Behavior + ?Sized>(
        &self,
        cx: &mut StepCx<'_, '_, BH>,
    ) -> Option<TransitionId> {
        let mut s = self.config.last();
        while let Some(st) = s {
            if let Some(t) = self.candidate(st, cx) {
                return Some(t);
            }
            s = self.chart.parent(st);
        }
        None
    }

    /// XState's `transitionNode`: the transitions an event selects below `s`.
    ///
    /// A compound state asks its active child and only falls back to its own transitions
    /// when the child selected none; a parallel state asks every active region, and falls
    /// back when none selected any. Chains of compound states are walked down in a loop, then
    /// back up asking each state until one selects; only parallel states recurse.
    pub(super) fn select<BH: Behavior + ?Sized>(
        &self,
        s: StateId,
        cx: &mut StepCx<'_, '_, BH>,
        out: &mut Enabled,
        depth: usize,
    ) -> Result<bool, Error> {
        let mut bottom = s;
        let mut depth = depth;
        // A compound state with two children in the state value (a quirk) is asked like a
        // parallel state: XState's selection walks the value, and reads an object with
        // several keys as a parallel state's.
        let mut several = false;
        while depth <= MAX_DEPTH && self.chart.kind(bottom) == StateKind::Compound {
            match self.active_child(bottom) {
                // (When the first child is atomic the value is just its key: the others
                // are not in it.)
                Some(c) if !self.chart.kind(c).is_atomic() && self.other_value_child(bottom, c) => {
                    several = true;
                    break;
                }
                Some(c) => {
                    bottom = c;
                    depth += 1;
                }
                None => break,
            }
        }
        let mut found = false;
        if depth <= MAX_DEPTH && self.chart.kind(bottom) == StateKind::Parallel {
            if self.view.irregular {
                // In the value's key order (see `first_value_child`).
                let mut c = self.next_value_child(bottom, None);
                while let Some(x) = c {
                    found |= self.select(x, cx, out, depth + 1)?;
                    c = self.next_value_child(bottom, Some(x));
                }
            } else {
                for c in self.chart.children(bottom) {
                    if self.config.contains(c) {
                        found |= self.select(c, cx, out, depth + 1)?;
                    }
                }
            }
        } else if several && depth <= MAX_DEPTH {
            // In the value's key order.
            let mut c = self.next_value_child(bottom, None);
            while let Some(x) = c {
                found |= self.select(x, cx, out, depth + 1)?;
                c = self.next_value_child(bottom, Some(x));
            }
        }
        // Up from `bottom` to `s`: each state is asked when nothing below it selected.
        let mut st = bottom;
        loop {
            if found {
                return Ok(true);
            }
            if let Some(t) = self.candidate(st, cx) {
                out.push(t).map_err(|_| Error::InvalidChart {
                    table: "states",
                    index: st.0 as u32,
                    reason: "more than MAX_ENABLED transitions in one microstep",
                })?;
                return Ok(true);
            }
            if st == s {
                return Ok(false);
            }
            // `bottom` was reached from `s` through active children, so this is in the chain.
            match self.chart.parent(st) {
                Some(p) => st = p,
                None => return Ok(false),
            }
        }
    }

    /// The active child of a compound state: its child in the state value (see `view`),
    /// the first one the value lists if a quirk left several there.
    #[inline]
    pub(super) fn active_child(&self, s: StateId) -> Option<StateId> {
        let set = self.value_states();
        // In document order the first state of the value below `s` is normally its child
        // (a state's ancestors come first); XState can leave a state active without its
        // parent, so the walk goes up to the child of `s`.
        let mut c = set.first_in(StateId(s.0 + 1), self.chart.end(s))?;
        let mut depth = 0;
        while depth <= MAX_DEPTH {
            match self.chart.parent(c) {
                Some(p) if p == s => return Some(self.first_value_child(s, c)),
                Some(p) => c = p,
                None => return None,
            }
            depth += 1;
        }
        None
    }

    /// The child of the compound state `s` that XState's state value lists first, given
    /// `c`, the first child in document order in the value. They differ only when a quirk
    /// left several children of `s` in the value: XState lists them in the order it adds them
    /// to the value, the active ones first (in the order they became active, see `order`),
    /// then the initial states it adds, then the ancestors.
    #[inline]
    pub(super) fn first_value_child(&self, s: StateId, c: StateId) -> StateId {
        if !self.view.irregular {
            return c;
        }
        self.next_value_child(s, None).unwrap_or(c)
    }

    /// Where a child of a state in the value comes in the value's key order (see
    /// [`Self::first_value_child`]): its rank, then, for an active one, when it became
    /// active, then document order.
    #[inline]
    fn value_key(&self, c: StateId) -> (u8, u8, u16) {
        let rank = self.value_rank(c);
        let stamp = if rank == 0 && self.track_order {
            self.order.of(c)
        } else {
            0
        };
        (rank, stamp, c.0)
    }

    /// The child of `p` in the value that comes after `after` (the first one for `None`) in
    /// the value's key order. Only for an irregular configuration (each call looks at every
    /// child of `p`).
    pub(super) fn next_value_child(&self, p: StateId, after: Option<StateId>) -> Option<StateId> {
        let floor = after.map(|a| self.value_key(a));
        self.chart
            .children(p)
            .filter(|&c| self.in_value(c))
            .map(|c| (self.value_key(c), c))
            .filter(|(k, _)| floor.is_none_or(|f| *k > f))
            .min_by_key(|(k, _)| *k)
            .map(|(_, c)| c)
    }

    /// Whether a child of `s` other than `c` (one of its children) is in the state value.
    #[inline]
    fn other_value_child(&self, s: StateId, c: StateId) -> bool {
        self.view.irregular
            && self
                .chart
                .children(s)
                .any(|x| x != c && self.view.all.contains(x))
    }

    /// The rank of a child in the value's key order (see [`Self::first_value_child`]).
    #[inline]
    pub(super) fn value_rank(&self, c: StateId) -> u8 {
        if self.config.contains(c) {
            0
        } else if self.view.with_initial.contains(c) {
            1
        } else {
            2
        }
    }

    /// Whether XState's `snapshot.matches` holds for `s`'s key path: `s` and its ancestors
    /// are in the value, and no compound ancestor's value is the key of another, atomic child.
    pub(super) fn value_holds(&self, s: StateId) -> bool {
        if !self.view.irregular {
            return self.config.contains(s);
        }
        let mut c = s;
        let mut depth = 0;
        while let Some(p) = self.chart.parent(c) {
            if !self.view.all.contains(c) || depth > MAX_DEPTH {
                return false;
            }
            if self.chart.kind(p) == StateKind::Compound {
                if let Some(first) = self.active_child(p) {
                    if first != c && self.chart.kind(first).is_atomic() {
                        return false;
                    }
                }
            }
            c = p;
            depth += 1;
        }
        true
    }

    /// Whether `s` is in XState's state value.
    #[inline]
    pub(super) fn in_value(&self, s: StateId) -> bool {
        self.value_states().contains(s)
    }

    /// XState's `StateNode.next`: the first enabled candidate of `s` for the event.
    #[inline(always)]
    fn candidate<BH: Behavior + ?Sized>(
        &self,
        s: StateId,
        cx: &mut StepCx<'_, '_, BH>,
    ) -> Option<TransitionId> {
        let range = self.chart.on_transitions(s);
        if range.is_empty() {
            return None;
        }
        // XState's `getCandidates`: the exact descriptor's transitions first, then the
        // matching partial descriptors (stored longest first), each in document order.
        // Whether there are partial descriptors to look at (only their trigger and event are
        // read until one matches).
        let mut partial = cx.event.id.is_none();
        if let Some(e) = cx.event.id {
            for ti in range.clone() {
                let t = TransitionId(ti);
                match self.chart.exact_trigger(t) {
                    None => partial = true,
                    Some((event, guarded)) => {
                        if event == e.0 && (!guarded || self.guarded_passes(t, cx)) {
                            return Some(t);
                        }
                    }
                }
            }
        }
        if !partial {
            return None;
        }
        self.partial_candidate(range, cx)
    }

    /// Whether the guard of the guarded transition `t` passes.
    #[inline(never)]
    fn guarded_passes<BH: Behavior + ?Sized>(
        &self,
        t: TransitionId,
        cx: &mut StepCx<'_, '_, BH>,
    ) -> bool {
        self.guard_passes(self.chart.transition(t).guard, cx)
    }

    /// The first enabled transition of `range` whose partial descriptor or wildcard matches
    /// the event.
    #[inline(never)]
    fn partial_candidate<BH: Behavior + ?Sized>(
        &self,
        range: core::ops::Range<u16>,
        cx: &mut StepCx<'_, '_, BH>,
    ) -> Option<TransitionId> {
        let name = cx.event.name;
        for ti in range {
            let t = self.chart.transition(TransitionId(ti));
            let matches = match t.trigger {
                Trigger::Any => true,
                Trigger::Prefix => {
                    let p = self.chart.str(StrId(t.event));
                    name == p
                        || (name.len() > p.len()
                            && name.starts_with(p)
                            && name.as_bytes()[p.len()] == b'.')
                }
                _ => false,
            };
            if matches && self.guard_passes(t.guard, cx) {
                return Some(TransitionId(ti));
            }
        }
        None
    }

    pub(super) fn guard_passes<BH: Behavior + ?Sized>(
        &self,
        g: Guard,
        cx: &mut StepCx<'_, '_, BH>,
    ) -> bool {
        match g {
            Guard::None => true,
            Guard::InState(s) => self.config.contains(s),
            Guard::NotInState(s) => !self.config.contains(s),
            Guard::InValue(s) => self.value_holds(s),
            Guard::Context(i) => self.context.view().condition(&self.chart, i),
            Guard::Named(id) => cx.behavior.guard(
                id,
                &GuardContext {
                    machine_id: &self.id,
                    event: &cx.event,
                    context: self.context.view(),
                },
            ),
        }
    }

    /// XState's `selectEventlessTransitions`: for each active atomic state, in the order the
    /// states entered (see `order`), the first enabled eventless transition of it or of its
    /// nearest ancestor that has one; each transition once.
    pub(super) fn select_eventless<BH: Behavior + ?Sized>(
        &self,
        cx: &mut StepCx<'_, '_, BH>,
        out: &mut Enabled,
    ) -> Result<(), Error> {
        // A chart without eventless transitions never needs the scan of every active state
        // and its ancestors.
        if !self.chart.has_eventless() {
            return Ok(());
        }
        let too_many = |leaf: StateId| Error::InvalidChart {
            table: "states",
            index: leaf.0 as u32,
            reason: "more than MAX_ENABLED transitions in one microstep",
        };
        // (stamp, state), sorted by stamp: insertion sort, as the list is short and mostly in
        // order already.
        let mut leaves = Vec::<(u8, StateId), MAX_ENABLED>::new();
        let ordered = self.track_order;
        for leaf in self.config.iter() {
            if !self.chart.kind(leaf).is_atomic() {
                continue;
            }
            // (Without the order, there is one active atomic state.)
            let stamp = if ordered { self.order.of(leaf) } else { 0 };
            leaves.push((stamp, leaf)).map_err(|_| too_many(leaf))?;
            let mut i = leaves.len() - 1;
            while i > 0 && leaves[i - 1].0 > stamp {
                leaves.swap(i - 1, i);
                i -= 1;
            }
        }
        for &(_, leaf) in &leaves {
            let mut s = Some(leaf);
            'up: while let Some(st) = s {
                for ti in self.chart.always_transitions(st) {
                    let t = self.chart.transition(TransitionId(ti));
                    if self.guard_passes(t.guard, cx) {
                        if !out.contains(&TransitionId(ti)) {
                            out.push(TransitionId(ti)).map_err(|_| too_many(leaf))?;
                        }
                        break 'up;
                    }
                }
                s = self.chart.parent(st);
            }
        }
        Ok(())
    }

    /// XState's `removeConflictingTransitions`.
    pub(super) fn remove_conflicts(&self, enabled: &Enabled) -> Enabled {
        let mut kept = Enabled::new();
        for &t1 in enabled {
            let mut x1 = StateSet::<W>::new();
            self.exit_set_into(t1, &mut x1);
            let s1 = self.chart.transition(t1).source;
            let mut preempted = false;
            let mut remove = Vec::<TransitionId, MAX_ENABLED>::new();
            for &t2 in &kept {
                let mut x2 = StateSet::<W>::new();
                self.exit_set_into(t2, &mut x2);
                if x1.intersects(&x2) {
                    if self
                        .chart
                        .is_descendant(s1, self.chart.transition(t2).source)
                    {
                        let _ = remove.push(t2);
                    } else {
                        preempted = true;
                        break;
                    }
                }
            }
            if !preempted {
                kept.retain(|t| !remove.contains(t));
                let _ = kept.push(t1);
            }
        }
        kept
    }
}
