// Runs a chart through XState v5 in this process and returns its trace in the line format of
// `interstate simulate`, like the reference oracle `xstate-trace.mjs` (same action binding, same
// SimulatedClock, same `maxIterations`), without starting node per case. Beyond the oracle it
// binds named delays (`delays`), translates the `in` / `stateIn` guards of the JSON format into
// XState's `stateIn`, and records what `log` actions log, in order, as `logs` (the oracle's logger
// drops it).
import { setup, createActor, SimulatedClock, raise, cancel, log as xlog, stateIn, sendTo, sendParent } from 'xstate';

const BUILTINS = new Set(['raise', 'cancel', 'log', 'sendTo', 'sendParent']);

// The most timers fired for one input line, as in `interstate simulate`: a zero-delay timer that
// re-arms itself would otherwise keep SimulatedClock's flush going forever. And the most timers
// pending at once per actor, the simulator's capacity (each machine has a timer table of its
// own): timers that multiply would otherwise fill memory. The clock is the whole system's, so
// `track` wraps the system's scheduler to learn which actor arms each timer.
const MAX_PENDING = 256;
class GuardedClock extends SimulatedClock {
  fires = 0;
  // The actor whose `schedule` call is running, its pending timers by actor, each timer's actor.
  armedBy = undefined;
  pendingOf = new Map();
  ownerOf = new Map();
  constructor(maxFires) {
    super();
    this.maxFires = maxFires;
  }
  track(system) {
    const schedule = system.scheduler.schedule;
    system.scheduler.schedule = (source, ...rest) => {
      const outer = this.armedBy;
      this.armedBy = source;
      try {
        return schedule(source, ...rest);
      } finally {
        this.armedBy = outer;
      }
    };
  }
  setTimeout(fn, timeout) {
    const owner = this.armedBy;
    const pending = this.pendingOf.get(owner) ?? 0;
    if (pending >= MAX_PENDING) throw new Error(`timer table full (${MAX_PENDING} pending)`);
    const id = super.setTimeout(() => {
      this.release(id);
      if (++this.fires > this.maxFires) throw new Error('too many timers fired for one input');
      fn();
    }, timeout);
    this.pendingOf.set(owner, pending + 1);
    this.ownerOf.set(id, owner);
    return id;
  }
  clearTimeout(id) {
    this.release(id);
    super.clearTimeout(id);
  }
  release(id) {
    if (!this.ownerOf.has(id)) return;
    const owner = this.ownerOf.get(id);
    this.ownerOf.delete(id);
    this.pendingOf.set(owner, this.pendingOf.get(owner) - 1);
  }
}
const ev = (e) => (typeof e === 'string' ? { type: e } : e);

// `child`: the chart runs as an invoked actor; its user actions are traced as
// `<its actor id>/<name>`, as the reference oracle traces them.
function bind(chart, trace, guards, child = false) {
  const impls = {};
  let n = 0;
  const builtin = (x) => {
    const id = `__builtin${n++}`;
    const opts = {};
    if (x.delay !== undefined) opts.delay = x.delay;
    if (x.id !== undefined) opts.id = x.id;
    if (x.type === 'raise') impls[id] = raise(ev(x.event), opts);
    else if (x.type === 'cancel') impls[id] = cancel(x.id);
    else if (x.type === 'sendTo') impls[id] = sendTo(x.to, ev(x.event), opts);
    else if (x.type === 'sendParent') impls[id] = sendParent(ev(x.event), opts);
    else impls[id] = xlog(x.message ?? x.label ?? '');
    return id;
  };
  const user = (name) => {
    if (!impls[name]) impls[name] = child ? ({ self }) => { trace.push(`${self.id}/${name}`); } : () => { trace.push(name); };
    return name;
  };
  const one = (x) => {
    if (typeof x === 'string') return user(x);
    if (x && typeof x.type === 'string') return BUILTINS.has(x.type) ? builtin(x) : user(x.type);
    return x;
  };
  const guardOf = (g) => {
    if (g && typeof g === 'object' && (g.type === 'stateIn' || g.type === 'xstate.stateIn')) {
      return stateIn(g.state ?? g.stateValue);
    }
    return g;
  };
  const walk = (v) => {
    if (Array.isArray(v)) return v.map(walk);
    if (!v || typeof v !== 'object') return v;
    const out = {};
    for (const [k, x] of Object.entries(v)) {
      if (k === 'entry' || k === 'exit' || k === 'actions') out[k] = Array.isArray(x) ? x.map(one) : one(x);
      else if (k === 'guard') out[k] = guardOf(x);
      else if (k === 'in') out.guard = stateIn(x);
      else out[k] = walk(x);
    }
    return out;
  };
  const g = {};
  for (const [name, val] of Object.entries(guards)) g[name] = () => val;
  return { config: walk(chart), impls, guards: g };
}

// Returns { trace: [line objects], rejected?: message } for one case.
// `quick`: at most 100 microsteps per macrostep and 2,000 timers per input instead of 1,000 and
// 100,000, which makes loops cheaper to find; a caller that sees such an error where interstate
// has none runs the case again without it.
export function xstateTrace({ chart, guards = {}, delays = {}, inputs, actors = {} }, quick = false) {
  const maxIterations = quick ? 100 : 1000;
  const trace = [];
  const logs = [];
  let machine;
  try {
    const children = {};
    for (const [src, c] of Object.entries(actors)) {
      const cb = bind(c, trace, guards, true);
      children[src] = setup({ actions: cb.impls, guards: cb.guards, delays })
        .createMachine({ ...cb.config, options: { maxIterations } });
    }
    const b = bind(chart, trace, guards);
    machine = setup({ actions: b.impls, guards: b.guards, delays, actors: children })
      .createMachine({ ...b.config, options: { maxIterations } });
  } catch (e) {
    return { trace: [], rejected: String(e && e.message) };
  }
  const clock = new GuardedClock(quick ? 2000 : 100000);
  // XState's `log` calls the logger with the message (and a label first when it has one).
  const logger = (...xs) => { logs.push(String(xs[xs.length - 1])); };
  const actor = createActor(machine, { clock, logger });
  clock.track(actor.system);
  actor.subscribe({ error: () => {} });
  const lines = [];
  const emit = (step, input) => {
    const s = actor.getSnapshot();
    if (s.status === 'error') {
      lines.push({ step, error: String((s.error && s.error.message) || s.error) });
      return false;
    }
    const line = { step, input, value: s.value, actions: trace.splice(0), done: s.status === 'done' };
    if (logs.length) line.logs = logs.splice(0);
    lines.push(line);
    return true;
  };
  try {
    actor.start();
  } catch (e) {
    lines.push({ step: 0, error: String(e && e.message) });
    return { trace: lines };
  }
  if (!emit(0, null)) return { trace: lines };
  let step = 1;
  for (const line of inputs) {
    try {
      clock.fires = 0;
      if (line.startsWith('@advance ')) clock.increment(Number(line.slice(9)));
      else actor.send(line.startsWith('{') ? JSON.parse(line) : { type: line });
    } catch (e) {
      lines.push({ step, error: String(e && e.message) });
      break;
    }
    if (!emit(step++, line)) break;
  }
  actor.stop();
  return { trace: lines };
}
