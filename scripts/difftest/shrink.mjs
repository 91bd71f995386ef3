// Delta-debugging of a disagreeing case: removes states, transitions, actions, guards, keys and
// input lines one at a time, keeping each removal after which both sides still accept the chart
// and still disagree in the same way, until no single removal keeps the disagreement.

const clone = (v) => JSON.parse(JSON.stringify(v));

// Every way to make the chart one piece smaller: [description, function(chart) -> chart].
function reductions(chart) {
  const out = [];
  const visit = (v, path) => {
    if (Array.isArray(v)) {
      v.forEach((x, i) => {
        out.push([path.concat(i), 'del']);
        if (v.length > 1) out.push([path.concat(i), 'only']);
      });
      v.forEach((x, i) => visit(x, path.concat(i)));
    } else if (v && typeof v === 'object') {
      for (const k of Object.keys(v)) {
        if (path.length === 0 && k === 'id') continue;
        out.push([path.concat(k), 'del']);
        if (k === 'initial' && v.states) {
          for (const c of Object.keys(v.states)) if (c !== v.initial) out.push([path.concat(k), 'set', c]);
        }
        if (k === 'states') {
          // hoist a child's children into its place is too clever; removing states suffices
        }
      }
      for (const k of Object.keys(v)) visit(v[k], path.concat(k));
    }
  };
  visit(chart, []);
  // Larger pieces first: removing a state removes all it holds in one try.
  out.sort((a, b) => a[0].length - b[0].length);
  return out;
}

function apply(chart, [path, op, arg]) {
  const c = clone(chart);
  let parent = c;
  for (const k of path.slice(0, -1)) parent = parent[k];
  const last = path[path.length - 1];
  if (op === 'del') {
    if (Array.isArray(parent)) parent.splice(last, 1);
    else delete parent[last];
  } else if (op === 'only') {
    const keep = parent[last];
    parent.splice(0, parent.length, keep);
  } else if (op === 'set') {
    parent[last] = arg;
  }
  return c;
}

// `disagrees(case)` resolves to the kind of disagreement (a string) or null.
export async function shrink(c, disagrees, budget = 20000) {
  const kind = await disagrees(c);
  if (!kind) return c;
  let best = clone(c);
  let tries = 0;
  let changed = true;
  const keeps = async (cand) => {
    tries++;
    return (await disagrees(cand)) === kind;
  };
  while (changed && tries < budget) {
    changed = false;
    // inputs: drop chunks, then single lines
    for (let size = Math.max(1, best.inputs.length >> 1); size >= 1; size >>= 1) {
      for (let i = 0; i + size <= best.inputs.length && tries < budget;) {
        const cand = { ...best, inputs: best.inputs.slice(0, i).concat(best.inputs.slice(i + size)) };
        if (await keeps(cand)) { best = cand; changed = true; } else i += size;
      }
    }
    // One pass over the reductions; after a kept one the list is rebuilt and the pass goes
    // on from the same position (what came before it was tried already).
    for (let j = 0; tries < budget;) {
      const rs = reductions(best.chart);
      if (j >= rs.length) break;
      let chart;
      try { chart = apply(best.chart, rs[j]); } catch { j++; continue; }
      const cand = { ...best, chart };
      if (await keeps(cand)) { best = cand; changed = true; } else j++;
    }
  }
  // only the guards and delays the chart still uses
  const text = JSON.stringify(best.chart);
  const guards = {};
  for (const [g, v] of Object.entries(best.guards || {})) if (text.includes(`"${g}"`)) guards[g] = v;
  const delays = {};
  for (const [d, v] of Object.entries(best.delays || {})) if (text.includes(`"${d}"`)) delays[d] = v;
  const smaller = { ...best, guards, delays };
  return (await disagrees(smaller)) === kind ? smaller : best;
}
