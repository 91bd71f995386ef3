//! The chart generator: random choices read from a list of words (`Src`), turned into a tree
//! of states and then into XState JSON (`chart_json`); and a check that what it makes is
//! worth its name.

use interstate::core::chart::StateKind;
use interstate::core::StateId;
use serde_json::{json, Map, Value};

use crate::drive::{drive, ops_from};
use crate::{ACTIONS, EVENTS, GUARDS, KEYS, MACHINE_ID};

// ----- a source of random choices ------------------------------------------------------------

/// Random choices read from a word list; past its end every choice is 0 (the simplest).
pub(crate) struct Src<'a> {
    words: &'a [u32],
    pos: usize,
}

impl<'a> Src<'a> {
    pub(crate) fn new(words: &'a [u32]) -> Self {
        Src { words, pos: 0 }
    }
    pub(crate) fn next(&mut self) -> u32 {
        let w = self.words.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        w
    }
    /// A number in `0..n` (0 when `n` is 0).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            self.next() as usize % n
        }
    }
    /// True with probability `pct`%; a word of 0 gives false.
    pub(crate) fn chance(&mut self, pct: usize) -> bool {
        self.below(100) >= 100 - pct
    }
    pub(crate) fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
}

// ----- chart generation ----------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Atomic,
    Compound,
    Parallel,
    Final,
    Shallow,
    Deep,
}

pub(crate) struct Node {
    kind: Kind,
    parent: Option<usize>,
    children: Vec<usize>,
}

pub(crate) struct Tree {
    nodes: Vec<Node>,
}

pub(crate) const MAX_STATES_GEN: usize = 25;
pub(crate) const MAX_DEPTH_GEN: usize = 4;

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
pub(crate) fn chart_json(words: &[u32]) -> String {
    let mut src = Src::new(words);
    let tree = Tree::generate(&mut src);
    let v = tree.state_json(&mut src, 0);
    serde_json::to_string(&v).expect("serializing a Value cannot fail")
}

// ----- checks of the generators themselves ---------------------------------------------------

/// SplitMix64, for fixed pseudo-random inputs.
pub(crate) fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub(crate) fn fixed_words(seed: u64, n: usize) -> Vec<u32> {
    let mut s = seed;
    (0..n).map(|_| splitmix(&mut s) as u32).collect()
}

/// The generator is worth its name: most charts it makes compile, they are varied, and runs
/// reach the interesting places (done, failures, timers, several states active).
#[test]
pub(crate) fn generator_makes_varied_compilable_charts() {
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
