// Extended XState v5 oracle: like xstate-trace.mjs, but first translates interstate's
// non-XState-v5 extensions into real XState v5 so that their traces still come from XState itself.
// usage: node oracle-ext.mjs CHART.json [--guard NAME=true|false]... < INPUTS
// It must sit next to a node_modules holding xstate (regenerate.sh copies it into /tmp/xstate-oracle).
//
// Translations (applied recursively to every state node):
//   transition "cond": "g"                      -> "guard": "g"
//   transition "internal": true / false         -> "reenter": false / true
//   transition "in": "#id"                      -> guard stateIn('#id') (and()-ed with any other guard)
//   guard {"type":"xstate.stateIn"|"stateIn","state":"#id"} -> stateIn('#id')
//   on key ""                                   -> appended to "always"
//   action {"type":"xstate.raise"|"raise","event":E[,"delay":ms][,"id":X]} -> raise({type:E}, {delay,id})
//   action {"type":"xstate.cancel"|"cancel","id":X}                         -> cancel(X)
//   action {"type":"xstate.log"|"log",...}                                  -> no-op (not recorded)
// Every other action name (string or {type}) is a recorded no-op, as in xstate-trace.mjs.
import { setup, createActor, SimulatedClock, raise, cancel, stateIn, and } from 'xstate';
import fs from 'node:fs';

const args = process.argv.slice(2);
const chartPath = args.shift();
const guards = {};
while (args.length) {
  const a = args.shift();
  if (a === '--guard') {
    const [name, val] = args.shift().split('=');
    guards[name] = () => val === 'true';
  }
}
const chart = JSON.parse(fs.readFileSync(chartPath, 'utf8'));
const names = new Set();

const builtinKind = (t) => (typeof t === 'string' ? t.replace(/^xstate\./, '') : null);

function translateAction(a) {
  if (typeof a === 'string') { names.add(a); return a; }
  if (a && typeof a === 'object' && typeof a.type === 'string') {
    const kind = builtinKind(a.type);
    if (kind === 'raise') {
      const ev = typeof a.event === 'string' ? { type: a.event } : a.event;
      const opts = {};
      if (a.delay !== undefined) opts.delay = a.delay;
      if (a.id !== undefined) opts.id = a.id;
      return Object.keys(opts).length ? raise(ev, opts) : raise(ev);
    }
    if (kind === 'cancel') return cancel(a.id);
    if (kind === 'log') return () => {};
    names.add(a.type);
    return a;
  }
  return a;
}

const translateActions = (v) => (Array.isArray(v) ? v.map(translateAction) : translateAction(v));

function translateGuard(g) {
  if (g && typeof g === 'object' && (g.type === 'xstate.stateIn' || g.type === 'stateIn')) return stateIn(g.state);
  return g;
}

function translateTransition(t) {
  if (Array.isArray(t)) return t.map(translateTransition);
  if (!t || typeof t !== 'object') return t;
  const out = { ...t };
  if ('cond' in out) { if (!('guard' in out)) out.guard = out.cond; delete out.cond; }
  if ('internal' in out) { if (!('reenter' in out)) out.reenter = !out.internal; delete out.internal; }
  if ('guard' in out) out.guard = translateGuard(out.guard);
  if ('in' in out) {
    const s = stateIn(out.in);
    out.guard = 'guard' in out ? and([out.guard, s]) : s;
    delete out.in;
  }
  if ('actions' in out) out.actions = translateActions(out.actions);
  return out;
}

const asArray = (t) => (t === undefined ? [] : Array.isArray(t) ? t : [t]);

function translateNode(node) {
  if (!node || typeof node !== 'object') return node;
  const out = { ...node };
  if ('entry' in out) out.entry = translateActions(out.entry);
  if ('exit' in out) out.exit = translateActions(out.exit);
  if (out.on) {
    const on = {};
    for (const [k, v] of Object.entries(out.on)) {
      if (k === '') out.always = [...asArray(out.always), ...asArray(v)];
      else on[k] = translateTransition(v);
    }
    out.on = on;
  }
  if ('always' in out) out.always = translateTransition(out.always);
  if (out.after) {
    const after = {};
    for (const [k, v] of Object.entries(out.after)) after[k] = translateTransition(v);
    out.after = after;
  }
  if ('onDone' in out) out.onDone = translateTransition(out.onDone);
  if (out.states) {
    const states = {};
    for (const [k, v] of Object.entries(out.states)) states[k] = translateNode(v);
    out.states = states;
  }
  return out;
}

const config = translateNode(chart);
const log = [];
const actions = {};
for (const n of names) actions[n] = () => { log.push(n); };
const machine = setup({ actions, guards }).createMachine({ ...config, options: { maxIterations: 1000 } });
const clock = new SimulatedClock();
const actor = createActor(machine, { clock });
actor.subscribe({ error: () => {} });
const emit = (step, input) => {
  const s = actor.getSnapshot();
  if (s.status === 'error') {
    console.log(JSON.stringify({ step, error: String((s.error && s.error.message) || s.error) }));
    process.exit(1);
  }
  console.log(JSON.stringify({ step, input, value: s.value, actions: log.splice(0), done: s.status === 'done' }));
};
try { actor.start(); } catch (e) { console.log(JSON.stringify({ step: 0, error: e.message })); process.exit(1); }
emit(0, null);
const lines = fs.readFileSync(0, 'utf8').split('\n').map((l) => l.trim()).filter(Boolean);
let step = 1;
for (const line of lines) {
  try {
    if (line.startsWith('@advance ')) clock.increment(Number(line.slice(9)));
    else actor.send(line.startsWith('{') ? JSON.parse(line) : { type: line });
  } catch (e) { console.log(JSON.stringify({ step, error: e.message })); process.exit(1); }
  emit(step++, line);
}
