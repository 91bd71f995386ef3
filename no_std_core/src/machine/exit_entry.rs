//! What a microstep exits and enters: transition domains, exit and entry sets (with the
//! shortcuts for one target and for sibling moves), the targets history states stand for, and
//! recording history before states exit.

use heapless::Vec;

use crate::chart::{StateId, StateKind, Transition, TransitionId};
use crate::set::StateSet;

use super::{Enabled, Machine, MAX_ENABLED};

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
    /// The targets of a transition with history states replaced by what they stand for.
    fn effective_targets(&self, tr: &Transition, out: &mut Vec<StateId, MAX_ENABLED>) {
        if !self.targets_history(tr) {
            // Several targets are distinct states (validated): they are the effective ones.
            for target in self.chart.targets(tr) {
                let _ = out.push(target);
            }
            return;
        }
        for target in self.chart.targets(tr) {
            self.push_effective(target, out);
        }
    }

    fn push_effective(&self, target: StateId, out: &mut Vec<StateId, MAX_ENABLED>) {
        let add = |s: StateId, out: &mut Vec<StateId, MAX_ENABLED>| {
            if !out.contains(&s) {
                let _ = out.push(s);
            }
        };
        if !self.chart.kind(target).is_history() {
            add(target, out);
            return;
        }
        if self.history_recorded(target) {
            let (slot, len) = self.chart.history_memory(target);
            let memory = self.history.get(slot..slot + len).unwrap_or(&[]);
            let parent = self.chart.parent(target).map_or(0, |p| p.0 as usize);
            for (w, &word) in memory.iter().enumerate() {
                // Bit 0 of the first word is the parent itself: the "recorded" mark.
                let mut bits = if w == 0 { word & !1 } else { word };
                while bits != 0 {
                    let k = w * 16 + bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    add(StateId((parent + k) as u16), out);
                }
            }
        } else {
            let defaults = self.chart.history_defaults(target);
            if defaults.is_empty() {
                // XState: the parent's initial transition, or for a parallel parent the
                // parent itself (so a transition from inside it exits and re-enters it, and
                // entering it enters every region with its default). A history state that is
                // its compound parent's initial state and has no default would stand for
                // itself; it stands for nothing instead.
                match self.chart.parent(target) {
                    Some(p) if self.chart.kind(p) == StateKind::Parallel => add(p, out),
                    Some(p) => {
                        if let Some(init) = self
                            .chart
                            .initial(p)
                            .filter(|&i| !self.chart.kind(i).is_history())
                        {
                            add(init, out);
                        }
                    }
                    None => {}
                }
            } else {
                for d in defaults {
                    add(d, out);
                }
            }
        }
    }

    /// Whether `h` has recorded anything (the mark bit of its memory, see
    /// [`Self::record_history`]).
    fn history_recorded(&self, h: StateId) -> bool {
        let (slot, _) = self.chart.history_memory(h);
        self.history.get(slot).is_some_and(|&m| m & 1 != 0)
    }

    /// XState's `getTransitionDomain`. `Ok(None)` is "above the root" (a reentering root
    /// transition: everything exits, the root included).
    /// For a code generator (`interstate compile --native`), on a chart without history
    /// states, where neither depends on the configuration: the transition domain of `t`
    /// (`None`: above the root) and its entry set, added to `enter`. The exit set is then the
    /// active states below the domain, and the domain itself when `t` re-enters its source
    /// and the source is the domain.
    #[doc(hidden)]
    pub fn static_plan(&self, t: TransitionId, enter: &mut StateSet<W>) -> Option<StateId> {
        let domain = self.domain(t);
        let tr = self.chart.transition(t);
        self.entry_set_into(&tr, domain, enter);
        domain
    }

    /// For a code generator: the initial configuration (the root and its default
    /// descendants), added to `enter`.
    #[doc(hidden)]
    pub fn static_initial(&self, enter: &mut StateSet<W>) {
        enter.insert(StateId(0));
        self.add_descendants(StateId(0), enter);
    }

    fn domain(&self, t: TransitionId) -> Option<StateId> {
        let tr = self.chart.transition(t);
        let mut targets = Vec::<StateId, MAX_ENABLED>::new();
        self.effective_targets(&tr, &mut targets);
        self.domain_of(&tr, &targets)
    }

    /// Whether a target of `tr` is a history state.
    #[inline]
    fn targets_history(&self, tr: &Transition) -> bool {
        self.chart.has_history()
            && self
                .chart
                .targets(tr)
                .any(|x| self.chart.kind(x).is_history())
    }

    /// [`Self::domain`] with the effective targets given.
    fn domain_of(&self, tr: &Transition, targets: &[StateId]) -> Option<StateId> {
        let Some((&head, rest)) = targets.split_first() else {
            // No effective target (a history that recorded nothing): XState's `every` over
            // none holds, so the domain is the source; with `reenter` it is
            // findLCCA([source]), the source's parent, or above the root for the root.
            return if tr.reenter {
                self.chart.parent(tr.source)
            } else {
                Some(tr.source)
            };
        };
        if !tr.reenter
            && targets
                .iter()
                .all(|&x| x == tr.source || self.chart.is_descendant(x, tr.source))
        {
            return Some(tr.source);
        }
        // findLCCA(targets ++ [source]): the first proper ancestor of the first target that
        // contains all the others.
        let mut anc = self.chart.parent(head);
        while let Some(a) = anc {
            if self.chart.is_descendant(tr.source, a)
                && rest.iter().all(|&x| self.chart.is_descendant(x, a))
            {
                return Some(a);
            }
            anc = self.chart.parent(a);
        }
        if tr.reenter {
            None
        } else {
            Some(StateId(0))
        }
    }

    pub(super) fn exit_set_into(&self, t: TransitionId, set: &mut StateSet<W>) {
        let tr = self.chart.transition(t);
        if self.chart.targets(&tr).is_empty() {
            return;
        }
        self.exit_set_with_domain(&tr, self.domain(t), set);
    }

    /// [`Self::exit_set_into`] for a transition with targets whose domain is known.
    fn exit_set_with_domain(
        &self,
        tr: &Transition,
        domain: Option<StateId>,
        set: &mut StateSet<W>,
    ) {
        match domain {
            None => set.union_with(&self.config),
            Some(d) => {
                if tr.reenter && tr.source == d {
                    set.insert(d);
                }
                set.union_range(&self.config, StateId(d.0 + 1), self.chart.end(d));
            }
        }
    }

    /// The entry set of `t` (nothing for a targetless transition), its domain computed from
    /// the history as it is now.
    pub(super) fn entry_set_of(&self, t: TransitionId, enter: &mut StateSet<W>) {
        let tr = self.chart.transition(t);
        if self.chart.targets(&tr).is_empty() {
            return;
        }
        self.entry_set_into(&tr, self.domain(t), enter);
    }

    /// The exit and entry sets of `filtered` in a chart without history states, both from
    /// the configuration as it is before the microstep; each transition's domain once, for
    /// both.
    #[inline(never)]
    pub(super) fn exit_and_entry_sets(
        &self,
        filtered: &Enabled,
        exit: &mut StateSet<W>,
        enter: &mut StateSet<W>,
    ) {
        for &t in filtered {
            let tr = self.chart.transition(t);
            let mut targets = self.chart.targets(&tr);
            match (targets.next(), targets.next()) {
                (None, _) => continue,
                (Some(x), None) if !self.chart.kind(x).is_history() => {
                    let (mut x_exit, mut x_enter) = (StateSet::new(), StateSet::new());
                    self.one_target_sets(&tr, x, &mut x_exit, &mut x_enter);
                    #[cfg(debug_assertions)]
                    self.check_sets(t, &x_exit, &x_enter);
                    exit.union_with(&x_exit);
                    enter.union_with(&x_enter);
                }
                _ => {
                    let domain = self.domain(t);
                    self.exit_set_with_domain(&tr, domain, exit);
                    self.entry_set_into(&tr, domain, enter);
                }
            }
        }
    }

    /// Debug builds (the tests): the exit and entry sets a shortcut found for `t` are the
    /// general algorithm's.
    #[cfg(debug_assertions)]
    pub(super) fn check_sets(&self, t: TransitionId, exit: &StateSet<W>, enter: &StateSet<W>) {
        let tr = self.chart.transition(t);
        let (mut want_exit, mut want_enter) = (StateSet::new(), StateSet::new());
        let domain = self.domain(t);
        self.exit_set_with_domain(&tr, domain, &mut want_exit);
        self.entry_set_into(&tr, domain, &mut want_enter);
        assert_eq!(
            (exit, enter),
            (&want_exit, &want_enter),
            "shortcut sets of transition {t:?}"
        );
    }

    /// [`Self::domain`], [`Self::exit_set_with_domain`] and [`Self::entry_set_into`] for a
    /// transition whose only target `x` is not a history state, with one walk up from `x`:
    /// the ancestors it passes before the domain are the ones to enter.
    fn one_target_sets(
        &self,
        tr: &Transition,
        x: StateId,
        exit: &mut StateSet<W>,
        enter: &mut StateSet<W>,
    ) {
        let s = tr.source;
        // Inside the source without re-entering: the domain is the source, which is not
        // entered again. Otherwise it is found on the way up (findLCCA: the first proper
        // ancestor of `x` that contains the source).
        let inside = !tr.reenter && (x == s || self.chart.is_descendant(x, s));
        let mut domain = if inside {
            Some(s)
        } else if tr.reenter {
            None
        } else {
            Some(StateId(0))
        };
        if x != s || !inside {
            enter.insert(x);
        }
        self.add_descendants(x, enter);
        let mut anc = if x == s && inside {
            None
        } else {
            self.chart.parent(x)
        };
        while let Some(a) = anc {
            if (inside && a == s) || self.chart.is_descendant(s, a) {
                domain = Some(a);
                break;
            }
            // Below the domain: entered whatever the reentrancy (`add_ancestor`).
            enter.insert(a);
            if self.chart.kind(a) == StateKind::Parallel {
                self.add_regions(a, enter);
            }
            anc = self.chart.parent(a);
        }
        if let Some(d) = domain {
            if self.chart.kind(d) == StateKind::Parallel {
                let reentrancy = if self.chart.parent(s).is_none() && tr.reenter {
                    None
                } else {
                    domain
                };
                self.add_ancestor(d, reentrancy, enter);
            }
        }
        self.exit_set_with_domain(tr, domain, exit);
    }

    /// Records history for every exiting state, before any exit action runs. Returns whether
    /// there was any to record.
    ///
    /// A memory is a bit set over its parent `s`'s subtree: bit `k` (of 16 per slot) stands
    /// for state `s + k`, and bit 0 (`s` itself, never recorded) marks the memory recorded.
    /// A set, not a list of the states of one regular configuration, because XState records
    /// every active child (shallow) or atomic state (deep) below `s`, and a history quirk can
    /// leave several children of one compound state active (XState then restores them all).
    #[inline(never)]
    pub(super) fn record_history(&mut self, exit: &StateSet<W>) -> bool {
        let mut history_changed = false;
        for s in exit.iter() {
            for h in self.chart.children(s) {
                let kind = self.chart.kind(h);
                if !kind.is_history() {
                    continue;
                }
                history_changed = true;
                let (slot, len) = self.chart.history_memory(h);
                let Some(memory) = self.history.get_mut(slot..slot + len) else {
                    continue;
                };
                // Marked recorded even when nothing below `s` is active (a compound state
                // left without an active child after a history quirk): XState records an
                // empty list, which then stands for no state at all, not for the default.
                memory.fill(0);
                if let Some(mark) = memory.first_mut() {
                    *mark = 1;
                }
                for a in self.config.iter_range(StateId(s.0 + 1), self.chart.end(s)) {
                    let keep = match kind {
                        StateKind::DeepHistory => self.chart.kind(a).is_atomic(),
                        _ => self.chart.parent(a) == Some(s),
                    };
                    let k = (a.0 - s.0) as usize;
                    if let (true, Some(word)) = (keep, memory.get_mut(k / 16)) {
                        *word |= 1 << (k % 16);
                    }
                }
            }
        }
        history_changed
    }

    /// When every enabled transition moves from an atomic state to one atomic sibling under a
    /// compound parent (not reentering, no history), fills in the exit and entry sets (the
    /// sources and the targets) and returns true. XState's general algorithm gives the same
    /// sets for these: the domain is the parent, whose only active descendant is the source.
    pub(super) fn sibling_moves(
        &self,
        enabled: &Enabled,
        exit: &mut StateSet<W>,
        enter: &mut StateSet<W>,
    ) -> bool {
        for &t in enabled {
            let Some((s, x)) = self.sibling_move(t) else {
                exit.clear();
                enter.clear();
                return false;
            };
            #[cfg(debug_assertions)]
            self.check_sets(t, &crate::set::one(s), &crate::set::one(x));
            exit.insert(s);
            enter.insert(x);
        }
        true
    }

    /// The source and the target of `t` if it is a sibling move (see
    /// [`Self::sibling_moves`]).
    #[inline]
    pub(super) fn sibling_move(&self, t: TransitionId) -> Option<(StateId, StateId)> {
        let (s, x) = self.chart.sibling_move(t)?;
        // The source must be its parent's only active descendant (XState's exit set is all
        // of them; only a quirk can leave a second one there, and only in a chart with
        // parallel states: without them the configuration is one chain, through the active
        // source).
        if self.chart.has_parallel() {
            let parent = self.chart.parent(s)?;
            let end = self.chart.end(parent);
            if self.config.first_in(StateId(parent.0 + 1), end) != Some(s)
                || self.config.first_in(StateId(s.0 + 1), end).is_some()
            {
                return None;
            }
        }
        Some((s, x))
    }

    /// XState's `computeEntrySet` for one transition.
    fn entry_set_into(&self, tr: &Transition, domain: Option<StateId>, enter: &mut StateSet<W>) {
        if self.chart.targets(tr).is_empty() {
            return;
        }
        for s in self.chart.targets(tr) {
            if !self.chart.kind(s).is_history()
                && (tr.source != s || Some(tr.source) != domain || tr.reenter)
            {
                enter.insert(s);
            }
            self.add_descendants(s, enter);
        }
        let mut targets = Vec::<StateId, MAX_ENABLED>::new();
        self.effective_targets(tr, &mut targets);
        let reentrancy = if self.chart.parent(tr.source).is_none() && tr.reenter {
            None
        } else {
            domain
        };
        for &s in &targets {
            // Proper ancestors of `s` below the domain (none when `s` is the domain), then
            // the domain itself if parallel.
            let mut anc = if Some(s) == domain {
                None
            } else {
                self.chart.parent(s)
            };
            while let Some(a) = anc {
                if Some(a) == domain {
                    break;
                }
                self.add_ancestor(a, reentrancy, enter);
                anc = self.chart.parent(a);
            }
            if let Some(d) = domain {
                if self.chart.kind(d) == StateKind::Parallel {
                    self.add_ancestor(d, reentrancy, enter);
                }
            }
        }
    }

    /// One step of XState's `addAncestorStatesToEnter`.
    fn add_ancestor(&self, a: StateId, reentrancy: Option<StateId>, enter: &mut StateSet<W>) {
        if reentrancy.is_none_or(|d| self.chart.is_descendant(a, d)) {
            enter.insert(a);
        }
        if self.chart.kind(a) == StateKind::Parallel {
            self.add_regions(a, enter);
        }
    }

    /// The regions of the parallel state `p` that nothing in `enter` is inside yet, entered
    /// with their default descendants.
    #[inline(never)]
    fn add_regions(&self, p: StateId, enter: &mut StateSet<W>) {
        for c in self.chart.children(p) {
            if self.chart.kind(c).is_history() {
                continue;
            }
            if !enter.any_in(StateId(c.0 + 1), self.chart.end(c)) {
                enter.insert(c);
                self.add_descendants(c, enter);
            }
        }
    }

    /// XState's `addDescendantStatesToEnter`.
    pub(super) fn add_descendants(&self, s: StateId, enter: &mut StateSet<W>) {
        match self.chart.kind(s) {
            StateKind::ShallowHistory | StateKind::DeepHistory => {
                let Some(parent) = self.chart.parent(s) else {
                    return;
                };
                let mut list = Vec::<StateId, MAX_ENABLED>::new();
                self.push_effective(s, &mut list);
                for &m in &list {
                    enter.insert(m);
                    self.add_descendants(m, enter);
                }
                for &m in &list {
                    // The parent itself (a parallel parent without memory) has none below it.
                    let mut anc = if m == parent {
                        None
                    } else {
                        self.chart.parent(m)
                    };
                    while let Some(a) = anc {
                        if a == parent {
                            break;
                        }
                        self.add_ancestor(a, None, enter);
                        anc = self.chart.parent(a);
                    }
                }
            }
            StateKind::Compound => {
                if let Some(init) = self.chart.initial(s) {
                    if !self.chart.kind(init).is_history() {
                        enter.insert(init);
                    }
                    self.add_descendants(init, enter);
                }
            }
            StateKind::Parallel => self.add_regions(s, enter),
            _ => {}
        }
    }
}
