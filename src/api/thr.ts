/**
 * Validation and dispatch of the THR family: restrictedVocab, tokenHiddenReward, thrReweight
 * (docs/THR.md). Scalar options are checked first, then tensors; the host metadata (offsets, correct
 * flags) is read here, and THR's host plan (degenerate groups, correct tokens and weights, eta)
 * derived from it once (thr-plan.ts) and passed to the backend.
 */
import {
  type Backend,
  REWEIGHT_MODES,
  type RestrictedVocab,
  type ReweightMode,
  THR_PRECISIONS,
  type ThrPrecision,
  type ThrResult,
  type TokenHiddenRewardArgs,
  type Weighting,
} from '../backends/backend.js';
import { FLOAT_DTYPES, type FloatDType } from '../dtypes.js';
import { fail } from '../errors.js';
import { type Layout, type ResolvedLayout, resolveLayout } from '../layout.js';
import { Tensor } from '../tensor.js';
import { degenerateGroups, reweightPlan, thrPlan } from './thr-plan.js';
import {
  asTensor,
  booleanOption,
  checkNumber,
  checkOptions,
  checkShape,
  describe,
  enumOption,
  numberOption,
  ownedView,
  quote,
  type Take,
  type TensorLike,
  withInputs,
} from './validate.js';
import { buildRestrictedVocab, probsOffsets, resolveVocab, type VocabLike } from './vocab.js';

export interface TokenHiddenRewardOptions {
  /** Old-policy final hidden states h_t, [Ttotal, d]. */
  hidden: Tensor<FloatDType>;
  /** Packed f32 probabilities on V*: group g's [T_g, K_g] block at Σ_{h<g} T_h·K_h (gatherProbs). */
  probs: TensorLike<'f32'>;
  /** From restrictedVocab() (or its three host arrays). */
  vocab: VocabLike;
  layout: Layout;
  /** [R], 0 or 1: host metadata, like the layout (it decides which groups are degenerate). */
  correct: Uint8Array;
  /** Anchor weight of correct tokens: 'length' = 1/|y_r| (THR, default) or 'none' = 1 (NTHR). */
  weighting?: Weighting;
  /** tau_g = beta · min_i (mean THR of correct response i); 0 or an f32 normal number, default 1. */
  beta?: number;
  /**
   * Arithmetic of the two matrix products on cuda (tensor cores). Each mode's bound, per token t of
   * group g against the float64 definition:
   *   |THR_t − THR*_t| ≤ bound · max_{u∈g} |THR*_u| + 4u · S̃_t (+ 2⁻¹²⁶ below f32's normal range),
   * with S̃_t = Σ_{v∈P} w_v ⟨|g_v|, |g_t|⟩⟨|h_v|, |h_t|⟩ the token's sum with every term made positive and
   * u the mode's unit roundoff (2⁻²⁴ 'f32', 2⁻¹¹ 'tf32'); tau_g likewise, with |beta| times the largest
   * mean of S̃ over a correct response's tokens. S̃_t is a few times max |THR_g| at most unless M_g's terms cancel
   * (e.g. d = 1, anchors' hidden states of either sign), where the second term is the error of any
   * sum in that precision (docs/DESIGN.md, "Numerics").
   * - 'f32' (default): 3xTF32 split products (2xTF32 with f16/bf16 hidden states, which TF32 holds
   *   exactly) of g = e − q formed in f32, sums in f32: an f32-grade result.
   *   Bound 3e-4; measured on an H200 at most 1.4e-6.
   * - 'tf32': one TF32 product per term (w·q, M_g and f32 hidden states rounded to a 10-bit mantissa).
   *   Bound 3e-3; measured 6e-5 to 2.6e-4. Faster: on an H200, one group of 8 × 2048 tokens,
   *   |V*| 4096, d 3584, 43 ms against 71 ms ('f32', f32 hidden) or 54 ms ('f32', bf16 hidden).
   *
   * Whatever this says, the cpu backend multiplies in f32 and sums chunks of 256 products in f64
   * (docs/cpu.md), and the webgpu backend computes in f32.
   */
  precision?: ThrPrecision;
}

/**
 * THR's first half: the aggregate M_g of every live group (docs/THR.md), which is a sum over the group's
 * correct tokens. Data-parallel shards of a batch call thrAggregate on their own tokens, all-reduce
 * the aggregates (a sum, with the trainer's collective), then call thrScore (docs/DESIGN.md,
 * "Sharded vocabularies and batches"). Every shard must use the same V*_g (build it from the whole
 * group's tokens; pass its host arrays with this shard's tokenColumn) and the same `degenerate`.
 */
export interface ThrAggregateOptions {
  hidden: Tensor<FloatDType>;
  probs: TensorLike<'f32'>;
  vocab: VocabLike;
  layout: Layout;
  correct: Uint8Array;
  weighting?: Weighting;
  precision?: ThrPrecision;
  /**
   * [G], 0 or 1: which groups are degenerate (THR 0, tau NaN, no aggregate). Default: derived from
   * layout and correct (docs/THR.md item 6). A shard of a batch passes the flags of the whole groups.
   */
  degenerate?: Uint8Array;
}

/** THR's second half: THR and tau from the (all-reduced) aggregate. */
export interface ThrScoreOptions extends Omit<ThrAggregateOptions, 'weighting'> {
  /** [ΣK_g, d] f32 from thrAggregate (summed over the shards). */
  aggregate: Tensor<'f32'>;
  beta?: number;
}

export interface ThrReweightOptions {
  tokenAdvantages: TensorLike<'f32'>;
  thr: TensorLike<'f32'>;
  tau: TensorLike<'f32'>;
  layout: Layout;
  /** [R], 0 or 1: host metadata, like the layout. */
  correct: Uint8Array;
  /** Mode 'thr' only: in [−1, 1], default 0 (> 0 exploitation, < 0 exploration). */
  p?: number;
  /** 'thr' (default), 'thr-only' (p = 0) or 'nthr'. */
  mode?: ReweightMode;
  /** Modes 'thr'/'thr-only': zero tokens with |THR| ≤ tau (default true) or keep them. */
  mask?: boolean;
  /** Mode 'nthr' only: 'auto' (default) = 2·|0.5 − rho_g|, or a fixed number in [0, 1]. */
  eta?: number | 'auto';
}

function requireOptions<T extends object>(
  value: unknown,
  expected: string,
  keys: readonly (keyof T & string)[],
): Partial<T> {
  if (value === undefined) fail('DTYPE', 'options', `expected ${expected}, got undefined`);
  return checkOptions<T>('options', value, keys);
}

/**
 * `correct` [R] is host metadata, like the layout: it decides which groups are degenerate and so
 * the launch plan. A Uint8Array of 0/1 flags; a device Tensor is refused rather than read back.
 */
function readCorrect(value: unknown, responses: number): Uint8Array {
  if (!(value instanceof Uint8Array)) {
    fail(
      'DTYPE',
      'correct',
      `expected a Uint8Array of 0/1 flags (host metadata, like the layout), got ${value instanceof Tensor ? 'a Tensor (read it to the host first)' : describe(value)}`,
    );
  }
  checkShape('correct', [value.length], [responses]);
  // A SharedArrayBuffer's flags are copied, then checked: another thread may write them, and the cuda
  // addon refuses shared memory. The copy is what the op uploads and plans with.
  const flags = ownedView(value);
  for (let i = 0; i < flags.length; i++) {
    if (flags[i] > 1) fail('RANGE', 'correct', `expected flags 0 or 1, got ${flags[i]} at [${i}]`);
  }
  return flags;
}

/**
 * Each group's sorted unique sampled token ids (V*_g) and each token's column in it: a host op
 * (integer sorting, exact) whose result carries its host arrays and their uploaded tensors. Host
 * tokens (an Int32Array) are used as they are; a Tensor is read back first, which waits for the
 * device (pass the host array when you have it).
 */
export async function restrictedVocab(
  backend: Backend,
  tokens: unknown,
  layout: unknown,
): Promise<RestrictedVocab> {
  const l = resolveLayout(layout);
  let host: Int32Array;
  if (tokens instanceof Tensor) {
    const t = asTensor(backend, 'tokens', tokens, ['i32'], [l.numTokens]).tensor;
    host = await t.read();
  } else {
    if (!(tokens instanceof Int32Array)) {
      fail('DTYPE', 'tokens', `expected an Int32Array or a Tensor of dtype i32, got ${describe(tokens)}`);
    }
    checkShape('tokens', [tokens.length], [l.numTokens]);
    host = tokens;
  }
  const h = buildRestrictedVocab(host, l);
  // Each upload allocates: one that fails (OUT_OF_MEMORY) must not leave the earlier ones allocated
  // (found by test/cuda/faults-sweep.test.ts).
  const made: Tensor<'i32'>[] = [];
  try {
    for (const a of [h.offsets, h.columns, h.tokenColumn]) made.push(backend.upload(a, [a.length], 'i32'));
  } catch (e) {
    for (const t of made) t.dispose();
    throw e;
  }
  const [offsets, columns, tokenColumn] = made;
  return { offsets, columns, tokenColumn, host: h };
}

/** Token hidden reward (docs/THR.md) and each group's threshold tau. */
export async function tokenHiddenReward(backend: Backend, options: unknown): Promise<ThrResult> {
  const o = requireOptions<TokenHiddenRewardOptions>(
    options,
    '{ hidden, probs, vocab, layout, correct, weighting?, beta?, precision? }',
    ['hidden', 'probs', 'vocab', 'layout', 'correct', 'weighting', 'beta', 'precision'],
  );
  const weighting = enumOption<Weighting>('weighting', o.weighting, ['length', 'none'], 'length');
  const beta = numberOption('beta', o.beta, 1, { f32: true });
  const precision = enumOption<ThrPrecision>('precision', o.precision, THR_PRECISIONS, 'f32');
  return withInputs(backend, async (take) => {
    const args = thrTensors(take, o);
    const degenerate = degenerateGroups(args.layout, args.hostCorrect);
    return backend.tokenHiddenReward({
      ...args,
      plan: thrPlan(args.layout, args.hostCorrect, degenerate, weighting),
      weighting,
      beta,
      precision,
    });
  });
}

/** The degenerate flags an option gives, or those layout and correct imply. */
function degenerateOption(value: unknown, layout: ResolvedLayout, correct: Uint8Array): Uint8Array {
  if (value === undefined) return degenerateGroups(layout, correct);
  if (!(value instanceof Uint8Array)) {
    fail(
      'DTYPE',
      'degenerate',
      `expected a Uint8Array of 0/1 flags [G] (host metadata), got ${describe(value)}`,
    );
  }
  checkShape('degenerate', [value.length], [layout.numGroups]);
  for (let i = 0; i < value.length; i++) {
    if (value[i] > 1) fail('RANGE', 'degenerate', `expected flags 0 or 1, got ${value[i]} at [${i}]`);
  }
  return value;
}

/** THR's aggregate M_g (docs/THR.md), stacked [ΣK_g, d] f32: tokenHiddenReward's first half. */
export async function thrAggregate(backend: Backend, options: unknown): Promise<Tensor<'f32'>> {
  const o = requireOptions<ThrAggregateOptions>(
    options,
    '{ hidden, probs, vocab, layout, correct, weighting?, precision?, degenerate? }',
    ['hidden', 'probs', 'vocab', 'layout', 'correct', 'weighting', 'precision', 'degenerate'],
  );
  const weighting = enumOption<Weighting>('weighting', o.weighting, ['length', 'none'], 'length');
  const precision = enumOption<ThrPrecision>('precision', o.precision, THR_PRECISIONS, 'f32');
  return withInputs(backend, async (take) => {
    const args = thrTensors(take, o);
    const degenerate = degenerateOption(o.degenerate, args.layout, args.hostCorrect);
    return backend.thrAggregate({
      ...args,
      plan: thrPlan(args.layout, args.hostCorrect, degenerate, weighting),
      weighting,
      precision,
    });
  });
}

/** THR and tau from an aggregate: tokenHiddenReward's second half. */
export async function thrScore(backend: Backend, options: unknown): Promise<ThrResult> {
  const o = requireOptions<ThrScoreOptions>(
    options,
    '{ hidden, probs, vocab, layout, correct, aggregate, beta?, precision?, degenerate? }',
    ['hidden', 'probs', 'vocab', 'layout', 'correct', 'aggregate', 'beta', 'precision', 'degenerate'],
  );
  const beta = numberOption('beta', o.beta, 1, { f32: true });
  const precision = enumOption<ThrPrecision>('precision', o.precision, THR_PRECISIONS, 'f32');
  return withInputs(backend, async (take) => {
    const args = thrTensors(take, o);
    if (!(o.aggregate instanceof Tensor)) {
      fail('DTYPE', 'aggregate', `expected the Tensor thrAggregate returned, got ${describe(o.aggregate)}`);
    }
    const aggregate = take(
      'aggregate',
      o.aggregate,
      ['f32'],
      [args.vocab.hostOffsets[args.layout.numGroups], args.dim],
    );
    const degenerate = degenerateOption(o.degenerate, args.layout, args.hostCorrect);
    return backend.thrScore({
      ...args,
      aggregate,
      // The scoring reads no weights (the aggregate carries them); 'length' stands in.
      plan: thrPlan(args.layout, args.hostCorrect, degenerate, 'length'),
      weighting: 'length',
      beta,
      precision,
    });
  });
}

/** The tensors and host arrays tokenHiddenReward, thrAggregate and thrScore share. */
function thrTensors(
  take: Take,
  o: Partial<ThrAggregateOptions>,
): Omit<TokenHiddenRewardArgs, 'plan' | 'weighting' | 'beta' | 'precision'> {
  const layout = resolveLayout(o.layout);
  const { numTokens: T, numResponses: R, numGroups: G } = layout;
  const hidden = take('hidden', o.hidden, FLOAT_DTYPES, [T, null]);
  const hostCorrect = readCorrect(o.correct, R);
  const correct = take('correct', hostCorrect, ['u8'], [R]);
  const vocab = resolveVocab(take, o.vocab, layout, undefined);
  const pOffsets = probsOffsets(layout, vocab.hostOffsets);
  const probs = take('probs', o.probs, ['f32'], [pOffsets[G]]);
  return { hidden, dim: hidden.shape[1], probs, probsOffsets: pOffsets, vocab, layout, correct, hostCorrect };
}

/**
 * Reweights token advantages by THR (docs/THR.md, "Reweighting"). An option the chosen mode ignores
 * (p ≠ 0 outside 'thr', mask: false with 'nthr', a fixed eta outside 'nthr') is a RANGE error
 * rather than silently dropped.
 */
export async function thrReweight(backend: Backend, options: unknown): Promise<Tensor<'f32'>> {
  const o = requireOptions<ThrReweightOptions>(
    options,
    '{ tokenAdvantages, thr, tau, layout, correct, p?, mode?, mask?, eta? }',
    ['tokenAdvantages', 'thr', 'tau', 'layout', 'correct', 'p', 'mode', 'mask', 'eta'],
  );
  const mode = enumOption<ReweightMode>('mode', o.mode, REWEIGHT_MODES, 'thr');
  const p = numberOption('p', o.p, 0, { min: -1, max: 1, f32: true });
  if (mode !== 'thr' && p !== 0) {
    fail('RANGE', 'p', `expected 0 or none with mode '${mode}' (p applies to mode 'thr' only), got ${p}`);
  }
  const mask = booleanOption('mask', o.mask, true);
  if (mode === 'nthr' && !mask) {
    fail('RANGE', 'mask', `expected true or none with mode 'nthr' (mask applies to 'thr' and 'thr-only')`);
  }
  let eta: number | 'auto' = 'auto';
  if (o.eta !== undefined && o.eta !== 'auto') {
    const what = "expected 'auto' or a number in [0, 1]";
    if (typeof o.eta === 'string') fail('RANGE', 'eta', `${what}, got ${quote(o.eta)}`);
    if (typeof o.eta !== 'number') fail('DTYPE', 'eta', `${what}, got ${describe(o.eta)}`);
    const etaRaw = checkNumber('eta', o.eta, { min: 0, max: 1, f32: true });
    if (mode !== 'nthr') {
      fail('RANGE', 'eta', `expected 'auto' or none with mode '${mode}' (eta applies to 'nthr' only)`);
    }
    eta = etaRaw;
  }
  return withInputs(backend, async (take) => {
    const layout = resolveLayout(o.layout);
    const { numTokens: T, numResponses: R, numGroups: G } = layout;
    const tokenAdvantages = take('tokenAdvantages', o.tokenAdvantages, ['f32'], [T]);
    const thr = take('thr', o.thr, ['f32'], [T]);
    const tau = take('tau', o.tau, ['f32'], [G]);
    const hostCorrect = readCorrect(o.correct, R);
    const correct = take('correct', hostCorrect, ['u8'], [R]);
    return backend.thrReweight({
      tokenAdvantages,
      thr,
      tau,
      layout,
      correct,
      hostCorrect,
      plan: reweightPlan(layout, hostCorrect, eta),
      p,
      mode,
      mask,
      eta,
    });
  });
}
