// Random charts and input sequences for differential testing (see README.md in this folder).
// `generate(seed, profile)` returns one case: { chart, guards, delays, inputs }. The same seed and
// profile always give the same case.

export const PROFILES = {
  // Few levels, many siblings, many events: transition priority, wildcards, guards.
  flat: { depth: 2, width: [3, 7], parallel: 0.05, history: 0.05, final: 0.1, timer: 0.1, always: 0.1, inputs: [6, 20], advance: 0.1 },
  // Deep nesting: exit/entry order across many levels, ancestors handling events.
  deep: { depth: 5, width: [1, 3], parallel: 0.15, history: 0.1, final: 0.12, timer: 0.1, always: 0.12, inputs: [6, 20], advance: 0.1 },
  // Parallel states everywhere, multi-target transitions, done events of parallel states.
  parallel: { depth: 4, width: [2, 3], parallel: 0.5, history: 0.1, final: 0.15, timer: 0.1, always: 0.12, inputs: [6, 20], advance: 0.1 },
  // Shallow and deep history, with and without defaults, as targets from everywhere.
  history: { depth: 4, width: [2, 3], parallel: 0.25, history: 0.45, final: 0.15, timer: 0.1, always: 0.12, inputs: [8, 24], advance: 0.1, historyTarget: 0.4 },
  // `after` with fixed and named delays, delayed raise and cancel, many clock advances.
  timer: { depth: 3, width: [2, 4], parallel: 0.2, history: 0.1, final: 0.1, timer: 0.6, always: 0.12, inputs: [8, 24], advance: 0.45 },
  // States invoke child charts (`actors`: c0, c1) that send the parent `P`/`Q`, finish and
  // fail; the parent sends to its live children by invoke id. No `*` descriptor: the parent
  // takes `P`/`Q` only in targetless transitions with user actions, so no send loop forms.
  invoke: { depth: 3, width: [2, 3], parallel: 0.2, history: 0.1, final: 0.12, timer: 0.25, always: 0.1, inputs: [8, 20], advance: 0.3, invoke: 0.35 },
};

// The charts an `invoke` case's states invoke: small, finishing often, sending their parent
// `P` and `Q` (never invoking further: the reference oracle's children cannot).
const CHILD = { depth: 2, width: [2, 3], parallel: 0.1, history: 0.05, final: 0.35, timer: 0.3, always: 0.1, inputs: [0, 0], advance: 0, sendParent: 0.5 };
const CHILD_SRCS = ['c0', 'c1'];
const CHILD_EVENTS = ['P', 'Q'];

const EVENTS = ['A', 'B', 'C', 'D', 'x.a', 'x.b', 'x.a.b'];
const DESCRIPTORS = ['A', 'A', 'B', 'B', 'C', 'D', 'x.a', 'x.b', 'x.a.b', 'x.*', 'x.a.*', '*'];
const FIXED_DELAYS = ['0', '100', '200', '500', '1000'];
const NAMED_DELAYS = ['short', 'long'];
const ADVANCES = [0, 50, 100, 100, 200, 300, 500, 1000, 2500];

// mulberry32: small, fast, good enough for test generation.
export function rng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const r = {
    next,
    chance: (p) => next() < p,
    int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)),
    pick: (xs) => xs[Math.floor(next() * xs.length)],
  };
  return r;
}

// The seed of case `i` of the stream `seed` (a 32-bit mix of both).
export function caseSeed(seed, i) {
  let h = Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(i + 1, 0xc2b2ae35);
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d);
  h ^= h >>> 15;
  return h >>> 0;
}

const KEYS = 'abcdefghijklmnopqrstuvwxyz';

export function generate(seed, profileName) {
  const c = generateWith(seed, PROFILES[profileName], profileName);
  if (PROFILES[profileName].invoke) {
    c.actors = {};
    CHILD_SRCS.forEach((src, i) => {
      c.actors[src] = generateWith(caseSeed(seed, 1000 + i), CHILD, 'child').chart;
    });
  }
  return c;
}

function generateWith(seed, P, profileName) {
  if (!P) throw new Error(`unknown profile '${profileName}' (${Object.keys(PROFILES).join(', ')})`);
  const r = rng(seed);
  let keyN = 0;
  const nextKey = () => {
    const n = keyN++;
    return n < 26 ? KEYS[n] : KEYS[n % 26] + Math.floor(n / 26);
  };
  const nodes = [];
  let explicitIds = 0;

  // Structure: kind, children, ids. `id` is the state's full id, `explicit` an `id` key given.
  function make(parent, key, kind, depth) {
    const n = { key, kind, parent, children: [], depth, json: {} };
    if (parent && r.chance(0.08)) {
      n.explicit = `S${explicitIds++}`;
      n.id = n.explicit;
    } else {
      n.id = parent ? `${parent.id}.${key}` : 'm';
    }
    nodes.push(n);
    if (kind === 'compound' || kind === 'parallel') {
      const [lo, hi] = P.width;
      const w = kind === 'parallel' ? r.int(2, Math.max(2, hi)) : r.int(Math.max(1, lo), hi);
      for (let i = 0; i < w; i++) {
        n.children.push(make(n, nextKey(), childKind(n, depth + 1, i), depth + 1));
      }
      if (kind === 'compound' && !n.children.some((c) => c.kind !== 'history' && c.kind !== 'final')) {
        n.children.push(make(n, nextKey(), 'atomic', depth + 1));
      }
      if (r.chance(P.history)) {
        n.children.push(make(n, nextKey(), 'history', depth + 1));
      }
    }
    return n;
  }
  function childKind(parent, depth, i) {
    const canNest = depth < P.depth && nodes.length < 40;
    if (parent.kind === 'parallel') {
      if (!canNest) return r.chance(0.85) ? 'atomic' : 'final';
      return r.chance(P.parallel * 0.5) ? 'parallel' : r.chance(0.85) ? 'compound' : 'atomic';
    }
    if (i > 0 && r.chance(P.final)) return 'final';
    if (canNest && r.chance(0.45)) return r.chance(P.parallel) ? 'parallel' : 'compound';
    return 'atomic';
  }
  const root = make(null, null, r.chance(P.parallel * 0.5) ? 'parallel' : 'compound', 0);

  const isAncestor = (a, b) => {
    for (let x = b.parent; x; x = x.parent) if (x === a) return true;
    return false;
  };
  const descendants = (n) => {
    const out = [];
    const walk = (x) => x.children.forEach((c) => { out.push(c); walk(c); });
    walk(n);
    return out;
  };
  const pathFrom = (anc, n) => {
    const keys = [];
    for (let x = n; x !== anc; x = x.parent) keys.unshift(x.key);
    return keys;
  };
  // A target string for `t` as seen from the source `s`, in one of the forms the format allows.
  const targetString = (s, t) => {
    if (t === root) return '#m';
    const forms = [];
    if (s.parent && t.parent && isAncestor(s.parent, t)) {
      forms.push(pathFrom(s.parent, t).join('.'));
    }
    if (isAncestor(s, t)) forms.push('.' + pathFrom(s, t).join('.'));
    // '#id' or '#id.path' from the nearest ancestor with an explicit id, or the root.
    let base = t;
    while (base !== root && !base.explicit) base = base.parent;
    const tail = base === t ? '' : '.' + pathFrom(base, t).join('.');
    forms.push('#' + (base === root ? 'm' : base.explicit) + tail);
    return r.pick(forms);
  };

  const guardNames = ['g1', 'g2', 'g3'];
  const guards = {};
  for (const g of guardNames) guards[g] = r.chance(0.5);
  guards.ga = r.chance(0.25);
  const delays = {};
  for (const d of NAMED_DELAYS) delays[d] = r.pick([0, 100, 200, 300, 500, 1000]);
  let tN = 0;
  let sendIds = 0;
  let kidN = 0;

  const raiseAction = () => {
    const ev = r.pick(EVENTS);
    if (r.chance(P.timer * 0.6)) {
      const a = { type: 'raise', event: ev, delay: r.chance(0.8) ? Number(r.pick(FIXED_DELAYS)) : r.pick(NAMED_DELAYS) };
      if (r.chance(0.7)) a.id = `r${r.int(0, 2)}`;
      return a;
    }
    return { type: 'raise', event: ev };
  };
  // `inState`: entry and exit actions, where raising an event loops more often than not.
  // The invoke ids live where the action runs (set while a state is emitted).
  let liveKids = [];
  const extraAction = (inState) => {
    if (P.sendParent && r.chance(P.sendParent)) {
      const a = { type: 'sendParent', event: r.pick(CHILD_EVENTS) };
      if (r.chance(0.2)) a.delay = Number(r.pick(FIXED_DELAYS));
      return a;
    }
    if (liveKids.length && r.chance(0.4)) {
      const a = { type: 'sendTo', to: r.pick(liveKids), event: r.pick(EVENTS) };
      if (r.chance(0.15)) a.delay = Number(r.pick(FIXED_DELAYS));
      return a;
    }
    const x = r.next();
    if (x < 0.45 && (!inState || r.chance(0.3))) return raiseAction();
    if (x < 0.45) return { type: `u${r.int(0, 3)}` };
    if (x < 0.6) return { type: 'cancel', id: `r${r.int(0, 2)}` };
    if (x < 0.8) return { type: 'log', message: `L${sendIds++}` };
    return { type: `u${r.int(0, 3)}` };
  };
  const actions = (base, inState = false) => {
    const out = [];
    if (r.chance(0.85)) out.push(base);
    const extra = r.chance(0.3) ? r.int(1, 2) : 0;
    for (let i = 0; i < extra; i++) out.splice(r.int(0, out.length), 0, extraAction(inState));
    if (out.length === 0) return undefined;
    return out.length === 1 && r.chance(0.5) ? out[0] : out;
  };
  const stateNodes = () => nodes.filter((n) => n.kind !== 'history');
  const historyNodes = () => nodes.filter((n) => n.kind === 'history');
  const guard = () => {
    const x = r.next();
    if (x < 0.55) return undefined;
    if (x < 0.85) return { guard: r.pick(guardNames) };
    const t = r.pick(stateNodes().filter((n) => n !== root));
    if (!t) return undefined;
    let base = t;
    while (base !== root && !base.explicit) base = base.parent;
    const ref = base === root ? pathFrom(root, t).join('.') : '#' + base.explicit + (base === t ? '' : '.' + pathFrom(base, t).join('.'));
    const full = '#' + t.id;
    if (r.chance(0.3)) return { in: r.chance(0.5) ? full : ref };
    return { guard: { type: 'stateIn', state: r.chance(0.5) ? full : ref } };
  };
  // One or several targets for a transition of `s`.
  const targets = (s, eventless) => {
    const x = r.next();
    if (x < 0.12 && !eventless) return null; // targetless
    if (x < 0.2 && !eventless && s !== root) return [s]; // self
    if (x < 0.3) {
      // several targets in distinct regions of one parallel state
      const pars = nodes.filter((n) => n.kind === 'parallel');
      if (pars.length) {
        const p = r.pick(pars);
        const regions = p.children.filter((c) => c.kind !== 'history');
        if (regions.length >= 2) {
          const i = r.int(0, regions.length - 1);
          let j = r.int(0, regions.length - 2);
          if (j >= i) j++;
          return [i, j].map((k) => {
            const reg = regions[k];
            const inside = [reg, ...descendants(reg)];
            return r.pick(inside);
          });
        }
      }
    }
    const hs = historyNodes();
    if (hs.length && r.chance(P.historyTarget ?? 0.15)) return [r.pick(hs)];
    const candidates = nodes.filter((n) => n !== root || r.chance(0.1));
    return [r.pick(candidates)];
  };
  const transition = (s, eventless) => {
    const ts = targets(s, eventless);
    const t = {};
    if (ts) {
      const strs = ts.map((x) => targetString(s, x));
      t.target = strs.length === 1 && r.chance(0.8) ? strs[0] : strs;
    }
    // Eventless transitions loop when their guard stays true: most get `ga` (false in 3 of 4
    // cases) or a state guard, a few none.
    const g = eventless ? (r.chance(0.9) ? (r.chance(0.6) ? { guard: 'ga' } : guard() ?? { guard: 'ga' }) : undefined) : guard();
    if (g) Object.assign(t, g);
    const acts = actions(`t${tN++}`);
    if (acts !== undefined) t.actions = acts;
    if (ts && r.chance(0.2)) t.reenter = true;
    else if (ts && r.chance(0.05)) t.reenter = false;
    if (!t.actions && !t.guard && !t.in && !t.reenter && typeof t.target === 'string' && r.chance(0.5)) return t.target;
    return t;
  };
  const transitions = (s, eventless) => {
    const k = r.chance(0.25) ? 2 : 1;
    const out = [];
    for (let i = 0; i < k; i++) out.push(transition(s, eventless));
    return out.length === 1 && r.chance(0.6) ? out[0] : out;
  };

  // State JSON.
  function emit(n) {
    const j = {};
    if (n.explicit) j.id = n.explicit;
    if (n.kind === 'history') {
      j.type = 'history';
      if (r.chance(0.5)) j.history = 'deep';
      else if (r.chance(0.3)) j.history = 'shallow';
      if (r.chance(0.45)) {
        const inside = descendants(n.parent).filter((x) => x.kind !== 'history');
        const pick = r.pick(inside);
        if (pick) j.target = pick.parent === n.parent && r.chance(0.6) ? pick.key : '#' + pick.id;
      }
      return j;
    }
    if (n.kind === 'parallel' || n.kind === 'final') j.type = n.kind;
    else if (n.kind === 'atomic' && r.chance(0.1)) j.type = 'atomic';
    if (n.kind === 'compound') {
      const hist = n.children.filter((c) => c.kind === 'history');
      const plain = n.children.filter((c) => c.kind !== 'history');
      j.initial = r.pick(plain.filter((c) => c.kind !== 'final').length ? plain.filter((c) => c.kind !== 'final') : plain).key;
      if (hist.length && r.chance(0.05)) n.initialHistory = r.pick(hist);
    }
    if (r.chance(0.8)) j.entry = actions(`en_${n.key || 'm'}`, true);
    if (r.chance(0.7)) j.exit = actions(`ex_${n.key || 'm'}`, true);
    if (j.entry === undefined) delete j.entry;
    if (j.exit === undefined) delete j.exit;
    // Invocations: the state's own (its entry may send to them: XState resolves those against
    // the children about to start), then its ancestors', live in its transitions.
    const outer = liveKids;
    let own = [];
    // At most 8 invocations a chart: the most live children a machine may have.
    if (P.invoke && n.kind !== 'final' && kidN < 7 && r.chance(P.invoke)) {
      own = Array.from({ length: r.chance(0.2) ? 2 : 1 }, () => ({ src: r.pick(CHILD_SRCS), id: `k${kidN++}` }));
    }
    liveKids = [...outer, ...own.map((i) => i.id)];
    if (own.length) {
      j.entry = actions(`en_${n.key || 'm'}`, true);
      if (j.entry === undefined) delete j.entry;
    }
    if (n.kind !== 'final') {
      const on = {};
      const k = r.int(0, n === root ? 2 : 3);
      for (let i = 0; i < k; i++) {
        const d = r.pick(P.invoke ? DESCRIPTORS.filter((x) => x !== '*') : DESCRIPTORS);
        if (!(d in on)) on[d] = transitions(n, false);
      }
      if (liveKids.length && r.chance(0.6)) {
        const u = `t${tN++}`;
        on[r.pick(CHILD_EVENTS)] = { actions: r.chance(0.5) ? u : [u, `u${r.int(0, 3)}`] };
      }
      if (Object.keys(on).length) j.on = on;
      if (r.chance(P.always)) j.always = transitions(n, true);
      if (r.chance(P.timer)) {
        const after = {};
        const k2 = r.int(1, 2);
        for (let i = 0; i < k2; i++) {
          const d = r.chance(0.75) ? r.pick(FIXED_DELAYS) : r.pick(NAMED_DELAYS);
          if (!(d in after)) after[d] = transitions(n, false);
        }
        j.after = after;
      }
      if ((n.kind === 'compound' || n.kind === 'parallel') && n !== root && r.chance(0.5)) {
        j.onDone = transitions(n, false);
      }
    }
    if (own.length) {
      const inv = own.map((i) => {
        const o = { ...i };
        if (r.chance(0.5)) o.onDone = transitions(n, false);
        if (r.chance(0.25)) o.onError = transitions(n, false);
        return o;
      });
      j.invoke = inv.length === 1 && r.chance(0.7) ? inv[0] : inv;
    }
    if (n.children.length) {
      j.states = {};
      for (const c of n.children) j.states[c.key] = emit(c);
    }
    liveKids = outer;
    if (n.initialHistory) {
      const h = j.states[n.initialHistory.key];
      if (h.target !== undefined) j.initial = n.initialHistory.key;
    }
    return j;
  }
  const body = emit(root);
  const chart = { id: 'm', ...body };

  const inputs = [];
  const [lo, hi] = P.inputs;
  const count = r.int(lo, hi);
  for (let i = 0; i < count; i++) {
    if (r.chance(P.advance)) inputs.push(`@advance ${r.pick(ADVANCES)}`);
    else if (r.chance(0.05)) inputs.push(JSON.stringify({ type: r.pick(EVENTS) }));
    else if (r.chance(0.04)) inputs.push('Z');
    else inputs.push(r.pick(EVENTS));
  }
  return { chart, guards, delays, inputs };
}
