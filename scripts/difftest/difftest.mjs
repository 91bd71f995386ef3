// Differential testing of `interstate simulate` against XState v5 (see README.md).
//
//   node difftest.mjs run --bin BIN [--count N] [--profile P|all] [--seed S] [--shard K/N]
//                         [--out DIR] [--no-shrink] [--max-shrink M] [--case-timeout MS]
//                         [--reference-timeout MS]
//   node difftest.mjs fixtures --out FILE [--count N] [--profile P|all] [--seed S] [--bin BIN]
//                              [--names NAME,...]
//   node difftest.mjs check --bin BIN CASE.json...
//   node difftest.mjs shrink --bin BIN CASE.json [--out FILE]
//   node difftest.mjs trace CASE.json      (XState's trace of a case, one line per step)
//   node difftest.mjs case NAME            (the case PROFILE-SEED-INDEX that `run` named NAME)
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { generate, caseSeed, PROFILES } from './gen.mjs';
import { xstateTrace } from './xstate.mjs';
import { interstateTrace, interstateTraces, diff, BatchRunner } from './compare.mjs';
import { shrink } from './shrink.mjs';

// The fixed seed list: `--seed` picks one stream; without it, `run` and `fixtures` use these.
export const SEEDS = [1, 2, 3, 5, 8, 13, 21, 34, 55, 89];

function parse(argv) {
  const o = { _: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a.startsWith('--')) {
      const k = a.slice(2);
      if (k === 'no-shrink') o.noShrink = true;
      else o[k] = argv[++i];
    } else o._.push(a);
  }
  return o;
}

// --reference-timeout MS: XState runs each case in a process of its own, stopped after MS
// (in this process, a case it takes minutes on cannot be stopped); a case it gives no answer
// for in time counts as "reference failed", as a stack overflow does.
let referenceTimeout;
const caseScript = path.join(path.dirname(fileURLToPath(import.meta.url)), 'xstate-case.mjs');
function referenceTrace(c, quick = false) {
  if (!referenceTimeout) return xstateTrace(c, quick);
  const r = spawnSync(process.execPath, [caseScript, quick ? 'quick' : 'full'], {
    input: JSON.stringify(c), encoding: 'utf8', timeout: referenceTimeout, killSignal: 'SIGKILL', maxBuffer: 1 << 30,
  });
  if (r.error?.code === 'ETIMEDOUT' || r.status !== 0 || !r.stdout) {
    const why = r.error?.code === 'ETIMEDOUT' ? `no answer in ${referenceTimeout} ms` : `exit ${r.status}: ${(r.stderr || '').slice(0, 200)}`;
    return { trace: [{ step: 0, error: `reference failed: ${why}` }], referenceFailed: why };
  }
  return JSON.parse(r.stdout);
}

// Compares both traces of a case: null when they agree, else a description. `s` is
// interstate's answer when already known.
function compareCase(bin, c, s = interstateTrace(bin, c)) {
  if (s.hang !== undefined) {
    // No trace from interstate to compare: a hang, unless XState has no answer either (a
    // zero-delay timer loop that overflows XState's stack and takes interstate long to end).
    let x = referenceTrace(c, true);
    if (!x.referenceFailed && x.trace[x.trace.length - 1]?.error !== undefined) x = referenceTrace(c);
    const failed = x.referenceFailed ? { step: 0, error: x.referenceFailed } : referenceFailure(x);
    return failed ? { kind: 'reference-failed', failed, x, s } : { kind: 'hang', x: { trace: [] }, s };
  }
  let x = referenceTrace(c, true);
  if (x.referenceFailed) return { kind: 'reference-failed', failed: { step: 0, error: x.referenceFailed }, x, s };
  const loop = x.trace.length && x.trace[x.trace.length - 1].error !== undefined;
  if (loop && (s.rejected !== undefined || diff(x.trace, s.trace))) x = referenceTrace(c);
  if (x.referenceFailed) return { kind: 'reference-failed', failed: { step: 0, error: x.referenceFailed }, x, s };
  if (x.rejected !== undefined && s.rejected !== undefined) return { kind: 'both-reject', x, s };
  if (x.rejected !== undefined) return { kind: 'xstate-rejects', x, s };
  if (s.rejected !== undefined) return { kind: 'interstate-rejects', x, s };
  const failed = referenceFailure(x);
  if (failed !== undefined) {
    // XState gave no trace from that step on: compare the steps before it only.
    const d = diff(x.trace.slice(0, failed.step), s.trace.slice(0, failed.step));
    return d ? { kind: d.kind, d, x, s } : { kind: 'reference-failed', failed, x, s };
  }
  const d = diff(x.trace, s.trace);
  return d ? { kind: d.kind, d, x, s } : null;
}

// Where XState itself failed, not the chart: a JavaScript stack overflow (its
// `SimulatedClock.flushTimeouts` calls itself once per timer that re-arms during a flush, so
// a zero-delay timer loop overflows the stack long before the 100,000-timer limit). Such a
// step says nothing about XState's semantics: the case is neither agreement nor disagreement.
// Returns { step, error } of XState's failing line, or undefined.
export function referenceFailure(x) {
  const last = x.trace?.[x.trace.length - 1];
  if (last?.error !== undefined && /Maximum call stack size exceeded/.test(last.error)) {
    return { step: last.step, error: last.error };
  }
  return undefined;
}

// A shrinker's test: the kind of disagreement of a case, through a running batch process.
// An error on one side only also names the start of that error, so that shrinking an
// eventless loop does not slide into a chart XState refuses for another reason (an
// `initial` naming no child throws at step 0 too).
const disagreement = (runner, bin) => async (cand) => {
  const r = compareCase(bin, cand, await runner.trace(cand));
  if (!r) return null;
  if (r.kind !== 'error') return r.kind;
  const err = (t) => (t?.trace?.[r.d.step]?.error ?? '').slice(0, 24);
  return `error:${err(r.x)}|${err(r.s)}`;
};

async function shrinkCase(bin, c) {
  const runner = new BatchRunner(bin);
  try {
    return await shrink(c, disagreement(runner, bin));
  } finally {
    runner.close();
  }
}

const profilesOf = (p) => (!p || p === 'all' ? Object.keys(PROFILES) : p.split(','));

function* cases(o) {
  const count = Number(o.count ?? 100);
  const seeds = o.seed !== undefined ? [Number(o.seed)] : SEEDS;
  // --shard K/N: only every N-th case from the K-th (0-based), to split a run across processes.
  const [shard, shards] = (o.shard ?? '0/1').split('/').map(Number);
  // Profiles take turns, so that a run stopped early has covered each of them.
  for (let k = shard; k < count; k += shards) {
    for (const profile of profilesOf(o.profile)) {
      const seed = seeds[k % seeds.length];
      const i = Math.floor(k / seeds.length);
      const cs = caseSeed(seed, i);
      yield { name: `${profile}-${seed}-${i}`, profile, seed, index: i, ...generate(cs, profile) };
    }
  }
}

function caseFile(c, expected, description) {
  return {
    name: c.name,
    description,
    chart: c.chart,
    guards: c.guards,
    delays: c.delays,
    inputs: c.inputs,
    ...(c.actors ? { actors: c.actors } : {}),
    expected,
  };
}

async function run(o) {
  const bin = o.bin;
  if (o['reference-timeout']) referenceTimeout = Number(o['reference-timeout']);
  const out = o.out ?? 'difftest-out';
  const tally = {};
  const kinds = {};
  let bad = 0;
  const refFailed = [];
  let shrunk = 0;
  const maxShrink = Number(o['max-shrink'] ?? 5);
  const t0 = Date.now();
  const all = cases(o);
  for (;;) {
    const chunk = [];
    for (let x = all.next(); !x.done; x = chunk.length < 500 ? all.next() : { done: true }) chunk.push(x.value);
    if (!chunk.length) break;
    // --case-timeout MS: a process per case, stopped after MS (a hang is a disagreement of
    // its own kind) instead of one batch process that a hanging case would stop.
    const answers = o['case-timeout'] ? chunk.map((c) => interstateTrace(bin, c, Number(o['case-timeout']))) : interstateTraces(bin, chunk);
    for (let k = 0; k < chunk.length; k++) await check1(chunk[k], answers[k]);
    const done = Object.entries(tally).map(([p, t]) => `${p} ${t.cases}/${t.disagree}/${t.refFailed ?? 0}`).join(', ');
    console.log(`progress: ${done} (cases/disagreements/reference failed), ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  }
  async function check1(c, answer) {
    const t = (tally[c.profile] ??= { cases: 0, disagree: 0, reject: 0 });
    t.cases++;
    const r = compareCase(bin, c, answer);
    if (!r) return;
    if (r.kind === 'both-reject') { t.reject++; return; }
    if (r.kind === 'reference-failed') {
      // Counted and named, never silently dropped, never an agreement.
      t.refFailed = (t.refFailed ?? 0) + 1;
      const theirs = r.s.trace?.[r.failed.step];
      refFailed.push(c.name);
      console.log(`REFERENCE FAILED ${c.name}: step ${r.failed.step}: XState: ${r.failed.error}; interstate: ${r.s.hang !== undefined ? r.s.hang : theirs?.error !== undefined ? `error (${theirs.error})` : 'no error'}`);
      return;
    }
    t.disagree++;
    bad++;
    kinds[r.kind] = (kinds[r.kind] ?? 0) + 1;
    fs.mkdirSync(out, { recursive: true });
    const first = r.d ? `step ${r.d.step} ${r.kind}: expected ${JSON.stringify(r.d.expected)} got ${JSON.stringify(r.d.got)}` : `${r.kind}: ${r.x.rejected ?? ''} ${r.s.rejected ?? r.s.hang ?? ''}`;
    console.log(`DISAGREE ${c.name}: ${first}`);
    fs.writeFileSync(path.join(out, `${c.name}.json`), JSON.stringify(caseFile(c, r.x.trace, first), null, 1));
    if (!o.noShrink && r.d && shrunk++ < maxShrink) {
      const small = await shrinkCase(bin, c);
      const rs = compareCase(bin, small);
      const desc = `step ${rs.d.step} ${rs.kind}: expected ${JSON.stringify(rs.d.expected)} got ${JSON.stringify(rs.d.got)}`;
      fs.writeFileSync(path.join(out, `${c.name}-min.json`), JSON.stringify(caseFile(small, rs.x.trace, desc)));
      console.log(`  shrunk: ${JSON.stringify(small.chart)} inputs ${JSON.stringify(small.inputs)}\n  ${desc}`);
    }
  }
  const secs = (Date.now() - t0) / 1000;
  for (const [p, t] of Object.entries(tally)) {
    console.log(`${p}: ${t.cases} cases, ${t.disagree} disagreements, ${t.reject} rejected by both, ${t.refFailed ?? 0} reference failed`);
  }
  console.log(`total: ${Object.values(tally).reduce((a, t) => a + t.cases, 0)} cases in ${secs.toFixed(1)} s, ${bad} disagreements ${JSON.stringify(kinds)}, ${refFailed.length} reference failed (XState gave no trace: not compared)`);
  return bad === 0;
}

// PROFILE-SEED-INDEX, as `run` names its cases: that case.
function named(name) {
  const [profile, seed, index] = name.split('-');
  return { name, profile, seed: Number(seed), index: Number(index), ...generate(caseSeed(Number(seed), Number(index)), profile) };
}

function fixtures(o) {
  const lines = [];
  const left = [];
  // --names A,B: these cases too (by name, after the stream), e.g. ones a fix made agree.
  const extra = (o.names ? o.names.split(',') : []).map(named);
  for (const c of [...cases(o), ...extra]) {
    const x = xstateTrace(c);
    if (x.rejected !== undefined) continue;
    // A timer loop runs 100,000 timers before it is an error: too slow for a debug-build test.
    // (A call-stack overflow is XState's own failure, no trace to hold.)
    if (/too many timers|call stack/.test(x.trace[x.trace.length - 1]?.error ?? '')) continue;
    // --bin BIN: leave out (and name) the cases interstate disagrees on, so that the batch
    // holds agreement only; the names say what is still to fix.
    if (o.bin) {
      const s = interstateTrace(o.bin, c);
      if (s.rejected !== undefined || s.hang !== undefined || diff(x.trace, s.trace)) {
        left.push(c.name);
        continue;
      }
    }
    lines.push(JSON.stringify({ name: c.name, chart: c.chart, guards: c.guards, delays: c.delays, inputs: c.inputs, ...(c.actors ? { actors: c.actors } : {}), expected: x.trace }));
  }
  fs.writeFileSync(o.out, lines.join('\n') + '\n');
  console.log(`${o.out}: ${lines.length} cases${o.bin ? `, ${left.length} left out (disagree): ${left.join(' ')}` : ''}`);
  return true;
}

function check(o) {
  let ok = true;
  for (const file of o._.slice(1)) {
    const c = JSON.parse(fs.readFileSync(file, 'utf8'));
    const r = compareCase(o.bin, c);
    if (r?.kind === 'reference-failed') {
      console.log(`${file}: reference failed at step ${r.failed.step} (${r.failed.error}); the steps before agree`);
    } else if (r) {
      ok = false;
      console.log(`${file}: ${r.kind} ${r.d ? `step ${r.d.step}\n  xstate:     ${JSON.stringify(r.d.expected)}\n  interstate: ${JSON.stringify(r.d.got)}` : `${r.x.rejected ?? ''} | ${r.s.rejected ?? ''}`}`);
    } else console.log(`${file}: agree`);
  }
  return ok;
}

async function shrinkCmd(o) {
  const c = JSON.parse(fs.readFileSync(o._[1], 'utf8'));
  const small = await shrinkCase(o.bin, c);
  const r = compareCase(o.bin, small);
  const text = JSON.stringify(caseFile(small, xstateTrace(small).trace, r ? `${r.kind} at step ${r.d?.step}` : 'agrees'), null, 1);
  if (o.out) fs.writeFileSync(o.out, text);
  else console.log(text);
  return true;
}

const o = parse(process.argv.slice(2));
const cmd = o._[0];
let ok;
if (cmd === 'run') ok = await run(o);
else if (cmd === 'fixtures') ok = fixtures(o);
else if (cmd === 'check') ok = check(o);
else if (cmd === 'shrink') ok = await shrinkCmd(o);
else if (cmd === 'case') {
  // PROFILE-SEED-INDEX, as `run` names its cases: the case, with XState's trace.
  const c = named(o._[1]);
  console.log(JSON.stringify(caseFile(c, xstateTrace(c).trace, 'generated'), null, 1));
  ok = true;
} else if (cmd === 'trace') {
  const c = JSON.parse(fs.readFileSync(o._[1], 'utf8'));
  for (const l of xstateTrace(c).trace) console.log(JSON.stringify(l));
  ok = true;
} else {
  console.error('usage: node difftest.mjs run|fixtures|check|shrink|trace|case ... (see the top of this file)');
  ok = false;
}
process.exitCode = ok ? 0 : 1;
