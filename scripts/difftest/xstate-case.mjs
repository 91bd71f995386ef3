// One case through XState in a process of its own (`run --reference-timeout MS` starts one per
// case, so that a case XState takes too long on can be stopped): reads the case as JSON on
// stdin, prints `xstateTrace`'s answer as JSON. `quick` as the first argument: the quick limits.
import fs from 'node:fs';
import { xstateTrace } from './xstate.mjs';

const c = JSON.parse(fs.readFileSync(0, 'utf8'));
process.stdout.write(JSON.stringify(xstateTrace(c, process.argv[2] === 'quick')));
