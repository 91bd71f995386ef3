//! What [`Chart::new`] checks before it accepts a set of tables: every table a whole number of
//! records, every index, range and string in bounds, the state tree sound (parents before
//! children, `end` bounds nested, depth at most [`MAX_DEPTH`]), targets orthogonal, history
//! memory and active leaves within their capacities. Kept apart from the accessors because it
//! runs once per chart, while the accessors are what every step reads.

use crate::error::Error;
use crate::json_text;

use super::raw::{self, ActionRecord, NameRecord, StateRecord, TransitionRecord};
use super::{
    AssignOp, Chart, CompareOp, StateKind, Tables, Trigger, MAX_ACTIVE_LEAVES, MAX_DEPTH,
    MAX_STATES, NONE,
};

fn bad(table: &'static str, index: usize, reason: &'static str) -> Error {
    Error::InvalidChart {
        table,
        index: index as u32,
        reason,
    }
}

fn table_len(table: &[u8], size: usize, name: &'static str) -> Result<usize, Error> {
    if table.len() % size != 0 {
        return Err(bad(
            name,
            table.len() / size,
            "table length is not a whole number of records",
        ));
    }
    let n = table.len() / size;
    if n > NONE as usize {
        return Err(bad(name, n, "too many records (at most 65534)"));
    }
    Ok(n)
}

fn range_ok(start: u16, len: u16, total: usize) -> bool {
    start as usize + len as usize <= total
}

impl<'a> Chart<'a> {
    /// Validates `tables` and returns the chart.
    ///
    /// Every index, range and string is checked here once: a chart that passes can be stepped
    /// without any further checks failing, whatever the bytes came from.
    pub fn new(t: Tables<'a>) -> Result<Self, Error> {
        let n_names = table_len(t.names, NameRecord::SIZE, "names")?;
        for i in 0..n_names {
            let r = NameRecord::decode(&t.names[i * NameRecord::SIZE..]);
            let start = r.offset as usize;
            if t.strings.get(start..start + r.len as usize).is_none() {
                return Err(bad(
                    "names",
                    i,
                    "span outside the string table or not on a character boundary",
                ));
            }
        }
        let str_ok = |id: u16| (id as usize) < n_names;
        let n_states = table_len(t.states, StateRecord::SIZE, "states")?;
        let n_trans = table_len(t.transitions, TransitionRecord::SIZE, "transitions")?;
        let n_targets = table_len(t.targets, 2, "targets")?;
        let n_actions = table_len(t.actions, ActionRecord::SIZE, "actions")?;
        let n_events = table_len(t.events, 2, "events")?;
        let n_action_names = table_len(t.action_names, 2, "action_names")?;
        let n_guards = table_len(t.guard_names, 2, "guard_names")?;
        let n_delays = table_len(t.delay_names, 2, "delay_names")?;
        if n_states == 0 {
            return Err(bad("states", 0, "a chart needs at least a root state"));
        }
        if n_states > MAX_STATES {
            return Err(bad("states", n_states, "too many states"));
        }
        for (name, table) in [
            ("events", t.events),
            ("action_names", t.action_names),
            ("guard_names", t.guard_names),
            ("delay_names", t.delay_names),
        ] {
            for i in 0..table.len() / 2 {
                if !str_ok(raw::u16_entry(table, i)) {
                    return Err(bad(name, i, "string id out of range"));
                }
            }
        }
        // Event index: a permutation of the events, sorted by name.
        if table_len(t.event_index, 2, "event_index")? != n_events {
            return Err(bad("event_index", 0, "must list every event once"));
        }
        let ev_name = |e: u16| -> &'a str {
            let s = raw::u16_entry(t.events, e as usize);
            let r = NameRecord::decode(&t.names[s as usize * NameRecord::SIZE..]);
            &t.strings[r.offset as usize..r.offset as usize + r.len as usize]
        };
        for i in 0..n_events {
            let e = raw::u16_entry(t.event_index, i);
            if e as usize >= n_events {
                return Err(bad("event_index", i, "event id out of range"));
            }
            if i > 0 && ev_name(raw::u16_entry(t.event_index, i - 1)) >= ev_name(e) {
                return Err(bad("event_index", i, "not strictly sorted by name"));
            }
        }
        for i in 0..n_targets {
            if raw::u16_entry(t.targets, i) as usize >= n_states {
                return Err(bad("targets", i, "state index out of range"));
            }
        }
        // A string's bytes, for ids already checked by `str_ok` (spans are checked above).
        let text = |id: u16| -> &'a [u8] {
            let r = NameRecord::decode(&t.names[id as usize * NameRecord::SIZE..]);
            t.strings
                .as_bytes()
                .get(r.offset as usize..r.offset as usize + r.len as usize)
                .unwrap_or(&[])
        };
        for i in 0..n_actions {
            let a = ActionRecord::decode(&t.actions[i * ActionRecord::SIZE..]);
            let delay_ok = a.flags & ActionRecord::HAS_DELAY == 0
                || a.flags & ActionRecord::NAMED_DELAY == 0
                || (a.delay as usize) < n_delays;
            let opt_str = |s: u16| s == NONE || str_ok(s);
            let has_delay = a.flags & ActionRecord::HAS_DELAY != 0;
            let forward = a.flags & ActionRecord::FORWARD_DATA != 0;
            // A forwarded payload is none of the chart's strings, and is not delayed.
            let data_ok = !forward
                || (a.d == NONE
                    && matches!(
                        a.kind,
                        3 | raw::ACTION_REPLY
                            | raw::ACTION_REQUEST
                            | raw::ACTION_SEND_CHILD
                            | raw::ACTION_SEND_PARENT
                    )
                    && !(a.kind != raw::ACTION_REPLY
                        && a.kind != raw::ACTION_REQUEST
                        && has_delay));
            let ok = delay_ok
                && data_ok
                && match a.kind {
                    0 => (a.a as usize) < n_action_names,
                    1 => (a.a as usize) < n_events && opt_str(a.c),
                    2 => str_ok(a.c),
                    3 => str_ok(a.a) && str_ok(a.b) && opt_str(a.c) && opt_str(a.d),
                    4 => str_ok(a.a),
                    5 => (a.a as usize) < n_events && a.flags & ActionRecord::HAS_DELAY != 0,
                    6 => (a.a as usize) < n_events,
                    // The JSON texts are checked here, once, so that a machine can trust them.
                    raw::ACTION_INITIAL_CONTEXT => str_ok(a.a) && json_text::is_object(text(a.a)),
                    raw::ACTION_ASSIGN => {
                        str_ok(a.a)
                            && str_ok(a.b)
                            && json_text::is_string(text(a.a))
                            && match AssignOp::from_u8(a.c as u8).filter(|_| a.c < 256) {
                                Some(AssignOp::Set) => json_text::is_value(text(a.b)),
                                Some(AssignOp::FromEvent) => json_text::is_string(text(a.b)),
                                Some(AssignOp::Add) => json_text::number(text(a.b)).is_some(),
                                None => false,
                            }
                    }
                    raw::ACTION_CONTEXT_CONDITION => {
                        str_ok(a.a)
                            && str_ok(a.b)
                            && json_text::is_string(text(a.a))
                            && json_text::is_value(text(a.b))
                            && CompareOp::from_u8(a.c as u8).is_some()
                            && a.c < 256
                    }
                    raw::ACTION_REPLY => str_ok(a.b) && opt_str(a.d) && !has_delay,
                    raw::ACTION_REQUEST => str_ok(a.a) && str_ok(a.b) && opt_str(a.d) && has_delay,
                    raw::ACTION_START_CHILD => {
                        str_ok(a.a)
                            && str_ok(a.b)
                            && a.c == NONE
                            && (a.d == NONE || (str_ok(a.d) && json_text::is_value(text(a.d))))
                            && !has_delay
                    }
                    // A stop names a start record: the child it stops.
                    raw::ACTION_STOP_CHILD => {
                        str_ok(a.b)
                            && (a.c as usize) < n_actions
                            && ActionRecord::decode(&t.actions[a.c as usize * ActionRecord::SIZE..])
                                .kind
                                == raw::ACTION_START_CHILD
                            && !has_delay
                    }
                    raw::ACTION_SEND_CHILD => {
                        str_ok(a.a) && str_ok(a.b) && opt_str(a.c) && opt_str(a.d)
                    }
                    raw::ACTION_SEND_PARENT => str_ok(a.b) && opt_str(a.c) && opt_str(a.d),
                    _ => false,
                };
            if !ok {
                return Err(bad(
                    "actions",
                    i,
                    "unknown action kind or operand out of range",
                ));
            }
        }
        // The state tree: pre-order, parents before children, subtrees contiguous.
        let mut stack = [0u16; MAX_DEPTH + 1];
        let mut depth = 0usize;
        let mut max_depth = 0usize;
        for i in 0..n_states {
            let s = StateRecord::decode(&t.states[i * StateRecord::SIZE..]);
            let Some(kind) = StateKind::from_u8(s.kind) else {
                return Err(bad("states", i, "unknown state kind"));
            };
            if (s.end as usize) < i || s.end as usize >= n_states {
                return Err(bad("states", i, "subtree end out of range"));
            }
            if i == 0 {
                if s.parent != NONE {
                    return Err(bad("states", 0, "the root has no parent"));
                }
                if s.end as usize != n_states - 1 {
                    return Err(bad("states", 0, "the root's subtree must hold every state"));
                }
                if !matches!(
                    kind,
                    StateKind::Atomic | StateKind::Compound | StateKind::Parallel
                ) {
                    return Err(bad(
                        "states",
                        0,
                        "the root must be atomic, compound or parallel",
                    ));
                }
            } else {
                loop {
                    let top =
                        StateRecord::decode(&t.states[stack[depth] as usize * StateRecord::SIZE..]);
                    if (top.end as usize) >= i {
                        break;
                    }
                    if depth == 0 {
                        return Err(bad("states", i, "outside the root's subtree"));
                    }
                    depth -= 1;
                }
                let top = stack[depth];
                let parent = StateRecord::decode(&t.states[top as usize * StateRecord::SIZE..]);
                if s.parent != top {
                    return Err(bad("states", i, "parent does not match the document order"));
                }
                if s.end > parent.end {
                    return Err(bad("states", i, "subtree extends past its parent's"));
                }
                if !matches!(
                    StateKind::from_u8(parent.kind),
                    Some(StateKind::Compound | StateKind::Parallel)
                ) {
                    return Err(bad("states", i, "parent is neither compound nor parallel"));
                }
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(bad("states", i, "nested deeper than MAX_DEPTH"));
                }
                max_depth = max_depth.max(depth);
                stack[depth] = i as u16;
            }
            let has_children = s.end as usize > i;
            match kind {
                StateKind::Compound => {
                    let init = s.initial as usize;
                    let ok = has_children
                        && init > i
                        && init <= s.end as usize
                        && StateRecord::decode(&t.states[init * StateRecord::SIZE..]).parent
                            as usize
                            == i;
                    if !ok {
                        return Err(bad("states", i, "a compound state needs an initial child"));
                    }
                }
                StateKind::Parallel => {}
                _ => {
                    if has_children {
                        return Err(bad(
                            "states",
                            i,
                            "atomic, final and history states have no children",
                        ));
                    }
                }
            }
            if matches!(kind, StateKind::Compound | StateKind::Parallel) {
                if s.done_event as usize >= n_events {
                    return Err(bad(
                        "states",
                        i,
                        "compound and parallel states need a done event",
                    ));
                }
            } else if s.done_event != NONE {
                return Err(bad(
                    "states",
                    i,
                    "only compound and parallel states have a done event",
                ));
            }
            if !str_ok(s.key) || !str_ok(s.id) {
                return Err(bad("states", i, "key or id string out of range"));
            }
            if !range_ok(s.on_start, s.on_len, n_trans)
                || !range_ok(s.always_start, s.always_len, n_trans)
            {
                return Err(bad("states", i, "transition range out of the table"));
            }
            if !range_ok(s.entry_start, s.entry_len, n_actions)
                || !range_ok(s.exit_start, s.exit_len, n_actions)
            {
                return Err(bad("states", i, "action range out of the table"));
            }
            for (start, len, always) in [
                (s.on_start, s.on_len, false),
                (s.always_start, s.always_len, true),
            ] {
                for ti in start..start + len {
                    let tr = TransitionRecord::decode(
                        &t.transitions[ti as usize * TransitionRecord::SIZE..],
                    );
                    if tr.source as usize != i {
                        return Err(bad(
                            "transitions",
                            ti as usize,
                            "source does not match the state listing it",
                        ));
                    }
                    if (tr.trigger == Trigger::Always as u8) != always {
                        return Err(bad(
                            "transitions",
                            ti as usize,
                            "eventless and event transitions are listed apart",
                        ));
                    }
                }
            }
            if kind.is_history() {
                let need = history_capacity(&t, i);
                if (s.history_len as usize) < need
                    || !range_ok(s.history_slot, s.history_len, t.history_slots as usize)
                {
                    return Err(bad("states", i, "history memory slots missing or too few"));
                }
                if !range_ok(s.default_start, s.default_len, n_targets) {
                    return Err(bad("states", i, "history default targets out of the table"));
                }
                let (lo, hi) = (
                    s.parent as usize,
                    StateRecord::decode(&t.states[s.parent as usize * StateRecord::SIZE..]).end
                        as usize,
                );
                for k in s.default_start..s.default_start + s.default_len {
                    let target = raw::u16_entry(t.targets, k as usize) as usize;
                    let tk = StateRecord::decode(&t.states[target * StateRecord::SIZE..]).kind;
                    if target <= lo
                        || target > hi
                        || StateKind::from_u8(tk).is_some_and(StateKind::is_history)
                    {
                        return Err(bad("states", i, "a history default target must be a descendant of its parent, not a history state"));
                    }
                }
                if s.default_len > 1 && !targets_orthogonal(&t, s.default_start, s.default_len) {
                    return Err(bad(
                        "states",
                        i,
                        "history default targets must lie in different parallel regions",
                    ));
                }
            }
        }
        for ti in 0..n_trans {
            let tr = TransitionRecord::decode(&t.transitions[ti * TransitionRecord::SIZE..]);
            let Some(trigger) = Trigger::from_u8(tr.trigger) else {
                return Err(bad("transitions", ti, "unknown trigger"));
            };
            if tr.source as usize >= n_states {
                return Err(bad("transitions", ti, "source out of range"));
            }
            let ev_ok = match trigger {
                Trigger::Exact => (tr.event as usize) < n_events,
                Trigger::Prefix => str_ok(tr.event),
                Trigger::Any | Trigger::Always => true,
            };
            let guard_ok = match tr.guard_kind {
                0 => true,
                1 => (tr.guard as usize) < n_guards,
                2..=4 => (tr.guard as usize) < n_states,
                raw::GUARD_CONTEXT => {
                    (tr.guard as usize) < n_actions
                        && ActionRecord::decode(
                            &t.actions[tr.guard as usize * ActionRecord::SIZE..],
                        )
                        .kind
                            == raw::ACTION_CONTEXT_CONDITION
                }
                _ => false,
            };
            if !ev_ok || !guard_ok {
                return Err(bad("transitions", ti, "event or guard out of range"));
            }
            if !range_ok(tr.targets_start, tr.targets_len, n_targets)
                || !range_ok(tr.actions_start, tr.actions_len, n_actions)
            {
                return Err(bad(
                    "transitions",
                    ti,
                    "target or action range out of the table",
                ));
            }
            if tr.targets_len as usize > MAX_ACTIVE_LEAVES {
                return Err(bad("transitions", ti, "more than 64 targets"));
            }
            if tr.targets_len > 1 && !targets_orthogonal(&t, tr.targets_start, tr.targets_len) {
                return Err(bad(
                    "transitions",
                    ti,
                    "several targets must lie in different regions of a parallel state",
                ));
            }
            if raw::sibling_move(t.states, t.targets, &tr)
                != (tr.flags & TransitionRecord::SIBLING != 0)
            {
                return Err(bad(
                    "transitions",
                    ti,
                    "the sibling-move flag does not match the transition",
                ));
            }
        }
        let mut features = 0u8;
        for i in 0..n_states {
            let s = state_rec(&t, i);
            features |= match StateKind::from_u8(s.kind) {
                Some(StateKind::ShallowHistory | StateKind::DeepHistory) => Self::HISTORY,
                Some(StateKind::Final) => Self::FINAL,
                Some(StateKind::Parallel) => Self::PARALLEL,
                _ => 0,
            };
            if s.always_len > 0 {
                features |= Self::EVENTLESS;
            }
        }
        if max_leaves(&t, 0, 0) > MAX_ACTIVE_LEAVES {
            return Err(bad(
                "states",
                0,
                "more than 64 atomic states can be active at once across parallel regions",
            ));
        }
        Ok(Chart {
            t,
            state_count: n_states as u16,
            max_depth: max_depth as u8,
            features,
        })
    }
}

fn state_rec(t: &Tables<'_>, i: usize) -> StateRecord {
    StateRecord::decode(&t.states[i * StateRecord::SIZE..])
}

/// How many slots a history memory needs: a bit set over its parent's subtree (the parent and
/// its descendants), 16 states a slot. It holds the active children (shallow) or atomic
/// states (deep) below the parent, however many a history quirk left active.
fn history_capacity(t: &Tables<'_>, hist: usize) -> usize {
    let parent = state_rec(t, hist).parent as usize;
    let end = state_rec(t, parent).end as usize;
    (end.saturating_sub(parent) + 1).div_ceil(16)
}

fn max_leaves(t: &Tables<'_>, s: usize, depth: usize) -> usize {
    let r = state_rec(t, s);
    let end = (r.end as usize).min(t.states.len() / StateRecord::SIZE - 1);
    if end <= s || depth > MAX_DEPTH {
        return 1;
    }
    let parallel = r.kind == StateKind::Parallel as u8;
    let mut c = s + 1;
    let mut acc = 0usize;
    while c <= end {
        let cr = state_rec(t, c);
        if !StateKind::from_u8(cr.kind).is_some_and(StateKind::is_history) {
            let l = max_leaves(t, c, depth + 1);
            acc = if parallel {
                acc.saturating_add(l)
            } else {
                acc.max(l)
            };
        }
        c = (cr.end as usize).max(c) + 1;
    }
    acc.max(1)
}

/// Several targets are legal only if no two are in the same branch of a compound state: for
/// each pair, neither contains the other and their nearest common ancestor is parallel.
fn targets_orthogonal(t: &Tables<'_>, start: u16, len: u16) -> bool {
    let n = t.states.len() / StateRecord::SIZE;
    for i in start..start + len {
        for j in (i + 1)..start + len {
            let a = raw::u16_entry(t.targets, i as usize) as usize;
            let b = raw::u16_entry(t.targets, j as usize) as usize;
            let (lo, hi) = if a < b { (a, b) } else { (b, a) };
            if lo == hi || hi <= state_rec(t, lo).end as usize {
                return false;
            }
            // Nearest common ancestor: walk up from `lo` until its subtree holds `hi`.
            let mut anc = state_rec(t, lo).parent as usize;
            let mut steps = 0;
            while anc < n && (state_rec(t, anc).end as usize) < hi {
                anc = state_rec(t, anc).parent as usize;
                steps += 1;
                if steps > MAX_DEPTH + 1 {
                    return false;
                }
            }
            if anc >= n || state_rec(t, anc).kind != StateKind::Parallel as u8 {
                return false;
            }
        }
    }
    true
}
