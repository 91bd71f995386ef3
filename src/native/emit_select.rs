//! Writing the selection of one chart's enabled transitions (see the [module doc](super)):
//! without parallel states one `pick_N` function per state, the first candidate from the
//! active leaf up; with them the optimal enabled set by document order; the eventless
//! transitions' selection beside each.

use interstate_core::chart::{Guard, StateKind, StrId, TransitionId, Trigger};
use interstate_core::StateId;

use super::emit::{comment, Emitter, ERR, HOST};

impl Emitter<'_, '_> {
    /// Without parallel states: at most one transition, the first candidate from the active
    /// leaf up (`pick_N`: the active child's pick, else the state's own candidate).
    pub(super) fn emit_pick(&mut self) {
        // Below a parallel root, only its regions' subtrees pick (the root selects with
        // `parallel_root_event`).
        let skip = usize::from(self.chart.has_parallel());
        let states: Vec<StateId> = self.states().skip(skip).collect();
        for s in states {
            self.w("");
            self.w(&format!("/// Selection below {}.", self.state_name(s)));
            self.w("#[inline]");
            self.w(&format!(
                "fn pick_{}<{HOST}>(h: &mut H) -> Option<u16> {{",
                s.0
            ));
            let kids = self.children(s);
            if !kids.is_empty() {
                for (i, c) in kids.iter().enumerate() {
                    let kw = if i == 0 { "if" } else { "} else if" };
                    self.w(&format!("    {kw} h.active({}) {{", c.0));
                    self.w(&format!("        if let Some(t) = pick_{}(h) {{", c.0));
                    self.w("            return Some(t);");
                    self.w("        }");
                }
                self.w("    }");
            }
            self.w(&format!("    candidate_{}(h)", s.0));
            self.w("}");
        }
    }

    /// With parallel states: XState's `transitionNode`, every active region asked.
    pub(super) fn emit_select_parallel(&mut self) {
        let states: Vec<StateId> = self.states().collect();
        for s in states {
            self.w("");
            self.w(&format!("/// Selection below {}.", self.state_name(s)));
            self.w(&format!(
                "fn select_{}<{HOST}>(h: &mut H, out: &mut interstate_core::machine::Enabled) -> Result<bool, {ERR}> {{",
                s.0
            ));
            let kids = self.children(s);
            match self.kind(s) {
                StateKind::Compound if !kids.is_empty() => {
                    for (i, c) in kids.iter().enumerate() {
                        let kw = if i == 0 {
                            "let found = if"
                        } else {
                            "} else if"
                        };
                        self.w(&format!("    {kw} h.active({}) {{", c.0));
                        self.w(&format!("        select_{}(h, out)?", c.0));
                    }
                    self.w("    } else {");
                    self.w("        false");
                    self.w("    };");
                    self.w("    if found {");
                    self.w("        return Ok(true);");
                    self.w("    }");
                }
                StateKind::Parallel if !kids.is_empty() => {
                    // Every region of an active parallel state is active (in a regular
                    // configuration: a chart with history states that leaves it irregular
                    // selects with the interpreter's walk of the state value).
                    self.w("    let mut found = false;");
                    for c in &kids {
                        self.w(&format!("    found |= select_{}(h, out)?;", c.0));
                    }
                    self.w("    if found {");
                    self.w("        return Ok(true);");
                    self.w("    }");
                }
                _ => {}
            }
            self.w(&format!("    match candidate_{}(h) {{", s.0));
            self.w(&format!(
                "        Some(t) => interstate_core::machine::push_enabled(out, t, {}).map(|()| true),",
                s.0
            ));
            self.w("        None => Ok(false),");
            self.w("    }");
            self.w("}");
        }
    }

    /// Child states, history states left out.
    pub(super) fn children(&self, s: StateId) -> Vec<StateId> {
        self.chart
            .children(s)
            .filter(|&c| !self.kind(c).is_history())
            .collect()
    }

    fn guard_expr(&self, g: Guard) -> Option<String> {
        match g {
            Guard::None => None,
            Guard::Named(id) => Some(format!(
                "h.guard({}) /* {} */",
                id.0,
                comment(self.chart.guard_name(id))
            )),
            Guard::InState(s) | Guard::InValue(s) => Some(format!("h.active({})", s.0)),
            Guard::NotInState(s) => Some(format!("!h.active({})", s.0)),
            Guard::Context(i) => Some(format!("h.context_guard({i})")),
        }
    }

    /// XState's `StateNode.next` for each state: exact descriptors by `match` on the event,
    /// then partial descriptors and the wildcard in document order.
    pub(super) fn emit_candidates(&mut self) {
        let states: Vec<StateId> = self.states().collect();
        for s in states {
            let range = self.chart.on_transitions(s);
            self.w("");
            self.w("#[inline(always)]");
            if range.is_empty() {
                self.w(&format!(
                    "fn candidate_{}<{HOST}>(_: &mut H) -> Option<u16> {{",
                    s.0
                ));
                self.w("    None");
                self.w("}");
                continue;
            }
            self.w(&format!(
                "fn candidate_{}<{HOST}>(h: &mut H) -> Option<u16> {{",
                s.0
            ));
            let mut exact = Vec::new();
            let mut partial = Vec::new();
            for ti in range {
                let tr = self.chart.transition(TransitionId(ti));
                match tr.trigger {
                    Trigger::Exact => exact.push((ti, tr)),
                    Trigger::Prefix | Trigger::Any => partial.push((ti, tr)),
                    Trigger::Always => {}
                }
            }
            let mut arms = Vec::new();
            let mut unguarded = std::collections::HashSet::new();
            for (ti, tr) in &exact {
                if unguarded.contains(&tr.event) {
                    continue; // an earlier unguarded transition on this event always wins
                }
                let arm = match self.guard_expr(tr.guard) {
                    None => {
                        unguarded.insert(tr.event);
                        format!("Some({}) => Some({ti}),", tr.event)
                    }
                    Some(g) => format!("Some({}) if {g} => Some({ti}),", tr.event),
                };
                arms.push(arm);
            }
            let exact_expr = |this: &mut Self, tail: &str| {
                this.w("    match h.event_id() {");
                for a in &arms {
                    this.w(&format!("        {a}"));
                }
                this.w(&format!("        _ => {tail},"));
                this.w("    }");
            };
            if partial.is_empty() {
                exact_expr(self, "None");
                self.w("}");
                continue;
            }
            if !arms.is_empty() {
                self.w("    let exact = {");
                exact_expr(self, "None");
                self.w("    };");
                self.w("    if exact.is_some() {");
                self.w("        return exact;");
                self.w("    }");
            }
            let mut closed = false;
            for (ti, tr) in &partial {
                let mut conds = Vec::new();
                if tr.trigger == Trigger::Prefix {
                    conds.push(format!(
                        "interstate_core::machine::prefix_matches(h.event_name(), {:?})",
                        self.chart.str(StrId(tr.event))
                    ));
                }
                if let Some(g) = self.guard_expr(tr.guard) {
                    conds.push(g);
                }
                if conds.is_empty() {
                    self.w(&format!("    Some({ti})"));
                    closed = true;
                    break;
                }
                self.w(&format!("    if {} {{", conds.join(" && ")));
                self.w(&format!("        return Some({ti});"));
                self.w("    }");
            }
            if !closed {
                self.w("    None");
            }
            self.w("}");
        }
    }

    /// Eventless selection in a chart without parallel states: the first enabled eventless
    /// transition of the active leaf or its nearest ancestor that has one.
    pub(super) fn emit_eventless(&mut self) {
        let states: Vec<StateId> = self.states().collect();
        for s in states {
            self.w("");
            self.w("#[inline]");
            let kids = self.children(s);
            let always: Vec<u16> = self.chart.always_transitions(s).collect();
            if kids.is_empty() && always.is_empty() {
                self.w(&format!(
                    "fn eventless_{}<{HOST}>(_: &mut H) -> Option<u16> {{",
                    s.0
                ));
                self.w("    None");
                self.w("}");
                continue;
            }
            let first_guarded = always
                .first()
                .is_some_and(|&t| self.chart.transition(TransitionId(t)).guard != Guard::None);
            let param = if kids.is_empty() && !first_guarded {
                "_"
            } else {
                "h"
            };
            self.w(&format!(
                "fn eventless_{}<{HOST}>({param}: &mut H) -> Option<u16> {{",
                s.0
            ));
            if !kids.is_empty() {
                for (i, c) in kids.iter().enumerate() {
                    let kw = if i == 0 { "if" } else { "} else if" };
                    self.w(&format!("    {kw} h.active({}) {{", c.0));
                    self.w(&format!("        if let Some(t) = eventless_{}(h) {{", c.0));
                    self.w("            return Some(t);");
                    self.w("        }");
                }
                self.w("    }");
            }
            let mut closed = false;
            for ti in always {
                let tr = self.chart.transition(TransitionId(ti));
                match self.guard_expr(tr.guard) {
                    None => {
                        self.w(&format!("    Some({ti})"));
                        closed = true;
                        break;
                    }
                    Some(g) => {
                        self.w(&format!("    if {g} {{"));
                        self.w(&format!("        return Some({ti});"));
                        self.w("    }");
                    }
                }
            }
            if !closed {
                self.w("    None");
            }
            self.w("}");
        }
    }
}
