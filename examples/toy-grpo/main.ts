/**
 * Toy GRPO trainer: a thin script over the package's public API and the trainer beside it
 * (./trainer/). Compares plain GRPO with THR p = +0.1 and p = -0.1 and writes curves.svg,
 * summary.md and summary.json.
 *
 *   npx tsx examples/toy-grpo/main.ts [backend] [outDir]     (default: cpu, ./toy-grpo-out)
 *
 * The same trainer with flags, a progress bar and a summary table, from the installed package:
 * `npx grpo-kernels demo` (the CLI runs ./trainer/ compiled into dist/examples/toy-grpo/).
 */
import { type BackendChoice, createContext } from 'grpo-kernels';
import { runComparison, SUMMARY_COLUMNS, summaryCells, writeReport } from './trainer/index.js';

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
