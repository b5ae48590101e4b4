/**
 * THR family on the cpu reference beyond the case tables: the numerical cases (restrictedVocab against
 * sort/unique, tokenHiddenReward against the pairwise double sum of docs/THR.md item 3 on every shape and
 * dtype, thrReweight on every mode, NaN, degenerate groups, chaining) run on every backend from
 * test/cases/thr.ts (test/thr.cases.test.ts here, test/cuda/ops-cases.test.ts on cuda). Here: what the
 * cpu reference promises beyond the tables' tolerances (thrReweight bit for bit with the formula, one
 * rounding from f64), docs/THR.md's identities, determinism, untouched inputs, and the errors.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { degenerateGroups, reweightPlan, thrPlan } from '../src/api/thr-plan.js';
import { type Context, createContext } from '../src/context.js';
import { POISON_I32, setOutputPoison } from '../src/debug.js';
import type { FloatDType } from '../src/dtypes.js';
import { resolveLayout } from '../src/layout.js';
import type { Tensor } from '../src/tensor.js';
import { refReweight } from './cases/thr.js';
import {
  DEGENERATE_GROUPS,
  makeReweightCase,
  makeThrCase,
  REWEIGHT_VARIANTS,
  type ResponseSpec,
  randomGroups,
  runThr,
  type ThrCase,
  uniformGroup,
} from './fixtures/thr.js';
import { expectClose, expectNoPoison, POISON_F32 } from './util/compare.js';
import { randomNormal } from './util/rng.js';

let ctx: Context;
beforeAll(async () => {
  ctx = await createContext({ backend: 'js' });
});
afterEach(() => setOutputPoison(undefined));

// Kernel output rounded once to f32 from f64: error ≤ 2^-24 of the largest |value| plus f64 noise.
const RTOL = 1.2e-7;

// ------------------------------------------------------------------------------- helpers
/** Bit-exact f32 comparison (NaN equals NaN; +0 and −0 differ). */
function expectF32Exact(actual: Float32Array, expected: ArrayLike<number>, what: string): void {
  expect(actual.length, `${what}: length`).toBe(expected.length);
  const bad: string[] = [];
  for (let i = 0; i < expected.length && bad.length < 5; i++) {
    if (!Object.is(actual[i], Math.fround(expected[i])))
      bad.push(`[${i}] got ${actual[i]}, expected ${expected[i]}`);
  }
  expect(bad, `${what}: mismatches`).toEqual([]);
}

// ------------------------------------------------------------------------------- running the ops
function hiddenTensor(c: ThrCase): Tensor<FloatDType> {
  return ctx.tensor(c.hidden as Float32Array, [c.numTokens, c.dim], c.dtype as 'f32');
}

// ------------------------------------------------------------------------------- tokenHiddenReward
describe('tokenHiddenReward: determinism', () => {
  it('is deterministic (same bits twice)', async () => {
    const c = makeThrCase({ seed: 5, groups: randomGroups(5, 3, 6, 10), dim: 9, vocabSize: 30 });
    const a = await runThr(ctx, c);
    const b = await runThr(ctx, c);
    expect(Array.from(b.thr)).toEqual(Array.from(a.thr));
    expect(Array.from(b.tau)).toEqual(Array.from(a.tau));
  });
});

describe('tokenHiddenReward identities (docs/THR.md, "How to check it")', () => {
  const incorrectTail: ResponseSpec[] = [
    { length: 7, correct: false },
    { length: 0, correct: false },
    { length: 3, correct: false },
  ];
  it("weighting 'none' with correct lengths L = 4 gives exactly 4× the 'length' THR", async () => {
    const groups = [
      [...uniformGroup(3, 4, 3), ...incorrectTail],
      [...uniformGroup(2, 4, 2), { length: 5, correct: false }],
    ];
    const c = makeThrCase({ seed: 31, groups, dim: 11, vocabSize: 25 });
    const len = await runThr(ctx, c, { weighting: 'length' });
    const none = await runThr(ctx, c, { weighting: 'none' });
    expectF32Exact(
      none.thr,
      Array.from(len.thr, (x) => 4 * x),
      'thr',
    );
    expectF32Exact(
      none.tau,
      Array.from(len.tau, (x) => 4 * x),
      'tau',
    );
  });

  it("weighting 'none' with correct lengths L = 5 gives 5× the 'length' THR (to rounding)", async () => {
    const groups = [[...uniformGroup(2, 5, 2), ...incorrectTail]];
    const c = makeThrCase({ seed: 32, groups, dim: 6, vocabSize: 20, dtype: 'bf16' });
    const len = await runThr(ctx, c, { weighting: 'length' });
    const none = await runThr(ctx, c, { weighting: 'none' });
    expectClose(
      none.thr,
      Array.from(len.thr, (x) => 5 * x),
      { rtol: 3 * RTOL, what: 'thr' },
    );
  });

  it('permuting responses within a group permutes THR and keeps tau', async () => {
    const groups = randomGroups(33, 3, 6, 9);
    const c = makeThrCase({ seed: 33, groups, dim: 10, vocabSize: 30, dtype: 'f16' });
    const { responseOffsets: ro, groupOffsets: go } = c.layout;
    // Reverse each group's responses, then rotate by one.
    const order: number[] = [];
    for (let g = 0; g < c.numGroups; g++) {
      const rs = [];
      for (let r = go[g + 1] - 1; r >= go[g]; r--) rs.push(r);
      rs.push(rs.shift()!);
      order.push(...rs);
    }
    const R = order.length;
    const d = c.dim;
    const responseOffsets = new Int32Array(R + 1);
    const newIndex = new Int32Array(c.numTokens);
    for (let i = 0; i < R; i++) {
      const r = order[i];
      responseOffsets[i + 1] = responseOffsets[i] + ro[r + 1] - ro[r];
      for (let t = ro[r]; t < ro[r + 1]; t++) newIndex[t] = responseOffsets[i] + t - ro[r];
    }
    const tokens = new Int32Array(c.numTokens);
    const hidden = new Uint16Array(c.hidden.length);
    const probs = new Float32Array(c.probs.length);
    for (let g = 0; g < c.numGroups; g++) {
      const t0 = ro[go[g]];
      const K = c.vocabOffsets[g + 1] - c.vocabOffsets[g];
      for (let t = t0; t < ro[go[g + 1]]; t++) {
        const n = newIndex[t];
        tokens[n] = c.tokens[t];
        hidden.set(c.hidden.subarray(t * d, (t + 1) * d), n * d);
        const from = c.probsOffsets[g] + (t - t0) * K;
        probs.set(c.probs.subarray(from, from + K), c.probsOffsets[g] + (n - t0) * K);
      }
    }
    const layout = { responseOffsets, groupOffsets: c.layout.groupOffsets };
    const correct = Uint8Array.from(order, (r) => c.correct[r]);
    const base = await runThr(ctx, c);
    const vocab = await ctx.restrictedVocab(tokens, layout);
    const res = await ctx.tokenHiddenReward({
      hidden: ctx.tensor(hidden, [c.numTokens, d], 'f16'),
      probs,
      vocab,
      layout,
      correct,
    });
    const thr = await res.thr.read();
    expectClose(
      Array.from(c.tokens, (_, t) => thr[newIndex[t]]),
      base.thr,
      { rtol: RTOL, what: 'permuted thr' },
    );
    expectClose(await res.tau.read(), base.tau, { rtol: RTOL, what: 'permuted tau' });
  });

  it('orthogonal hidden states give the self terms alone: w_t·|g_t|²·|h_t|² (correct), 0 (incorrect)', async () => {
    const groups = [
      [...uniformGroup(2, 5, 1), { length: 3, correct: false }],
      [{ length: 4, correct: false }, ...uniformGroup(3, 6, 2)],
    ];
    const d = 48; // ≥ Ttotal = 13 + 22 = 35: h_t = (1 + t mod 3)·e_t
    const c = makeThrCase({
      seed: 34,
      groups,
      dim: d,
      vocabSize: 30,
      hiddenRow: (t, out) => {
        out[t] = 1 + (t % 3);
      },
    });
    const got = await runThr(ctx, c);
    const { responseOffsets: ro, groupOffsets: go } = c.layout;
    const expected = new Float64Array(c.numTokens);
    for (let g = 0; g < c.numGroups; g++) {
      const t0 = ro[go[g]];
      const K = c.vocabOffsets[g + 1] - c.vocabOffsets[g];
      for (let r = go[g]; r < go[g + 1]; r++) {
        if (!c.correct[r]) continue;
        for (let t = ro[r]; t < ro[r + 1]; t++) {
          let gg = 0;
          for (let v = 0; v < K; v++) {
            const x = (v === c.tokenColumn[t] ? 1 : 0) - c.probs[c.probsOffsets[g] + (t - t0) * K + v];
            gg += x * x;
          }
          expected[t] = (gg * (1 + (t % 3)) ** 2) / (ro[r + 1] - ro[r]);
        }
      }
    }
    expectClose(got.thr, expected, { rtol: RTOL, what: 'thr' });
    for (let t = 0; t < c.numTokens; t++) if (expected[t] === 0) expect(got.thr[t] === 0).toBe(true);
  });
});

// ------------------------------------------------------------------------------- thrReweight
describe('thrReweight on cpu: bit for bit with the formula (one rounding from f64)', () => {
  // Synthetic THR and tau (the op takes any), so ties, NaN and odd taus are all reachable.
  const { c, A, thr, tau } = makeReweightCase();
  const { responseOffsets: ro, groupOffsets: go } = c.layout;
  const first = (g: number) => ro[go[g]];

  for (const v of REWEIGHT_VARIANTS) {
    it(`${v.mode} p=${v.p} mask=${v.mask} eta=${v.eta}: matches the formula bit for bit`, async () => {
      setOutputPoison(POISON_F32);
      const out = await ctx.thrReweight({
        tokenAdvantages: A,
        thr,
        tau,
        layout: c.layout,
        correct: c.correct,
        mode: v.mode,
        ...(v.p !== 0 ? { p: v.p } : {}),
        ...(v.mode !== 'nthr' ? { mask: v.mask } : {}),
        ...(v.mode === 'nthr' ? { eta: v.eta } : {}),
      });
      const got = await out.read();
      expectNoPoison(got);
      expectF32Exact(got, refReweight(A, thr, tau, c.layout, c.correct, v), 'reweighted');
    });
  }

  it('defaults are mode thr, p 0, mask true; degenerate groups keep A whatever tau says', async () => {
    const got = await (
      await ctx.thrReweight({ tokenAdvantages: A, thr, tau, layout: c.layout, correct: c.correct })
    ).read();
    expectF32Exact(got, refReweight(A, thr, tau, c.layout, c.correct, REWEIGHT_VARIANTS[0]), 'defaults');
    for (let t = first(4); t < ro[go[5]]; t++) expect(got[t]).toBe(A[t]);
  });
});

// ------------------------------------------------------------------------------- poison, inputs
describe('outputs fully written, inputs untouched', () => {
  it('no poison remains in any output; inputs are unmodified', async () => {
    const groups = [...randomGroups(51, 3, 5, 9), ...DEGENERATE_GROUPS];
    const c = makeThrCase({ seed: 51, groups, dim: 13, vocabSize: 20, dtype: 'bf16' });
    const snapshot = structuredClone({
      tokens: c.tokens,
      hidden: c.hidden,
      probs: c.probs,
      correct: c.correct,
      layout: c.layout,
    });
    // Integer outputs are filled with POISON_I32 (src/debug.ts) while a poison is set.
    setOutputPoison(POISON_F32);
    const hidden = hiddenTensor(c);
    const vocab = await ctx.restrictedVocab(c.tokens, c.layout);
    for (const x of [vocab.offsets, vocab.columns, vocab.tokenColumn]) {
      expect((await x.read()).includes(POISON_I32)).toBe(false);
    }
    const res = await ctx.tokenHiddenReward({
      hidden,
      probs: c.probs,
      vocab,
      layout: c.layout,
      correct: c.correct,
    });
    const thr = await res.thr.read();
    expectNoPoison(thr, 'thr');
    expectNoPoison(await res.tau.read(), 'tau');
    const A = Float32Array.from(randomNormal(52, c.numTokens));
    const Acopy = A.slice();
    for (const mode of ['thr', 'nthr'] as const) {
      const out = await ctx.thrReweight({
        tokenAdvantages: A,
        thr: res.thr,
        tau: res.tau,
        layout: c.layout,
        correct: c.correct,
        mode,
      });
      expectNoPoison(await out.read(), `reweighted (${mode})`);
    }
    expect({
      tokens: c.tokens,
      hidden: c.hidden,
      probs: c.probs,
      correct: c.correct,
      layout: c.layout,
    }).toEqual(snapshot);
    expect(await hidden.read()).toEqual(snapshot.hidden);
    expect(await res.thr.read()).toEqual(thr);
    expect(A).toEqual(Acopy);
  });
});

// ------------------------------------------------------------------------------- host plan
describe("THR's host plan (src/api/thr-plan.ts), the one every backend consumes", () => {
  // Groups: [correct 2 tokens, incorrect 1] live; [correct 0 tokens, incorrect 2] degenerate (no
  // correct token); [correct 1, correct 3, incorrect 0 tokens] live; [incorrect 2] degenerate.
  const lengths = [2, 1, 0, 2, 1, 3, 0, 2];
  const correct = Uint8Array.from([1, 0, 1, 0, 1, 1, 0, 0]);
  const responseOffsets = Int32Array.from([
    0,
    ...lengths.map((_, i) => lengths.slice(0, i + 1).reduce((a, b) => a + b)),
  ]);
  const layout = resolveLayout({ responseOffsets, groupOffsets: Int32Array.from([0, 2, 4, 7, 8]) });

  it("degenerate groups, then each live group's correct tokens in packed order with 1/|y_r| or 1", () => {
    const degenerate = degenerateGroups(layout, correct);
    expect(Array.from(degenerate)).toEqual([0, 1, 0, 1]);
    const p = thrPlan(layout, correct, degenerate, 'length');
    expect(Array.from(p.correctStart)).toEqual([0, 2, 2, 6, 6]);
    expect(Array.from(p.correctTokens)).toEqual([0, 1, 5, 6, 7, 8]);
    expect(Array.from(p.correctWeights)).toEqual([1 / 2, 1 / 2, 1, 1 / 3, 1 / 3, 1 / 3]);
    expect(Array.from(thrPlan(layout, correct, degenerate, 'none').correctWeights)).toEqual([
      1, 1, 1, 1, 1, 1,
    ]);
  });

  it("flags a caller passes (a shard's) decide the live groups", () => {
    const p = thrPlan(layout, correct, Uint8Array.from([1, 1, 0, 1]), 'length');
    expect(Array.from(p.correctStart)).toEqual([0, 0, 0, 4, 4]);
    expect(Array.from(p.correctTokens)).toEqual([5, 6, 7, 8]);
  });

  it("reweighting: eta_g = 2·|0.5 − rho_g| ('auto') or the fixed eta", () => {
    expect(Array.from(reweightPlan(layout, correct, 'auto').eta)).toEqual([
      0,
      0,
      2 * Math.abs(0.5 - 2 / 3),
      1,
    ]);
    expect(Array.from(reweightPlan(layout, correct, 0.25).eta)).toEqual([0.25, 0.25, 0.25, 0.25]);
  });
});

// ------------------------------------------------------------------------------- errors
describe('validation errors name the argument', () => {
  const c = makeThrCase({ seed: 61, groups: randomGroups(61, 2, 4, 5), dim: 3, vocabSize: 10 });
  const T = c.numTokens;
  const R = c.correct.length;
  const G = c.numGroups;
  const good = async () => ({
    hidden: hiddenTensor(c),
    probs: c.probs,
    vocab: await ctx.restrictedVocab(c.tokens, c.layout),
    layout: c.layout,
    correct: c.correct,
  });
  const rw = () => ({
    tokenAdvantages: new Float32Array(T),
    thr: new Float32Array(T),
    tau: new Float32Array(G),
    layout: c.layout,
    correct: c.correct,
  });
  const badLayout = { responseOffsets: c.layout.responseOffsets, groupOffsets: Int32Array.from([0, R - 1]) };
  const vocabWith = async (patch: object) => ({
    ...(await good()),
    vocab: { ...(await good()).vocab, ...patch },
  });
  const disposed = () => {
    const h = hiddenTensor(c);
    h.dispose();
    return h;
  };
  const cases: [string, () => Promise<unknown>, string, string][] = [
    // restrictedVocab
    [
      'tokens as Float32Array',
      async () => ctx.restrictedVocab(new Float32Array(T) as never, c.layout),
      'DTYPE',
      'tokens',
    ],
    ['tokens too short', async () => ctx.restrictedVocab(c.tokens.subarray(1), c.layout), 'SHAPE', 'tokens'],
    [
      'negative token',
      async () =>
        ctx.restrictedVocab(
          Int32Array.from(c.tokens, (x, i) => (i === 2 ? -1 : x)),
          c.layout,
        ),
      'RANGE',
      'tokens',
    ],
    [
      'groupOffsets not ending at R',
      async () => ctx.restrictedVocab(c.tokens, badLayout),
      'LAYOUT',
      'layout.groupOffsets',
    ],
    [
      'decreasing responseOffsets',
      async () =>
        ctx.restrictedVocab(c.tokens, {
          ...c.layout,
          responseOffsets: Int32Array.from([0, 3, 2, ...c.layout.responseOffsets.subarray(3)]),
        }),
      'LAYOUT',
      'layout.responseOffsets',
    ],
    ['layout missing', async () => ctx.restrictedVocab(c.tokens, undefined as never), 'LAYOUT', 'layout'],
    // tokenHiddenReward
    ['options missing', async () => ctx.tokenHiddenReward(undefined as never), 'DTYPE', 'options'],
    [
      'hidden as a plain array',
      async () => ctx.tokenHiddenReward({ ...(await good()), hidden: c.hidden as never }),
      'SHAPE',
      'hidden',
    ],
    [
      'hidden of dtype i32',
      async () =>
        ctx.tokenHiddenReward({
          ...(await good()),
          hidden: ctx.tensor(new Int32Array(T * 3), [T, 3]) as never,
        }),
      'DTYPE',
      'hidden',
    ],
    [
      'hidden with a row too few',
      async () =>
        ctx.tokenHiddenReward({
          ...(await good()),
          hidden: ctx.tensor(new Float32Array((T - 1) * 3), [T - 1, 3]),
        }),
      'SHAPE',
      'hidden',
    ],
    [
      'hidden disposed',
      async () => ctx.tokenHiddenReward({ ...(await good()), hidden: disposed() }),
      'SHAPE',
      'hidden',
    ],
    [
      'probs one element short',
      async () => ctx.tokenHiddenReward({ ...(await good()), probs: c.probs.subarray(1) }),
      'SHAPE',
      'probs',
    ],
    [
      'probs as Float64Array',
      async () => ctx.tokenHiddenReward({ ...(await good()), probs: new Float64Array(c.probs) as never }),
      'DTYPE',
      'probs',
    ],
    [
      'vocab missing',
      async () => ctx.tokenHiddenReward({ ...(await good()), vocab: undefined as never }),
      'DTYPE',
      'vocab',
    ],
    [
      'vocab.offsets of the wrong group count',
      async () => ctx.tokenHiddenReward(await vocabWith({ offsets: Int32Array.from([0, c.columns.length]) })),
      'LAYOUT',
      'vocab.offsets',
    ],
    [
      'vocab.offsets not ending at |columns|',
      async () =>
        ctx.tokenHiddenReward(
          await vocabWith({ offsets: Int32Array.from(c.vocabOffsets, (x, i) => (i === G ? x - 1 : x)) }),
        ),
      'LAYOUT',
      'vocab.offsets',
    ],
    [
      'vocab.tokenColumn out of its group',
      async () =>
        ctx.tokenHiddenReward(
          await vocabWith({ tokenColumn: Int32Array.from(c.tokenColumn, (x, i) => (i === 0 ? 10_000 : x)) }),
        ),
      'RANGE',
      'vocab.tokenColumn',
    ],
    [
      'vocab.tokenColumn too short',
      async () => ctx.tokenHiddenReward(await vocabWith({ tokenColumn: c.tokenColumn.subarray(1) })),
      'SHAPE',
      'vocab.tokenColumn',
    ],
    [
      'correct flag 2',
      async () =>
        ctx.tokenHiddenReward({
          ...(await good()),
          correct: Uint8Array.from(c.correct, (x, i) => (i === 1 ? 2 : x)),
        }),
      'RANGE',
      'correct',
    ],
    [
      'correct of length R+1',
      async () => ctx.tokenHiddenReward({ ...(await good()), correct: new Uint8Array(R + 1) }),
      'SHAPE',
      'correct',
    ],
    [
      'weighting unknown',
      async () => ctx.tokenHiddenReward({ ...(await good()), weighting: 'sqrt' as never }),
      'RANGE',
      'weighting',
    ],
    ['beta NaN', async () => ctx.tokenHiddenReward({ ...(await good()), beta: Number.NaN }), 'RANGE', 'beta'],
    [
      'layout with bad groupOffsets',
      async () => ctx.tokenHiddenReward({ ...(await good()), layout: badLayout }),
      'LAYOUT',
      'layout.groupOffsets',
    ],
    // thrReweight
    ['options not an object', async () => ctx.thrReweight(3 as never), 'DTYPE', 'options'],
    ['p above 1', async () => ctx.thrReweight({ ...rw(), p: 1.5 }), 'RANGE', 'p'],
    ['p Infinity', async () => ctx.thrReweight({ ...rw(), p: Number.POSITIVE_INFINITY }), 'RANGE', 'p'],
    ['p with thr-only', async () => ctx.thrReweight({ ...rw(), p: 0.1, mode: 'thr-only' }), 'RANGE', 'p'],
    ['p with nthr', async () => ctx.thrReweight({ ...rw(), p: -0.1, mode: 'nthr' }), 'RANGE', 'p'],
    ['mode unknown', async () => ctx.thrReweight({ ...rw(), mode: 'gtpo' as never }), 'RANGE', 'mode'],
    ['mask not boolean', async () => ctx.thrReweight({ ...rw(), mask: 1 as never }), 'DTYPE', 'mask'],
    [
      'mask false with nthr',
      async () => ctx.thrReweight({ ...rw(), mask: false, mode: 'nthr' }),
      'RANGE',
      'mask',
    ],
    ['eta above 1', async () => ctx.thrReweight({ ...rw(), eta: 1.01, mode: 'nthr' }), 'RANGE', 'eta'],
    ['eta negative', async () => ctx.thrReweight({ ...rw(), eta: -0.5, mode: 'nthr' }), 'RANGE', 'eta'],
    [
      'eta unknown string',
      async () => ctx.thrReweight({ ...rw(), eta: 'fixed' as never, mode: 'nthr' }),
      'RANGE',
      'eta',
    ],
    ['eta with mode thr', async () => ctx.thrReweight({ ...rw(), eta: 0.5 }), 'RANGE', 'eta'],
    [
      'tokenAdvantages too long',
      async () => ctx.thrReweight({ ...rw(), tokenAdvantages: new Float32Array(T + 1) }),
      'SHAPE',
      'tokenAdvantages',
    ],
    [
      'thr as Int32Array',
      async () => ctx.thrReweight({ ...rw(), thr: new Int32Array(T) as never }),
      'DTYPE',
      'thr',
    ],
    [
      'tau one per response',
      async () => ctx.thrReweight({ ...rw(), tau: new Float32Array(R) }),
      'SHAPE',
      'tau',
    ],
    [
      'correct flag 255',
      async () => ctx.thrReweight({ ...rw(), correct: Uint8Array.from(c.correct, () => 255) }),
      'RANGE',
      'correct',
    ],
    [
      'layout offsets not Int32Array',
      async () => ctx.thrReweight({ ...rw(), layout: { ...c.layout, groupOffsets: [0, 2, R] as never } }),
      'DTYPE',
      'layout.groupOffsets',
    ],
  ];
  for (const [name, run, code, argument] of cases) {
    it(`${code} ${argument}: ${name}`, async () => {
      await expect(run()).rejects.toMatchObject({ name: 'GrpoKernelsError', code, argument });
    });
  }

  it('every code the THR ops raise is exercised', () => {
    expect(new Set(cases.map((x) => x[2]))).toEqual(new Set(['SHAPE', 'DTYPE', 'RANGE', 'LAYOUT']));
  });
});
