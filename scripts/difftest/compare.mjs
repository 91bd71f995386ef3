// Runs a case through `interstate simulate` and compares its trace with XState's.
import { spawn, spawnSync } from 'node:child_process';
import readline from 'node:readline';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'difftest-'));
process.on('exit', () => fs.rmSync(tmpDir, { recursive: true, force: true }));
let tmpN = 0;

// The arguments `interstate simulate` needs for a case, after the chart path.
export function simulateArgs(c) {
  const args = [];
  for (const [g, v] of Object.entries(c.guards || {})) args.push('--guard', `${g}=${v ? 'true' : 'false'}`);
  for (const [d, ms] of Object.entries(c.delays || {})) args.push('--delay', `${d}=${ms}`);
  return args;
}

// Returns { trace: [line objects] } or { rejected: message } when the chart does not compile,
// or { hang: message } when the process ran longer than `timeout` ms.
export function interstateTrace(bin, c, timeout = 20000) {
  const n = tmpN++ % 4;
  const file = path.join(tmpDir, `chart-${process.pid}-${n}.json`);
  fs.writeFileSync(file, JSON.stringify(c.chart));
  const actorArgs = [];
  for (const [src, chart] of Object.entries(c.actors || {})) {
    const f = path.join(tmpDir, `chart-${process.pid}-${n}-actor-${src}.json`);
    fs.writeFileSync(f, JSON.stringify(chart));
    actorArgs.push('--actor', `${src}=${f}`);
  }
  const r = spawnSync(bin, ['simulate', file, ...simulateArgs(c), ...actorArgs], {
    input: c.inputs.join('\n') + '\n',
    encoding: 'utf8',
    timeout,
    killSignal: 'SIGKILL',
  });
  if (r.error?.code === 'ETIMEDOUT') return { hang: `no answer in ${timeout} ms` };
  const lines = (r.stdout || '').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));
  if (!lines.length) return { rejected: (r.stderr || r.error?.message || `exit ${r.status}`).trim() };
  return { trace: lines };
}

// Runs many cases through one `interstate simulate --batch`; returns what `interstateTrace`
// returns, for each case in order.
export function interstateTraces(bin, cases) {
  const input = cases.map((c) => JSON.stringify({ chart: c.chart, guards: c.guards, delays: c.delays, inputs: c.inputs, actors: c.actors })).join('\n') + '\n';
  const r = spawnSync(bin, ['simulate', '--batch'], { input, encoding: 'utf8', maxBuffer: 1 << 30, timeout: 600000 });
  const lines = (r.stdout || '').split('\n').filter((l) => l.trim());
  if (lines.length !== cases.length) {
    throw new Error(`interstate simulate --batch: ${lines.length} answers for ${cases.length} cases: ${r.stderr}`);
  }
  return lines.map((l) => {
    const v = JSON.parse(l);
    return v.error !== undefined ? { rejected: v.error } : { trace: v.trace };
  });
}

// One `interstate simulate --batch` kept running: `await runner.trace(case)` answers like
// `interstateTrace` without starting a process per case (for shrinking).
export class BatchRunner {
  constructor(bin) {
    this.child = spawn(bin, ['simulate', '--batch'], { stdio: ['pipe', 'pipe', 'inherit'] });
    this.waiting = [];
    readline.createInterface({ input: this.child.stdout }).on('line', (l) => {
      const v = JSON.parse(l);
      this.waiting.shift()(v.error !== undefined ? { rejected: v.error } : { trace: v.trace });
    });
  }
  trace(c) {
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      this.child.stdin.write(JSON.stringify({ chart: c.chart, guards: c.guards, delays: c.delays, inputs: c.inputs, actors: c.actors }) + '\n');
    });
  }
  close() {
    this.child.stdin.end();
  }
}

function sorted(v) {
  if (Array.isArray(v)) return v.map(sorted);
  if (v && typeof v === 'object') {
    const out = {};
    for (const k of Object.keys(v).sort()) out[k] = sorted(v[k]);
    return out;
  }
  return v;
}
const canon = (v) => JSON.stringify(sorted(v));

// The first difference between two traces: null when they agree, else { step, kind, expected, got }.
// An expected error line matches any error line at the same step (messages differ by design).
export function diff(expected, got) {
  const n = Math.max(expected.length, got.length);
  for (let i = 0; i < n; i++) {
    const e = expected[i];
    const g = got[i];
    const at = (kind) => ({ step: i, kind, expected: e ?? null, got: g ?? null });
    if (!e || !g) return at('length');
    if (e.error !== undefined || g.error !== undefined) {
      if (e.error !== undefined && g.error !== undefined) continue;
      return at('error');
    }
    if (canon(e.value) !== canon(g.value)) return at('value');
    if (canon(e.actions) !== canon(g.actions)) return at('actions');
    if (Boolean(e.done) !== Boolean(g.done)) return at('done');
    if (canon(e.logs ?? []) !== canon(g.logs ?? [])) return at('logs');
  }
  return null;
}
