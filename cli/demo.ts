/**
 * `grpo-kernels demo`: the toy GRPO trainer (examples/toy-grpo/trainer) comparing plain GRPO with THR p = ±0.1;
 * prints the summary table and where the plot (SVG) and the summary (markdown, JSON) were written.
 */
import {
  comparisonConfig,
  describeConfig,
  METHODS,
  runComparison,
  SUMMARY_COLUMNS,
  summaryCells,
  writeReport,
} from '../examples/toy-grpo/trainer/index.js';
import { enumFlag, type IntRange, intFlag, parseFlags } from './args.js';
import { openOrFail } from './backends.js';
import { CliError, oneLine, usageError } from './errors.js';
import type { Io } from './io.js';
import { writableDir } from './paths.js';
import { ProgressBar } from './progress.js';
import { formatTable } from './table.js';
import { packageVersion } from './version.js';

const STEPS: IntRange = { min: 1, max: 1_000_000 };
const RUNS: IntRange = { min: 1, max: 10_000 };
/**
 * The seed is a u32: the trainer's generators take `seed >>> 0` (mulberry32, deriveSeed), so a larger
 * number would silently alias a smaller one. The runs' seeds seed..seed+runs-1 must fit too.
 */
const SEED: IntRange = { min: 0, max: 2 ** 32 - 1 };

export const DEMO_HELP = `Usage: grpo-kernels demo [--backend NAME] [--steps N] [--runs N] [--seed N] [--out DIR] [--quick]

Trains a tiny linear softmax policy on "emit K digits whose sum equals the target" with GRPO,
every piece of reward math through grpo-kernels (linearLogprobs + entropy, advantages, expandToTokens,
restrictedVocab, gatherProbs, tokenHiddenReward, thrReweight, policyLoss, linearLogprobsBackward), and compares
plain GRPO, THR p = +0.1 and THR p = -0.1 from the same seeds. Writes curves.svg (mean reward,
held-out greedy accuracy, held-out pass@k), summary.md and summary.json.

Options:
  --backend NAME  js | cpu | webgpu | cuda | auto (default cpu: deterministic, same seed -> same curves)
  --steps N       training steps per run, 1 to 1000000 (default 150; --quick: 60)
  --runs N        seeds per method, averaged, 1 to 10000 (default 8; --quick: 1)
  --seed N        first seed, a 32-bit unsigned integer: 0 to 4294967295 (default 1);
                  runs use seed, seed+1, ..., and the last must be at most 4294967295
  --out DIR       output directory (default ./toy-grpo-out), created if absent; checked
                  (a probe file is written there) before the run starts
  --quick         a small, fast run (for smoke tests)
  --no-progress   no progress bar on stderr
  -h, --help      show this help`;

export async function demoCommand(args: string[], io: Io): Promise<number> {
  const flags = parseFlags('demo', args, {
    backend: { type: 'string' },
    steps: { type: 'string' },
    runs: { type: 'string' },
    seed: { type: 'string' },
    out: { type: 'string' },
    quick: { type: 'boolean' },
    'no-progress': { type: 'boolean' },
  });
  if (flags.help) {
    io.out(DEMO_HELP);
    return 0;
  }
  const backend = enumFlag(
    'demo',
    'backend',
    flags.backend,
    ['js', 'cpu', 'webgpu', 'cuda', 'auto'] as const,
    'cpu',
  );
  const steps = intFlag('demo', 'steps', flags.steps, STEPS);
  const runs = intFlag('demo', 'runs', flags.runs, RUNS);
  const seed = intFlag('demo', 'seed', flags.seed, SEED);
  const options = { steps, runs, seed, quick: flags.quick ?? false };
  const config = comparisonConfig(options);
  const lastSeed = config.seed + config.runs - 1;
  if (lastSeed > SEED.max) {
    throw usageError(
      `demo: --seed ${config.seed} with ${config.runs} runs uses seeds up to ${lastSeed}; the last seed must be at most ${SEED.max}`,
    );
  }
  if (flags.out === '') throw usageError('demo: --out expects a directory');
  // Before any work: a run of minutes must not end in "cannot write".
  const { dir: out, undo } = writableDir('demo', 'out', flags.out ?? 'toy-grpo-out');
  try {
    return await runAndReport(io, backend, options, config, out, !flags['no-progress']);
  } catch (e) {
    undo(); // a run that failed leaves no empty directory behind
    throw e;
  }
}

/** Opens the backend, runs the comparison, writes the report into `out` (checked already). */
async function runAndReport(
  io: Io,
  backend: 'js' | 'cpu' | 'webgpu' | 'cuda' | 'auto',
  options: Parameters<typeof comparisonConfig>[0],
  config: ReturnType<typeof comparisonConfig>,
  out: string,
  progress: boolean,
): Promise<number> {
  const ctx = await openOrFail(backend);
  try {
    const total = METHODS.length * config.runs * config.steps;
    const bar = new ProgressBar(io, total, progress);
    io.out(`toy GRPO on ${ctx.backend} (${ctx.device.name}): ${describeConfig(config)}`);
    let result: Awaited<ReturnType<typeof runComparison>>;
    try {
      result = await runComparison(ctx, options, (done, _total, label) => {
        bar.update(done, `${label} (${done}/${total} steps)`);
      });
    } finally {
      bar.done();
    }
    io.out('');
    for (const line of formatTable(SUMMARY_COLUMNS, summaryCells(result.summary), 'lrrrrrrrrrr'))
      io.out(line);
    io.out('');
    let paths: ReturnType<typeof writeReport>;
    try {
      paths = writeReport(result, out, {
        backend: ctx.backend,
        device: ctx.device.name,
        version: packageVersion(),
      });
    } catch (e) {
      throw new CliError(`demo: --out: cannot write the report to '${out}': ${oneLine(e)}`);
    }
    io.out(`wall time ${result.seconds.toFixed(1)} s`);
    io.out(`plot:    ${paths.svg}`);
    io.out(`summary: ${paths.markdown}`);
    io.out(`curves:  ${paths.json}`);
    return 0;
  } finally {
    ctx.dispose();
  }
}
