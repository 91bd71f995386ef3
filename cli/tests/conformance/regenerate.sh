#!/usr/bin/env bash
# Rewrites the "expected" trace of every conformance case by running XState v5.
#   ext-*.json cases go through oracle-ext.mjs (translates interstate extensions to XState v5 first);
#   every other case goes through the plain oracle xstate-trace.mjs.
# usage: cli/tests/conformance/regenerate.sh [CASE.json...]     (default: every case)
# env:   ORACLE_DIR (default /tmp/xstate-oracle) must hold xstate-trace.mjs and node_modules/xstate.
# Only the "expected" member (always the last one in a case file) is rewritten; the rest of the file
# is kept byte for byte, so charts keep their document key order. Deterministic: same input, same file.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
ORACLE_DIR="${ORACLE_DIR:-/tmp/xstate-oracle}"
if [ ! -f "$ORACLE_DIR/xstate-trace.mjs" ] || [ ! -d "$ORACLE_DIR/node_modules/xstate" ]; then
  echo "oracle not installed in $ORACLE_DIR; see cli/tests/conformance/README.md" >&2
  exit 1
fi
# oracle-ext.mjs imports 'xstate', so it has to run from a directory that resolves it.
cp "$here/oracle-ext.mjs" "$ORACLE_DIR/oracle-ext.mjs"
if [ "$#" -eq 0 ]; then set -- "$here"/cases/*.json; fi
ORACLE_DIR="$ORACLE_DIR" node - "$@" <<'JS'
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const dir = process.env.ORACLE_DIR;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'conformance-'));
let n = 0;
for (const file of process.argv.slice(2)) {
  const text = fs.readFileSync(file, 'utf8');
  const c = JSON.parse(text);
  const base = path.basename(file);
  const script = base.startsWith('ext-') ? 'oracle-ext.mjs' : 'xstate-trace.mjs';
  const chart = path.join(tmp, 'chart.json');
  fs.writeFileSync(chart, JSON.stringify(c.chart));
  const args = [path.join(dir, script), chart];
  for (const [g, v] of Object.entries(c.guards || {})) args.push('--guard', `${g}=${v ? 'true' : 'false'}`);
  // invoke-* cases: the charts the chart invokes, by src.
  for (const [src, actor] of Object.entries(c.actors || {})) {
    const f = path.join(tmp, `actor-${src}.json`);
    fs.writeFileSync(f, JSON.stringify(actor));
    args.push('--actor', `${src}=${f}`);
  }
  const r = spawnSync('node', args, { input: c.inputs.join('\n') + '\n', encoding: 'utf8' });
  const lines = r.stdout.split('\n').filter((l) => l.trim());
  if (!lines.length) { console.error(`${base}: no output from oracle: ${r.stderr}`); process.exit(1); }
  for (const l of lines) JSON.parse(l);
  if (r.stderr.trim()) console.error(`${base}: oracle stderr: ${r.stderr.trim().slice(0, 300)}`);
  const at = text.lastIndexOf('"expected"');
  if (at < 0) { console.error(`${base}: no "expected" member (it must be the last one)`); process.exit(1); }
  const out = text.slice(0, at) + '"expected": [\n' + lines.map((l) => '    ' + l).join(',\n') + '\n  ]\n}\n';
  JSON.parse(out);
  if (out !== text) fs.writeFileSync(file, out);
  n++;
}
fs.rmSync(tmp, { recursive: true, force: true });
console.log(`regenerated ${n} case(s)`);
JS
