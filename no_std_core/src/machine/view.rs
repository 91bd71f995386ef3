//! The states XState's state value holds, when they are not the configuration.
//!
//! XState computes `snapshot.value` from the active states by adding, for an active compound
//! state none of whose children is active, its initial states; for an active parallel state,
//! the initial states of each region not in the set; then every ancestor. Its event selection
//! walks that value. For a regular configuration (every active state's parent active, one
//! active child per active compound state, every region of an active parallel state active)
//! this adds nothing. Only a quirk of history targets makes it irregular (a state exited and
//! not entered again above states that were), and only in a chart with history states; then
//! the machine keeps the value's states here, recomputed after every microstep, for selection
//! and [`Machine::write_value`].

use crate::chart::{StateId, StateKind, MAX_DEPTH};
use crate::set::StateSet;

use super::Machine;

/// The value's states when the configuration is irregular.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct View<const W: usize> {
    pub(super) irregular: bool,
    /// The configuration with the initial states XState adds.
    pub(super) with_initial: StateSet<W>,
    /// `with_initial` and all ancestors: every state in the value.
    pub(super) all: StateSet<W>,
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
    /// Recomputes the view after a microstep that may have changed regularity.
    #[inline(never)]
    pub(super) fn update_view(&mut self) {
        if !self.chart.has_history() {
            return;
        }
        self.view.irregular = !self.config_is_regular();
        if !self.view.irregular {
            return;
        }
        let mut with_initial = self.config;
        for s in self.config.iter() {
            match self.chart.kind(s) {
                StateKind::Compound if !self.chart.children(s).any(|c| self.config.contains(c)) => {
                    self.add_initial(s, &mut with_initial, 0);
                }
                StateKind::Parallel => {
                    for c in self.chart.children(s) {
                        if !self.chart.kind(c).is_history() && !with_initial.contains(c) {
                            self.add_initial(c, &mut with_initial, 0);
                        }
                    }
                }
                _ => {}
            }
        }
        let mut all = with_initial;
        for s in with_initial.iter() {
            let mut p = self.chart.parent(s);
            while let Some(a) = p {
                if all.contains(a) {
                    break;
                }
                all.insert(a);
                p = self.chart.parent(a);
            }
        }
        self.view.with_initial = with_initial;
        self.view.all = all;
    }

    /// XState's `getInitialStateNodes`: `s`, and its initial states below it.
    fn add_initial(&self, s: StateId, set: &mut StateSet<W>, depth: usize) {
        set.insert(s);
        if depth > MAX_DEPTH {
            return;
        }
        match self.chart.kind(s) {
            StateKind::Compound => {
                if let Some(init) = self.chart.initial(s) {
                    self.add_initial(init, set, depth + 1);
                }
            }
            StateKind::Parallel => {
                for c in self.chart.children(s) {
                    if !self.chart.kind(c).is_history() {
                        self.add_initial(c, set, depth + 1);
                    }
                }
            }
            _ => {}
        }
    }

    fn config_is_regular(&self) -> bool {
        for s in self.config.iter() {
            if let Some(p) = self.chart.parent(s) {
                if !self.config.contains(p) {
                    return false;
                }
            }
            let children_ok = match self.chart.kind(s) {
                StateKind::Compound => {
                    self.chart
                        .children(s)
                        .filter(|&c| self.config.contains(c))
                        .count()
                        == 1
                }
                StateKind::Parallel => self
                    .chart
                    .children(s)
                    .all(|c| self.chart.kind(c).is_history() || self.config.contains(c)),
                _ => true,
            };
            if !children_ok {
                return false;
            }
        }
        true
    }

    /// The states in the value: the configuration, or the view when it is irregular.
    #[inline(always)]
    pub(super) fn value_states(&self) -> &StateSet<W> {
        if self.view.irregular {
            &self.view.all
        } else {
            &self.config
        }
    }
}
