//! Writing the Rust code of one chart's macrostep (see the [module doc](super)): the trait
//! impl, each transition's microstep unrolled, the per-state action lists as `match` arms and
//! the state tables; the selection's functions are `emit_select`'s.

use interstate_core::chart::{Action, StateKind, Trigger};
use interstate_core::chart::{StrId, TransitionId};
use interstate_core::{Chart, StateId};

use super::Plan;

/// Exit ranges of at most this many states are unrolled into one test per state; wider ones
/// run a loop over the active states (the code would grow with the chart's size squared).
const UNROLL_STATES: usize = 32;

/// Everything the emitter needs: the chart and each transition's static sets.
pub(super) struct Emitter<'a, 'c> {
    pub(super) chart: &'a Chart<'c>,
    pub(super) plans: &'a [Plan],
    pub(super) initial: &'a [u16],
    pub(super) out: String,
}

/// `H: NativeHost` bound, written once.
pub(super) const HOST: &str = "H: interstate_core::machine::NativeHost";
pub(super) const ERR: &str = "interstate_core::Error";

impl Emitter<'_, '_> {
    pub(super) fn states(&self) -> impl Iterator<Item = StateId> {
        (0..self.chart.state_count() as u16).map(StateId)
    }

    /// Whether the chart keeps the entry order (eventless transitions beside parallel
    /// states; the generator refuses history states): microsteps stamp what they enter.
    pub(super) fn ordered(&self) -> bool {
        self.chart.needs_entry_order()
    }

    /// Writes `let mut enter = h.empty();` and adds `states` to it.
    fn static_set(&mut self, name: &str, states: &[u16], indent: &str) {
        let m = if states.is_empty() { "" } else { "mut " };
        self.w(&format!("{indent}let {m}{name} = h.empty();"));
        for &s in states {
            self.w(&format!(
                "{indent}interstate_core::machine::NativeSet::add(&mut {name}, {s});"
            ));
        }
    }

    pub(super) fn kind(&self, s: StateId) -> StateKind {
        self.chart.kind(s)
    }

    pub(super) fn w(&mut self, line: &str) {
        self.out.push_str(line);
        self.out.push('\n');
    }

    /// Runs the actions `range` of the action table, each a call on `h`.
    pub(super) fn actions(&mut self, range: core::ops::Range<u16>, indent: &str) {
        for i in range {
            let line = match self.chart.user_action_at(i) {
                Some(a) => format!(
                    "{indent}h.user({})?; // {}",
                    a.0,
                    comment(self.chart.action_name(a))
                ),
                None => format!("{indent}h.builtin({i})?; // {:?}", self.chart.action_at(i)),
            };
            self.w(&line);
        }
    }

    /// Ends a `match` opened at `mark` with a do-nothing arm; when no arm was written, the
    /// whole `match` becomes `let _ = (unused);`, which clippy prefers.
    fn close_match(&mut self, mark: usize, unused: &str) {
        let lines: Vec<String> = self.out[mark..].lines().map(str::to_string).collect();
        let arms = lines
            .iter()
            .filter(|l| {
                l.starts_with("        ") && !l.starts_with("         ") && l.ends_with(" => {")
            })
            .count();
        match arms {
            0 => {
                self.out.truncate(mark);
                self.w(&format!("    let _ = ({unused});"));
            }
            // One arm: an `if`, as clippy prefers.
            1 => {
                let scrutinee = lines[0]
                    .trim()
                    .trim_start_matches("match ")
                    .trim_end_matches(" {")
                    .to_string();
                let value = lines[1].trim().trim_end_matches(" => {").to_string();
                self.out.truncate(mark);
                self.w(&format!("    if {scrutinee} == {value} {{"));
                for l in &lines[2..lines.len() - 1] {
                    self.w(l.strip_prefix("    ").unwrap_or(l));
                }
                self.w("    }");
            }
            _ => {
                self.w("        _ => {}");
                self.w("    }");
            }
        }
    }

    fn has_actions(range: &core::ops::Range<u16>) -> bool {
        !range.is_empty()
    }

    pub(super) fn state_name(&self, s: StateId) -> String {
        comment(&format!("#{}", self.chart.state_id(s)))
    }

    /// Enters `s`: the state set, its entry actions, what a final state completes.
    pub(super) fn enter_state(&mut self, s: StateId, indent: &str) {
        let line = format!("{indent}h.enter({}); // {}", s.0, self.state_name(s));
        self.w(&line);
        self.actions(self.chart.entry_actions(s), indent);
        if self.kind(s) == StateKind::Final {
            self.w(&format!("{indent}h.entered_final({})?;", s.0));
        }
    }

    /// Exits `s`: its exit actions, then the state set.
    pub(super) fn exit_state(&mut self, s: StateId, indent: &str) {
        self.actions(self.chart.exit_actions(s), indent);
        self.w(&format!(
            "{indent}h.exit({}); // {}",
            s.0,
            self.state_name(s)
        ));
    }

    /// Whether the chart has history states: its microsteps take their sets from the
    /// interpreter at run time (see `emit_history_microsteps`).
    pub(super) fn history(&self) -> bool {
        self.chart.has_history()
    }

    pub(super) fn emit(&mut self) {
        self.emit_trait_impl();
        if self.history() {
            self.emit_history_microsteps();
        } else {
            self.emit_transitions();
        }
        self.emit_state_tables();
        if self.chart.has_parallel() {
            self.emit_select_parallel();
            if self.parallel_root_regions().is_some() {
                self.emit_pick();
                self.emit_parallel_root_event();
            }
        } else {
            self.emit_pick();
        }
        self.emit_candidates();
        if self.chart.has_eventless() {
            self.emit_eventless();
        }
        self.out = mark_unused_parameters(&self.out);
    }

    fn emit_trait_impl(&mut self) {
        let fp = self.chart.fingerprint();
        self.w("impl interstate_core::machine::NativeChart for Native {");
        self.w(&format!("    const FINGERPRINT: u64 = {fp:#018x};"));
        let raises = (0..self.chart.transition_count() as u16)
            .map(|t| {
                let tr = self.chart.transition(TransitionId(t));
                self.chart.transition_actions(&tr)
            })
            .chain(
                self.states()
                    .flat_map(|s| [self.chart.entry_actions(s), self.chart.exit_actions(s)]),
            )
            .flatten()
            .any(|i| matches!(self.chart.action_at(i), Action::Raise { .. }));
        let settles = self.chart.has_eventless() || self.chart.has_final() || raises;
        self.w(&format!("    const SETTLES: bool = {settles};"));
        self.w("    fn chart() -> interstate_core::Chart<'static> {");
        self.w("        chart()");
        self.w("    }");
        self.w(&format!(
            "    fn initial<{HOST}>(h: &mut H) -> Result<(), {ERR}> {{"
        ));
        self.w("        h.begin_microstep();");
        let initial: Vec<u16> = self.initial.to_vec();
        if self.ordered() {
            self.static_set("enter", &initial, "        ");
            self.w("        h.stamp_entering(&enter);");
        }
        for s in initial {
            self.enter_state(StateId(s), "        ");
        }
        self.w("        h.end_microstep()");
        self.w("    }");
        self.w(&format!(
            "    fn select<{HOST}>(h: &mut H, out: &mut interstate_core::machine::Enabled) -> Result<(), {ERR}> {{"
        ));
        if self.history() {
            self.w("        if h.irregular() {");
            self.w("            return h.select_interpreted(out);");
            self.w("        }");
        }
        if self.chart.has_parallel() {
            self.w("        select_0(h, out).map(|_| ())");
        } else {
            self.w("        match pick_0(h) {");
            self.w("            Some(t) => interstate_core::machine::push_enabled(out, t, 0),");
            self.w("            None => Ok(()),");
            self.w("        }");
        }
        self.w("    }");
        self.w(&format!(
            "    fn select_eventless<{HOST}>(h: &mut H, out: &mut interstate_core::machine::Enabled) -> Result<(), {ERR}> {{"
        ));
        if self.ordered() {
            self.w("        h.select_eventless_ordered(out)");
        } else if self.chart.has_eventless() {
            self.w("        match eventless_0(h) {");
            self.w("            Some(t) => interstate_core::machine::push_enabled(out, t, 0),");
            self.w("            None => Ok(()),");
            self.w("        }");
        } else {
            self.w("        let _ = (h, out);");
            self.w("        Ok(())");
        }
        self.w("    }");
        self.w(&format!(
            "    fn microstep<{HOST}>(h: &mut H, enabled: &interstate_core::machine::Enabled) -> Result<bool, {ERR}> {{"
        ));
        if self.history() {
            self.w("        history_microstep(h, enabled, true)");
        } else {
            self.w("        match enabled.as_slice() {");
            self.w("            [t] => take(h, t.0),");
            self.w("            _ => take_many(h, enabled),");
            self.w("        }");
        }
        self.w("    }");
        if self.history() {
            self.w("    #[inline]");
            self.w(&format!(
                "    fn event<{HOST}>(h: &mut H) -> Result<(), {ERR}> {{"
            ));
            if self.chart.has_parallel() {
                self.w("        let mut enabled = interstate_core::machine::Enabled::new();");
                self.w("        Self::select(h, &mut enabled)?;");
                self.w("        if enabled.is_empty() {");
                self.w("            return Ok(());");
                self.w("        }");
                self.w("        history_microstep(h, &enabled, true).map(|_| ())");
            } else {
                self.w("        let t = if h.irregular() {");
                self.w("            h.select_chain_interpreted()");
                self.w("        } else {");
                self.w("            pick_0(h)");
                self.w("        };");
                self.w("        match t {");
                self.w("            Some(t) => history_take_one(h, t).map(|_| ()),");
                self.w("            None => Ok(()),");
                self.w("        }");
            }
            self.w("    }");
        }
        if self.parallel_root_regions().is_some() {
            self.w("    #[inline]");
            self.w(&format!(
                "    fn event<{HOST}>(h: &mut H) -> Result<(), {ERR}> {{"
            ));
            self.w("        parallel_root_event(h)");
            self.w("    }");
        }
        if !self.chart.has_parallel() && !self.history() {
            self.w("    #[inline]");
            self.w(&format!(
                "    fn event<{HOST}>(h: &mut H) -> Result<(), {ERR}> {{"
            ));
            self.w("        match pick_0(h) {");
            self.w("            Some(t) => take(h, t).map(|_| ()),");
            self.w("            None => Ok(()),");
            self.w("        }");
            self.w("    }");
        }
        self.w("}");
    }

    /// One function per transition: its microstep, unrolled; `take` picks one by number.
    fn emit_transitions(&mut self) {
        let n = self.chart.transition_count();
        self.w("");
        self.w("/// The microstep of transition `t` alone.");
        self.w("#[inline]");
        self.w(&format!(
            "fn take<{HOST}>(h: &mut H, t: u16) -> Result<bool, {ERR}> {{"
        ));
        if n == 0 {
            self.w("    let _ = (h, t);");
            self.w("    Ok(false)");
        } else {
            self.w("    match t {");
            for t in 0..n {
                self.w(&format!("        {t} => transition_{t}(h),"));
            }
            self.w("        _ => Ok(false),");
            self.w("    }");
        }
        self.w("}");
        for t in 0..n as u16 {
            self.emit_transition(t);
        }
        self.emit_take_many();
    }

    fn emit_transition(&mut self, t: u16) {
        let tr = self.chart.transition(TransitionId(t));
        let plan = &self.plans[t as usize];
        let sibling = self.chart.sibling_move(TransitionId(t));
        self.w("");
        self.w(&format!(
            "/// Transition {t}: from {} ({:?} {}).",
            self.state_name(tr.source),
            tr.trigger,
            comment(&self.trigger_name(t))
        ));
        self.w("#[inline]");
        self.w(&format!(
            "fn transition_{t}<{HOST}>(h: &mut H) -> Result<bool, {ERR}> {{"
        ));
        self.w("    h.begin_microstep();");
        let enters_final = plan
            .enter
            .iter()
            .any(|&s| self.kind(StateId(s)) == StateKind::Final);
        let ind = "    ";
        if let Some((s, x)) = sibling {
            self.exit_state(s, ind);
            self.actions(self.chart.transition_actions(&tr), ind);
            if self.ordered() {
                self.static_set("enter", &[x.0], ind);
                self.w("    h.stamp_entering(&enter);");
            }
            self.enter_state(x, ind);
            if enters_final {
                self.w("    h.end_microstep()?;");
            }
            self.w("    Ok(true)");
            self.w("}");
            return;
        }
        let targetless = plan.exit.is_none();
        if !targetless {
            self.w("    let before = h.config();");
        }
        let ordered = self.ordered() && !targetless;
        if let (true, Some(exit)) = (ordered, &plan.exit) {
            self.w("    let mut exit = h.empty();");
            self.w(&format!(
                "    h.add_active_range(&mut exit, {}, {});",
                exit.lo, exit.hi
            ));
            if let Some(d) = exit.with_domain {
                self.w(&format!(
                    "    interstate_core::machine::NativeSet::add(&mut exit, {d});"
                ));
            }
            let enter = plan.enter.clone();
            self.static_set("enter", &enter, ind);
            self.w("    let restamp = h.restamp(&exit, &enter, false);");
        }
        if let Some(exit) = &plan.exit {
            let count = (exit.hi as usize + 1).saturating_sub(exit.lo as usize)
                + usize::from(exit.with_domain.is_some());
            if count <= UNROLL_STATES {
                for s in (exit.lo..=exit.hi).rev() {
                    let s = StateId(s);
                    if self.kind(s).is_history() {
                        continue;
                    }
                    self.w(&format!("    if h.active({}) {{", s.0));
                    self.exit_state(s, "        ");
                    self.w("    }");
                }
                if let Some(d) = exit.with_domain {
                    self.exit_state(StateId(d), ind);
                }
            } else {
                self.w("    let mut exit = h.empty();");
                self.w(&format!(
                    "    h.add_active_range(&mut exit, {}, {});",
                    exit.lo, exit.hi
                ));
                if let Some(d) = exit.with_domain {
                    self.w(&format!(
                        "    interstate_core::machine::NativeSet::add(&mut exit, {d});"
                    ));
                }
                self.w("    while let Some(s) = interstate_core::machine::NativeSet::pop_last(&mut exit) {");
                self.w("        exit_actions(h, s)?;");
                self.w("        h.exit(s);");
                self.w("    }");
            }
        }
        self.actions(self.chart.transition_actions(&tr), ind);
        if ordered {
            self.w("    if restamp {");
            self.w("        h.stamp_entering(&enter);");
            self.w("    }");
        }
        let enter = plan.enter.clone();
        if enter.len() <= UNROLL_STATES {
            for s in enter {
                self.enter_state(StateId(s), ind);
            }
        } else {
            let list: Vec<String> = enter.iter().map(|s| s.to_string()).collect();
            self.w(&format!("    for &s in &[{}] {{", list.join(", ")));
            self.w("        h.enter(s);");
            self.w("        entry_actions(h, s)?;");
            self.w("        if is_final(s) {");
            self.w("            h.entered_final(s)?;");
            self.w("        }");
            self.w("    }");
        }
        if enters_final {
            self.w("    h.end_microstep()?;");
        }
        if targetless {
            self.w("    Ok(false)");
        } else {
            self.w("    Ok(h.config() != before || !h.running())");
        }
        self.w("}");
    }

    fn trigger_name(&self, t: u16) -> String {
        let tr = self.chart.transition(TransitionId(t));
        match tr.trigger {
            Trigger::Exact => self
                .chart
                .event_name(interstate_core::EventId(tr.event))
                .to_string(),
            Trigger::Prefix => format!("{}.*", self.chart.str(StrId(tr.event))),
            Trigger::Any => "*".to_string(),
            Trigger::Always => "always".to_string(),
        }
    }

    /// Several transitions in one microstep (parallel regions): sibling moves straight, the
    /// rest through exit and entry sets built from each transition's static plan.
    fn emit_take_many(&mut self) {
        let n = self.chart.transition_count();
        let siblings: Vec<u16> = (0..n as u16)
            .filter(|&t| self.chart.sibling_move(TransitionId(t)).is_some())
            .collect();
        self.w("");
        self.w("/// Several transitions as one microstep.");
        self.w("#[inline(never)]");
        self.w(&format!(
            "fn take_many<{HOST}>(h: &mut H, enabled: &interstate_core::machine::Enabled) -> Result<bool, {ERR}> {{"
        ));
        if !siblings.is_empty() && !self.ordered() {
            self.w(&format!(
                "    if enabled.iter().all(|t| matches!(t.0, {})) {{",
                pattern(&siblings)
            ));
            self.w("        h.begin_microstep();");
            self.w("        for t in enabled.iter().rev() {");
            self.w("            sibling_exit(h, t.0)?;");
            self.w("        }");
            self.w("        for t in enabled {");
            self.w("            transition_actions(h, t.0)?;");
            self.w("        }");
            self.w("        for t in enabled {");
            self.w("            sibling_enter(h, t.0)?;");
            self.w("        }");
            self.w("        h.end_microstep()?;");
            self.w("        return Ok(true);");
            self.w("    }");
        }
        self.w("    let filtered = h.remove_conflicts(enabled);");
        self.w("    h.begin_microstep();");
        self.w("    let mut exit = h.empty();");
        self.w("    let mut enter = h.empty();");
        self.w("    for t in &filtered {");
        self.w("        plan(h, t.0, &mut exit, &mut enter);");
        self.w("    }");
        self.w("    let before = h.config();");
        if self.ordered() {
            let simple = if siblings.is_empty() {
                "false".to_string()
            } else {
                format!(
                    "enabled.iter().all(|t| matches!(t.0, {}))",
                    pattern(&siblings)
                )
            };
            self.w(&format!(
                "    let restamp = h.restamp(&exit, &enter, {simple});"
            ));
            self.w("    let entering = enter;");
        }
        self.w(
            "    while let Some(s) = interstate_core::machine::NativeSet::pop_last(&mut exit) {",
        );
        self.w("        exit_actions(h, s)?;");
        self.w("        h.exit(s);");
        self.w("    }");
        self.w("    for t in &filtered {");
        self.w("        transition_actions(h, t.0)?;");
        self.w("    }");
        if self.ordered() {
            self.w("    if restamp {");
            self.w("        h.stamp_entering(&entering);");
            self.w("    }");
        }
        self.w(
            "    while let Some(s) = interstate_core::machine::NativeSet::pop_first(&mut enter) {",
        );
        self.w("        h.enter(s);");
        self.w("        entry_actions(h, s)?;");
        self.w("        if is_final(s) {");
        self.w("            h.entered_final(s)?;");
        self.w("        }");
        self.w("    }");
        self.w("    h.end_microstep()?;");
        self.w("    Ok(h.config() != before || !h.running())");
        self.w("}");

        // The static exit and entry sets of every transition with targets.
        self.w("");
        self.w("/// Adds transition `t`'s exit set (from the configuration) and entry set.");
        self.w(&format!(
            "fn plan<{HOST}>(h: &H, t: u16, exit: &mut H::Set, enter: &mut H::Set) {{"
        ));
        let mark = self.out.len();
        self.w("    match t {");
        for t in 0..n {
            let Some(exit) = &self.plans[t].exit else {
                continue;
            };
            self.w(&format!("        {t} => {{"));
            self.w(&format!(
                "            h.add_active_range(exit, {}, {});",
                exit.lo, exit.hi
            ));
            if let Some(d) = exit.with_domain {
                self.w(&format!(
                    "            interstate_core::machine::NativeSet::add(exit, {d});"
                ));
            }
            for &s in &self.plans[t].enter {
                self.w(&format!(
                    "            interstate_core::machine::NativeSet::add(enter, {s});"
                ));
            }
            self.w("        }");
        }
        self.close_match(mark, "h, t, exit, enter");
        self.w("}");

        // Sibling moves' halves.
        for (name, pick) in [("sibling_exit", true), ("sibling_enter", false)] {
            self.w("");
            self.w(&format!(
                "fn {name}<{HOST}>(h: &mut H, t: u16) -> Result<(), {ERR}> {{"
            ));
            let mark = self.out.len();
            self.w("    match t {");
            for t in 0..n as u16 {
                if let Some((s, x)) = self.chart.sibling_move(TransitionId(t)) {
                    self.w(&format!("        {t} => {{"));
                    if pick {
                        self.exit_state(s, "            ");
                    } else {
                        self.enter_state(x, "            ");
                    }
                    self.w("        }");
                }
            }
            self.close_match(mark, "h, t");
            self.w("    Ok(())");
            self.w("}");
        }
    }

    /// The action lists by state and by transition, and which states are final.
    fn emit_state_tables(&mut self) {
        for (name, what) in [("entry_actions", true), ("exit_actions", false)] {
            self.w("");
            self.w(&format!(
                "fn {name}<{HOST}>(h: &mut H, s: u16) -> Result<(), {ERR}> {{"
            ));
            let mark = self.out.len();
            self.w("    match s {");
            let states: Vec<StateId> = self.states().collect();
            for s in states {
                let range = if what {
                    self.chart.entry_actions(s)
                } else {
                    self.chart.exit_actions(s)
                };
                if Self::has_actions(&range) {
                    self.w(&format!("        {} => {{", s.0));
                    self.actions(range, "            ");
                    self.w("        }");
                }
            }
            self.close_match(mark, "h, s");
            self.w("    Ok(())");
            self.w("}");
        }
        self.w("");
        self.w(&format!(
            "fn transition_actions<{HOST}>(h: &mut H, t: u16) -> Result<(), {ERR}> {{"
        ));
        let mark = self.out.len();
        self.w("    match t {");
        for t in 0..self.chart.transition_count() as u16 {
            let tr = self.chart.transition(TransitionId(t));
            let range = self.chart.transition_actions(&tr);
            if Self::has_actions(&range) {
                self.w(&format!("        {t} => {{"));
                self.actions(range, "            ");
                self.w("        }");
            }
        }
        self.close_match(mark, "h, t");
        self.w("    Ok(())");
        self.w("}");
        let finals: Vec<u16> = self
            .states()
            .filter(|&s| self.kind(s) == StateKind::Final)
            .map(|s| s.0)
            .collect();
        self.w("");
        self.w("#[inline]");
        if finals.is_empty() {
            self.w("fn is_final(_: u16) -> bool {");
            self.w("    false");
        } else {
            self.w("fn is_final(s: u16) -> bool {");
            self.w(&format!("    matches!(s, {})", pattern(&finals)));
        }
        self.w("}");
    }
}

/// Prefixes with `_` the parameters (`h`, `enter`, ...) a free function's body never
/// names, so that the generated code compiles without warnings whatever the chart.
fn mark_unused_parameters(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let lines: Vec<&str> = code.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if !line.starts_with("fn ") {
            out.push_str(line);
            out.push('\n');
            i += 1;
            continue;
        }
        let end = (i + 1..lines.len())
            .find(|&j| lines[j] == "}")
            .unwrap_or(lines.len() - 1);
        let body = lines[i + 1..=end].join("\n");
        let mut sig = line.to_string();
        for p in ["h", "enter", "exit", "out", "t", "s"] {
            let pat = format!("({p}: ");
            let pat2 = format!(", {p}: ");
            if !(sig.contains(&pat) || sig.contains(&pat2)) || names(&body, p) {
                continue;
            }
            sig = sig.replacen(&pat, &format!("(_{p}: "), 1);
            sig = sig.replacen(&pat2, &format!(", _{p}: "), 1);
        }
        out.push_str(&sig);
        out.push('\n');
        for l in &lines[i + 1..=end] {
            out.push_str(l);
            out.push('\n');
        }
        i = end + 1;
    }
    out
}

/// Whether `code` names the identifier `id`.
fn names(code: &str, id: &str) -> bool {
    let bytes = code.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    code.match_indices(id).any(|(at, _)| {
        let before = at.checked_sub(1).map(|k| bytes[k]);
        let after = bytes.get(at + id.len()).copied();
        !before.is_some_and(ident) && !after.is_some_and(ident) && before != Some(b'.')
    })
}

/// The `|` pattern of `values` (ascending), consecutive runs as ranges.
pub(super) fn pattern(values: &[u16]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < values.len() {
        let mut j = i;
        while j + 1 < values.len() && values[j + 1] == values[j] + 1 {
            j += 1;
        }
        parts.push(if j > i {
            format!("{}..={}", values[i], values[j])
        } else {
            values[i].to_string()
        });
        i = j + 1;
    }
    parts.join(" | ")
}

/// Text safe inside a `//` comment or a doc line.
pub(super) fn comment(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .replace("*/", "* /")
}
