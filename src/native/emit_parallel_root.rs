//! Writing the event's microstep of a parallel root whose regions hold no parallel states
//! (see the [module doc](super)): one pick per region, pure sibling moves taken without a
//! list.

use interstate_core::chart::{StateKind, TransitionId};
use interstate_core::StateId;

use super::emit::{pattern, Emitter, ERR, HOST};

impl Emitter<'_, '_> {
    /// The regions of the root when the root is a parallel state none of whose regions
    /// holds a parallel state, in a chart that keeps no entry order: its event's selection
    /// is at most one transition per region (`pick_R`), taken without a list when they are
    /// all pure sibling moves (`parallel_root_event`).
    pub(super) fn parallel_root_regions(&self) -> Option<Vec<StateId>> {
        let root = StateId(0);
        if self.kind(root) != StateKind::Parallel || self.ordered() {
            return None;
        }
        let nested = self
            .states()
            .skip(1)
            .any(|s| self.kind(s) == StateKind::Parallel);
        (!nested).then(|| self.children(root))
    }

    /// Sibling moves with no exit or transition actions and no final target ("pure"): their
    /// exits are only bits of their sources, and a microstep of several of them is the
    /// sources' bits cleared, then each target entered with its entry actions, in order.
    pub(super) fn pure_sibling_moves(&self) -> Vec<u16> {
        (0..self.chart.transition_count() as u16)
            .filter(|&t| {
                let Some((src, x)) = self.chart.sibling_move(TransitionId(t)) else {
                    return false;
                };
                let tr = self.chart.transition(TransitionId(t));
                self.chart.exit_actions(src).is_empty()
                    && self.chart.transition_actions(&tr).is_empty()
                    && self.kind(x) != StateKind::Final
            })
            .collect()
    }

    /// The event's microstep of a parallel root (see [`Self::parallel_root_regions`]): each
    /// region's pick, in document order, all before any is taken (a guard may read the
    /// configuration); pure sibling moves taken one by one through a `match` over the
    /// region's own transitions; anything else through the list and `take_many`.
    pub(super) fn emit_parallel_root_event(&mut self) {
        let Some(regions) = self.parallel_root_regions() else {
            return;
        };
        let pure = self.pure_sibling_moves();
        self.w("");
        self.w("/// The microstep of an external event: every region's pick, then the moves.");
        self.w("#[inline]");
        self.w(&format!(
            "fn parallel_root_event<{HOST}>(h: &mut H) -> Result<(), {ERR}> {{"
        ));
        for (i, r) in regions.iter().enumerate() {
            self.w(&format!("    let t{i} = pick_{}(h);", r.0));
        }
        let region_pure: Vec<Vec<u16>> = regions
            .iter()
            .map(|&r| {
                let end = self.chart.end(r).0;
                pure.iter()
                    .copied()
                    .filter(|&t| {
                        let src = self.chart.transition(TransitionId(t)).source.0;
                        src > r.0 && src <= end
                    })
                    .collect()
            })
            .collect();
        let conds: Vec<String> = region_pure
            .iter()
            .enumerate()
            .map(|(i, p)| {
                if p.is_empty() {
                    format!("t{i}.is_none()")
                } else {
                    format!("matches!(t{i}, None | Some({}))", pattern(p))
                }
            })
            .collect();
        let some: Vec<String> = (0..regions.len())
            .map(|i| format!("t{i}.is_some()"))
            .collect();
        if region_pure.iter().any(|p| !p.is_empty()) {
            self.w(&format!(
                "    if ({}) && ({}) {{",
                conds.join(" && "),
                some.join(" || ")
            ));
            self.w("        h.begin_microstep();");
            // Every source exits (reverse document order), then every target enters.
            for exits in [true, false] {
                let order: Vec<usize> = if exits {
                    (0..regions.len()).rev().collect()
                } else {
                    (0..regions.len()).collect()
                };
                for i in order {
                    let p = region_pure[i].clone();
                    if p.is_empty() {
                        continue;
                    }
                    // `if let` per transition for one or two (clippy prefers it to a
                    // `match` of one arm), a `match` for more.
                    let as_match = p.len() > 2;
                    if as_match {
                        self.w(&format!("        match t{i} {{"));
                    }
                    for (k, &t) in p.iter().enumerate() {
                        let (src, x) = self
                            .chart
                            .sibling_move(TransitionId(t))
                            .expect("a sibling move");
                        if as_match {
                            self.w(&format!("            Some({t}) => {{"));
                        } else {
                            let kw = if k == 0 { "if" } else { "} else if" };
                            self.w(&format!("        {kw} t{i} == Some({t}) {{"));
                        }
                        let ind = if as_match {
                            "                "
                        } else {
                            "            "
                        };
                        if exits {
                            self.exit_state(src, ind);
                        } else {
                            self.enter_state(x, ind);
                        }
                        if as_match {
                            self.w("            }");
                        }
                    }
                    if as_match {
                        self.w("            _ => {}");
                    }
                    self.w("        }");
                }
            }
            self.w("        return h.end_microstep();");
            self.w("    }");
        }
        self.w("    let mut enabled = interstate_core::machine::Enabled::new();");
        for (i, r) in regions.iter().enumerate() {
            self.w(&format!("    if let Some(t) = t{i} {{"));
            self.w(&format!(
                "        interstate_core::machine::push_enabled(&mut enabled, t, {})?;",
                r.0
            ));
            self.w("    }");
        }
        self.w("    if enabled.is_empty() {");
        self.w("        if let Some(t) = candidate_0(h) {");
        self.w("            interstate_core::machine::push_enabled(&mut enabled, t, 0)?;");
        self.w("        }");
        self.w("    }");
        self.w("    match enabled.as_slice() {");
        self.w("        [] => Ok(()),");
        self.w("        [t] => take(h, t.0).map(|_| ()),");
        self.w("        _ => take_many(h, &enabled).map(|_| ()),");
        self.w("    }");
        self.w("}");
    }
}
