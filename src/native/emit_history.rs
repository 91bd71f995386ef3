//! Writing the microsteps of a chart with history states (see the [module doc](super)): the
//! exit and entry sets, the recording and the entry order come from the machine
//! (`NativeHost::plan_microstep`), the actions from the generated `match` arms.

use interstate_core::chart::{StateKind, TransitionId};

use super::emit::{Emitter, ERR, HOST};

impl Emitter<'_, '_> {
    /// Charts with history states: the interpreter's microstep with its sets, recording and
    /// entry order from the interpreter's functions (`h.plan_microstep`), the actions from
    /// the generated `match` arms. `history_take_one` is the microstep of one transition an
    /// event selected in a chart without parallel states: a sibling move straight (as the
    /// interpreter's), anything else through `history_microstep`.
    pub(super) fn emit_history_microsteps(&mut self) {
        self.w("");
        self.w(
            "/// A microstep of `enabled` (not empty): the sets and the history from the machine,",
        );
        self.w("/// the actions from the chart's `match` arms.");
        self.w("#[inline(never)]");
        self.w(&format!(
            "fn history_microstep<{HOST}>(h: &mut H, enabled: &interstate_core::machine::Enabled, sibling: bool) -> Result<bool, {ERR}> {{"
        ));
        self.w("    let mut exit = h.empty();");
        self.w("    let mut enter = h.empty();");
        self.w("    let plan = h.plan_microstep(enabled, sibling, &mut exit, &mut enter);");
        self.w("    let filtered = plan.resolved.as_ref().unwrap_or(enabled);");
        self.w("    let entering = enter;");
        self.w(
            "    while let Some(s) = interstate_core::machine::NativeSet::pop_last(&mut exit) {",
        );
        self.w("        exit_actions(h, s)?;");
        self.w("        h.exit(s);");
        self.w("    }");
        self.w("    for t in filtered {");
        self.w("        transition_actions(h, t.0)?;");
        self.w("    }");
        self.w("    if plan.restamp {");
        self.w("        h.stamp_entering(&entering);");
        self.w("    }");
        self.w(
            "    while let Some(s) = interstate_core::machine::NativeSet::pop_first(&mut enter) {",
        );
        self.w("        h.enter(s);");
        self.w("        entry_actions(h, s)?;");
        self.w("        if is_final(s) {");
        self.w("            h.entered_final(s)?;");
        self.w("        }");
        self.w("    }");
        self.w("    h.view_after_microstep(plan.simple);");
        self.w("    h.end_microstep()?;");
        self.w("    Ok(plan.simple || plan.history_changed || h.config() != plan.before || !h.running())");
        self.w("}");
        if self.chart.has_parallel() {
            return;
        }
        self.w("");
        self.w("/// The microstep of the one transition `t` an event selected.");
        self.w(&format!(
            "fn history_take_one<{HOST}>(h: &mut H, t: u16) -> Result<bool, {ERR}> {{"
        ));
        let siblings = (0..self.chart.transition_count() as u16)
            .filter(|&t| self.chart.sibling_move(TransitionId(t)).is_some())
            .count();
        if siblings == 0 {
            self.w("    let mut enabled = interstate_core::machine::Enabled::new();");
            self.w("    interstate_core::machine::push_enabled(&mut enabled, t, 0)?;");
            self.w("    history_microstep(h, &enabled, false)");
            self.w("}");
            return;
        }
        self.w("    match t {");
        for t in 0..self.chart.transition_count() as u16 {
            let Some((src, x)) = self.chart.sibling_move(TransitionId(t)) else {
                continue;
            };
            let tr = self.chart.transition(TransitionId(t));
            self.w(&format!("        {t} => {{"));
            self.w("            h.begin_microstep();");
            self.exit_state(src, "            ");
            self.actions(self.chart.transition_actions(&tr), "            ");
            self.w(&format!(
                "            h.enter({}); // {}",
                x.0,
                self.state_name(x)
            ));
            self.w(&format!("            h.entered_sibling({});", x.0));
            self.actions(self.chart.entry_actions(x), "            ");
            if self.kind(x) == StateKind::Final {
                self.w(&format!("            h.entered_final({})?;", x.0));
                self.w("            h.end_microstep()?;");
            }
            self.w("            Ok(true)");
            self.w("        }");
        }
        self.w("        _ => {");
        self.w("            let mut enabled = interstate_core::machine::Enabled::new();");
        self.w("            interstate_core::machine::push_enabled(&mut enabled, t, 0)?;");
        self.w("            history_microstep(h, &enabled, false)");
        self.w("        }");
        self.w("    }");
        self.w("}");
    }
}
