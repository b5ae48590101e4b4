/**
 * The LM-head checks that are not per-element comparisons with the reference, for every open
 * backend: finite differences (js: they validate the float64 reference and its
 * gradients), bad input (typed errors, the same on every backend: the API validates), the memory
 * bound (each backend's scratch at N = 16384, V = 151936, d = 4096, computed, against the logits a
 * materialised path would hold), and THR's two halves (thrAggregate then thrScore) against
 * tokenHiddenReward and against a float64 reference, unsharded and with each group's responses
 * spread over 2 and 3 data-parallel shards whose aggregates are summed (the all-reduce) in between.
 */
import { describe, expect, expectTypeOf, it } from 'vitest';
import { jsLmheadScratchBytes } from '../../src/backends/js/lmhead.js';
import type { Context } from '../../src/context.js';
import type { HostArray } from '../../src/dtypes.js';
import { type ErrorCode, GrpoKernelsError, type LogprobStates, type Tensor } from '../../src/index.js';
import { expectSameBits } from '../cases/check.js';
import type { OpenBackend } from '../cases/runner.js';
import {
  bruteThr,
  degenerate,
  f32Bits,
  makeThrCase,
  randomGroups,
  type ThrCase,
  thrGroupErrors,
  uniformGroup,
} from '../fixtures/thr.js';
import { backwardRef, forwardRef, gradVector, type HeadInputs, logits, makeHead } from './reference.js';

/** The materialised logits' bytes at the issue's size, in bf16 (the smaller of bf16 and f32). */
export const BIG = { N: 16384, V: 151936, d: 4096 };
export const LOGITS_BF16_BYTES = BIG.N * BIG.V * 2;

export async function rejects(
  p: Promise<unknown>,
  code: ErrorCode,
  argument: string,
): Promise<GrpoKernelsError> {
  let err: unknown;
  try {
    await p;
  } catch (e) {
    err = e;
  }
  expect(err, `expected a ${code} error naming ${argument}`).toBeInstanceOf(GrpoKernelsError);
  const g = err as GrpoKernelsError;
  expect([g.code, g.argument], g.message).toEqual([code, argument]);
  return g;
}

function badInput(ctx: Context) {
  it('bad input: d mismatch, V = 0, dtype mismatch, bias, targets, options (gradDtype included): typed errors', async () => {
    const h = ctx.tensor(new Float32Array(12), [3, 4], 'f32');
    const w = ctx.tensor(new Float32Array(20), [5, 4], 'f32');
    const w3 = ctx.tensor(new Float32Array(15), [5, 3], 'f32');
    const w0 = ctx.tensor(new Float32Array(0), [0, 4], 'f32');
    const wb = ctx.tensor(new Uint16Array(20), [5, 4], 'bf16');
    const b16 = ctx.tensor(new Uint16Array(5), [5], 'bf16');
    const t = new Int32Array([0, 1, 4]);
    try {
      const e = await rejects(ctx.linearLogprobs(h, w3, t), 'SHAPE', 'weight');
      expect(e.message).toContain('[?, 4]');
      await rejects(ctx.linearLogprobs(h, w0, t), 'SHAPE', 'weight');
      await rejects(ctx.linearLogprobs(h, wb, t), 'DTYPE', 'weight');
      await rejects(
        ctx.linearLogprobsBackward(h, wb, t, new Float32Array(3), new Float32Array(3)),
        'DTYPE',
        'weight',
      );
      await rejects(ctx.linearLogprobs(h, w, t, { bias: b16 }), 'DTYPE', 'bias');
      await rejects(ctx.linearLogprobs(h, w, t, { bias: new Float32Array(4) }), 'SHAPE', 'bias');
      await rejects(ctx.linearLogprobs(h, w, new Int32Array([0, 5, 1])), 'RANGE', 'targets');
      await rejects(ctx.linearLogprobs(h, w, new Int32Array(2)), 'SHAPE', 'targets');
      await rejects(ctx.linearLogprobs(h, w, t, { temperature: 0 }), 'RANGE', 'temperature');
      await rejects(ctx.linearLogprobs(h, w, t, { temprature: 2 } as never), 'DTYPE', 'options.temprature');
      await rejects(
        ctx.linearLogprobsBackward(h, w, t, new Float32Array(3), new Float32Array(3), {
          gradEntropy: new Float32Array(3),
        }),
        'DTYPE',
        'entropy',
      );
      // gradDtype: 'f32' or 'input', nothing else (a dtype name included: the input's is implied).
      const back = (gradDtype: unknown) =>
        ctx.linearLogprobsBackward(h, w, t, new Float32Array(3), new Float32Array(3), { gradDtype } as never);
      const e1 = await rejects(back('bf16'), 'RANGE', 'gradDtype');
      expect(e1.message).toContain("expected one of 'f32', 'input', got \"bf16\"");
      await rejects(back('Input'), 'RANGE', 'gradDtype');
      await rejects(back(true), 'DTYPE', 'gradDtype');
      await rejects(back(null), 'DTYPE', 'gradDtype');
      await rejects(ctx.linearLogprobStates(h, w, t, { vocabStart: -1 }), 'RANGE', 'vocabStart');
      // States that do not tile the vocabulary, disagree, or lack what the merge is asked for.
      const a = await ctx.linearLogprobStates(h, w, t, { vocabStart: 0 });
      const b = await ctx.linearLogprobStates(h, w, t, { vocabStart: 6 });
      const c = await ctx.linearLogprobStates(h, w, t, { vocabStart: 5, temperature: 2 });
      await rejects(ctx.mergeLogprobStates([b], t), 'LAYOUT', 'states[0].vocabStart');
      await rejects(ctx.mergeLogprobStates([a, b], t), 'LAYOUT', 'states[1].vocabStart');
      await rejects(ctx.mergeLogprobStates([a, c], t), 'RANGE', 'states[1]');
      await rejects(ctx.mergeLogprobStates([a], t, { entropy: true }), 'DTYPE', 'states[0].sumExpDelta');
      await rejects(ctx.mergeLogprobStates([], t), 'DTYPE', 'states');
      await rejects(ctx.mergeLogprobStates([a], new Int32Array([0, 5, 1])), 'RANGE', 'targets');
      for (const s of [a, b, c] as LogprobStates[])
        for (const x of [s.max, s.sumExp, s.targetLogit]) x.dispose();
    } finally {
      for (const x of [h, w, w3, w0, wb, b16]) x.dispose();
    }
  });

  it('a target out of range on the device is a RANGE error naming targets (at the op or the next wait)', async () => {
    const h = ctx.tensor(new Float32Array(12).fill(0.5), [3, 4], 'f32');
    const w = ctx.tensor(new Float32Array(20).fill(0.25), [5, 4], 'f32');
    const t = ctx.tensor(new Int32Array([0, 7, 1]), [3], 'i32');
    try {
      const p = (async () => {
        const r = await ctx.linearLogprobs(h, w, t);
        try {
          await r.logprobs.read();
        } finally {
          r.logprobs.dispose();
          r.lse.dispose();
        }
      })();
      const e = await rejects(p, 'RANGE', 'targets');
      expect(e.message).toContain('targets[1] = 7');
      // The context stays usable.
      const ok = await ctx.linearLogprobs(h, w, new Int32Array([0, 4, 1]));
      expect(Array.from(await ok.lse.read()).every(Number.isFinite)).toBe(true);
      ok.logprobs.dispose();
      ok.lse.dispose();
    } finally {
      for (const x of [h, w, t]) x.dispose();
    }
  });
}

/** Central differences of the float64 objective against the cpu backend's and the reference's gradients. */
function finiteDifferences(ctx: Context) {
  it('finite differences of the float64 objective match gradHidden, gradWeight and gradBias', async () => {
    const spec = { N: 4, d: 6, V: 11, dtype: 'f32' as const, seed: 61, bias: true, ignored: [2] };
    const x = makeHead(spec);
    const T = 0.8;
    const g = gradVector(62, x.N);
    const gE = gradVector(63, x.N, 0.5);
    const objective = (): number => {
      const { X, Amax } = logits(x);
      const f = forwardRef(X, Amax, x.targets, x.N, x.V, T);
      let L = 0;
      for (let n = 0; n < x.N; n++) L += g[n] * f.logprobs[n] + gE[n] * f.entropy[n];
      return L;
    };
    const fd = (arr: Float64Array, i: number): number => {
      const keep = arr[i];
      const step = 1e-6 * Math.max(1, Math.abs(keep));
      arr[i] = keep + step;
      const up = objective();
      arr[i] = keep - step;
      const down = objective();
      arr[i] = keep;
      return (up - down) / (2 * step);
    };
    const { X, Amax } = logits(x);
    const fwd = forwardRef(X, Amax, x.targets, x.N, x.V, T);
    const ref = backwardRef(x, X, fwd, g, gE, T);
    const hidden = ctx.tensor(x.hidden as Float32Array, [x.N, x.d], 'f32');
    const weight = ctx.tensor(x.weight as Float32Array, [x.V, x.d], 'f32');
    const bias = ctx.tensor(x.bias as Float32Array, [x.V], 'f32');
    const got = await ctx.linearLogprobsBackward(hidden, weight, x.targets, Float32Array.from(fwd.lse), g, {
      temperature: T,
      bias,
      gradEntropy: gE,
      entropy: Float32Array.from(fwd.entropy),
    });
    const gh = await got.gradHidden.read();
    const gw = await got.gradWeight.read();
    const gb = await got.gradBias!.read();
    for (const t of [hidden, weight, bias, got.gradHidden, got.gradWeight, got.gradBias!]) t.dispose();
    // FD is of the exact f64 objective; the backward takes the forward's lse and entropy in f32
    // (relative error ≈ |lse|·2⁻²⁴ ≈ 1e-7 here) and rounds its result to f32: 2e-6 of the largest.
    const check = (name: string, fdv: number[], refv: ArrayLike<number>, gotv: ArrayLike<number>) => {
      const scale = Math.max(...fdv.map(Math.abs), 1e-3);
      for (let i = 0; i < fdv.length; i++) {
        expect(Math.abs(refv[i] - fdv[i]) / scale, `${name}[${i}] reference vs FD`).toBeLessThan(2e-6);
        expect(Math.abs(gotv[i] - fdv[i]) / scale, `${name}[${i}] ${ctx.backend} vs FD`).toBeLessThan(2e-6);
      }
    };
    check(
      'gradHidden',
      Array.from({ length: x.N * x.d }, (_, i) => fd(x.h, i)),
      ref.gradHidden,
      gh,
    );
    check(
      'gradWeight',
      Array.from({ length: x.V * x.d }, (_, i) => fd(x.w, i)),
      ref.gradWeight,
      gw,
    );
    check(
      'gradBias',
      Array.from({ length: x.V }, (_, i) => fd(x.b!, i)),
      ref.gradBias,
      gb,
    );
  });
}

// ---------------------------------------------------------------- THR's two halves

interface Shard {
  c: ThrCase;
  /** Global token index of each local token. */
  tokens: number[];
}

/**
 * Splits a case's batch into `parts` data-parallel shards: response i of every group goes to shard
 * i mod parts (so a group's correct responses are spread out); every shard keeps every group (maybe
 * empty), the global V*_g (so tokenColumn indexes the same columns) and the probabilities of its
 * tokens.
 */
function shardThr(c: ThrCase, parts: number): Shard[] {
  const { responseOffsets: ro, groupOffsets: go } = c.layout;
  const d = c.dim;
  const out: Shard[] = [];
  for (let s = 0; s < parts; s++) {
    const rOff = [0];
    const gOff = [0];
    const toks: number[] = [];
    const correct: number[] = [];
    const probs: number[] = [];
    const probsOffsets = [0];
    for (let g = 0; g < c.numGroups; g++) {
      const K = c.vocabOffsets[g + 1] - c.vocabOffsets[g];
      const t0 = ro[go[g]];
      for (let r = go[g]; r < go[g + 1]; r++) {
        if ((r - go[g]) % parts !== s) continue;
        for (let t = ro[r]; t < ro[r + 1]; t++) {
          toks.push(t);
          const base = c.probsOffsets[g] + (t - t0) * K;
          for (let k = 0; k < K; k++) probs.push(c.probs[base + k]);
        }
        rOff.push(toks.length);
        correct.push(c.correct[r]);
      }
      gOff.push(correct.length);
      probsOffsets.push(probs.length);
    }
    const hidden = c.dtype === 'f32' ? new Float32Array(toks.length * d) : new Uint16Array(toks.length * d);
    toks.forEach((t, i) => {
      hidden.set(c.hidden.subarray(t * d, (t + 1) * d), i * d);
    });
    out.push({
      tokens: toks,
      c: {
        ...c,
        layout: { responseOffsets: Int32Array.from(rOff), groupOffsets: Int32Array.from(gOff) },
        numTokens: toks.length,
        tokens: Int32Array.from(toks.map((t) => c.tokens[t])),
        correct: Uint8Array.from(correct),
        hidden,
        hidden64: new Float64Array(0),
        probs: Float32Array.from(probs),
        probsOffsets: Float64Array.from(probsOffsets),
        tokenColumn: Int32Array.from(toks.map((t) => c.tokenColumn[t])),
      },
    });
  }
  return out;
}

function vocabOf(c: ThrCase) {
  return { offsets: c.vocabOffsets, columns: c.columns, tokenColumn: c.tokenColumn };
}

function thrHalves(ctx: Context) {
  const groups = [...randomGroups(71, 5, 6, 40), uniformGroup(4, 30, 2), uniformGroup(3, 8, 3)];
  const cases = [
    makeThrCase({ seed: 72, groups, dim: 45, vocabSize: 300, dtype: 'f32' }),
    makeThrCase({ seed: 73, groups, dim: 64, vocabSize: 2000, dtype: 'bf16' }),
  ];
  for (const c of cases) {
    it(`thrAggregate then thrScore = tokenHiddenReward (${c.dtype}, d = ${c.dim})`, async () => {
      const hidden = ctx.tensor(c.hidden as Float32Array, [c.numTokens, c.dim], c.dtype as 'f32');
      const base = { hidden, probs: c.probs, vocab: vocabOf(c), layout: c.layout, correct: c.correct };
      try {
        const whole = await ctx.tokenHiddenReward(base);
        const agg = await ctx.thrAggregate(base);
        expect(agg.shape).toEqual([c.vocabOffsets[c.numGroups], c.dim]);
        const halves = await ctx.thrScore({ ...base, aggregate: agg });
        const w = {
          thr: (await whole.thr.read()) as Float32Array,
          tau: (await whole.tau.read()) as Float32Array,
        };
        const h = {
          thr: (await halves.thr.read()) as Float32Array,
          tau: (await halves.tau.read()) as Float32Array,
        };
        for (const t of [whole.thr, whole.tau, agg, halves.thr, halves.tau]) t.dispose();
        const ref = bruteThr(c, 'length');
        const e = thrGroupErrors(c, h.thr, h.tau, ref, 1e-5);
        expect(e.bad, `worst ${e.worst}`).toEqual([]);
        if (ctx.backend !== 'js') {
          // The kernels keep M in f32 either way: the same bits (js sums M in f64 in one call and
          // rounds it in two).
          expect(f32Bits(h.thr)).toEqual(f32Bits(w.thr));
          expect(f32Bits(h.tau)).toEqual(f32Bits(w.tau));
        }
      } finally {
        hidden.dispose();
      }
    });

    for (const parts of [2, 3]) {
      it(`THR over ${parts} data-parallel shards, aggregates summed between the halves (${c.dtype})`, async () => {
        const shards = shardThr(c, parts);
        // The whole groups' degenerate flags (each shard alone would see other ones).
        const flags = Uint8Array.from({ length: c.numGroups }, (_, g) =>
          degenerate(c.layout, c.correct, g) ? 1 : 0,
        );
        const tensors: Tensor[] = [];
        try {
          const aggs: Float32Array[] = [];
          for (const s of shards) {
            const hidden = ctx.tensor(s.c.hidden as Float32Array, [s.c.numTokens, c.dim], c.dtype as 'f32');
            tensors.push(hidden);
            const a = await ctx.thrAggregate({
              hidden,
              probs: s.c.probs,
              vocab: vocabOf(s.c),
              layout: s.c.layout,
              correct: s.c.correct,
              degenerate: flags,
            });
            aggs.push((await a.read()) as Float32Array);
            a.dispose();
          }
          // The all-reduce: a sum in shard order, in f32 (as a collective would).
          const sum = new Float32Array(aggs[0].length);
          for (const a of aggs) for (let i = 0; i < sum.length; i++) sum[i] = Math.fround(sum[i] + a[i]);
          const aggregate = ctx.tensor(sum, [c.vocabOffsets[c.numGroups], c.dim], 'f32');
          tensors.push(aggregate);
          const thr = new Float32Array(c.numTokens);
          const tau = new Float32Array(c.numGroups).fill(Number.POSITIVE_INFINITY);
          for (let i = 0; i < shards.length; i++) {
            const s = shards[i];
            const r = await ctx.thrScore({
              hidden: tensors[i] as Tensor<'f32'>,
              probs: s.c.probs,
              vocab: vocabOf(s.c),
              layout: s.c.layout,
              correct: s.c.correct,
              aggregate,
              degenerate: flags,
            });
            const lt = (await r.thr.read()) as Float32Array;
            const lz = (await r.tau.read()) as Float32Array;
            r.thr.dispose();
            r.tau.dispose();
            s.tokens.forEach((t, j) => {
              thr[t] = lt[j];
            });
            // tau: an all-reduce MIN (beta = 1 > 0); NaN (degenerate) stays NaN.
            for (let g = 0; g < c.numGroups; g++)
              tau[g] = Number.isNaN(lz[g]) || Number.isNaN(tau[g]) ? Number.NaN : Math.min(tau[g], lz[g]);
          }
          const e = thrGroupErrors(c, thr, tau, bruteThr(c, 'length'), 1e-5);
          expect(e.bad, `worst ${e.worst}`).toEqual([]);
        } finally {
          for (const t of tensors) t.dispose();
        }
      });
    }
  }

  it('thrScore: an aggregate of the wrong shape is a SHAPE error', async () => {
    const c = cases[0];
    const hidden = ctx.tensor(c.hidden as Float32Array, [c.numTokens, c.dim], 'f32');
    const bad = ctx.tensor(new Float32Array(10), [5, 2], 'f32');
    try {
      await rejects(
        ctx.thrScore({
          hidden,
          probs: c.probs,
          vocab: vocabOf(c),
          layout: c.layout,
          correct: c.correct,
          aggregate: bad,
        }),
        'SHAPE',
        'aggregate',
      );
      await rejects(
        ctx.thrAggregate({
          hidden,
          probs: c.probs,
          vocab: vocabOf(c),
          layout: c.layout,
          correct: c.correct,
          degenerate: new Uint8Array(2),
        }),
        'SHAPE',
        'degenerate',
      );
    } finally {
      hidden.dispose();
      bad.dispose();
    }
  });
}

// ---------------------------------------------------------------- per backend

/** The outputs headOutputs gives, in its order. */
export const HEAD_OUTPUT_NAMES = [
  'logprobs',
  'lse',
  'entropy',
  'sumSquares',
  'gradHidden',
  'gradWeight',
  'gradBias',
];
/**
 * A bf16/f16 head with bias on a backend, for the tile tests that compare paths bit for bit: words()
 * runs the forward (entropy, Σp²) and the backward (gradVector(seed) and, for the entropy,
 * gradVector(seed + 1)) with whatever tuning is set, and gives each output's data, to compare with
 * expectSameBits (HEAD_OUTPUT_NAMES; with backward false the forward's four only).
 */
export function headOutputs(c: Context, x: HeadInputs, seed: number) {
  const dtype = x.dtype as 'bf16' | 'f16';
  const hidden = c.tensor(x.hidden as Uint16Array, [x.N, x.d], dtype);
  const weight = c.tensor(x.weight as Uint16Array, [x.V, x.d], dtype);
  const bias = c.tensor(x.bias as Uint16Array, [x.V], dtype);
  return {
    async words(backward = true): Promise<HostArray[]> {
      const r = await c.linearLogprobs(hidden, weight, x.targets, { bias, entropy: true, sumSquares: true });
      if (!backward) {
        const out = [r.logprobs, r.lse, r.entropy!, r.sumSquares!];
        const words = await Promise.all(out.map(async (t) => (await t.read()) as HostArray));
        for (const t of out) t.dispose();
        return words;
      }
      const grads = await c.linearLogprobsBackward(hidden, weight, x.targets, r.lse, gradVector(seed, x.N), {
        bias,
        gradEntropy: gradVector(seed + 1, x.N),
        entropy: r.entropy,
      });
      const out = [
        r.logprobs,
        r.lse,
        r.entropy!,
        r.sumSquares!,
        grads.gradHidden,
        grads.gradWeight,
        grads.gradBias!,
      ];
      const words = await Promise.all(out.map(async (t) => (await t.read()) as HostArray));
      for (const t of out) t.dispose();
      return words;
    },
    dispose(): void {
      for (const t of [hidden, weight, bias]) t.dispose();
    },
  };
}

/**
 * A cuda or webgpu backward's chunking hook (the G chunk's rows and vocabulary columns, 0 for the plan's):
 * gradWeight, gradHidden and gradBias of a bf16 head (N 300, d 40, V 300, bias) computed whole and in
 * chunks of 128 × 128, 256 × 128 and 128 × 256 must have the same bits (their sums run on across chunks).
 */
export async function expectChunkInvariantGradients(
  c: Context,
  seed: number,
  setChunks: (rows: number, vocab: number) => void,
): Promise<void> {
  const x = makeHead({ N: 300, d: 40, V: 300, dtype: 'bf16', seed, bias: true });
  const hidden = c.tensor(x.hidden as Uint16Array, [x.N, x.d], 'bf16');
  const weight = c.tensor(x.weight as Uint16Array, [x.V, x.d], 'bf16');
  const bias = c.tensor(x.bias as Uint16Array, [x.V], 'bf16');
  const g = gradVector(seed + 1, x.N);
  const lse = (await c.linearLogprobs(hidden, weight, x.targets, { bias })).lse;
  const run = async (rows: number, vocab: number) => {
    setChunks(rows, vocab);
    try {
      const r = await c.linearLogprobsBackward(hidden, weight, x.targets, lse, g, { bias });
      const out = [r.gradWeight, r.gradHidden, r.gradBias!];
      const words = await Promise.all(out.map(async (t) => (await t.read()) as HostArray));
      for (const t of out) t.dispose();
      return words;
    } finally {
      setChunks(0, 0);
    }
  };
  try {
    const whole = await run(0, 0);
    for (const [rows, vocab] of [
      [128, 128],
      [256, 128],
      [128, 256],
    ]) {
      const chunked = await run(rows, vocab);
      for (const [i, name] of ['gradWeight', 'gradHidden', 'gradBias'].entries())
        expectSameBits(chunked[i], whole[i], `${name}, chunks ${rows} × ${vocab}`);
    }
  } finally {
    for (const t of [hidden, weight, bias, lse]) t.dispose();
  }
}

export function lmheadChecks(backends: readonly OpenBackend[]): void {
  for (const b of backends) {
    describe.skipIf(b.ctx === undefined)(`lmhead checks on ${b.name}`, () => {
      const ctx = b.ctx!;
      badInput(ctx);
      thrHalves(ctx);
      if (b.name === 'js') {
        finiteDifferences(ctx);
        it("types: gradDtype 'input' gives tensors of hidden's dtype, f32 without it (tsc checks the types)", async () => {
          const h = ctx.tensor(new Uint16Array(8), [2, 4], 'bf16');
          const w = ctx.tensor(new Uint16Array(12), [3, 4], 'bf16');
          try {
            const args = [new Int32Array([0, 2]), new Float32Array([1, 1]), new Float32Array(2)] as const;
            const f = await ctx.linearLogprobsBackward(h, w, ...args);
            const n = await ctx.linearLogprobsBackward(h, w, ...args, { gradDtype: 'input' });
            expectTypeOf(f.gradWeight).toEqualTypeOf<Tensor<'f32'>>();
            expectTypeOf(n.gradHidden).toEqualTypeOf<Tensor<'bf16'>>();
            expect([f.gradHidden.dtype, f.gradWeight.dtype, n.gradHidden.dtype, n.gradWeight.dtype]).toEqual([
              'f32',
              'f32',
              'bf16',
              'bf16',
            ]);
            for (const t of [f.gradHidden, f.gradWeight, n.gradHidden, n.gradWeight]) t.dispose();
          } finally {
            h.dispose();
            w.dispose();
          }
        });
        it('memory: forward + backward scratch at N = 16384, V = 151936, d = 4096 ≤ 5% of the bf16 logits', () => {
          const s = jsLmheadScratchBytes(BIG.N, BIG.V, BIG.d);
          expect(s.forward + s.backward).toBeLessThanOrEqual(0.05 * LOGITS_BF16_BYTES);
        });
      }
    });
  }
}
