//! Property tests: random charts, random inputs, and the invariants every run must keep.
//!
//! Charts are generated as XState JSON from a list of random words (a word of 0 always means
//! "the simplest choice", so proptest shrinks a failing case towards a small chart): trees of
//! atomic, compound, parallel, final and history states up to depth 4 and about 25 states, `on`
//! transitions to `#id` targets (sometimes several targets in different regions of a parallel
//! state, sometimes none), `reenter`, guarded `always` transitions, `after` delays, `*` and
//! `foo.*` descriptors, entry, exit and transition actions (user actions, `raise`, delayed
//! `raise`, `cancel`, `sendTo`, `log`).
//!
//! The properties:
//! - compiling never panics; a chart the compiler accepts is run with random events and timer
//!   expiries on a virtual clock, and after every step that returned `Ok` the configuration is
//!   legal (see [`check_config`]), a machine that is done stays done, and a step that returned
//!   an error leaves the machine `Failed`, refusing further events with `Error::NotRunning`,
//!   except a delayed send that came due into a full outbox: that one stays due and the
//!   machine stays active, as `Machine::handle_timeout` documents;
//! - a chart loaded back from its image runs exactly like the chart it came from;
//! - decoding random bytes or mutated images never panics, and a chart `Chart::new` accepts
//!   from mutated tables can be stepped without panicking.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use interstate::core::chart::{StateKind, Tables};
use interstate::core::image;
use interstate::core::machine::Status;
use interstate::core::Error;
use interstate::core::{
    ActionContext, ActionId, Behavior, DelayId, GuardContext, GuardId, StateId, Target,
};
use interstate::{Behaviors, Chart, Duration, Event, Instant};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// Generous capacities, so that overflow errors are rare but still possible.
type M<'c> = interstate::Machine<'c, 4, 64, 64, 64, 64, 4096>;

/// Lower than the default so that eventless loops fail fast in debug builds.
const MICROSTEP_LIMIT: u32 = 200;

/// The machine id: `sendTo` actions with this target come back as external events.
const MACHINE_ID: &str = "m";

/// Event names the charts use and the driver sends (the last two match no exact key).
const EVENTS: &[&str] = &[
    "A",
    "B",
    "C",
    "foo.bar",
    "foo.baz",
    "foo",
    "Z",
    "foo.bar.qux",
];
/// Transition keys: exact names, the wildcard and a partial descriptor.
const KEYS: &[&str] = &["A", "B", "C", "foo.bar", "foo.baz", "foo", "*", "foo.*"];
const GUARDS: &[&str] = &["g0", "g1", "g2", "g3"];
const ACTIONS: &[&str] = &[
    "a0",
    "a1",
    "a2",
    "selfSend",
    "peerSend",
    "laterSend",
    "cancelLater",
];

// ----- a source of random choices ------------------------------------------------------------

/// Random choices read from a word list; past its end every choice is 0 (the simplest).
struct Src<'a> {
    words: &'a [u32],
    pos: usize,
}

impl<'a> Src<'a> {
    fn new(words: &'a [u32]) -> Self {
        Src { words, pos: 0 }
    }
    fn next(&mut self) -> u32 {
        let w = self.words.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        w
    }
    /// A number in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            self.next() as usize % n
        }
    }
    /// True with probability `pct`%; a word of 0 gives false.
    fn chance(&mut self, pct: usize) -> bool {
        self.below(100) >= 100 - pct
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
}

// ----- chart generation ----------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Atomic,
    Compound,
    Parallel,
    Final,
    Shallow,
    Deep,
}

struct Node {
    kind: Kind,
    parent: Option<usize>,
    children: Vec<usize>,
}

struct Tree {
    nodes: Vec<Node>,
}

const MAX_STATES_GEN: usize = 25;
const MAX_DEPTH_GEN: usize = 4;

impl Tree {
    fn generate(src: &mut Src<'_>) -> Tree {
        let root_kind = match src.below(20) {
            0..=13 => Kind::Compound,
            14..=18 => Kind::Parallel,
            _ => Kind::Atomic,
        };
        let mut t = Tree {
            nodes: vec![Node {
                kind: root_kind,
                parent: None,
                children: Vec::new(),
            }],
        };
        if root_kind != Kind::Atomic {
            t.grow(src, 0, 0);
        }
        t
    }

    /// Adds children to the compound or parallel state `p`, at `depth`, depth first (so state
    /// numbers follow document order).
    fn grow(&mut self, src: &mut Src<'_>, p: usize, depth: usize) {
        let parallel = self.nodes[p].kind == Kind::Parallel;
        let want = 1 + src.below(if parallel { 3 } else { 4 });
        let mut has_history = false;
        for i in 0..want {
            if self.nodes.len() >= MAX_STATES_GEN {
                break;
            }
            let deeper = depth + 1 < MAX_DEPTH_GEN && self.nodes.len() + 2 < MAX_STATES_GEN;
            // The first child is never a history state, so every compound state has a
            // non-history child to start in.
            let kind = match src.below(20) {
                0..=6 => Kind::Atomic,
                7..=10 if deeper => Kind::Compound,
                11..=12 if deeper => Kind::Parallel,
                13..=14 if !parallel || src.chance(20) => Kind::Final,
                15 if i > 0 && !has_history => Kind::Shallow,
                16 if i > 0 && !has_history => Kind::Deep,
                _ => Kind::Atomic,
            };
            has_history |= matches!(kind, Kind::Shallow | Kind::Deep);
            let c = self.nodes.len();
            self.nodes.push(Node {
                kind,
                parent: Some(p),
                children: Vec::new(),
            });
            self.nodes[p].children.push(c);
            if matches!(kind, Kind::Compound | Kind::Parallel) {
                self.grow(src, c, depth + 1);
            }
        }
    }

    fn is_history(&self, s: usize) -> bool {
        matches!(self.nodes[s].kind, Kind::Shallow | Kind::Deep)
    }

    /// `s` and every state below it.
    fn subtree(&self, s: usize, out: &mut Vec<usize>) {
        out.push(s);
        for &c in &self.nodes[s].children {
            self.subtree(c, out);
        }
    }

    fn id(s: usize) -> String {
        format!("s{s}")
    }

    /// A target string: one state, or several in different regions of a parallel state.
    fn targets(&self, src: &mut Src<'_>, source: usize) -> Value {
        let n = self.nodes.len();
        if n == 1 {
            return Value::Null;
        }
        if src.chance(15) {
            let parallels: Vec<usize> = (0..n)
                .filter(|&s| {
                    self.nodes[s].kind == Kind::Parallel
                        && self.nodes[s]
                            .children
                            .iter()
                            .filter(|&&c| !self.is_history(c))
                            .count()
                            >= 2
                })
                .collect();
            if !parallels.is_empty() {
                let p = src.pick(&parallels);
                let regions: Vec<usize> = self.nodes[p]
                    .children
                    .iter()
                    .copied()
                    .filter(|&c| !self.is_history(c))
                    .collect();
                let mut list = Vec::new();
                for r in regions {
                    if list.len() >= 2 && src.chance(50) {
                        continue;
                    }
                    let mut sub = Vec::new();
                    self.subtree(r, &mut sub);
                    let t = self.avoid_inner_history(src.pick(&sub), source);
                    list.push(json!(format!("#{}", Self::id(t))));
                }
                return Value::Array(list);
            }
        }
        let t = self.avoid_inner_history(1 + src.below(n - 1), source);
        json!(format!("#{}", Self::id(t)))
    }

    /// A history state targeted from inside its own parent can stand for the transition's
    /// source itself: the transition then exits nothing but re-enters its source, and another
    /// region's transition that exits that source's ancestors does not conflict with it, so
    /// the source stays active without its parent. XState v5 does exactly the same (see
    /// `xstate_quirk_history_standing_for_its_source`), so such targets are not generated:
    /// the parent is targeted instead.
    fn avoid_inner_history(&self, target: usize, source: usize) -> usize {
        match self.nodes[target].parent {
            Some(p) if self.is_history(target) && self.contains(p, source) => p.max(1),
            _ => target,
        }
    }

    /// Whether `s` is `a` or below it.
    fn contains(&self, a: usize, s: usize) -> bool {
        let mut x = Some(s);
        while let Some(y) = x {
            if y == a {
                return true;
            }
            x = self.nodes[y].parent;
        }
        false
    }

    fn action(&self, src: &mut Src<'_>) -> Value {
        match src.below(16) {
            0..=8 => json!(src.pick(ACTIONS)),
            9 => json!({"type": "raise", "event": src.pick(EVENTS)}),
            10 => {
                json!({"type": "raise", "event": src.pick(EVENTS), "delay": src.pick(&[0, 5, 20]), "id": "r1"})
            }
            11 => json!({"type": "cancel", "id": "r1"}),
            12 => json!({"type": "sendTo", "to": "peer", "event": "PING", "data": {"n": 1}}),
            13 => {
                json!({"type": "sendTo", "to": "peer", "event": "LATER", "delay": "slow", "id": "s1"})
            }
            14 => json!({"type": "sendTo", "to": MACHINE_ID, "event": src.pick(EVENTS)}),
            _ => json!({"type": "log", "message": "hello"}),
        }
    }

    fn actions(&self, src: &mut Src<'_>) -> Value {
        let n = 1 + src.below(2);
        Value::Array((0..n).map(|_| self.action(src)).collect())
    }

    /// One transition config.
    fn transition(&self, src: &mut Src<'_>, source: usize, eventless: bool) -> Value {
        match src.below(10) {
            0..=3 if !eventless => self.targets(src, source),
            _ => {
                let mut o = Map::new();
                if !src.chance(20) {
                    let t = self.targets(src, source);
                    if !t.is_null() {
                        o.insert("target".into(), t);
                    }
                }
                if eventless || src.chance(30) {
                    if eventless && src.chance(10) {
                        // Unguarded: may loop, which must end in MicrostepLimit, not a hang.
                    } else if src.chance(10) {
                        let s = 1 + src.below(self.nodes.len().max(2) - 1);
                        if s < self.nodes.len() {
                            o.insert("in".into(), json!(format!("#{}", Self::id(s))));
                        }
                    } else {
                        o.insert("guard".into(), json!(src.pick(GUARDS)));
                    }
                }
                if src.chance(15) {
                    o.insert("reenter".into(), json!(true));
                }
                if src.chance(40) {
                    o.insert("actions".into(), self.actions(src));
                }
                Value::Object(o)
            }
        }
    }

    /// A transition or a list of them.
    fn transitions(&self, src: &mut Src<'_>, source: usize, eventless: bool) -> Value {
        if src.chance(20) {
            Value::Array(vec![
                self.transition(src, source, eventless),
                self.transition(src, source, eventless),
            ])
        } else {
            self.transition(src, source, eventless)
        }
    }

    fn state_json(&self, src: &mut Src<'_>, s: usize) -> Value {
        let node = &self.nodes[s];
        let mut o = Map::new();
        o.insert("id".into(), json!(Self::id(s)));
        match node.kind {
            Kind::Atomic => {}
            Kind::Compound => {}
            Kind::Parallel => {
                o.insert("type".into(), json!("parallel"));
            }
            Kind::Final => {
                o.insert("type".into(), json!("final"));
            }
            Kind::Shallow | Kind::Deep => {
                o.insert("type".into(), json!("history"));
                let deep = node.kind == Kind::Deep;
                o.insert(
                    "history".into(),
                    json!(if deep { "deep" } else { "shallow" }),
                );
                let p = node.parent.unwrap_or(0);
                // Sometimes a default target. (Without one, a history state of a parallel
                // state with no memory yet enters every region, as XState does:
                // `parallel_history_without_default_enters_every_region`.)
                if src.chance(30) {
                    let mut sub = Vec::new();
                    self.subtree(p, &mut sub);
                    let cands: Vec<usize> = sub
                        .into_iter()
                        .filter(|&x| x != p && !self.is_history(x))
                        .collect();
                    if !cands.is_empty() {
                        o.insert(
                            "target".into(),
                            json!(format!("#{}", Self::id(src.pick(&cands)))),
                        );
                    }
                }
                return Value::Object(o);
            }
        }
        if !node.children.is_empty() {
            let mut states = Map::new();
            for &c in &node.children {
                states.insert(format!("k{c}"), self.state_json(src, c));
            }
            if node.kind == Kind::Compound {
                let cands: Vec<usize> = node
                    .children
                    .iter()
                    .copied()
                    .filter(|&c| !self.is_history(c) || src.chance(10))
                    .collect();
                let init = if cands.is_empty() {
                    node.children[0]
                } else {
                    src.pick(&cands)
                };
                o.insert("initial".into(), json!(format!("k{init}")));
            }
            o.insert("states".into(), Value::Object(states));
        }
        let mut on = Map::new();
        for _ in 0..src.below(4) {
            let key = src.pick(KEYS).to_string();
            let t = self.transitions(src, s, false);
            match on.get_mut(&key) {
                Some(Value::Array(list)) => list.push(t),
                Some(prev) => *prev = json!([prev.clone(), t]),
                None => {
                    on.insert(key, t);
                }
            }
        }
        if !on.is_empty() {
            o.insert("on".into(), Value::Object(on));
        }
        if src.chance(15) {
            o.insert("always".into(), self.transitions(src, s, true));
        }
        if src.chance(15) {
            let key = src.pick(&["0", "10", "100", "slow"]);
            let mut after = Map::new();
            after.insert(key.into(), self.transitions(src, s, false));
            o.insert("after".into(), Value::Object(after));
        }
        if matches!(node.kind, Kind::Compound | Kind::Parallel) && src.chance(20) {
            o.insert("onDone".into(), self.transitions(src, s, false));
        }
        if src.chance(30) {
            o.insert("entry".into(), self.actions(src));
        }
        if src.chance(30) {
            o.insert("exit".into(), self.actions(src));
        }
        Value::Object(o)
    }
}

/// A random chart as JSON text.
fn chart_json(words: &[u32]) -> String {
    let mut src = Src::new(words);
    let tree = Tree::generate(&mut src);
    let v = tree.state_json(&mut src, 0);
    serde_json::to_string(&v).expect("serializing a Value cannot fail")
}

// ----- behaviors -----------------------------------------------------------------------------

/// Guard values: a cyclic list of booleans, read one per guard evaluation (deterministic for a
/// given input, but different from call to call).
#[derive(Clone)]
struct GuardScript {
    values: Rc<Vec<bool>>,
    calls: Rc<Cell<usize>>,
}

impl GuardScript {
    fn new(values: &[bool]) -> Self {
        let values = if values.is_empty() {
            vec![false]
        } else {
            values.to_vec()
        };
        GuardScript {
            values: Rc::new(values),
            calls: Rc::new(Cell::new(0)),
        }
    }
    fn next(&self, guard: usize) -> bool {
        let n = self.calls.get();
        self.calls.set(n + 1);
        self.values[(n + guard) % self.values.len()]
    }
}

/// Binds every name the generator uses, through the facade's closures.
fn behaviors(guards: &GuardScript, log: &Rc<RefCell<Vec<String>>>) -> Behaviors {
    let mut b = Behaviors::new()
        .delay("slow", Duration::from_millis(30))
        .on_log({
            let log = log.clone();
            move |_, msg| log.borrow_mut().push(format!("log:{msg}"))
        });
    for (i, &g) in GUARDS.iter().enumerate() {
        let script = guards.clone();
        b = b.guard(g, move |_| script.next(i));
    }
    let last_send = Rc::new(Cell::new(None));
    for &a in ACTIONS {
        let log = log.clone();
        let last_send = last_send.clone();
        b = b.action(a, move |cx| {
            log.borrow_mut().push(format!("{a}@{}", cx.event().name()));
            match a {
                "selfSend" => {
                    let _ = cx.send_self("B", b"");
                }
                "peerSend" => {
                    let _ = cx.send("peer", "HELLO", b"\x01\x02");
                }
                "laterSend" => {
                    let target = if cx.now().as_millis() % 2 == 0 {
                        Target::Machine("peer")
                    } else {
                        Target::ThisMachine
                    };
                    let delay = Duration::from_millis(cx.now().as_millis() % 20);
                    if let Ok(id) = cx.send_after(target, "A", delay, b"later") {
                        last_send.set(Some(id));
                    }
                }
                "cancelLater" => {
                    if let Some(id) = last_send.take() {
                        cx.cancel(id);
                    }
                }
                _ => {}
            }
        });
    }
    b
}

// ----- invariants ----------------------------------------------------------------------------

/// The configuration is legal: the root is active; an active compound state has exactly one
/// active non-history child; an active parallel state has all its non-history children
/// active; every active state's parent is active; no history state is active.
fn check_config(m: &M<'_>) -> Result<(), String> {
    let chart = *m.chart();
    if !m.is_active(StateId(0)) {
        return Err("the root is not active".into());
    }
    for i in 0..chart.state_count() {
        let s = StateId(i as u16);
        if !m.is_active(s) {
            continue;
        }
        let name = chart.state_id(s);
        let kind = chart.kind(s);
        if kind.is_history() {
            return Err(format!("history state '{name}' is active"));
        }
        if let Some(p) = chart.parent(s) {
            if !m.is_active(p) {
                return Err(format!("'{name}' is active but its parent is not"));
            }
        }
        let children: Vec<StateId> = chart
            .children(s)
            .filter(|&c| !chart.kind(c).is_history())
            .collect();
        let active = children.iter().filter(|&&c| m.is_active(c)).count();
        match kind {
            StateKind::Compound if active != 1 => {
                return Err(format!(
                    "compound state '{name}' has {active} active children"
                ))
            }
            StateKind::Parallel if active != children.len() => {
                return Err(format!(
                    "parallel state '{name}' has {active} of {} regions active",
                    children.len()
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

fn active_list(m: &M<'_>) -> Vec<u16> {
    m.active_states().map(|s| s.0).collect()
}

// ----- driving -------------------------------------------------------------------------------

/// One input of a run.
#[derive(Clone, Copy, Debug)]
enum Op {
    Send(usize),
    Advance(u64),
}

fn ops_from(words: &[u32]) -> Vec<Op> {
    let mut src = Src::new(words);
    (0..words.len())
        .map(|_| match src.below(10) {
            0..=6 => Op::Send(src.below(EVENTS.len())),
            _ => Op::Advance(src.pick(&[0, 1, 5, 10, 30, 100, 1000])),
        })
        .collect()
}

/// What a run did, step by step, for comparing two runs.
type Trace = Vec<String>;

/// Runs `ops` on `chart`, checking the invariants after every step. Returns the trace, or the
/// first broken invariant.
fn drive(chart: Chart<'_>, ops: &[Op], guard_values: &[bool]) -> Result<Trace, String> {
    let log = Rc::new(RefCell::new(Vec::new()));
    let script = GuardScript::new(guard_values);
    let (mut behavior, _unbound) = behaviors(&script, &log).bind_lenient(&chart);
    let mut m = match M::new(chart, MACHINE_ID) {
        Ok(m) => Box::new(m),
        // Too many states or too much history for these capacities: nothing to run.
        Err(e) => return Ok(vec![format!("new: {e}")]),
    };
    m.set_microstep_limit(MICROSTEP_LIMIT);
    let mut trace = Trace::new();
    let mut now = Instant::ZERO;
    let r = m.start(now, &mut behavior);
    let mut done_config: Option<Vec<u16>> = None;

    // After each step: the invariants, and a trace line.
    let after_step = |m: &mut M<'_>,
                      what: &str,
                      r: Result<(), Error>,
                      trace: &mut Trace,
                      done_config: &mut Option<Vec<u16>>|
     -> Result<bool, String> {
        let mut line = format!(
            "{what}: {r:?} {:?} {:?} log={:?}",
            m.status(),
            active_list(m),
            std::mem::take(&mut *log.borrow_mut())
        );
        for o in m.outbox() {
            line.push_str(&format!(" out({:?},{},{:?})", o.target, o.event, o.payload));
        }
        trace.push(line);
        match r {
            Ok(()) => {
                if m.status() == Status::Failed {
                    return Err(format!("{what}: Ok but the machine is Failed"));
                }
                check_config(m).map_err(|e| format!("{what}: {e}"))?;
                if let Some(cfg) = done_config {
                    if m.status() != Status::Done || active_list(m) != *cfg {
                        return Err(format!("{what}: a done machine changed"));
                    }
                } else if m.status() == Status::Done {
                    *done_config = Some(active_list(m));
                }
                Ok(true)
            }
            Err(e) => {
                if m.status() != Status::Failed {
                    return Err(format!(
                        "{what}: error {e:?} but the machine is {:?}",
                        m.status()
                    ));
                }
                let again = m.send(Instant::ZERO, Event::new("A"), &mut NoopBehavior);
                if again != Err(Error::NotRunning) {
                    return Err(format!(
                        "{what}: a failed machine answered {again:?} to an event"
                    ));
                }
                Ok(false)
            }
        }
    };

    if !after_step(&mut m, "start", r, &mut trace, &mut done_config)? {
        return Ok(trace);
    }
    for (k, op) in ops.iter().enumerate() {
        // Deliver what the machine sent itself, then forget the rest of the outbox.
        let mut pending: Vec<String> = Vec::new();
        for o in m.outbox() {
            match o.target {
                Target::ThisMachine => pending.push(o.event.to_string()),
                Target::Machine(t) if t == MACHINE_ID => pending.push(o.event.to_string()),
                Target::Machine(_) => {}
            }
        }
        m.clear_outbox();
        for (j, e) in pending.iter().take(8).enumerate() {
            let r = m.send(now, Event::new(e), &mut behavior);
            if !after_step(
                &mut m,
                &format!("{k}.self{j} {e}"),
                r,
                &mut trace,
                &mut done_config,
            )? {
                return Ok(trace);
            }
        }
        match *op {
            Op::Send(i) => {
                let e = EVENTS[i];
                let event = match m.event_id(e) {
                    Some(id) if k % 2 == 0 => Event::from_id(&chart, id),
                    _ => Event::new(e),
                };
                let r = m.send(now, event, &mut behavior);
                if !after_step(&mut m, &format!("{k} {e}"), r, &mut trace, &mut done_config)? {
                    return Ok(trace);
                }
            }
            Op::Advance(ms) => {
                now = now + Duration::from_millis(ms);
                let mut fired = 0;
                let mut kept_send = false;
                while m.poll_timeout().is_some_and(|t| t <= now) && fired < 32 {
                    fired += 1;
                    let r = m.handle_timeout(now, &mut behavior).map(|_| ());
                    if matches!(
                        r,
                        Err(Error::OutboxFull { .. } | Error::PayloadSpaceFull { .. })
                    ) && m.status() == Status::Active
                    {
                        // A delayed send waits for room: it must still be due, and fire once
                        // the outbox is drained.
                        if std::mem::replace(&mut kept_send, true) {
                            return Err(format!(
                                "{k} @{}: {r:?} again with the outbox drained",
                                now.as_millis()
                            ));
                        }
                        let due = m.poll_timeout();
                        if due.is_none_or(|t| t > now) {
                            return Err(format!(
                                "{k} @{}: {r:?} dropped the send (next timer {due:?})",
                                now.as_millis()
                            ));
                        }
                        trace.push(format!("{k} @{}: {r:?} kept", now.as_millis()));
                        m.clear_outbox();
                        continue;
                    }
                    kept_send = false;
                    if !after_step(
                        &mut m,
                        &format!("{k} @{}", now.as_millis()),
                        r,
                        &mut trace,
                        &mut done_config,
                    )? {
                        return Ok(trace);
                    }
                    if m.outbox_len() > 32 {
                        m.clear_outbox();
                    }
                }
            }
        }
    }
    Ok(trace)
}

/// Does nothing; guards are false and every named delay is 10 ms.
struct NoopBehavior;

impl Behavior for NoopBehavior {
    fn action(&mut self, _: ActionId, _: &mut ActionContext<'_>) {}
    fn guard(&mut self, g: GuardId, _: &GuardContext<'_>) -> bool {
        g.0 % 2 == 1
    }
    fn delay(&mut self, _: DelayId) -> Option<Duration> {
        Some(Duration::from_millis(10))
    }
}

// ----- mutated tables ------------------------------------------------------------------------

/// Owned copies of a chart's tables, to mutate.
#[derive(Clone)]
struct OwnedTables {
    strings: String,
    bytes: [Vec<u8>; 10],
    history_slots: u16,
}

impl OwnedTables {
    fn of(t: &Tables<'_>) -> Self {
        OwnedTables {
            strings: t.strings.to_string(),
            bytes: [
                t.names.to_vec(),
                t.states.to_vec(),
                t.transitions.to_vec(),
                t.targets.to_vec(),
                t.actions.to_vec(),
                t.events.to_vec(),
                t.event_index.to_vec(),
                t.action_names.to_vec(),
                t.guard_names.to_vec(),
                t.delay_names.to_vec(),
            ],
            history_slots: t.history_slots,
        }
    }
    fn tables(&self) -> Tables<'_> {
        let b = &self.bytes;
        Tables {
            strings: &self.strings,
            names: &b[0],
            states: &b[1],
            transitions: &b[2],
            targets: &b[3],
            actions: &b[4],
            events: &b[5],
            event_index: &b[6],
            action_names: &b[7],
            guard_names: &b[8],
            delay_names: &b[9],
            history_slots: self.history_slots,
        }
    }
    /// Applies one mutation chosen by three random words. Small values are favoured: they are
    /// the ones that look like valid indices and so get past validation.
    fn mutate(&mut self, which: u32, at: u32, value: u32, states: usize) {
        // States, transitions, targets and actions are where stepping reads most.
        let table = [1, 1, 1, 2, 2, 3, 4, 4, 0, 5, 6, 7, 8, 9][which as usize % 14];
        if which % 97 == 0 {
            self.history_slots = (value % 8) as u16;
            return;
        }
        let t = &mut self.bytes[table];
        if t.is_empty() {
            return;
        }
        let i = at as usize % t.len();
        match value % 8 {
            0 => t[i] = (value >> 8) as u8,
            1..=4 => t[i] = ((value >> 8) as usize % states.max(1)) as u8,
            5 => t[i] = t[i].wrapping_add(1),
            6 => t[i] = t[i].wrapping_sub(1),
            _ => {
                // A whole u16 field to NONE.
                let j = i & !1;
                if j + 1 < t.len() {
                    t[j] = 0xFF;
                    t[j + 1] = 0xFF;
                }
            }
        }
    }
}

/// Steps a chart that passed validation but may be nonsense: must not panic.
fn poke(chart: Chart<'_>, ops: &[Op]) {
    let Ok(mut m) = M::new(chart, MACHINE_ID).map(Box::new) else {
        return;
    };
    m.set_microstep_limit(MICROSTEP_LIMIT);
    let mut b = NoopBehavior;
    let mut now = Instant::ZERO;
    let _ = m.start(now, &mut b);
    let mut s = String::new();
    for op in ops {
        match *op {
            Op::Send(i) => {
                let _ = m.send(now, Event::new(EVENTS[i]), &mut b);
            }
            Op::Advance(ms) => {
                now = now + Duration::from_millis(ms);
                for _ in 0..8 {
                    if m.handle_timeout(now, &mut b) != Ok(true) {
                        break;
                    }
                }
            }
        }
        for o in m.outbox() {
            let _ = (o.target, o.event.len(), o.payload.len());
        }
        m.clear_outbox();
        s.clear();
        let _ = m.write_value(&mut s);
        let _ = m.active_states().count();
    }
}

// ----- the properties ------------------------------------------------------------------------

fn words(n: usize) -> impl Strategy<Value = Vec<u32>> {
    prop::collection::vec(any::<u32>(), 0..n)
}

/// 200 cases from a fixed seed, so that `cargo test` runs the same cases on every machine and
/// a failure in CI reproduces. To explore, pick the seed and the count:
/// `PROPTEST_RNG_SEED=$RANDOM PROPTEST_CASES=20000 cargo test --release --test properties`.
fn config() -> ProptestConfig {
    let mut config = ProptestConfig::with_cases(200);
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = proptest::test_runner::RngSeed::Fixed(0x1e7e_57a7);
    }
    if let Some(cases) = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
    {
        config.cases = cases;
    }
    config
}

proptest! {
    #![proptest_config(config())]

    /// Random charts: compiling never panics; running one keeps the configuration legal.
    #[test]
    fn random_charts_keep_legal_configurations(
        chart_words in words(400),
        op_words in words(60),
        guard_values in prop::collection::vec(any::<bool>(), 1..8),
    ) {
        let json = chart_json(&chart_words);
        let Ok(compiled) = interstate::compile_str(&json) else {
            return Ok(());
        };
        let ops = ops_from(&op_words);
        if let Err(e) = drive(compiled.chart(), &ops, &guard_values) {
            prop_assert!(false, "{e}\nchart: {json}\nops: {ops:?}\nguards: {guard_values:?}");
        }
    }

    /// A chart loaded from its image runs exactly like the chart it was made from.
    #[test]
    fn image_round_trip_runs_the_same(
        chart_words in words(400),
        op_words in words(40),
        guard_values in prop::collection::vec(any::<bool>(), 1..8),
    ) {
        let json = chart_json(&chart_words);
        let Ok(compiled) = interstate::compile_str(&json) else {
            return Ok(());
        };
        let bytes = compiled.to_image();
        let decoded = image::decode(&bytes);
        prop_assert!(decoded.is_ok(), "image rejected: {decoded:?}\nchart: {json}");
        let decoded = decoded.unwrap();
        prop_assert_eq!(decoded.tables(), &compiled.tables());
        let ops = ops_from(&op_words);
        let a = drive(compiled.chart(), &ops, &guard_values);
        let b = drive(decoded, &ops, &guard_values);
        prop_assert!(a.is_ok(), "{:?}\nchart: {}", a, json);
        prop_assert_eq!(a, b, "chart: {}", json);
    }

    /// Random bytes, with and without the image magic, never make `decode` panic.
    #[test]
    fn decoding_random_bytes_never_panics(
        magic in any::<bool>(),
        bytes in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut input = Vec::new();
        if magic {
            input.extend_from_slice(&image::MAGIC);
            input.push(1); // the version, as a varint
        }
        input.extend_from_slice(&bytes);
        if let Ok(chart) = image::decode(&input) {
            poke(chart, &[Op::Send(0), Op::Advance(100), Op::Send(3)]);
        }
    }

    /// Mutated images never make `decode` panic, and what it accepts can be stepped.
    #[test]
    fn mutated_images_never_panic(
        chart_words in words(300),
        mutations in prop::collection::vec((any::<u32>(), any::<u32>()), 1..6),
        truncate in any::<u16>(),
        op_words in words(20),
    ) {
        let json = chart_json(&chart_words);
        let Ok(compiled) = interstate::compile_str(&json) else {
            return Ok(());
        };
        let mut bytes = compiled.to_image();
        for &(at, v) in &mutations {
            let n = bytes.len();
            let i = at as usize % n;
            match v % 5 {
                0 => bytes[i] ^= 1 << ((v >> 8) % 8),
                1 => bytes[i] = (v >> 8) as u8,
                2 => { bytes.insert(i, (v >> 8) as u8); }
                3 if n > 8 => { bytes.remove(i); }
                _ => bytes[i] = bytes[i].wrapping_add(1),
            }
        }
        if truncate % 4 == 0 {
            let keep = truncate as usize % (bytes.len() + 1);
            bytes.truncate(keep);
        }
        if let Ok(chart) = image::decode(&bytes) {
            poke(chart, &ops_from(&op_words));
        }
    }

    /// Tables mutated in place: `Chart::new` either rejects them or yields a chart that steps
    /// without panicking.
    #[test]
    fn mutated_tables_step_without_panic(
        chart_words in words(300),
        mutations in prop::collection::vec((any::<u32>(), any::<u32>(), any::<u32>()), 1..5),
        op_words in words(30),
    ) {
        let json = chart_json(&chart_words);
        let Ok(compiled) = interstate::compile_str(&json) else {
            return Ok(());
        };
        let states = compiled.chart().state_count();
        let mut owned = OwnedTables::of(&compiled.tables());
        for &(which, at, value) in &mutations {
            owned.mutate(which, at, value, states);
        }
        if let Ok(chart) = Chart::new(owned.tables()) {
            poke(chart, &ops_from(&op_words));
        }
    }
}

// ----- checks of the generators themselves ---------------------------------------------------

/// SplitMix64, for fixed pseudo-random inputs.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn fixed_words(seed: u64, n: usize) -> Vec<u32> {
    let mut s = seed;
    (0..n).map(|_| splitmix(&mut s) as u32).collect()
}

/// The generator is worth its name: most charts it makes compile, they are varied, and runs
/// reach the interesting places (done, failures, timers, several states active).
#[test]
fn generator_makes_varied_compilable_charts() {
    let mut compiled = 0;
    let (mut parallel, mut history, mut multi, mut done, mut failed) = (0, 0, 0, 0, 0);
    let mut max_states = 0;
    for seed in 0..200u64 {
        let json = chart_json(&fixed_words(seed, 400));
        let Ok(c) = interstate::compile_str(&json) else {
            continue;
        };
        compiled += 1;
        let chart = c.chart();
        max_states = max_states.max(chart.state_count());
        let kinds: Vec<StateKind> = (0..chart.state_count())
            .map(|i| chart.kind(StateId(i as u16)))
            .collect();
        parallel += usize::from(kinds.contains(&StateKind::Parallel));
        history += usize::from(kinds.iter().any(|k| k.is_history()));
        multi += usize::from(json.contains("\"target\":[\"#"));
        let ops = ops_from(&fixed_words(seed ^ 0xABCD, 60));
        let trace = drive(chart, &ops, &[true, false, false]).unwrap_or_else(|e| {
            panic!("seed {seed}: {e}\nchart: {json}");
        });
        let last = trace.last().cloned().unwrap_or_default();
        done += usize::from(last.contains("Done"));
        failed += usize::from(last.contains("Failed"));
    }
    eprintln!(
        "compiled {compiled}/200, parallel {parallel}, history {history}, multi-target {multi}, \
         done {done}, failed {failed}, max states {max_states}"
    );
    assert!(
        compiled >= 120,
        "only {compiled} of 200 generated charts compiled"
    );
    assert!(
        parallel >= 20 && history >= 20 && multi >= 5,
        "charts lack variety"
    );
    assert!(done >= 5, "too few runs reach a final state");
    assert!(max_states >= 15, "charts are too small");
}

// ----- findings, pinned down ------------------------------------------------------------------

/// Runs `interstate simulate` logic on a chart and returns the trace lines.
fn simulate(json: &str, inputs: &[&str]) -> Vec<String> {
    let compiled = interstate::compile_str(json).expect("the chart compiles");
    let mut out = Vec::new();
    interstate::simulate::run(
        &compiled.chart(),
        &Default::default(),
        inputs.iter().map(|s| s.to_string()),
        &mut out,
    )
    .expect("writing to a Vec cannot fail");
    String::from_utf8(out)
        .expect("the trace is UTF-8")
        .lines()
        .map(str::to_string)
        .collect()
}

/// Found by `random_charts_keep_legal_configurations`: a history state whose parent is
/// parallel, with no default target and no memory yet, stood for nothing, so a transition to
/// it exited the regions and entered none. XState v5.33.3 re-enters the regions (trace below,
/// from the oracle); so does interstate now.
#[test]
fn parallel_history_without_default_enters_every_region() {
    let chart = r##"{"id":"m","type":"parallel","states":{"a":{"entry":"en_a","exit":"ex_a"},"h":{"type":"history"}},"on":{"GO":{"target":"#m.h","actions":"t_go"}}}"##;
    assert_eq!(
        simulate(chart, &["GO"]),
        [
            r#"{"step":0,"input":null,"value":{"a":{}},"actions":["en_a"],"done":false}"#,
            r#"{"step":1,"input":"GO","value":{"a":{}},"actions":["ex_a","t_go","en_a"],"done":false}"#,
        ]
    );
}

/// Found by `random_charts_keep_legal_configurations`, and XState v5 does the same: in region
/// `r1`, `x` goes to the history state `h` that stands for `x` itself, so that transition's
/// domain is `x`: it exits nothing and re-enters `x`. `r2`'s transition to `out` exits all of
/// `p`, and the two do not conflict (the first exit set is empty). So `x` is entered again
/// after `p` was exited and stays active with no active parent: XState's value hides it, and
/// so does interstate's (its `select` walks down from the root). The trace matches the oracle's.
#[test]
fn xstate_quirk_history_standing_for_its_source() {
    let chart = r##"{"id":"m","initial":"p","states":{"p":{"type":"parallel","entry":"en_p","exit":"ex_p","states":{"r1":{"initial":"x","entry":"en_r1","exit":"ex_r1","states":{"x":{"entry":"en_x","exit":"ex_x","on":{"GO":"#m.p.r1.h"}},"h":{"type":"history"}}},"r2":{"initial":"y","states":{"y":{"entry":"en_y","exit":"ex_y","on":{"GO":"#m.out"}}}}}},"out":{"entry":"en_out"}}}"##;
    assert_eq!(
        simulate(chart, &["GO", "GO"]),
        [
            r#"{"step":0,"input":null,"value":{"p":{"r1":"x","r2":"y"}},"actions":["en_p","en_r1","en_x","en_y"],"done":false}"#,
            r#"{"step":1,"input":"GO","value":"out","actions":["ex_y","ex_x","ex_r1","ex_p","en_x","en_out"],"done":false}"#,
            r#"{"step":2,"input":"GO","value":"out","actions":[],"done":false}"#,
        ]
    );
}

/// Found by `tests/no_alloc.rs`: a delayed send from an action (`send_after`) stores its
/// target, event name and payload in the timer byte arena; removing the timer (it fires, is
/// cancelled, or the machine stops) freed the three spans lowest first without shifting the
/// later spans of the same message, so it panicked in `free_timer_bytes` ("slice index starts
/// at 10 but ends at 5") or, with other timers behind it, corrupted their bytes.
#[test]
fn delayed_sends_from_actions_fire_and_cancel_cleanly() {
    let compiled = interstate::compile_str(
        r#"{"id":"m","initial":"a","states":{"a":{"entry":"later","on":{"GO":"b"}},"b":{"entry":"cancelFirst"}}}"#,
    )
    .expect("the chart compiles");
    let chart = compiled.chart();
    let ids = Rc::new(RefCell::new(Vec::new()));
    let (ids1, ids2) = (ids.clone(), ids.clone());
    let mut b = Behaviors::new()
        .action("later", move |cx| {
            for (i, (to, event, payload)) in [
                ("audit", "CHECK", &b"xyz"[..]),
                ("peer", "PING", &b""[..]),
                ("logger", "NOTE", &b"0123456789"[..]),
            ]
            .into_iter()
            .enumerate()
            {
                let id = cx
                    .send_after(
                        Target::Machine(to),
                        event,
                        Duration::from_millis(10 + i as u64),
                        payload,
                    )
                    .expect("the timer table has room");
                ids1.borrow_mut().push(id);
            }
        })
        .action("cancelFirst", move |cx| {
            let first = ids2.borrow()[0];
            assert!(cx.cancel(first), "the first send is still pending");
        })
        .bind(&chart)
        .expect("every name is bound");
    let mut m = M::new(chart, MACHINE_ID).expect("capacities fit");
    m.start(Instant::ZERO, &mut b).expect("starts");
    // Cancel the oldest one (bytes behind it must move down intact)...
    m.send(Instant::ZERO, Event::new("GO"), &mut b).expect("GO");
    // ...then fire the other two.
    let at = Instant::from_millis(100);
    assert_eq!(m.handle_timeout(at, &mut b), Ok(true));
    assert_eq!(m.handle_timeout(at, &mut b), Ok(true));
    assert_eq!(m.handle_timeout(at, &mut b), Ok(false));
    let sent: Vec<(String, String, Vec<u8>)> = m
        .outbox()
        .map(|o| {
            let to = match o.target {
                Target::Machine(t) => t.to_string(),
                Target::ThisMachine => "self".to_string(),
            };
            (to, o.event.to_string(), o.payload.to_vec())
        })
        .collect();
    assert_eq!(
        sent,
        [
            ("peer".to_string(), "PING".to_string(), vec![]),
            (
                "logger".to_string(),
                "NOTE".to_string(),
                b"0123456789".to_vec()
            ),
        ]
    );
}

/// The sibling-move flag of a transition record is what the compiler works out from the
/// chart, and `Chart::new` refuses tables where it is set on another transition or missing
/// from a sibling move: stepping trusts it to skip the exit and entry set computation.
#[test]
fn sibling_move_flags_are_checked() {
    use interstate::core::chart::raw::TransitionRecord;
    // `a -> b` is a sibling move; `b -> #m.c.d` (into a compound sibling) and the
    // re-entering `d -> d` are not.
    let compiled = interstate::compile_str(
        r##"{"id":"m","initial":"a","states":{
            "a":{"on":{"GO":"b"}},
            "b":{"on":{"GO":"#m.c.d"}},
            "c":{"initial":"d","states":{"d":{"on":{"GO":{"target":"d","reenter":true}}}}}}}"##,
    )
    .expect("compiles");
    let tables = OwnedTables::of(compiled.chart().tables());
    let flag_at = |t: usize| t * TransitionRecord::SIZE + 1;
    let flags: Vec<u8> = (0..3)
        .map(|t| tables.bytes[2][flag_at(t)] & TransitionRecord::SIBLING)
        .collect();
    assert_eq!(flags, [TransitionRecord::SIBLING, 0, 0]);
    for t in 0..3 {
        let mut bad = tables.clone();
        bad.bytes[2][flag_at(t)] ^= TransitionRecord::SIBLING;
        assert!(
            matches!(
                Chart::new(bad.tables()),
                Err(Error::InvalidChart {
                    table: "transitions",
                    ..
                })
            ),
            "transition {t} with its flag flipped was accepted"
        );
    }
}
