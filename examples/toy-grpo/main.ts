/**
 * Toy GRPO trainer: a thin script over the package's public API and its trainer library
 * (src/trainer). Compares plain GRPO with THR p = +0.1 and p = -0.1 and writes curves.svg,
 * summary.md and summary.json.
 *
 *   npx tsx examples/toy-grpo/main.ts [backend] [outDir]     (default: cpu, ./toy-grpo-out)
 *
 * The same run from the compiled package: `npx grpo-kernels demo --backend cpu`.
 */
import { type BackendChoice, createContext } from '../../src/index.js';
import { runComparison, SUMMARY_COLUMNS, summaryCells, writeReport } from '../../src/trainer/index.js';

const backend = (process.argv[2] ?? 'cpu') as BackendChoice;
const outDir = process.argv[3] ?? 'toy-grpo-out';

const ctx = await createContext({ backend });
try {
  console.log(`toy GRPO on ${ctx.backend}: ${ctx.device.name}`);
  const result = await runComparison(ctx, { seed: 1 }, (done, total) => {
    if (done % 600 === 0 || done === total) console.log(`  ${done}/${total} steps`);
  });
  console.log(`| ${SUMMARY_COLUMNS.join(' | ')} |`);
  console.log(`|${SUMMARY_COLUMNS.map(() => '---').join('|')}|`);
  for (const cells of summaryCells(result.summary)) console.log(`| ${cells.join(' | ')} |`);
  const paths = writeReport(result, outDir, {
    backend: ctx.backend,
    device: ctx.device.name,
    version: 'dev',
  });
  console.log(`wrote ${paths.svg}, ${paths.markdown}, ${paths.json} (${result.seconds.toFixed(1)} s)`);
} finally {
  ctx.dispose();
}
