/**
 * Validation and dispatch of the THR family: restrictedVocab, tokenHiddenReward, thrReweight
 * (THR.md). Scalar options are checked first, then tensors; the small host copies the backends
 * plan with (offsets, correct flags, degenerate groups) are read or derived here, once.
 */
import type {
  Backend,
  ResolvedVocab,
  RestrictedVocab,
  ReweightMode,
  ThrPrecision,
  ThrResult,
  Weighting,
} from '../backends/backend.js';
import { type DType, FLOAT_DTYPES, type FloatDType } from '../dtypes.js';
import { fail } from '../errors.js';
import { type Layout, type ResolvedLayout, resolveLayout, validateOffsets } from '../layout.js';
import type { Tensor } from '../tensor.js';
import {
  asTensor,
  checkBoolean,
  checkEnum,
  checkNumber,
  checkOptions,
  type ShapePattern,
  type TensorLike,
  withUploads,
} from './validate.js';

export interface TokenHiddenRewardOptions {
  /** Old-policy final hidden states h_t, [Ttotal, d]. */
  hidden: Tensor<FloatDType>;
  /** Packed f32 probabilities on V*: group g's [T_g, K_g] block at Σ_{h<g} T_h·K_h (gatherProbs). */
  probs: TensorLike<'f32'>;
  /** From restrictedVocab(). */
  vocab: RestrictedVocab;
  layout: Layout;
  /** u8 [R], 0 or 1. */
  correct: TensorLike<'u8'>;
  /** Anchor weight of correct tokens: 'length' = 1/|y_r| (THR, default) or 'none' = 1 (NTHR). */
  weighting?: Weighting;
  /** tau_g = beta · min_i (mean THR of correct response i); any finite number, default 1. */
  beta?: number;
  /**
   * Arithmetic of the two matrix products on cuda (tensor cores). Each mode's bound, per token t of
   * group g against the float64 definition: |THR_t − THR*_t| ≤ bound · max_{u∈g} |THR*_u|, and tau_g
   * within the same bound.
   * - 'f32' (default): 3xTF32 split products (2xTF32 with f16/bf16 hidden states, which TF32 holds
   *   exactly), the one-hot part of M_g an f32 scatter-add, sums in f32: an f32-grade result.
   *   Bound 3e-4; measured on an H200 at most 1.4e-6.
   * - 'tf32': one TF32 product per term (w·q, M_g and f32 hidden states rounded to a 10-bit mantissa).
   *   Bound 3e-3; measured 6e-5 to 2.6e-4. Faster: on an H200, one group of 8 × 2048 tokens,
   *   |V*| 4096, d 3584, 43 ms against 71 ms ('f32', f32 hidden) or 54 ms ('f32', bf16 hidden).
   *
   * The cpu backend computes in float64 and the webgpu backend in f32 whatever this says.
   */
  precision?: ThrPrecision;
}

export interface ThrReweightOptions {
  tokenAdvantages: TensorLike<'f32'>;
  thr: TensorLike<'f32'>;
  tau: TensorLike<'f32'>;
  layout: Layout;
  correct: TensorLike<'u8'>;
  /** Mode 'thr' only: in [−1, 1], default 0 (> 0 exploitation, < 0 exploration). */
  p?: number;
  /** 'thr' (default), 'thr-only' (p = 0) or 'nthr'. */
  mode?: ReweightMode;
  /** Modes 'thr'/'thr-only': zero tokens with |THR| ≤ tau (default true) or keep them. */
  mask?: boolean;
  /** Mode 'nthr' only: 'auto' (default) = 2·|0.5 − rho_g|, or a fixed number in [0, 1]. */
  eta?: number | 'auto';
}

type Upload = { tensor: Tensor; uploaded: boolean };

/** asTensor that records the upload so withUploads disposes it, even when a later check throws. */
function taker(backend: Backend, uploads: Upload[]) {
  return <D extends DType>(argument: string, value: unknown, dtypes: readonly D[], pattern: ShapePattern) => {
    const r = asTensor(backend, argument, value, dtypes, pattern);
    uploads.push(r);
    return r.tensor;
  };
}

function requireOptions<T extends object>(
  value: unknown,
  expected: string,
  keys: readonly (keyof T & string)[],
): Partial<T> {
  if (value === undefined) fail('DTYPE', 'options', `expected ${expected}, got undefined`);
  return checkOptions<T>('options', value, keys);
}

/** Reads `correct` [R] to host and checks every flag is 0 or 1. */
async function readCorrect(correct: Tensor<'u8'>): Promise<Uint8Array> {
  const host = await correct.read();
  for (let i = 0; i < host.length; i++) {
    if (host[i] > 1) fail('RANGE', 'correct', `expected flags 0 or 1, got ${host[i]} at [${i}]`);
  }
  return host;
}

/**
 * THR.md item 6: a group is degenerate when it has no correct response, no incorrect response, or
 * no token in its correct responses.
 */
function degenerateGroups(layout: ResolvedLayout, correct: Uint8Array): Uint8Array {
  const { numGroups: G, groupOffsets: go, responseOffsets: ro } = layout;
  const out = new Uint8Array(G);
  for (let g = 0; g < G; g++) {
    let nCorrect = 0;
    let nIncorrect = 0;
    let correctTokens = 0;
    for (let r = go[g]; r < go[g + 1]; r++) {
      if (correct[r]) {
        nCorrect++;
        correctTokens += ro[r + 1] - ro[r];
      } else nIncorrect++;
    }
    out[g] = nCorrect === 0 || nIncorrect === 0 || correctTokens === 0 ? 1 : 0;
  }
  return out;
}

/** Each group's sorted unique sampled token ids (V*_g) and each token's column in it. */
export async function restrictedVocab(
  backend: Backend,
  tokens: unknown,
  layout: unknown,
): Promise<RestrictedVocab> {
  const uploads: Upload[] = [];
  return withUploads(uploads, async () => {
    const l = resolveLayout(layout);
    const take = taker(backend, uploads);
    const tok = take('tokens', tokens, ['i32'], [l.numTokens]);
    const host = await tok.read();
    for (let i = 0; i < host.length; i++) {
      if (host[i] < 0) fail('RANGE', 'tokens', `expected token ids ≥ 0, got ${host[i]} at [${i}]`);
    }
    return backend.restrictedVocab({ tokens: tok, layout: l });
  });
}

/** Token hidden reward (THR.md) and each group's threshold tau. */
export async function tokenHiddenReward(backend: Backend, options: unknown): Promise<ThrResult> {
  const o = requireOptions<TokenHiddenRewardOptions>(
    options,
    '{ hidden, probs, vocab, layout, correct, weighting?, beta?, precision? }',
    ['hidden', 'probs', 'vocab', 'layout', 'correct', 'weighting', 'beta', 'precision'],
  );
  const weighting = checkEnum<Weighting>('weighting', o.weighting ?? 'length', ['length', 'none']);
  const beta = checkNumber('beta', o.beta ?? 1);
  const precision = checkEnum<ThrPrecision>('precision', o.precision ?? 'f32', ['f32', 'tf32']);
  const uploads: Upload[] = [];
  return withUploads(uploads, async () => {
    const layout = resolveLayout(o.layout);
    const { numTokens: T, numResponses: R, numGroups: G, groupTokenOffsets: gto } = layout;
    const take = taker(backend, uploads);
    const hidden = take('hidden', o.hidden, FLOAT_DTYPES, [T, null]);
    const correct = take('correct', o.correct, ['u8'], [R]);

    const v = o.vocab as Partial<RestrictedVocab> | undefined;
    if (typeof v !== 'object' || v === null) {
      fail('DTYPE', 'vocab', 'expected { offsets, columns, tokenColumn } as restrictedVocab() returns');
    }
    const offsets = take('vocab.offsets', v.offsets, ['i32'], [G + 1]);
    const columns = take('vocab.columns', v.columns, ['i32'], [null]);
    const tokenColumn = take('vocab.tokenColumn', v.tokenColumn, ['i32'], [T]);

    // probs holds Σ_g T_g·K_g elements; the offsets are kept in f64 (exact up to 2^53).
    const hostOffsets = validateOffsets('vocab.offsets', await offsets.read(), columns.shape[0]);
    const probsOffsets = new Float64Array(G + 1);
    for (let g = 0; g < G; g++) {
      probsOffsets[g + 1] = probsOffsets[g] + (gto[g + 1] - gto[g]) * (hostOffsets[g + 1] - hostOffsets[g]);
    }
    const probs = take('probs', o.probs, ['f32'], [probsOffsets[G]]);

    // Every token's column must lie in its group's V*: the kernels index M and probs with it.
    const hostColumn = await tokenColumn.read();
    for (let g = 0; g < G; g++) {
      const k = hostOffsets[g + 1] - hostOffsets[g];
      for (let t = gto[g]; t < gto[g + 1]; t++) {
        const c = hostColumn[t];
        if (c < 0 || c >= k) {
          fail('RANGE', 'vocab.tokenColumn', `expected [${t}] in [0, ${k}) (group ${g}'s |V*|), got ${c}`);
        }
      }
    }
    const hostCorrect = await readCorrect(correct);
    const vocab: ResolvedVocab = { offsets, columns, tokenColumn, hostOffsets };
    return backend.tokenHiddenReward({
      hidden,
      dim: hidden.shape[1],
      probs,
      probsOffsets,
      vocab,
      layout,
      correct,
      hostCorrect,
      hostDegenerate: degenerateGroups(layout, hostCorrect),
      weighting,
      beta,
      precision,
    });
  });
}

/**
 * Reweights token advantages by THR (THR.md, "Reweighting"). An option the chosen mode ignores
 * (p ≠ 0 outside 'thr', mask: false with 'nthr', a fixed eta outside 'nthr') is a RANGE error
 * rather than silently dropped.
 */
export async function thrReweight(backend: Backend, options: unknown): Promise<Tensor<'f32'>> {
  const o = requireOptions<ThrReweightOptions>(
    options,
    '{ tokenAdvantages, thr, tau, layout, correct, p?, mode?, mask?, eta? }',
    ['tokenAdvantages', 'thr', 'tau', 'layout', 'correct', 'p', 'mode', 'mask', 'eta'],
  );
  const mode = checkEnum<ReweightMode>('mode', o.mode ?? 'thr', ['thr', 'thr-only', 'nthr']);
  const p = checkNumber('p', o.p ?? 0, { min: -1, max: 1 });
  if (mode !== 'thr' && p !== 0) {
    fail('RANGE', 'p', `expected 0 or none with mode '${mode}' (p applies to mode 'thr' only), got ${p}`);
  }
  const mask = checkBoolean('mask', o.mask ?? true);
  if (mode === 'nthr' && !mask) {
    fail('RANGE', 'mask', `expected true or none with mode 'nthr' (mask applies to 'thr' and 'thr-only')`);
  }
  const etaRaw = o.eta ?? 'auto';
  let eta: number | 'auto' = 'auto';
  if (etaRaw !== 'auto') {
    if (typeof etaRaw !== 'number' || !(etaRaw >= 0 && etaRaw <= 1)) {
      fail('RANGE', 'eta', `expected 'auto' or a number in [0, 1], got ${JSON.stringify(etaRaw) ?? etaRaw}`);
    }
    if (mode !== 'nthr') {
      fail('RANGE', 'eta', `expected 'auto' or none with mode '${mode}' (eta applies to 'nthr' only)`);
    }
    eta = etaRaw;
  }
  const uploads: Upload[] = [];
  return withUploads(uploads, async () => {
    const layout = resolveLayout(o.layout);
    const { numTokens: T, numResponses: R, numGroups: G } = layout;
    const take = taker(backend, uploads);
    const tokenAdvantages = take('tokenAdvantages', o.tokenAdvantages, ['f32'], [T]);
    const thr = take('thr', o.thr, ['f32'], [T]);
    const tau = take('tau', o.tau, ['f32'], [G]);
    const correct = take('correct', o.correct, ['u8'], [R]);
    const hostCorrect = await readCorrect(correct);
    return backend.thrReweight({
      tokenAdvantages,
      thr,
      tau,
      layout,
      correct,
      hostCorrect,
      hostDegenerate: degenerateGroups(layout, hostCorrect),
      p,
      mode,
      mask,
      eta,
    });
  });
}
