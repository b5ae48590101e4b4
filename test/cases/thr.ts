/**
 * The case tables of the THR family (restrictedVocab, tokenHiddenReward, thrReweight), each case with
 * its float64 reference written here or in test/fixtures/thr.ts: V* by sort/unique, THR as docs/THR.md
 * item 3's pairwise double sum (bruteThr; for the long groups the same sum regrouped as the matrix
 * form M_g = Σ_u w_u g_u h_uᵀ, s_t = g_tᵀ M_g h_t, in f64), and the reweighting rules of docs/THR.md. Run on
 * every backend by test/cases/runner.ts with the tolerances of test/cases/tolerances.ts.
 *
 * Inputs come from fixed seeds (test/fixtures/thr.ts): ragged groups with empty responses, every kind
 * of degenerate group (THR 0, tau NaN), f16/bf16 hidden states (decoded exactly on both sides),
 * |V*| from 1 to beyond the 64-wide tiles, d from 0 to 257, both weightings, several betas.
 *
 * THR's scale (the tolerance's crtol term): a token's THR is a sum of terms of either sign over its
 * group's correct tokens, so its error is bounded relative to the group's largest |THR*|, the form the
 * cuda backend documents for its precision modes (TokenHiddenRewardOptions.precision); tau_g too.
 * Its terms (the stol term): the same sum with every term made positive (thrMagnitudes), which states
 * the error where M_g's terms cancel.
 */
import { expect } from 'vitest';
import type { ReweightMode, Weighting } from '../../src/backends/backend.js';
import type { Context } from '../../src/context.js';
import type { FloatDType } from '../../src/dtypes.js';
import type { Layout } from '../../src/layout.js';
import {
  bruteThr,
  CANCELLING,
  DEGENERATE_GROUPS,
  degenerate,
  makeReweightCase,
  makeThrCase,
  matrixThr,
  REWEIGHT_VARIANTS,
  type ResponseSpec,
  type ReweightCase,
  type ReweightVariant,
  randomGroups,
  type ThrCase,
  thrMagnitudes,
  uniformGroup,
} from '../fixtures/thr.js';
import { randomNormal } from '../util/rng.js';
import { compareElements, expectWithin } from './check.js';
import {
  type BackendName,
  type Case,
  lazy,
  type Outputs,
  type RefCase,
  type SelfCase,
  type Want,
} from './runner.js';
import { TOLERANCES } from './tolerances.js';

// ------------------------------------------------------------------ float64 references

/** docs/THR.md "Reweighting", token by token; degenerate groups (by layout and correct) keep A. */
export function refReweight(
  A: ArrayLike<number>,
  thr: ArrayLike<number>,
  tau: ArrayLike<number>,
  layout: Layout,
  correct: Uint8Array,
  o: { mode: ReweightMode; p: number; mask: boolean; eta: number | 'auto' },
): Float64Array {
  const { responseOffsets: ro, groupOffsets: go } = layout;
  const out = new Float64Array(A.length);
  for (let g = 0; g < go.length - 1; g++) {
    let nc = 0;
    for (let r = go[g]; r < go[g + 1]; r++) nc += correct[r];
    const rho = nc / (go[g + 1] - go[g]);
    const eta = o.eta === 'auto' ? 2 * Math.abs(0.5 - rho) : o.eta;
    const deg = degenerate(layout, correct, g);
    for (let r = go[g]; r < go[g + 1]; r++) {
      for (let t = ro[r]; t < ro[r + 1]; t++) {
        const x = thr[t];
        if (deg) out[t] = A[t];
        else if (o.mode === 'nthr') {
          if (correct[r]) out[t] = A[t];
          else if (Number.isNaN(x) || Number.isNaN(tau[g])) out[t] = Number.NaN;
          else out[t] = -x > tau[g] ? eta * A[t] : A[t];
        } else {
          const p = o.mode === 'thr-only' ? 0 : o.p;
          if (Number.isNaN(x) || Number.isNaN(tau[g])) out[t] = Number.NaN;
          else if (Math.abs(x) > tau[g]) out[t] = (1 + p * Math.sign(x)) * A[t];
          else out[t] = o.mask ? 0 * A[t] : A[t];
        }
      }
    }
  }
  return out;
}

/** Per token, the largest finite |THR*| of its group; per group, the same (tau's scale). */
export function groupScales(
  layout: Layout,
  thr: ArrayLike<number>,
): { perToken: Float64Array; perGroup: Float64Array } {
  const { responseOffsets: ro, groupOffsets: go } = layout;
  const G = go.length - 1;
  const perToken = new Float64Array(ro[go[G]]);
  const perGroup = new Float64Array(G);
  for (let g = 0; g < G; g++) {
    let m = 0;
    for (let t = ro[go[g]]; t < ro[go[g + 1]]; t++)
      if (Number.isFinite(thr[t])) m = Math.max(m, Math.abs(thr[t]));
    perGroup[g] = m;
    perToken.fill(m, ro[go[g]], ro[go[g + 1]]);
  }
  return { perToken, perGroup };
}

/**
 * THR's reference with its scales: the pairwise sum as written where it is affordable, its
 * regrouping (matrixThr) for the long groups.
 */
export function thrWants(c: ThrCase, weighting: Weighting, beta: number): Record<'thr' | 'tau', Want> {
  const { responseOffsets: ro, groupOffsets: go } = c.layout;
  let pairs = 0;
  for (let g = 0; g < c.numGroups; g++) {
    const Tg = ro[go[g + 1]] - ro[go[g]];
    pairs += Tg * Tg * (c.vocabOffsets[g + 1] - c.vocabOffsets[g] + c.dim);
  }
  const ref = pairs < 5e7 ? bruteThr(c, weighting, beta) : matrixThr(c, weighting, beta);
  const { perToken, perGroup } = groupScales(c.layout, ref.thr);
  const terms = thrMagnitudes(c, weighting, beta);
  return {
    thr: { values: ref.thr, scale: perToken, terms: terms.perToken },
    tau: { values: ref.tau, scale: perGroup, terms: terms.perGroup },
  };
}

/** For the tests outside the tables (tuning knobs, chunking): THR and tau against the reference. */
export function expectThrWithin(
  got: { thr: ArrayLike<number>; tau: ArrayLike<number> },
  c: ThrCase,
  opts: { weighting?: Weighting; beta?: number },
  what: string,
): void {
  const want = thrWants(c, opts.weighting ?? 'length', opts.beta ?? 1);
  const tol = TOLERANCES.tokenHiddenReward[c.dtype];
  expectWithin(got.thr, want.thr.values, tol.thr, `${what} thr`, want.thr.scale, want.thr.terms);
  expectWithin(got.tau, want.tau.values, tol.tau, `${what} tau`, want.tau.scale, want.tau.terms);
}

// ------------------------------------------------------------------ restrictedVocab

function vocabCase(name: string, input: () => ThrCase): RefCase {
  return {
    kind: 'reference',
    name,
    tol: TOLERANCES.restrictedVocab.i32,
    async run(ctx) {
      const c = input();
      const v = await ctx.restrictedVocab(c.tokens, c.layout);
      expect(v.offsets.shape).toEqual([c.numGroups + 1]);
      const out: Outputs = {};
      for (const k of ['offsets', 'columns', 'tokenColumn'] as const) {
        const data = (await v[k].read()) as Int32Array;
        expect(Array.from(v.host[k]), `host ${k} = device ${k}`).toEqual(Array.from(data));
        out[k] = { dtype: 'i32', data };
        v[k].dispose();
      }
      return out;
    },
    want() {
      const c = input(); // V* by sort / unique (makeThrCase)
      return {
        offsets: { values: c.vocabOffsets },
        columns: { values: c.columns },
        tokenColumn: { values: c.tokenColumn },
      };
    },
  };
}

const thrInput = (spec: Parameters<typeof makeThrCase>[0]) => lazy(() => makeThrCase(spec));

export const VOCAB_CASES: readonly Case[] = [
  vocabCase(
    'random ragged groups, small vocabulary (many repeats)',
    thrInput({ seed: 11, groups: randomGroups(1, 6, 6, 12), dim: 1, vocabSize: 9 }),
  ),
  vocabCase(
    'random ragged groups, Qwen vocabulary',
    thrInput({ seed: 11, groups: randomGroups(2, 5, 8, 20), dim: 1, vocabSize: 151936 }),
  ),
  vocabCase(
    'degenerate and empty groups',
    thrInput({
      seed: 11,
      groups: [...DEGENERATE_GROUPS, ...randomGroups(3, 2, 4, 5)],
      dim: 1,
      vocabSize: 30,
    }),
  ),
  vocabCase(
    'no tokens at all',
    thrInput({ seed: 11, groups: [uniformGroup(2, 0, 1), []], dim: 1, vocabSize: 10 }),
  ),
  vocabCase('no groups', thrInput({ seed: 11, groups: [], dim: 1, vocabSize: 10 })),
];

// ------------------------------------------------------------------ tokenHiddenReward

interface ThrSpec {
  name: string;
  seed: number;
  groups: ResponseSpec[][];
  dim: number;
  vocabSize: number;
  dtype?: FloatDType;
  exactVocab?: number;
  weighting?: Weighting;
  beta?: number;
  /** Changes the generated case (special values). */
  edit?: (c: ThrCase) => void;
  skip?: Partial<Record<BackendName, string>>;
  /** Backends known to fail the case today, with the defect (runner.ts: run as it.fails). */
  fails?: Partial<Record<BackendName, string>>;
  check?: (got: Record<string, Float64Array>, c: ThrCase) => void;
}

function thrCase(s: ThrSpec): RefCase {
  const input = lazy(() => {
    const c = makeThrCase({
      seed: s.seed,
      groups: s.groups,
      dim: s.dim,
      vocabSize: s.vocabSize,
      dtype: s.dtype,
      exactVocab: s.exactVocab,
    });
    s.edit?.(c);
    return c;
  });
  const dtype = s.dtype ?? 'f32';
  const weighting = s.weighting ?? 'length';
  const beta = s.beta ?? 1;
  return {
    kind: 'reference',
    name: `${s.name}: d = ${s.dim}, ${dtype}${s.weighting ? `, weighting ${s.weighting}` : ''}${s.beta !== undefined ? `, beta ${s.beta}` : ''}`,
    tol: TOLERANCES.tokenHiddenReward[dtype],
    skip: s.skip,
    fails: s.fails,
    async run(ctx) {
      const c = input();
      const vocab = await ctx.restrictedVocab(c.tokens, c.layout);
      const hidden = ctx.tensor(c.hidden as Float32Array, [c.numTokens, c.dim], c.dtype as 'f32');
      const res = await ctx.tokenHiddenReward({
        hidden,
        probs: c.probs,
        vocab,
        layout: c.layout,
        correct: c.correct,
        ...(s.weighting ? { weighting: s.weighting } : {}),
        ...(s.beta !== undefined ? { beta: s.beta } : {}),
      });
      const out: Outputs = {
        thr: { dtype: 'f32', data: (await res.thr.read()) as Float32Array },
        tau: { dtype: 'f32', data: (await res.tau.read()) as Float32Array },
      };
      for (const t of [hidden, res.thr, res.tau, vocab.offsets, vocab.columns, vocab.tokenColumn])
        t.dispose();
      return out;
    },
    want() {
      return thrWants(input(), weighting, beta);
    },
    check(got) {
      const c = input();
      const { responseOffsets: ro, groupOffsets: go } = c.layout;
      for (let g = 0; g < c.numGroups; g++) {
        if (!degenerate(c.layout, c.correct, g)) continue;
        expect(Number.isNaN(got.tau[g]), `tau[${g}] of a degenerate group is NaN`).toBe(true);
        for (let t = ro[go[g]]; t < ro[go[g + 1]]; t++)
          expect(got.thr[t] === 0, `thr[${t}] of a degenerate group is 0`).toBe(true);
      }
      s.check?.(got, c);
    },
  };
}

export const THR_CASES: readonly Case[] = [
  thrCase({ name: 'tiny vocabulary', seed: 101, groups: randomGroups(21, 4, 5, 9), dim: 1, vocabSize: 5 }),
  thrCase({ name: 'ragged', seed: 113, groups: randomGroups(22, 5, 7, 11), dim: 13, vocabSize: 40 }),
  thrCase({
    name: 'wide vocabulary',
    seed: 164,
    groups: randomGroups(23, 3, 6, 14),
    dim: 64,
    vocabSize: 500,
  }),
  thrCase({
    name: 'every kind of degenerate group mixed in',
    seed: 113,
    groups: [DEGENERATE_GROUPS[0], ...randomGroups(24, 2, 5, 9), ...DEGENERATE_GROUPS.slice(1)],
    dim: 13,
    vocabSize: 25,
  }),
  thrCase({
    name: 'random groups',
    seed: 107,
    groups: randomGroups(25, 4, 6, 10),
    dim: 7,
    vocabSize: 30,
    weighting: 'none',
  }),
  thrCase({
    name: 'random groups',
    seed: 105,
    groups: randomGroups(26, 3, 5, 10),
    dim: 5,
    vocabSize: 20,
    beta: 0.5,
  }),
  thrCase({
    name: 'random groups',
    seed: 105,
    groups: randomGroups(27, 3, 5, 10),
    dim: 5,
    vocabSize: 20,
    beta: -2,
  }),
  thrCase({
    name: 'random groups',
    seed: 113,
    groups: randomGroups(28, 4, 6, 10),
    dim: 13,
    vocabSize: 35,
    dtype: 'f16',
  }),
  thrCase({
    name: 'random groups',
    seed: 164,
    groups: randomGroups(29, 3, 6, 12),
    dim: 64,
    vocabSize: 60,
    dtype: 'bf16',
  }),
  thrCase({
    name: 'one group of 8 responses, T not a multiple of 4',
    seed: 117,
    groups: [[...uniformGroup(4, 9, 4), ...uniformGroup(4, 7, 0)]],
    dim: 17,
    vocabSize: 200,
  }),
  // The webgpu shapes: many groups with degenerate ones and one-token responses, both weightings.
  ...([13, 70, 1] as const).flatMap((dim, i) =>
    (['length', 'none'] as const).map((weighting, j) => {
      const seed = 10 + 2 * i + j;
      const groups = [
        ...randomGroups(seed, 7, 9, 24),
        ...DEGENERATE_GROUPS,
        ...randomGroups(seed + 1, 2, 3, 5),
      ];
      groups.splice(2, 0, uniformGroup(2, 1, 1)); // two one-token responses
      return thrCase({
        name: 'many groups, degenerate ones, one-token responses',
        seed,
        groups,
        dim,
        vocabSize: 300,
        weighting,
        beta: weighting === 'none' ? 0.7 : undefined,
      });
    }),
  ),
  ...(['f16', 'bf16'] as const).map((dtype) =>
    thrCase({
      name: 'random groups',
      seed: 20,
      groups: randomGroups(20, 5, 8, 20),
      dim: 70,
      vocabSize: 200,
      dtype,
    }),
  ),
  // A long group (4 × 600 tokens, |V*| ≈ 400) and a wide one (d = 257) with |V*| = 16·k ± 1.
  thrCase({
    name: 'a long group: 4 × 600 tokens',
    seed: 30,
    groups: [uniformGroup(4, 600, 2)],
    dim: 40,
    vocabSize: 600,
  }),
  ...[15, 17, 32].map((K) =>
    thrCase({
      name: `|V*| = ${K}`,
      seed: 31 + K,
      groups: [uniformGroup(3, 12, 1), uniformGroup(5, 7, 3)],
      dim: 257,
      vocabSize: 100,
      exactVocab: K,
      weighting: 'none',
    }),
  ),
  // |V*| beyond 64 columns and T_g of hundreds (several tiles of the cuda and webgpu kernels).
  ...(
    [
      [13, 'f32'],
      [200, 'bf16'],
    ] as const
  ).map(([dim, dtype]) =>
    thrCase({
      name: '|V*| > 64 columns, long groups',
      seed: dim + 3,
      groups: [...randomGroups(dim + 3, 3, 9, 80)],
      dim,
      vocabSize: 400,
      dtype,
    }),
  ),
  thrCase({
    name: '|V*| = 1 (every token of a group the same id)',
    seed: 36,
    groups: [[...uniformGroup(2, 5, 1), { length: 11, correct: true }]],
    dim: 33,
    vocabSize: 50,
    dtype: 'f16',
    exactVocab: 1,
  }),
  thrCase({
    name: 'no tokens at all',
    seed: 37,
    groups: [uniformGroup(2, 0, 1), uniformGroup(1, 0, 1)],
    dim: 8,
    vocabSize: 10,
  }),
  thrCase({ name: 'no groups', seed: 38, groups: [], dim: 8, vocabSize: 10 }),
  thrCase({
    name: 'hidden size 0',
    seed: 39,
    groups: [uniformGroup(2, 3, 1), uniformGroup(3, 2, 2)],
    dim: 0,
    vocabSize: 10,
  }),
  thrCase({ name: 'only degenerate groups', seed: 51, groups: DEGENERATE_GROUPS, dim: 5, vocabSize: 20 }),
  // NaN in, NaN out: a NaN hidden state of a correct token poisons its group only.
  thrCase({
    name: 'a NaN hidden state',
    seed: 6,
    groups: [[...uniformGroup(2, 3, 1), { length: 4, correct: false }], ...randomGroups(6, 2, 4, 6)],
    dim: 5,
    vocabSize: 15,
    edit: (c) => {
      (c.hidden as Float32Array)[1 * 5 + 2] = Number.NaN; // token 1: response 0 (correct) of group 0
      c.hidden64[1 * 5 + 2] = Number.NaN;
    },
    check: (got, c) => {
      const end = c.layout.responseOffsets[c.layout.groupOffsets[1]];
      expect(Array.from(got.thr.subarray(0, end)).every(Number.isNaN), 'group 0 is NaN').toBe(true);
      expect(Array.from(got.thr.subarray(end)).every(Number.isFinite), 'the other groups are finite').toBe(
        true,
      );
    },
  }),
  // A confident correct token (q at its own column 1 − 1e-5, as an LLM's sampled tokens often are):
  // g = e − q has a tiny entry 1 − q_y that M_g = scatter(w·h) − Qᵀ(w∘H) forms by cancelling two terms
  // of size |h|, losing u·|h|/(1 − q_y) (found by the cuda differential fuzz, 2026-11-28: THR off by
  // 1.4e-3 of the group's max |THR*| in 'f32' precision, past its documented 3e-4 bound; 'tf32' far more).
  // Every backend now forms 1 − q_y at the token's own column (cuda's M kernels: in A's fragment).
  thrCase({
    name: 'a confident correct token (q_y = 1 − 1e-5)',
    seed: 7,
    groups: [
      [
        { length: 1, correct: true },
        { length: 1, correct: false },
      ],
    ],
    dim: 2,
    vocabSize: 2,
    exactVocab: 2,
    edit: (c) => {
      const K = c.vocabOffsets[1] - c.vocabOffsets[0];
      const y = c.tokenColumn[0];
      for (let k = 0; k < K; k++) c.probs[k] = k === y ? Math.fround(1 - 1e-5) : Math.fround(1e-5 / (K - 1));
    },
  }),
  // M_g cancels (test/fixtures/thr.ts CANCELLING): the table's stol term states the error there.
  thrCase({
    name: 'M_g cancels (|V*| = 1, anchors balanced to 1e-4 and to rounding)',
    ...CANCELLING.spec,
    edit: CANCELLING.edit,
  }),
];

// ------------------------------------------------------------------ thrReweight

function reweightCase(name: string, input: () => ReweightCase, v: ReweightVariant): RefCase {
  return {
    kind: 'reference',
    name: `${name}: mode ${v.mode}, p ${v.p}, mask ${v.mask}, eta ${v.eta}`,
    tol: TOLERANCES.thrReweight.f32,
    async run(ctx) {
      const { c, A, thr, tau } = input();
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
      const r: Outputs = { values: { dtype: 'f32', data: (await out.read()) as Float32Array } };
      out.dispose();
      return r;
    },
    want() {
      const { c, A, thr, tau } = input();
      return { values: { values: refReweight(A, thr, tau, c.layout, c.correct, v) } };
    },
  };
}

/**
 * thrReweight chained after tokenHiddenReward on the same backend (device tensors in, no host copy):
 * the reweighting of the backend's own THR and tau, against the rules applied to those values.
 */
function chainCase(v: ReweightVariant): SelfCase {
  return {
    kind: 'self',
    name: `chained after tokenHiddenReward: mode ${v.mode}, p ${v.p}, eta ${v.eta}`,
    async run(ctx: Context) {
      const c = makeThrCase({
        seed: 46,
        groups: [...randomGroups(46, 3, 6, 8), DEGENERATE_GROUPS[1]],
        dim: 8,
        vocabSize: 20,
      });
      const vocab = await ctx.restrictedVocab(c.tokens, c.layout);
      const hidden = ctx.tensor(c.hidden as Float32Array, [c.numTokens, c.dim]);
      const res = await ctx.tokenHiddenReward({
        hidden,
        probs: c.probs,
        vocab,
        layout: c.layout,
        correct: c.correct,
        weighting: 'none',
      });
      const A = Float32Array.from(randomNormal(47, c.numTokens));
      const out = await ctx.thrReweight({
        tokenAdvantages: A,
        thr: res.thr,
        tau: res.tau,
        layout: c.layout,
        correct: c.correct,
        mode: v.mode,
        ...(v.p !== 0 ? { p: v.p } : {}),
        ...(v.mode === 'nthr' ? { eta: v.eta } : {}),
      });
      const got = (await out.read()) as Float32Array;
      const want = refReweight(
        A,
        (await res.thr.read()) as Float32Array,
        (await res.tau.read()) as Float32Array,
        c.layout,
        c.correct,
        v,
      );
      for (const t of [hidden, res.thr, res.tau, out, vocab.offsets, vocab.columns, vocab.tokenColumn])
        t.dispose();
      return compareElements(got, want, TOLERANCES.thrReweight.f32.values).problems;
    },
  };
}

const reweightInput = lazy(() =>
  makeReweightCase({ extraGroups: randomGroups(42, 40, 8, 40), nanInputs: true }),
);

export const REWEIGHT_CASES: readonly Case[] = [
  ...REWEIGHT_VARIANTS.map((v) =>
    reweightCase(
      'ties with tau, zeros, NaN THR, advantage and tau, degenerate groups, rho 1/4 and 1/2',
      reweightInput,
      v,
    ),
  ),
  ...REWEIGHT_VARIANTS.filter((v) => v.mask).map(chainCase),
];
