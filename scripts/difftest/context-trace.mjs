// Prints XState v5's trace for a JSON chart with a context, in the line format of
// `interstate simulate --context`: the reference oracle (`xstate-trace.mjs`) plus interstate's
// context extension of the JSON format, mapped onto XState: `{"type":"assign","assignment":{..}}`
// becomes XState's `assign` (a literal as is, `{"$event":"f"}` as `({event}) => event.f`,
// `{"$add":n}` as `({context}) => context[key] + n`), a guard `{"type":"context",...}` a guard
// function comparing `context[key]` (== and != by JSON text), and every line carries `context`.
// XState's events carry their fields beside `type`: give `{"type":"ADD","amount":7}` here where
// `interstate simulate` takes `{"type":"ADD","data":{"amount":7}}`.
// Used to write the expected traces of tests/context_json.rs.
// usage: node xstate-trace.mjs CHART.json [--guard NAME=true|false]... [--actor SRC=CHILD.json]... < INPUTS
// INPUTS: one per line: an event type (GO), a JSON event object ({"type":"GO",...}), or "@advance MS".
// Built-in action objects (raise, sendTo, sendParent, cancel, log) become XState's own built-ins;
// every other action name is a user action that is recorded in `actions`. A child actor's user
// actions are recorded as "<its actor id>/<name>", in the order XState runs them.
import { setup, createActor, SimulatedClock, raise, sendTo, sendParent, cancel, log as xlog, assign } from 'xstate';
import fs from 'node:fs';

const args = process.argv.slice(2);
const chartPath = args.shift();
const guards = {};
const actorFiles = {};
while (args.length) {
  const a = args.shift();
  if (a === '--guard') {
    const [name, val] = args.shift().split('=');
    guards[name] = () => val === 'true';
  } else if (a === '--actor') {
    const [src, file] = args.shift().split('=');
    actorFiles[src] = file;
  }
}

const trace = [];
const BUILTINS = new Set(['raise', 'sendTo', 'sendParent', 'cancel', 'log', 'assign']);
const ev = (e) => (typeof e === 'string' ? { type: e } : e);

// Replaces built-in action objects with generated names bound to XState's built-ins, and binds every
// other action name to a recorder. Returns the implementations for `setup`.
function bind(chart, isRoot) {
  const impls = {};
  let n = 0;
  const builtin = (x) => {
    const id = `__builtin${n++}`;
    const opts = {};
    if (x.delay !== undefined) opts.delay = x.delay;
    if (x.id !== undefined) opts.id = x.id;
    if (x.type === 'raise') impls[id] = raise(ev(x.event), opts);
    else if (x.type === 'sendTo') impls[id] = sendTo(x.to, ev(x.event), opts);
    else if (x.type === 'sendParent') impls[id] = sendParent(ev(x.event), opts);
    else if (x.type === 'cancel') impls[id] = cancel(x.id);
    else if (x.type === 'assign') {
      const a = {};
      for (const [k, v] of Object.entries(x.assignment)) {
        if (v && typeof v === 'object' && !Array.isArray(v) && '$event' in v) a[k] = ({ event }) => event[v.$event];
        else if (v && typeof v === 'object' && !Array.isArray(v) && '$add' in v) a[k] = ({ context }) => context[k] + v.$add;
        else a[k] = v;
      }
      impls[id] = assign(a);
    }
    else impls[id] = xlog(x.message ?? x.label ?? '');
    return id;
  };
  const user = (name) => {
    if (!impls[name]) impls[name] = ({ self }) => { trace.push(isRoot ? name : `${self.id}/${name}`); };
    return name;
  };
  const one = (x) => {
    if (typeof x === 'string') return user(x);
    if (x && typeof x.type === 'string') return BUILTINS.has(x.type) ? builtin(x) : user(x.type);
    return x;
  };
  const walk = (v) => {
    if (Array.isArray(v)) return v.map(walk);
    if (!v || typeof v !== 'object') return v;
    const out = {};
    for (const [k, x] of Object.entries(v)) {
      if (k === 'entry' || k === 'exit' || k === 'actions') out[k] = Array.isArray(x) ? x.map(one) : one(x);
      else if (k === 'guard' && x && x.type === 'context') {
        const op = x.op ?? '==';
        out[k] = ({ context }) => { const c = context[x.key]; const v = x.value;
          switch (op) { case '==': return JSON.stringify(c) === JSON.stringify(v); case '!=': return JSON.stringify(c) !== JSON.stringify(v);
            case '<': return c < v; case '<=': return c <= v; case '>': return c > v; case '>=': return c >= v; } };
      }
      else out[k] = walk(x);
    }
    return out;
  };
  return { config: walk(chart), impls };
}

const actors = {};
for (const [src, file] of Object.entries(actorFiles)) {
  const { config, impls } = bind(JSON.parse(fs.readFileSync(file, 'utf8')), false);
  actors[src] = setup({ actions: impls, guards }).createMachine(config);
}
const root = bind(JSON.parse(fs.readFileSync(chartPath, 'utf8')), true);
const machine = setup({ actions: root.impls, guards, actors })
  .createMachine({ ...root.config, options: { maxIterations: 1000 } });
const clock = new SimulatedClock();
const actor = createActor(machine, { clock, logger: () => {} });
actor.subscribe({ error: () => {} });
const emit = (step, input) => {
  const s = actor.getSnapshot();
  if (s.status === 'error') {
    console.log(JSON.stringify({ step, error: String((s.error && s.error.message) || s.error) }));
    process.exit(1);
  }
  console.log(JSON.stringify({ step, input, value: s.value, actions: trace.splice(0), done: s.status === 'done', context: s.context ?? null }));
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
