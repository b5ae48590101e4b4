/**
 * Every CUDA call an op makes, failed in turn: on the CUDA emulator (vitest project "cuda-emu"), each
 * public op of the cuda backend runs once clean at a small size while the emulator logs its runtime
 * calls (GK_EMU_CALL_LOG, tools/cuda-emu/emu_runtime.cc, "fault injection"); then, for every call name
 * the op made and every k up to its count, GK_EMU_FAULT="<call>~<k>:<error>" fails the k-th call of
 * that name (cudaErrorMemoryAllocation for an allocation, cudaErrorInvalidValue otherwise: errors that
 * leave a CUDA context usable). Each time:
 * - the op, or the read of its outputs that follows, rejects with a GrpoKernelsError whose code is the
 *   error's (OUT_OF_MEMORY, DEVICE_LOST) and whose message names the failing call and its error;
 * - nothing is left behind: after its outputs are disposed, the emulated device holds the bytes it held
 *   before (no leak), and no failure is left pending for an unrelated later call;
 * - the same op on the same inputs then gives the clean run's bits.
 * The process living through it all, and no hang (the tests' timeouts), are checked by the run itself.
 * Sticky errors (an illegal address poisons a context until it is reset) are faults.test.ts's.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { logprobsTuning } from '../../src/backends/cuda/logprobs.js';
import { thrTuning } from '../../src/backends/cuda/thr.js';
import {
  type Context,
  createContext,
  encodeFloats,
  GrpoKernelsError,
  type LogprobStates,
  type RestrictedVocab,
  type Tensor,
  type ThrPrecision,
} from '../../src/index.js';
import { makeReweightCase, makeThrCase, randomGroups } from '../fixtures/thr.js';
import { randomInts, randomNormal } from '../util/rng.js';
import { EMULATED, probeGpu } from './helpers.js';

const gpu = EMULATED ? await probeGpu() : { reason: 'fault injection needs the CUDA emulator' };
if (!EMULATED)
  console.warn('test/cuda/faults-sweep: skipped: fault injection runs only on the CUDA emulator');
const cuda = gpu.ctx as Context;

const dir = mkdtempSync(join(tmpdir(), 'gk-faults-sweep-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(() => {
  delete process.env.GK_EMU_FAULT;
  delete process.env.GK_EMU_CALL_LOG;
  logprobsTuning.splits = 0;
  thrTuning.mBudgetBytes = 0;
});

/** One line of GK_EMU_CALL_LOG: the call, the live device bytes as it began, a launch's kernel. */
interface Call {
  name: string;
  bytes: number;
  kernel: string;
}

let logs = 0;
/** The runtime calls made while `body` runs (and its value). */
async function logged<T>(body: () => Promise<T>): Promise<{ value: T; calls: Call[] }> {
  const file = join(dir, `calls-${logs++}.log`);
  process.env.GK_EMU_CALL_LOG = file;
  try {
    const value = await body();
    let text = '';
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      // no call at all
    }
    const calls = text
      .split('\n')
      .filter((l) => l.length > 0)
      .map((l) => {
        const [name, bytes, ...kernel] = l.split(' ');
        return { name, bytes: Number(bytes), kernel: kernel.join(' ') };
      });
    return { value, calls };
  } finally {
    delete process.env.GK_EMU_CALL_LOG;
  }
}

/** The emulated device's live bytes (of every context) once every call queued on `cuda` has run. */
async function liveBytes(): Promise<number> {
  return liveBytesOf(cuda);
}

/** What an op case makes: its outputs, read and disposed by the sweep. */
type Outputs = Tensor[];

interface OpCase {
  name: string;
  /** Makes the inputs (before any fault is armed); returns the op, and what frees the inputs. */
  setup(ctx: Context): { ctx: Context; run(): Promise<Outputs>; dispose(): void };
  /** Test hooks to set around the case; returns what restores them. */
  tuning?: () => () => void;
  /** Sweep only the calls of these names (a case too slow for all of them on the emulator). */
  only?: readonly string[];
}

const ALLOCATIONS = new Set(['cudaMallocAsync', 'cudaMalloc', 'cudaMallocHost']);

/** The bytes of every output, in order. */
async function readAll(out: Outputs): Promise<Buffer[]> {
  const bytes: Buffer[] = [];
  for (const t of out) {
    const a = await t.read();
    bytes.push(Buffer.from(a.buffer, a.byteOffset, a.byteLength));
  }
  return bytes;
}

function disposeAll(out: Outputs | undefined): void {
  for (const t of out ?? []) t.dispose();
}

// ------------------------------------------------------------------------------------ the op cases
const N = 5;
const V = 300;
const logitsF32 = Float32Array.from(randomNormal(71, N * V, 2));
const logitsBf16 = encodeFloats('bf16', randomNormal(72, N * V, 2)) as Uint16Array;
const targets = randomInts(73, N, 0, V);
targets[2] = -100; // an ignored row

function logprobsCase(
  name: string,
  dtype: 'f32' | 'bf16',
  opts: { entropy?: boolean; splits?: number },
): OpCase {
  return {
    name,
    tuning: () => {
      logprobsTuning.splits = opts.splits ?? 0;
      return () => {
        logprobsTuning.splits = 0;
      };
    },
    setup(ctx) {
      const x =
        dtype === 'f32' ? ctx.tensor(logitsF32, [N, V], 'f32') : ctx.tensor(logitsBf16, [N, V], 'bf16');
      return {
        ctx,
        async run() {
          // targets: a host array, uploaded (and freed) by the op
          const r = await ctx.logprobs(x, targets, { entropy: opts.entropy, sumSquares: opts.entropy });
          return [r.logprobs, r.lse, r.entropy, r.sumSquares].filter((t) => t !== undefined) as Tensor[];
        },
        dispose: () => x.dispose(),
      };
    },
  };
}

function backwardCase(name: string, dtype: 'f32' | 'bf16', inPlace: boolean): OpCase {
  const upload = (ctx: Context) =>
    dtype === 'f32' ? ctx.tensor(logitsF32, [N, V], 'f32') : ctx.tensor(logitsBf16, [N, V], 'bf16');
  return {
    name,
    setup(ctx) {
      const x = upload(ctx);
      const t = ctx.tensor(targets);
      const lse = Float32Array.from(randomNormal(74, N, 1, 6));
      const gradLogprobs = Float32Array.from(randomNormal(75, N));
      const entropy = ctx.tensor(Float32Array.from(randomNormal(76, N, 0.5, 3)));
      const gradEntropy = Float32Array.from(randomNormal(77, N));
      return {
        ctx,
        async run() {
          // In place overwrites the logits: a copy of its own each run (its upload is swept too).
          const logits = inPlace ? upload(ctx) : x;
          try {
            return [
              await ctx.logprobsBackward(logits, t, lse, gradLogprobs, { entropy, gradEntropy, inPlace }),
            ];
          } catch (e) {
            if (inPlace) logits.dispose();
            throw e;
          }
        },
        dispose: () => {
          for (const a of [x, t, entropy]) a.dispose();
        },
      };
    },
  };
}

function advantagesCase(name: string, opts: Record<string, unknown>): OpCase {
  return {
    name,
    setup(ctx) {
      const rewards = ctx.tensor(Float32Array.from(randomNormal(78, 12)));
      return {
        ctx,
        async run() {
          const r = await ctx.advantages(rewards, opts);
          return [r.advantages, r.mean, r.std, r.degenerate];
        },
        dispose: () => rewards.dispose(),
      };
    },
  };
}

// 12 responses in 4 ragged groups; their lengths (an empty one) for the per-token estimators.
const groupOffsets = Int32Array.from([0, 3, 4, 9, 12]);
const lengths = [2, 0, 3, 1, 4, 2, 2, 1, 3, 2, 1, 2];
const responseOffsets = Int32Array.from([
  0,
  ...lengths.map((_, i) => lengths.slice(0, i + 1).reduce((a, b) => a + b)),
]);
const T = responseOffsets[responseOffsets.length - 1];

const thrF32 = makeThrCase({ seed: 79, groups: randomGroups(79, 3, 4, 6), dim: 24, vocabSize: 40 });
const thrBf16 = makeThrCase({
  seed: 80,
  groups: randomGroups(80, 3, 4, 6),
  dim: 24,
  vocabSize: 40,
  dtype: 'bf16',
});
const reweight = makeReweightCase();

/** A THR case's inputs on `ctx`: hidden states, and its vocabulary as restrictedVocab returns it. */
function thrInputs(ctx: Context, c: typeof thrF32) {
  const hidden =
    c.dtype === 'f32'
      ? ctx.tensor(c.hidden as Float32Array, [c.numTokens, c.dim], 'f32')
      : ctx.tensor(c.hidden as Uint16Array, [c.numTokens, c.dim], c.dtype);
  const vocab: RestrictedVocab = {
    offsets: ctx.tensor(c.vocabOffsets),
    columns: ctx.tensor(c.columns),
    tokenColumn: ctx.tensor(c.tokenColumn),
    host: { offsets: c.vocabOffsets, columns: c.columns, tokenColumn: c.tokenColumn },
  } as RestrictedVocab;
  const base = { hidden, probs: c.probs, vocab, layout: c.layout, correct: c.correct };
  const dispose = () => {
    for (const t of [hidden, vocab.offsets, vocab.columns, vocab.tokenColumn]) t.dispose();
  };
  return { base, dispose };
}

function thrCase(
  name: string,
  c: typeof thrF32,
  precision: ThrPrecision,
  opts: { split?: boolean; budget?: number } = {},
): OpCase {
  return {
    name,
    tuning: () => {
      thrTuning.mBudgetBytes = opts.budget ?? 0;
      return () => {
        thrTuning.mBudgetBytes = 0;
      };
    },
    setup(ctx) {
      const { base, dispose } = thrInputs(ctx, c);
      return {
        ctx,
        async run() {
          if (!opts.split) {
            const r = await ctx.tokenHiddenReward({ ...base, precision });
            return [r.thr, r.tau];
          }
          // tokenHiddenReward's two halves: M, then THR and tau from it.
          const aggregate = await ctx.thrAggregate({ ...base, precision });
          try {
            const r = await ctx.thrScore({ ...base, precision, aggregate });
            return [aggregate, r.thr, r.tau];
          } catch (e) {
            aggregate.dispose();
            throw e;
          }
        },
        dispose,
      };
    },
  };
}

/** An LM head [v, d] (with bias) and `rows` hidden rows, in `dtype`. */
function headInputs(ctx: Context, dtype: 'f32' | 'bf16', rows: number, d: number, v: number) {
  const up = (seed: number, n: number, scale: number, shape: number[]) =>
    dtype === 'f32'
      ? ctx.tensor(Float32Array.from(randomNormal(seed, n, scale)), shape, 'f32')
      : ctx.tensor(encodeFloats('bf16', randomNormal(seed, n, scale)) as Uint16Array, shape, 'bf16');
  return {
    hidden: up(90, rows * d, 1, [rows, d]),
    weight: up(91, v * d, 0.2, [v, d]),
    bias: up(92, v, 0.1, [v]),
    targets: randomInts(93, rows, 0, v),
  };
}

function linearCase(name: string, dtype: 'f32' | 'bf16', backward: boolean): OpCase {
  return {
    name,
    setup(ctx) {
      const rows = 6;
      const { hidden, weight, bias, targets: tg } = headInputs(ctx, dtype, rows, 32, 72);
      const lse = ctx.tensor(Float32Array.from(randomNormal(94, rows, 0.3, 5)));
      const entropy = ctx.tensor(Float32Array.from(randomNormal(95, rows, 0.3, 3)));
      return {
        ctx,
        async run() {
          if (!backward) {
            const r = await ctx.linearLogprobs(hidden, weight, tg, { bias, entropy: true });
            return [r.logprobs, r.lse, r.entropy as Tensor];
          }
          const g = await ctx.linearLogprobsBackward(
            hidden,
            weight,
            tg,
            lse,
            Float32Array.from(randomNormal(96, rows)),
            { bias, entropy, gradEntropy: Float32Array.from(randomNormal(97, rows)) },
          );
          return [g.gradHidden, g.gradWeight, g.gradBias as Tensor];
        },
        dispose: () => {
          for (const t of [hidden, weight, bias, lse, entropy]) t.dispose();
        },
      };
    },
  };
}

/** The logits of N rows split at column 120 into two shards (row-major each). */
function logitsShard(v0: number, v1: number): Float32Array {
  const s = new Float32Array(N * (v1 - v0));
  for (let n = 0; n < N; n++) s.set(logitsF32.subarray(n * V + v0, n * V + v1), n * (v1 - v0));
  return s;
}

function disposeStates(states: LogprobStates[]): void {
  for (const s of states)
    for (const t of [s.max, s.sumExp, s.sumExpDelta, s.sumExpSq, s.targetLogit]) t?.dispose();
}

const CASES: OpCase[] = [
  logprobsCase('logprobs f32', 'f32', {}),
  logprobsCase('logprobs bf16 with entropy, split vocabulary', 'bf16', { entropy: true, splits: 3 }),
  backwardCase('logprobsBackward bf16 out of place, with entropy', 'bf16', false),
  backwardCase('logprobsBackward bf16 in place, with entropy', 'bf16', true),
  backwardCase('logprobsBackward f32 in place, with entropy', 'f32', true),
  advantagesCase('advantages grpo, uniform groups', { groupSize: 3 }),
  advantagesCase('advantages rloo, ragged groups', { groupOffsets, estimator: 'rloo' }),
  advantagesCase('advantages grpo_passk, batch std', {
    groupSize: 4,
    estimator: 'grpo_passk',
    scale: 'batch',
  }),
  advantagesCase('advantages opo', { groupOffsets, responseOffsets, estimator: 'opo' }),
  advantagesCase('advantages reinforce_pp_baseline', {
    groupOffsets,
    responseOffsets,
    estimator: 'reinforce_pp_baseline',
  }),
  {
    name: 'whiten, masked',
    setup(ctx) {
      const values = ctx.tensor(Float32Array.from(randomNormal(80, 40)));
      const mask = Uint8Array.from({ length: 40 }, (_, i) => (i % 5 === 2 ? 0 : 1));
      return { ctx, run: async () => [await ctx.whiten(values, { mask })], dispose: () => values.dispose() };
    },
  },
  {
    name: 'expandToTokens',
    setup(ctx) {
      const values = ctx.tensor(Float32Array.from(randomNormal(81, 12)));
      return {
        ctx,
        run: async () => [await ctx.expandToTokens(values, responseOffsets)],
        dispose: () => values.dispose(),
      };
    },
  },
  {
    // A small upload, then one past the pinned staging buffer's 1 MiB: the buffer waits for its last
    // copy (cudaEventSynchronize), is freed and allocated again, larger. (300 000 responses, all but
    // 10 of them empty: a large offsets array, a small kernel.)
    name: 'expandToTokens twice, the second past the staging buffer',
    // 0.6 s a run on the emulator (a warp per response): the calls of the buffer's wait and growth only.
    only: ['cudaEventSynchronize', 'cudaMallocHost'],
    setup(ctx) {
      const R = 300_000;
      const small = ctx.tensor(Float32Array.from(randomNormal(81, 12)));
      const big = ctx.tensor(Float32Array.from({ length: R }, (_, i) => i % 7));
      const bigOffsets = Int32Array.from({ length: R + 1 }, (_, i) => Math.min(i, 10));
      return {
        ctx,
        async run() {
          const a = await ctx.expandToTokens(small, responseOffsets);
          try {
            return [a, await ctx.expandToTokens(big, bigOffsets)];
          } catch (e) {
            a.dispose();
            throw e;
          }
        },
        dispose: () => {
          small.dispose();
          big.dispose();
        },
      };
    },
  },
  {
    name: 'restrictedVocab',
    setup(ctx) {
      return {
        ctx,
        async run() {
          const v = await ctx.restrictedVocab(thrF32.tokens, thrF32.layout);
          return [v.offsets, v.columns, v.tokenColumn];
        },
        dispose: () => {},
      };
    },
  },
  {
    name: 'restrictedVocab of a device tensor (read back first)',
    setup(ctx) {
      const tokens = ctx.tensor(thrF32.tokens);
      return {
        ctx,
        async run() {
          const v = await ctx.restrictedVocab(tokens, thrF32.layout);
          return [v.offsets, v.columns, v.tokenColumn];
        },
        dispose: () => tokens.dispose(),
      };
    },
  },
  {
    name: 'gatherProbs',
    setup(ctx) {
      const layout = thrF32.layout;
      const rows = thrF32.numTokens;
      const logits = ctx.tensor(Float32Array.from(randomNormal(82, rows * 40, 2)), [rows, 40], 'f32');
      const lse = ctx.tensor(Float32Array.from(randomNormal(83, rows, 0.5, 5)));
      const vocab = {
        offsets: thrF32.vocabOffsets,
        columns: thrF32.columns,
        tokenColumn: thrF32.tokenColumn,
      };
      return {
        ctx,
        run: async () => [await ctx.gatherProbs(logits, lse, { layout, vocab })],
        dispose: () => {
          logits.dispose();
          lse.dispose();
        },
      };
    },
  },
  thrCase('tokenHiddenReward f32 (wgmma scores)', thrF32, 'f32'),
  thrCase('tokenHiddenReward f32 in tf32 (TMA-fed scores), one group per M batch', thrF32, 'tf32', {
    budget: 1,
  }),
  thrCase('tokenHiddenReward bf16 (mma.sync)', thrBf16, 'f32'),
  thrCase('thrAggregate, then thrScore', thrF32, 'f32', { split: true }),
  {
    name: 'thrReweight',
    setup(ctx) {
      const { c, A, thr, tau } = reweight;
      const adv = ctx.tensor(A);
      return {
        ctx,
        run: async () => [
          await ctx.thrReweight({
            tokenAdvantages: adv,
            thr,
            tau,
            layout: c.layout,
            correct: c.correct,
            mode: 'nthr',
          }),
        ],
        dispose: () => adv.dispose(),
      };
    },
  },
  ...[false, true].map(
    (full): OpCase => ({
      name: full ? 'policyLoss with KL, entropy, rollout correction, token loss' : 'policyLoss',
      setup(ctx) {
        const f = (seed: number, scale = 0.3, mean = -1) =>
          Float32Array.from(randomNormal(seed, T, scale, mean));
        const logprobs = ctx.tensor(f(84));
        const entropy = ctx.tensor(f(85, 0.5, 2));
        return {
          ctx,
          async run() {
            const r = await ctx.policyLoss(
              {
                logprobs,
                oldLogprobs: f(86),
                advantages: f(87, 1, 0),
                layout: { responseOffsets, groupOffsets },
                ...(full ? { refLogprobs: f(88), rolloutLogprobs: f(89), entropy } : {}),
              },
              full
                ? {
                    kl: { coef: 0.1, estimator: 'k3' },
                    entropyCoef: 0.01,
                    rolloutCorrection: { level: 'sequence', upper: 2 },
                    tokenLoss: true,
                  }
                : {},
            );
            return [r.loss, r.gradLogprobs, r.stats, r.gradEntropy, r.tokenLoss].filter(
              (t) => t !== undefined,
            ) as Tensor[];
          },
          dispose: () => {
            logprobs.dispose();
            entropy.dispose();
          },
        };
      },
    }),
  ),
  linearCase('linearLogprobs bf16 (TMA tiles), with entropy and bias', 'bf16', false),
  linearCase('linearLogprobsBackward bf16 (TMA tiles), with entropy and bias', 'bf16', true),
  linearCase('linearLogprobs f32 (mma.sync), with entropy and bias', 'f32', false),
  linearCase('linearLogprobsBackward f32 (mma.sync), with entropy and bias', 'f32', true),
  {
    name: 'logprobStates and linearLogprobStates of two shards, then mergeLogprobStates',
    setup(ctx) {
      const cut = 120;
      const shard = ctx.tensor(logitsShard(0, cut), [N, cut], 'f32');
      const head = headInputs(ctx, 'f32', N, 16, V - cut);
      const tg = Int32Array.from(targets, (t) => (t < 0 ? t : t % V));
      return {
        ctx,
        async run() {
          const states: LogprobStates[] = [];
          try {
            states.push(await ctx.logprobStates(shard, tg, { vocabStart: 0, entropy: true }));
            states.push(
              await ctx.linearLogprobStates(head.hidden, head.weight, tg, {
                vocabStart: cut,
                bias: head.bias,
                entropy: true,
              }),
            );
            const r = await ctx.mergeLogprobStates(states, tg, { entropy: true });
            return [r.logprobs, r.lse, r.entropy as Tensor];
          } finally {
            disposeStates(states);
          }
        },
        dispose: () => {
          for (const t of [shard, head.hidden, head.weight, head.bias]) t.dispose();
        },
      };
    },
  },
  {
    // Its value is a time: checked for being one, not for its bits.
    name: 'copyProbe',
    setup(ctx) {
      return {
        ctx,
        async run() {
          const s = await ctx.copyProbe(4096);
          if (!(s >= 0 && Number.isFinite(s))) throw new Error(`copyProbe: ${s} seconds`);
          return [];
        },
        dispose: () => {},
      };
    },
  },
];

// ------------------------------------------------------------------------------------- the sweep
/** At most this many injected faults per op case, and in all (the file's run time on 2 cores). */
const MAX_FAULTS_PER_OP = 150;
const MAX_FAULTS = 1200;
let faults = 0;

/**
 * A fresh context with the case's inputs on it, for one run: calls made once per context (the pinned
 * staging buffer's cudaMallocHost and event, on its first upload) come again in every run. Disposed,
 * it must give back every byte it held.
 */
async function withCaseContext(
  c: OpCase,
  body: (op: ReturnType<OpCase['setup']>) => Promise<void>,
): Promise<void> {
  const before = await liveBytes();
  const ctx = await createContext({ backend: 'cuda' });
  try {
    const op = c.setup(ctx);
    try {
      await ctx.synchronize();
      await body(op);
    } finally {
      op.dispose();
    }
  } finally {
    ctx.dispose();
  }
  expect(await liveBytes(), `${c.name}: device bytes after the context's dispose`).toBe(before);
}

/** The emulated device's live bytes once every call queued on `ctx` has run. */
async function liveBytesOf(ctx: Context): Promise<number> {
  const { calls } = await logged(() => ctx.synchronize());
  const sync = calls.filter((call) => call.name === 'cudaStreamSynchronize');
  return sync[sync.length - 1].bytes;
}

describe.skipIf(gpu.ctx === undefined)(
  'cuda: every runtime call of each op, failed in turn (emulator)',
  () => {
    it.each(CASES.map((c) => [c.name, c] as const))(
      '%s',
      async (_name, c) => {
        const restore = c.tuning?.() ?? (() => {});
        try {
          // The clean run on a fresh context, its calls logged (the op and the reads of its outputs).
          let want: Buffer[] = [];
          let calls: Call[] = [];
          await withCaseContext(c, async (op) => {
            const clean = await logged(async () => {
              const out = await op.run();
              try {
                return await readAll(out);
              } finally {
                disposeAll(out);
              }
            });
            want = clean.value;
            calls = clean.calls;
          });
          const counts = new Map<string, number>();
          for (const call of calls) counts.set(call.name, (counts.get(call.name) ?? 0) + 1);
          const points: { name: string; k: number; kernel: string }[] = [];
          for (const [name, n] of counts) {
            if (c.only && !c.only.includes(name)) continue;
            const kernels = calls.filter((call) => call.name === name).map((call) => call.kernel);
            for (let k = 1; k <= n; k++) points.push({ name, k, kernel: kernels[k - 1] });
          }
          expect(points.length, 'the sweep stays within its budget').toBeLessThanOrEqual(MAX_FAULTS_PER_OP);
          faults += points.length;
          expect(faults, 'the file stays within its budget').toBeLessThanOrEqual(MAX_FAULTS);

          for (const [i, p] of points.entries()) {
            const where = `${p.name} #${p.k}${p.kernel ? ` (${p.kernel})` : ''}`;
            const error = ALLOCATIONS.has(p.name) ? 'cudaErrorMemoryAllocation' : 'cudaErrorInvalidValue';
            await withCaseContext(c, async (op) => {
              const ctx = op.ctx;
              const baseline = await liveBytesOf(ctx);
              // The faulted run: the op, then the reads of what it returned.
              let failure: unknown;
              let out: Outputs | undefined;
              process.env.GK_EMU_FAULT = `${p.name}~${p.k}:${error}#sweep${i}`;
              const run = await logged(async () => {
                try {
                  out = await op.run();
                  await readAll(out);
                } catch (e) {
                  failure = e;
                } finally {
                  delete process.env.GK_EMU_FAULT;
                  disposeAll(out);
                }
              });
              const reached = run.calls.filter((call) => call.name === p.name).length;
              expect(reached, `${where}: the faulted run reaches the call`).toBeGreaterThanOrEqual(p.k);
              expect(failure, `${where}: the op or a read rejects`).toBeInstanceOf(GrpoKernelsError);
              const e = failure as GrpoKernelsError;
              expect(e.code, `${where}: ${e.message}`).toBe(
                error === 'cudaErrorMemoryAllocation' ? 'OUT_OF_MEMORY' : 'DEVICE_LOST',
              );
              // A launch: "launch of <kernel>", the kernel as its launcher names it (its name at the
              // launch site, template arguments aside).
              expect(e.message, `${where}: names the call`).toContain(
                p.name === 'launch' ? `launch of ${p.kernel.replace(/<.*$/, '')}` : p.name,
              );
              expect(e.message, `${where}: names the error`).toContain(error);
              // Nothing left behind: no bytes, no failure pending for the next wait.
              expect(await liveBytesOf(ctx), `${where}: device bytes after the failed run`).toBe(baseline);
              // The same op again: the clean run's bits.
              const again = await op.run();
              try {
                const got = await readAll(again);
                for (const [j, b] of got.entries())
                  expect(b.equals(want[j]), `${where}: output ${j} after the fault`).toBe(true);
              } finally {
                disposeAll(again);
              }
              expect(await liveBytesOf(ctx), `${where}: device bytes after the rerun`).toBe(baseline);
            });
          }
        } finally {
          restore();
        }
      },
      30_000,
    );

    it('createContext: each call of its setup, failed in turn, is OUT_OF_MEMORY (an allocation) or BACKEND_UNAVAILABLE naming it, and frees what the setup made', async () => {
      const before = await liveBytes();
      const { value: ctx, calls } = await logged(() => createContext({ backend: 'cuda' }));
      ctx.dispose();
      expect(await liveBytes(), 'a context gives back its bytes').toBe(before);
      const seen = new Map<string, number>();
      for (const call of calls) {
        const k = (seen.get(call.name) ?? 0) + 1;
        seen.set(call.name, k);
        const where = `${call.name} #${k}`;
        const error = ALLOCATIONS.has(call.name) ? 'cudaErrorMemoryAllocation' : 'cudaErrorInvalidValue';
        process.env.GK_EMU_FAULT = `${call.name}~${k}:${error}#context`;
        let failure: unknown;
        try {
          (await createContext({ backend: 'cuda' })).dispose();
        } catch (e) {
          failure = e;
        } finally {
          delete process.env.GK_EMU_FAULT;
        }
        expect(failure, `${where}: createContext rejects`).toBeInstanceOf(GrpoKernelsError);
        const e = failure as GrpoKernelsError;
        expect(e.code, `${where}: ${e.message}`).toBe(
          error === 'cudaErrorMemoryAllocation' ? 'OUT_OF_MEMORY' : 'BACKEND_UNAVAILABLE',
        );
        expect(e.message, `${where}: names the call`).toContain(call.name);
        expect(await liveBytes(), `${where}: device bytes after the failed setup`).toBe(before);
      }
      expect([...seen.keys()]).toContain('cudaMalloc');
    });
  },
);
