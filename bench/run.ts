/**
 * The reference suites of bench/: the cpu reference against naive formulations, in one run each
 * (issue 2's figures). Run from source with tsx:
 *   npm run bench:reference                  # every suite
 *   npm run bench:reference -- logprobs thr  # some suites
 * Rows are written as JSON to bench/out/<suite>.json (git-ignored); bench/RESULTS.md holds the
 * published figures. The package's own multi-backend benchmark is `npm run bench` (the CLI).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { benchAdvantages } from './advantages.bench.js';
import { runLogprobsBench } from './logprobs.bench.js';
import { benchThr } from './thr.bench.js';

const SUITES: Record<string, () => Promise<unknown>> = {
  logprobs: () => runLogprobsBench(),
  thr: () => benchThr(),
  advantages: () => benchAdvantages(),
};

const asked = process.argv.slice(2);
const unknown = asked.filter((s) => !(s in SUITES));
if (unknown.length > 0) {
  console.error(`unknown suite(s): ${unknown.join(', ')}; expected ${Object.keys(SUITES).join(', ')}`);
  process.exit(2);
}
mkdirSync(new URL('./out/', import.meta.url), { recursive: true });
for (const name of asked.length > 0 ? asked : Object.keys(SUITES)) {
  console.log(`\n== ${name}`);
  const rows = await SUITES[name]();
  writeFileSync(new URL(`./out/${name}.json`, import.meta.url), `${JSON.stringify(rows, null, 2)}\n`);
}
