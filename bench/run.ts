/**
 * The reference suites of bench/: the js reference against naive formulations, in one run each
 * (issue 2's figures), and `cpu`: the native cpu backend against ONNX Runtime, PyTorch and the
 * streaming read (issue 13's figures; bench/cpu.bench.ts). Run from source with tsx:
 *   npm run bench:reference                  # every suite
 *   npm run bench:reference -- logprobs thr  # some suites
 * Rows are written as JSON to bench/out/<suite>.json (git-ignored); bench/RESULTS.md holds the
 * published figures. The package's own multi-backend benchmark is `npm run bench` (the CLI).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { benchAdvantages } from './advantages.bench.js';
import { runCpuBench } from './cpu.bench.js';
import { runLogprobsBench } from './logprobs.bench.js';
import { benchThr } from './thr.bench.js';

const SUITES: Record<string, () => Promise<unknown>> = {
  logprobs: () => runLogprobsBench(),
  thr: () => benchThr(),
  advantages: () => benchAdvantages(),
  // Not in the default set (needs the native addon; minutes with its peers): npm run bench:cpu.
  cpu: () => runCpuBench(),
};
const DEFAULT_SUITES = ['logprobs', 'thr', 'advantages'];

const asked = process.argv.slice(2);
const unknown = asked.filter((s) => !(s in SUITES));
if (unknown.length > 0) {
  console.error(`unknown suite(s): ${unknown.join(', ')}; expected ${Object.keys(SUITES).join(', ')}`);
  process.exit(2);
}
mkdirSync(new URL('./out/', import.meta.url), { recursive: true });
for (const name of asked.length > 0 ? asked : DEFAULT_SUITES) {
  console.log(`\n== ${name}`);
  const rows = await SUITES[name]();
  writeFileSync(new URL(`./out/${name}.json`, import.meta.url), `${JSON.stringify(rows, null, 2)}\n`);
}
