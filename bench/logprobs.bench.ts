/**
 * logprobs on the js backend (the float64 reference): the one-pass reference (online max and sums, no [N, V] temporary)
 * against a naive materialise-then-gather version (the full [N, V] log_softmax in a Float32Array,
 * as `log_softmax(logits / T, -1).gather(-1, targets)` does, then the gather), in one run.
 *
 * 'one-pass+moments' also asks for entropy and sumSquares (the loop that keeps S1 and S2).
 * Reports, per variant: latency percentiles (tinybench), elements/s, read bandwidth and its
 * fraction of a plain read probe measured in the same run, the speed ratio, and the peak RSS
 * growth of one call measured in a fresh child process per variant and per N (so neither
 * variant's allocations show in the other's figure, and the one-pass figure can be seen not to
 * grow with N·V).
 *
 * Usage (the project compiles with tsc; Node 20 cannot run .ts directly):
 *   npx tsc -p tsconfig.json --outDir .cache/benchbuild
 *   node .cache/benchbuild/bench/logprobs.bench.js [--rows 256] [--vocab 151936] [--out rows.json]
 * or import { runLogprobsBench } from a runner.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Bench } from 'tinybench';
import { jsTensor } from '../src/backends/js/storage.js';
import { createContext } from '../src/index.js';
import { makeLogprobsCase } from '../test/fixtures/logprobs.js';

export interface LogprobsBenchOptions {
  rows?: number;
  vocab?: number;
  seed?: number;
  temperature?: number;
  /** Timed iterations per variant (after two warm-ups). Default 7. */
  iterations?: number;
  /** Row counts for the child-process RSS measurements; [] skips them. Default [64, rows]. */
  rssRows?: number[];
  /** Print the table. Default true. */
  print?: boolean;
}

export type Variant = 'one-pass' | 'one-pass+moments' | 'naive' | 'read-probe';

export interface LogprobsBenchRow {
  suite: 'logprobs';
  variant: Variant;
  device: string;
  node: string;
  version: string;
  date: string;
  dtype: 'f32';
  rows: number;
  vocab: number;
  samples: number;
  meanMs: number;
  p50Ms: number;
  p99Ms: number;
  minMs: number;
  /** Logit elements processed per second (from the mean). */
  elementsPerSec: number;
  /** Logit bytes read per second, GB/s (1e9). */
  readGBs: number;
  /** readGBs / the read probe's GB/s in the same run. */
  fractionOfProbe: number;
  /** This variant's speed over the naive one's: ratio of median latencies (robust to a busy machine). */
  speedupVsNaive: number;
}

export interface LogprobsRssRow {
  suite: 'logprobs-rss';
  variant: 'one-pass' | 'naive';
  rows: number;
  vocab: number;
  /** Input logits bytes held before the call (for scale). */
  inputMiB: number;
  /** Peak RSS growth during one call, in a fresh process. */
  extraPeakMiB: number;
}

const MiB = 1024 * 1024;

// ---------------------------------------------------------------- the naive baseline

/**
 * Materialise-then-gather: log_softmax of every row into an [N, V] Float32Array (max pass, Σ exp
 * pass in f64, write pass), then gather the targets. Returns logprobs and lse like the op.
 */
export function naiveLogprobs(
  x: Float32Array,
  rows: number,
  vocab: number,
  targets: Int32Array,
  temperature: number,
  ignoreIndex: number,
): { logprobs: Float32Array; lse: Float32Array } {
  const logSoftmax = new Float32Array(rows * vocab);
  const lseOut = new Float32Array(rows);
  for (let i = 0; i < rows; i++) {
    if (targets[i] === ignoreIndex) continue;
    const base = i * vocab;
    let m = Number.NEGATIVE_INFINITY;
    for (let j = 0; j < vocab; j++) m = Math.max(m, x[base + j] / temperature);
    let s = 0;
    for (let j = 0; j < vocab; j++) s += Math.exp(x[base + j] / temperature - m);
    const lse = m + Math.log(s);
    for (let j = 0; j < vocab; j++) logSoftmax[base + j] = x[base + j] / temperature - lse;
    lseOut[i] = lse;
  }
  const logprobs = new Float32Array(rows);
  for (let i = 0; i < rows; i++) {
    if (targets[i] !== ignoreIndex) logprobs[i] = logSoftmax[i * vocab + targets[i]];
  }
  return { logprobs, lse: lseOut };
}

/** Sums every element once: what a read-only pass over the logits costs in this runtime. */
function readProbe(x: Float32Array): number {
  let s = 0;
  for (let k = 0; k < x.length; k++) s += x[k];
  return s;
}

// ---------------------------------------------------------------- RSS in a child process

/**
 * Peak RSS of this process in bytes. Linux: VmHWM from /proc/self/status, which belongs to this
 * process's own address space; getrusage's maxrss would be wrong in a child, since Linux carries
 * it over from the parent across fork and exec. Elsewhere: maxRSS.
 */
function peakRss(): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
    if (m) return Number(m[1]) * 1024;
  } catch {
    // not Linux
  }
  return process.resourceUsage().maxRSS * 1024;
}

async function rssChild(variant: string, rows: number, vocab: number, seed: number): Promise<void> {
  const c = makeLogprobsCase({ seed, rows, vocab });
  const x = c.logits as Float32Array;
  const ctx = await createContext({ backend: 'js' });
  // Wraps the array without the copy ctx.tensor() makes, so the input is held exactly once.
  const logits = jsTensor(x, [rows, vocab], 'f32');
  const before = peakRss();
  if (variant === 'one-pass') {
    const out = await ctx.logprobs(logits, c.targets);
    await out.logprobs.read();
  } else {
    naiveLogprobs(x, rows, vocab, c.targets, 1, c.ignoreIndex);
  }
  const after = peakRss();
  process.stdout.write(`${JSON.stringify({ extra: after - before, input: x.byteLength })}\n`);
}

function measureRss(
  variant: 'one-pass' | 'naive',
  rows: number,
  vocab: number,
  seed: number,
): LogprobsRssRow {
  const script = fileURLToPath(import.meta.url);
  const r = spawnSync(
    process.execPath,
    // execArgv carries a TypeScript loader (tsx) when this file runs from source.
    [...process.execArgv, script, '--rss-child', variant, String(rows), String(vocab), String(seed)],
    { encoding: 'utf8', maxBuffer: 1 << 20 },
  );
  if (r.status !== 0) throw new Error(`RSS child (${variant}) failed: ${r.stderr}`);
  const { extra, input } = JSON.parse(r.stdout.trim().split('\n').pop()!) as { extra: number; input: number };
  return {
    suite: 'logprobs-rss',
    variant,
    rows,
    vocab,
    inputMiB: input / MiB,
    extraPeakMiB: Math.max(0, extra) / MiB,
  };
}

// ---------------------------------------------------------------- the run

function packageVersion(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const p = join(dir, 'package.json');
    if (existsSync(p)) {
      const pkg = JSON.parse(readFileSync(p, 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'grpo-kernels') return pkg.version ?? 'unknown';
    }
    const up = dirname(dir);
    if (up === dir) return 'unknown';
    dir = up;
  }
}

export async function runLogprobsBench(
  opts: LogprobsBenchOptions = {},
): Promise<{ rows: LogprobsBenchRow[]; rss: LogprobsRssRow[] }> {
  const rows = opts.rows ?? 256;
  const vocab = opts.vocab ?? 151936;
  const seed = opts.seed ?? 1;
  const temperature = opts.temperature ?? 1;
  const iterations = opts.iterations ?? 7;
  const print = opts.print ?? true;

  // The children first, while this process is still small.
  const rss: LogprobsRssRow[] = [];
  for (const n of opts.rssRows ?? [...new Set([64, rows])]) {
    for (const variant of ['one-pass', 'naive'] as const) rss.push(measureRss(variant, n, vocab, seed));
  }

  const c = makeLogprobsCase({ seed, rows, vocab });
  const x = c.logits as Float32Array;
  const ctx = await createContext({ backend: 'js' });
  const logits = jsTensor(x, [rows, vocab], 'f32');

  // Both variants must agree before they are timed.
  const check = await ctx.logprobs(logits, c.targets, { temperature });
  const naive = naiveLogprobs(x, rows, vocab, c.targets, temperature, c.ignoreIndex);
  const got = await check.logprobs.read();
  for (let i = 0; i < rows; i++) {
    if (Math.abs(got[i] - naive.logprobs[i]) > 1e-5 * Math.max(1, Math.abs(got[i]))) {
      throw new Error(`one-pass and naive disagree at row ${i}: ${got[i]} vs ${naive.logprobs[i]}`);
    }
  }

  const bench = new Bench({ iterations, time: 0, warmupIterations: 2, warmupTime: 0 });
  let sink = 0;
  bench
    .add('read-probe', () => {
      sink += readProbe(x);
    })
    .add('one-pass', async () => {
      const out = await ctx.logprobs(logits, c.targets, { temperature });
      sink += out.lse.size;
    })
    .add('one-pass+moments', async () => {
      const out = await ctx.logprobs(logits, c.targets, { temperature, entropy: true, sumSquares: true });
      sink += out.lse.size;
    })
    .add('naive', () => {
      sink += naiveLogprobs(x, rows, vocab, c.targets, temperature, c.ignoreIndex).lse.length;
    });
  await bench.run();
  if (Number.isNaN(sink)) console.log('');

  const elements = rows * vocab;
  const bytes = x.byteLength;
  const stats = new Map<Variant, { mean: number; p50: number; p99: number; min: number; n: number }>();
  for (const task of bench.tasks) {
    const r = task.result;
    if (r.state !== 'completed') throw new Error(`${task.name}: ${r.state}`);
    const l = r.latency;
    stats.set(task.name as Variant, { mean: l.mean, p50: l.p50, p99: l.p99, min: l.min, n: l.samplesCount });
  }
  const probeGBs = bytes / (stats.get('read-probe')!.mean / 1e3) / 1e9;
  const naiveP50 = stats.get('naive')!.p50;
  const common = {
    suite: 'logprobs' as const,
    device: `${ctx.device.name}; ${process.arch}`,
    node: process.version,
    version: packageVersion(),
    date: new Date().toISOString().slice(0, 10),
    dtype: 'f32' as const,
    rows,
    vocab,
  };
  const out: LogprobsBenchRow[] = [...stats].map(([variant, s]) => ({
    ...common,
    variant,
    samples: s.n,
    meanMs: s.mean,
    p50Ms: s.p50,
    p99Ms: s.p99,
    minMs: s.min,
    elementsPerSec: elements / (s.mean / 1e3),
    readGBs: bytes / (s.mean / 1e3) / 1e9,
    fractionOfProbe: bytes / (s.mean / 1e3) / 1e9 / probeGBs,
    speedupVsNaive: naiveP50 / s.p50,
  }));

  if (print) {
    console.log(
      `logprobs [${rows}, ${vocab}] f32, T = ${temperature}; ${common.device}; node ${common.node}`,
    );
    console.table(
      out.map((r) => ({
        variant: r.variant,
        'mean ms': r.meanMs.toFixed(1),
        'p50 ms': r.p50Ms.toFixed(1),
        'p99 ms': r.p99Ms.toFixed(1),
        'Melem/s': (r.elementsPerSec / 1e6).toFixed(1),
        'GB/s read': r.readGBs.toFixed(2),
        'of probe': `${(100 * r.fractionOfProbe).toFixed(0)}%`,
        'vs naive': `${r.speedupVsNaive.toFixed(2)}x`,
        samples: r.samples,
      })),
    );
    console.table(
      rss.map((r) => ({
        variant: r.variant,
        shape: `[${r.rows}, ${r.vocab}]`,
        'input MiB': r.inputMiB.toFixed(1),
        'peak RSS growth MiB': r.extraPeakMiB.toFixed(1),
      })),
    );
  }
  return { rows: out, rss };
}

// ---------------------------------------------------------------- main guard

function argValue(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const args = process.argv.slice(2);
  if (args[0] === '--rss-child') {
    await rssChild(args[1], Number(args[2]), Number(args[3]), Number(args[4]));
  } else {
    const rows = argValue(args, '--rows');
    const vocab = argValue(args, '--vocab');
    const result = await runLogprobsBench({
      rows: rows === undefined ? undefined : Number(rows),
      vocab: vocab === undefined ? undefined : Number(vocab),
    });
    const outFile = argValue(args, '--out');
    if (outFile !== undefined) writeFileSync(outFile, `${JSON.stringify(result, null, 2)}\n`);
  }
}
