/**
 * `grpo-kernels bench`: times every op at realistic sizes on each backend and reports median
 * times, throughput and the fraction of the backend's own copy bandwidth measured in the same run
 * (ggml's perf mode). Timed regions are bracketed by ctx.synchronize(). The cases are bench/'s
 * (bench/index.ts); bench/run.ts runs its reference tier through benchBackend() here, peers included.
 */
import { writeFileSync } from 'node:fs';
import { freemem } from 'node:os';
import type { BackendName, Context } from 'grpo-kernels';
import {
  type BenchCase,
  benchCases,
  OP_NAMES,
  type OpName,
  type Peer,
  type Prepared,
  tierFor,
} from '../bench/index.js';
import { enumFlag, parseFlags } from './args.js';
import { ALL_BACKENDS, isSoftwareDriver, openOrFail, SOFTWARE_NOTE, tryOpen } from './backends.js';
import { CliError, oneLine, usageError } from './errors.js';
import type { Io } from './io.js';
import { writableFile } from './paths.js';
import { ProgressBar } from './progress.js';
import { formatTable } from './table.js';
import { packageVersion } from './version.js';

export const BENCH_HELP = `Usage: grpo-kernels bench [--backend NAME] [--quick] [--op OPS] [--json FILE] [--no-progress]

Times every op at realistic sizes: logprobs at V = 32000, 128256, 151936 (f32 and bf16 logits
of a few hundred MB on a GPU and the native cpu; 8 rows on js and on software drivers such as lavapipe), logprobsBackward, gatherProbs, advantages from 1k
to 1M responses, expandToTokens, whiten, restrictedVocab, tokenHiddenReward at d = 896 and 3584,
thrReweight, policyLoss on 1M tokens in 64k responses. Size keys: N rows, V vocabulary, G groups x
n responses x L tokens, R responses, T tokens, d hidden size, V* mean restricted vocabulary. Prints median time, p10-p90, the op's throughput (GB/s of bytes moved, GFLOP/s for
THR, responses/s for advantages, tokens/s for restrictedVocab and policyLoss) and the fraction of the backend's
copy bandwidth (ctx.copyProbe) measured in the same run.

Options:
  --backend NAME  js | cpu | webgpu | cuda | auto | all (default all: every available backend)
  --quick         tiny sizes on every backend (seconds)
  --op OPS        only these ops (comma-separated): ${OP_NAMES.join(', ')}
  --json FILE     also write machine-readable rows to FILE (in an existing directory;
                  checked, with a probe file written beside it, before the run starts)
  --no-progress   no progress bar on stderr
  -h, --help      show this help`;

const BACKEND_CHOICES = ['js', 'cpu', 'webgpu', 'cuda', 'auto', 'all'] as const;

export interface BenchRow {
  backend: BackendName;
  device: string;
  softwareDriver: boolean;
  date: string;
  version: string;
  op: OpName;
  /** What distinguishes the case beyond op, sizes and dtype (an estimator, extra outputs). */
  variant?: string;
  sizes: Record<string, number>;
  dtype: string;
  /** A peer's row (reference tier): another implementation of the op on the same inputs. */
  peer?: string;
  reps: number;
  medianMs: number | null;
  p10Ms: number | null;
  p90Ms: number | null;
  /** Bytes moved per run (inputs read + outputs written). */
  bytes: number;
  gbps: number | null;
  /** The op's own throughput at the median (unit in throughputUnit). */
  throughput: number | null;
  throughputUnit: string;
  /** Copy bandwidth at the same traffic: 2·b / ctx.copyProbe(b), b = bytes / 2. */
  copyGbps: number | null;
  /** gbps / copyGbps. */
  fraction: number | null;
  /** A peer's row: its median over the op's (how many times faster the op is). */
  vsOp?: number;
  /** A peer's row: max |peer − op| / max |op| over what the peer computed. */
  maxRelDiff?: number;
  /** A peer's row: times scaled from a subsample of the work (the peer says how). */
  extrapolated?: boolean;
  /** Why the case did not run (does not fit in memory), or its error. */
  skipped?: string;
  error?: string;
}

/** Percentile of sorted values, linear interpolation. */
export function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 1) return sorted[0];
  const pos = q * (sorted.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

export interface TimingPlan {
  warmup: number;
  minReps: number;
  maxReps: number;
  budgetMs: number;
}

/** How long each case is timed: --quick, a GPU or the native cpu, or the js reference. */
export function timingPlan(backend: BackendName, quick: boolean): TimingPlan {
  if (quick) return { warmup: 1, minReps: 3, maxReps: 10, budgetMs: 100 };
  return backend !== 'js'
    ? { warmup: 3, minReps: 10, maxReps: 100, budgetMs: 1000 }
    : { warmup: 1, minReps: 3, maxReps: 20, budgetMs: 1000 };
}

async function time(ctx: Context, p: Prepared, plan: TimingPlan): Promise<number[]> {
  for (let i = 0; i < plan.warmup; i++) {
    for (const t of await p.run()) t.dispose();
  }
  await ctx.synchronize();
  const times: number[] = [];
  const start = performance.now();
  while (
    times.length < plan.minReps ||
    (times.length < plan.maxReps && performance.now() - start < plan.budgetMs)
  ) {
    await ctx.synchronize();
    const t0 = performance.now();
    const outs = await p.run();
    await ctx.synchronize();
    times.push(performance.now() - t0);
    for (const t of outs) t.dispose();
  }
  return times.sort((a, b) => a - b);
}

/** A peer's times: host code, nothing to synchronize; its own plan when it has one. */
function timePeer(peer: Peer, plan: TimingPlan): { times: number[]; extrapolated: boolean } {
  const warmup = peer.plan?.warmup ?? plan.warmup;
  const [minReps, maxReps] = peer.plan ? [peer.plan.reps, peer.plan.reps] : [plan.minReps, plan.maxReps];
  for (let i = 0; i < warmup; i++) peer.run();
  const times: number[] = [];
  const start = performance.now();
  while (times.length < minReps || (times.length < maxReps && performance.now() - start < plan.budgetMs)) {
    const t0 = performance.now();
    peer.run();
    const ms = performance.now() - t0;
    times.push(peer.extrapolatedMs ? peer.extrapolatedMs() : ms);
  }
  const extrapolated = peer.extrapolatedMs !== undefined;
  return { times: times.sort((a, b) => a - b), extrapolated };
}

function isOutOfMemory(e: unknown): boolean {
  const code = (e as { code?: string }).code;
  const msg = oneLine(e);
  return (
    code === 'OUT_OF_MEMORY' ||
    (e instanceof RangeError && /allocation|array length|buffer/i.test(msg)) ||
    /out of memory|allocation failed/i.test(msg)
  );
}

const GiB = 1024 ** 3;
const gb = (b: number) => `${(b / GiB).toFixed(1)} GiB`;

/** Parses "79.1 GiB", "80 GB", "512 MiB" or a number of bytes. */
function parseBytes(v: string | number | boolean): number | undefined {
  if (typeof v === 'number') return v > 1e6 ? v : undefined;
  if (typeof v !== 'string') return undefined;
  const m = /([\d.]+)\s*(GiB|GB|MiB|MB)/i.exec(v);
  if (!m) return undefined;
  const unit = m[2].toLowerCase();
  const mult = unit === 'gib' ? GiB : unit === 'gb' ? 1e9 : unit === 'mib' ? 1024 ** 2 : 1e6;
  return Number(m[1]) * mult;
}

/**
 * Why a case cannot fit, or null. Host memory comes from the OS; device limits from the device's
 * details when it reports them (a key naming free/total memory, or WebGPU's maxBufferSize).
 */
export function doesNotFit(c: BenchCase, ctx: Context, hostFree = freemem()): string | null {
  if (c.hostBytes > 0.7 * hostFree)
    return `needs about ${gb(c.hostBytes)} of host memory for its inputs, ${gb(hostFree)} free`;
  const d = ctx.device.details;
  for (const [k, v] of Object.entries(d)) {
    if (/^maxBufferSize$/i.test(k)) {
      const limit = parseBytes(v);
      if (limit !== undefined && c.largestTensorBytes > limit)
        return `one tensor is ${gb(c.largestTensorBytes)}, over the device's maxBufferSize (${gb(limit)})`;
    } else if (/mem/i.test(k) && !/bandwidth|clock|bus/i.test(k)) {
      const mem = parseBytes(v);
      if (mem !== undefined && c.deviceBytes > 0.9 * mem)
        return `needs about ${gb(c.deviceBytes)} of device memory, the device reports ${k} = ${v}`;
    }
  }
  return null;
}

function fmtSizes(s: Record<string, number>): string {
  return Object.entries(s)
    .map(
      ([k, v]) =>
        `${k}=${v >= 1e6 && v % 1e6 === 0 ? `${v / 1e6}M` : v >= 1e3 && v % 1e3 === 0 ? `${v / 1e3}k` : v}`,
    )
    .join(' ');
}

function fmtNum(x: number | null, digits = 3): string {
  if (x === null || !Number.isFinite(x)) return '—';
  if (x === 0) return '0';
  const a = Math.abs(x);
  if (a >= 100) return x.toFixed(0);
  if (a >= 10) return x.toFixed(1);
  return x.toPrecision(digits);
}

/** The op column: the op, its variant, and the peer a row times instead of the op. */
export function opLabel(r: Pick<BenchRow, 'op' | 'variant' | 'peer'>): string {
  return `${r.op}${r.variant ? ` (${r.variant})` : ''}${r.peer ? `: ${r.peer}` : ''}`;
}

/** Fills a row's timings from sorted times; the copy bandwidth and fraction need copyGbps. */
function fillTimes(row: BenchRow, times: number[], p: Prepared, copyGbps: number | null): void {
  const median = percentile(times, 0.5);
  row.reps = times.length;
  row.medianMs = median;
  row.p10Ms = percentile(times, 0.1);
  row.p90Ms = percentile(times, 0.9);
  row.bytes = p.bytes;
  row.gbps = p.bytes / (median / 1e3) / 1e9;
  row.throughputUnit = p.work.unit;
  row.throughput = p.work.amount / (median / 1e3);
  row.copyGbps = copyGbps;
  row.fraction = copyGbps === null ? null : row.gbps / copyGbps;
}

/**
 * Runs every case on one context; returns its rows: one per case, then one per peer of the case
 * (timed on the same inputs, checked against one run of the op).
 */
export async function benchBackend(
  ctx: Context,
  cases: readonly BenchCase[],
  plan: TimingPlan,
  bar: ProgressBar,
  progress: { done: number; total: number },
): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const software = isSoftwareDriver(ctx);
  const copyCache = new Map<number, number>();
  const base = {
    backend: ctx.backend,
    device: ctx.device.name,
    softwareDriver: software,
    date: new Date().toISOString(),
    version: packageVersion(),
  };
  for (const c of cases) {
    bar.update(progress.done, `${ctx.backend} ${opLabel(c)} ${fmtSizes(c.sizes)} ${c.dtype}`, true);
    const row: BenchRow = {
      ...base,
      op: c.op,
      ...(c.variant === undefined ? {} : { variant: c.variant }),
      sizes: { ...c.sizes },
      dtype: c.dtype,
      reps: 0,
      medianMs: null,
      p10Ms: null,
      p90Ms: null,
      bytes: 0,
      gbps: null,
      throughput: null,
      throughputUnit: '',
      copyGbps: null,
      fraction: null,
    };
    const peerRows: BenchRow[] = [];
    const why = doesNotFit(c, ctx);
    if (why !== null) {
      row.skipped = `does not fit in memory: ${why}`;
    } else {
      let prepared: Prepared | undefined;
      try {
        prepared = await c.setup(ctx);
        Object.assign(row.sizes, prepared.sizes ?? {});
        const times = await time(ctx, prepared, plan);
        // The same traffic as the op: a copy of b bytes moves 2·b (read + write).
        const probeBytes = Math.max(4096, Math.ceil(prepared.bytes / 2 / 4) * 4);
        let copyS = copyCache.get(probeBytes);
        if (copyS === undefined) {
          copyS = await ctx.copyProbe(probeBytes);
          copyCache.set(probeBytes, copyS);
        }
        fillTimes(row, times, prepared, (2 * probeBytes) / copyS / 1e9);
        if (prepared.peers !== undefined && prepared.peers.length > 0) {
          const outputs = await prepared.run();
          try {
            for (const peer of prepared.peers) {
              bar.update(progress.done, `${ctx.backend} ${opLabel({ ...c, peer: peer.name })}`, true);
              const peerRow: BenchRow = { ...row, sizes: { ...row.sizes }, peer: peer.name };
              const timed = timePeer(peer, plan);
              fillTimes(peerRow, timed.times, prepared, row.copyGbps);
              peerRow.vsOp = peerRow.medianMs! / row.medianMs!;
              if (timed.extrapolated) peerRow.extrapolated = true;
              if (peer.agree) peerRow.maxRelDiff = await peer.agree(outputs);
              peerRows.push(peerRow);
            }
          } finally {
            for (const t of outputs) t.dispose();
          }
        }
      } catch (e) {
        if (isOutOfMemory(e)) {
          row.skipped = `does not fit in memory: ${oneLine(e)}`;
        } else {
          row.error = oneLine(e);
        }
      } finally {
        prepared?.dispose();
      }
    }
    rows.push(row, ...peerRows);
    progress.done++;
    bar.update(progress.done, `${ctx.backend} ${c.op}`);
  }
  return rows;
}

export function benchTable(rows: readonly BenchRow[]): string[] {
  const header = [
    'backend',
    'op',
    'sizes',
    'dtype',
    'median ms',
    'p10-p90 ms',
    'throughput',
    'GB/s',
    'copy GB/s',
    '% copy',
  ];
  const cells = rows.map((r) => {
    const name = `${r.backend}${r.softwareDriver ? '*' : ''}`;
    if (r.medianMs === null) {
      return [
        name,
        opLabel(r),
        fmtSizes(r.sizes),
        r.dtype,
        '—',
        r.skipped ? 'skipped' : 'failed',
        '',
        '',
        '',
        '',
      ];
    }
    return [
      name,
      opLabel(r),
      fmtSizes(r.sizes),
      r.dtype,
      fmtNum(r.medianMs),
      `${fmtNum(r.p10Ms)}-${fmtNum(r.p90Ms)}`,
      `${fmtNum(r.throughput)} ${r.throughputUnit}`,
      fmtNum(r.gbps),
      fmtNum(r.copyGbps),
      r.fraction === null ? '—' : `${(100 * r.fraction).toFixed(1)}%`,
    ];
  });
  return formatTable(header, cells, 'llllrrrrrr');
}

export async function benchCommand(args: string[], io: Io): Promise<number> {
  const flags = parseFlags('bench', args, {
    backend: { type: 'string' },
    quick: { type: 'boolean' },
    op: { type: 'string' },
    json: { type: 'string' },
    'no-progress': { type: 'boolean' },
  });
  if (flags.help) {
    io.out(BENCH_HELP);
    return 0;
  }
  const choice = enumFlag('bench', 'backend', flags.backend, BACKEND_CHOICES, 'all');
  const quick = flags.quick ?? false;
  let ops: readonly OpName[] = OP_NAMES;
  if (flags.op !== undefined) {
    const wanted = flags.op.split(',').map((s) => s.trim());
    const bad = wanted.filter((w) => !(OP_NAMES as readonly string[]).includes(w));
    if (bad.length > 0 || wanted.length === 0)
      throw usageError(
        `bench: --op expects op names from ${OP_NAMES.join(', ')}, got '${bad.join(',') || flags.op}'`,
      );
    ops = wanted as OpName[];
  }
  if (flags.json === '') throw usageError('bench: --json expects a file name');
  // Before any backend opens: a run of minutes must not end in "cannot write".
  const jsonFile = flags.json === undefined ? undefined : writableFile('bench', 'json', flags.json);

  // Open the backends first, so the progress bar knows the total.
  const contexts: Context[] = [];
  if (choice === 'all') {
    for (const name of ALL_BACKENDS) {
      const o = await tryOpen(name);
      if (o.ctx) contexts.push(o.ctx);
      else io.out(`skipped ${name}: ${o.reason}`);
    }
    if (contexts.length === 0) throw new CliError('bench: no backend is available');
  } else {
    contexts.push(await openOrFail(choice));
  }

  const plans = new Map<Context, BenchCase[]>();
  for (const ctx of contexts)
    plans.set(
      ctx,
      benchCases(tierFor(ctx.backend, quick, isSoftwareDriver(ctx))).filter((c) => ops.includes(c.op)),
    );
  const progress = { done: 0, total: [...plans.values()].reduce((a, c) => a + c.length, 0) };
  const bar = new ProgressBar(io, progress.total, !flags['no-progress']);
  const rows: BenchRow[] = [];
  try {
    for (const ctx of contexts) {
      rows.push(...(await benchBackend(ctx, plans.get(ctx)!, timingPlan(ctx.backend, quick), bar, progress)));
    }
  } finally {
    bar.done();
    for (const ctx of contexts) ctx.dispose();
  }

  for (const line of benchTable(rows)) io.out(line);
  for (const r of rows.filter((row) => row.skipped !== undefined))
    io.out(`skipped ${r.backend} ${opLabel(r)} ${fmtSizes(r.sizes)} ${r.dtype}: ${r.skipped}`);
  const devices = [...new Map(rows.map((r) => [r.backend, r])).values()];
  io.out('');
  for (const r of devices)
    io.out(`${r.backend}: ${r.device}${r.softwareDriver ? ` (*${SOFTWARE_NOTE})` : ''}`);
  io.out(
    'GB/s = bytes moved (inputs read + outputs written) / median time; % copy = GB/s over the copy bandwidth ' +
      '(ctx.copyProbe) at the same traffic, measured in this run.',
  );
  if (jsonFile !== undefined) {
    const doc = {
      package: 'grpo-kernels',
      version: packageVersion(),
      date: new Date().toISOString(),
      node: process.version,
      quick,
      rows,
    };
    try {
      writeFileSync(jsonFile, `${JSON.stringify(doc, null, 2)}\n`);
    } catch (e) {
      throw new CliError(`bench: --json: cannot write '${flags.json}': ${oneLine(e)}`);
    }
    io.out(`wrote ${rows.length} rows to ${flags.json}`);
  }
  const errors = rows.filter((r) => r.error !== undefined);
  for (const r of errors)
    io.err(`grpo-kernels: bench ${r.backend} ${opLabel(r)} ${fmtSizes(r.sizes)} failed: ${r.error}\n`);
  return errors.length > 0 ? 1 : 0;
}
