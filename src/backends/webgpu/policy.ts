/// <reference types="@webgpu/types" />
/**
 * policyLoss on WebGPU: host side of shaders/policy.wgsl (formulas, work split, bytes and numerics
 * are in that file's header; the definitions in src/backends/js/policy.ts).
 *
 * Two layouts of the same per-token arithmetic (the WGSL's token_terms): `policy_flat` (workgroup per
 * run of tokens) when no token's outputs depend on a per-response quantity (the loss is not gspo, gmpo
 * or vespo, rollout correction is absent or token level in mode truncate or mask, no off-policy mask,
 * the aggregation is not seq-mean-token-mean: policyFlatApplies), else `policy_tokens` (invocation per
 * response). The test hook policyTuning.path forces either; a forced 'flat' where it does not apply is
 * a RANGE error. Two dispatches in one compute pass, never a wait:
 * - every global scale known on the host (no mask, a host mask, or the global counts given; no
 *   normalised rollout weights): the layout's kernel in phase 0 (outputs + partials), then
 *   `policy_reduce` (loss and stats);
 * - otherwise (a Tensor mask whose counts the aggregation needs, or normalize): the layout's kernel in
 *   phase 1 (partials only), then phase 2 (each workgroup folds the partials for the scales and writes
 *   its outputs; workgroup 0 the loss and stats).
 * WebGPU's default limit is eight storage buffers per kernel, so the optional inputs (refLogprobs,
 * rolloutLogprobs, entropy, mask) are copied into one scratch buffer, and with more than one output
 * the outputs are written into one scratch buffer and copied out (GPU copies in the same submission).
 */
import { GrpoKernelsError } from '../../errors.js';
import type { Tensor } from '../../tensor.js';
import {
  AGGREGATIONS,
  KL_ESTIMATORS,
  POLICY_LOSSES,
  POLICY_STATS,
  type PolicyLossArgs,
  type PolicyLossResult,
  ROLLOUT_LEVELS,
  ROLLOUT_MODES,
} from '../backend.js';
import { runWithScratch, type WebGpuKit } from './kit.js';
import { type Binding, roundUp, Usage } from './runtime.js';
import type { EntrySpec, ModuleKey } from './shaders.js';
import { gpuStorage, outputTensor } from './storage.js';
import { uniformLayout } from './uniforms.js';

/** The uniform struct of shaders/policy.wgsl (checked against the WGSL by infra.test.ts). */
export const POLICY_PARAMS = uniformLayout('policy.wgsl', 'PolicyParams', [
  ['num_responses', 'u32'],
  ['num_chunks', 'u32'],
  ['chunk', 'u32'],
  ['phase', 'u32'],
  ['num_tokens', 'u32'],
  ['tok_chunk', 'u32'],
  ['resp_chunk', 'u32'],
  ['loss', 'u32'],
  ['has_mask', 'u32'],
  ['has_kl', 'u32'],
  ['kl_est', 'u32'],
  ['kl_st', 'u32'],
  ['kl_value_all', 'u32'],
  ['kl_token_mean', 'u32'],
  ['has_ent', 'u32'],
  ['ent_token_mean', 'u32'],
  ['has_rollout', 'u32'],
  ['rollout_level', 'u32'],
  ['rollout_mode', 'u32'],
  ['rollout_normalize', 'u32'],
  ['aggregation', 'u32'],
  ['seq_clamp1', 'u32'],
  ['norm_by_seq', 'u32'],
  ['has_tokens', 'u32'],
  ['has_sequences', 'u32'],
  ['want_token_loss', 'u32'],
  ['off_ref', 'u32'],
  ['off_roll', 'u32'],
  ['off_ent', 'u32'],
  ['off_mask', 'u32'],
  ['off_gent', 'u32'],
  ['off_tloss', 'u32'],
  ['clip_low', 'f32'],
  ['clip_high', 'f32'],
  ['dual_clip', 'f32'],
  ['log_clamp', 'f32'],
  ['gspo_clamp', 'f32'],
  ['delta', 'f32'],
  ['cispo_cap', 'u32'],
  ['tau_pos', 'f32'],
  ['tau_neg', 'f32'],
  ['kl_coef', 'f32'],
  ['kl_in_clamp', 'f32'],
  ['kl_value_clamp', 'f32'],
  ['ent_coef', 'f32'],
  ['rollout_lower', 'f32'],
  ['rollout_upper', 'f32'],
  ['rollout_log_clamp', 'f32'],
  ['scale_factor', 'f32'],
  ['ranks', 'f32'],
  ['tokens', 'f32'],
  ['sequences', 'f32'],
  ['vespo_k_pos', 'f32'],
  ['vespo_lambda_pos', 'f32'],
  ['vespo_k_neg', 'f32'],
  ['vespo_lambda_neg', 'f32'],
  ['kl_bias', 'u32'],
  ['has_roll', 'u32'],
  ['has_opsm', 'u32'],
  ['opsm_threshold', 'f32'],
]);

/** The codes of shaders/policy.wgsl (LOSS_*, KL_*, LEVEL_*, MODE_*, AGG_*): each list's positions. */
export const POLICY_LOSS_CODE = Object.fromEntries(POLICY_LOSSES.map((k, i) => [k, i])) as Record<
  (typeof POLICY_LOSSES)[number],
  number
>;
export const KL_CODE = Object.fromEntries(KL_ESTIMATORS.map((k, i) => [k, i])) as Record<
  (typeof KL_ESTIMATORS)[number],
  number
>;
export const LEVEL_CODE = Object.fromEntries(ROLLOUT_LEVELS.map((k, i) => [k, i])) as Record<
  (typeof ROLLOUT_LEVELS)[number],
  number
>;
export const MODE_CODE = Object.fromEntries(ROLLOUT_MODES.map((k, i) => [k, i])) as Record<
  (typeof ROLLOUT_MODES)[number],
  number
>;
export const AGGREGATION_CODE = Object.fromEntries(AGGREGATIONS.map((k, i) => [k, i])) as Record<
  (typeof AGGREGATIONS)[number],
  number
>;

/** Words of one partial record (PART_WORDS in the WGSL). */
const PART_WORDS = 17;
/** At most this many chunks (so a phase-2 workgroup folds at most this many partials). */
const MAX_CHUNKS = 1024;
/** The flat layout's tokens in flight per invocation (FLAT_K in the WGSL); a step is WG·FLAT_K tokens. */
const FLAT_K = 4;

/** The layouts of shaders/policy.wgsl: the host's choice, an invocation per response, or flat. */
export type WebGpuPolicyPath = 'auto' | 'response' | 'flat';

/**
 * Test knobs (shaders/policy.wgsl). `path`: the layout ('flat' where a token's outputs depend on a
 * per-response quantity throws a RANGE error, as cuda's launcher refuses it); `chunkMultiple`: the
 * response layout's responses per chunk as a multiple of WG (undefined: the fewest that keep
 * ≤ MAX_CHUNKS); `chunkTokens`: the flat layout's tokens per workgroup, a positive multiple of
 * WG·FLAT_K (0: the fewest that keep ≤ MAX_CHUNKS workgroups).
 */
export const policyTuning: {
  path: WebGpuPolicyPath;
  chunkMultiple: number | undefined;
  chunkTokens: number;
} = { path: 'auto', chunkMultiple: undefined, chunkTokens: 0 };

/**
 * The flat layout's work split for T tokens and R responses at workgroup size `wg`: tokens per
 * workgroup (TC: `chunkTokens` when > 0, a positive multiple of the step wg·FLAT_K; else the fewest
 * multiple of the step that keeps ≤ MAX_CHUNKS workgroups, so T and wg alone set it), workgroups, and
 * responses per workgroup for n_seq (RC = ⌈R / workgroups⌉).
 */
export function policyFlatPlan(
  T: number,
  R: number,
  wg: number,
  chunkTokens = 0,
): { tokChunk: number; chunks: number; respChunk: number } {
  const step = wg * FLAT_K;
  let tokChunk = chunkTokens;
  if (tokChunk === 0) tokChunk = step * Math.max(1, Math.ceil(Math.ceil(T / MAX_CHUNKS) / step));
  else if (!(Number.isInteger(tokChunk) && tokChunk > 0 && tokChunk % step === 0))
    throw new GrpoKernelsError(
      'RANGE',
      `policyTuning.chunkTokens: expected a positive multiple of ${step} (WG·${FLAT_K}), got ${tokChunk}`,
      { argument: 'policyTuning.chunkTokens' },
    );
  const chunks = Math.ceil(T / tokChunk);
  return { tokChunk, chunks, respChunk: chunks === 0 ? 0 : Math.ceil(R / chunks) };
}

/**
 * Whether the flat layout applies: no token's outputs depend on a per-response quantity (gspo's and
 * gmpo's s_r, gmpo's Q_r, vespo's W_r, a sequence-level rollout weight, rollout mode 'sequence-mask''s
 * Λ_r, the off-policy mask's κ_r, seq-mean-token-mean's a_r). The KL bias correction is per token: it
 * leaves the choice alone.
 */
export function policyFlatApplies(a: PolicyLossArgs): boolean {
  return (
    a.loss !== 'gspo' &&
    a.loss !== 'gmpo' &&
    a.loss !== 'vespo' &&
    (a.rollout === undefined || (a.rollout.level === 'token' && a.rollout.mode !== 'sequence-mask')) &&
    a.offPolicyThreshold === undefined &&
    a.aggregation !== 'seq-mean-token-mean'
  );
}

const BINDINGS: [number, 'uniform' | 'read' | 'rw'][] = [
  [0, 'uniform'],
  [1, 'read'],
  [2, 'read'],
  [3, 'read'],
  [4, 'read'],
  [5, 'read'],
  [6, 'rw'],
  [7, 'rw'],
  [8, 'rw'],
];
const TOKENS: EntrySpec = { entry: 'policy_tokens', bindings: BINDINGS };
const FLAT: EntrySpec = { entry: 'policy_flat', bindings: BINDINGS };
const REDUCE: EntrySpec = { entry: 'policy_reduce', bindings: BINDINGS };
const MODULE: ModuleKey = { file: 'policy.wgsl', sections: ['k3'] };

/** 0 stands for "off" in the WGSL: every clamp, cap and bound that can be off is > 0 when on. */
const offZero = (x: number) => (Number.isFinite(x) ? x : 0);

export async function webgpuPolicyLoss(k: WebGpuKit, a: PolicyLossArgs): Promise<PolicyLossResult> {
  const { rt } = k;
  rt.check();
  const T = a.numTokens;
  const R = a.numResponses;
  const nOut = 1 + (a.entropy ? 1 : 0) + (a.tokenLoss ? 1 : 0);
  k.checkVector('logprobs', T * nOut);
  const extraWords =
    (a.refLogprobs ? T : 0) +
    (a.rolloutLogprobs ? T : 0) +
    (a.entropy ? T : 0) +
    (a.mask ? Math.ceil(T / 4) : 0);
  k.checkVector('refLogprobs', extraWords);

  // Which scales the host knows (phase 0) or the device must count first (phases 1 + 2).
  const agg = a.aggregation;
  const needsTokens =
    agg === 'token-mean' ||
    a.kl?.aggregation === 'token-mean' ||
    (a.entropy !== undefined && a.entropyAggregation === 'token-mean');
  const needsSequences =
    agg.startsWith('seq-mean') && !(agg === 'seq-mean-token-sum-norm' && !a.normBySequences);
  const deviceScales =
    (needsTokens && a.tokens === undefined) ||
    (needsSequences && a.sequences === undefined) ||
    a.rollout?.normalize === true;

  // The layout and its chunks. Response layout: the fewest responses per workgroup (a multiple of WG)
  // that keep ≤ MAX_CHUNKS workgroups. Flat layout: the fewest tokens per workgroup (a multiple of the
  // step WG·FLAT_K) that keep ≤ MAX_CHUNKS workgroups; T alone sets it (and WG), so the loss's bits
  // depend on the batch only.
  const wg = k.wg;
  const flatOk = policyFlatApplies(a);
  const path = policyTuning.path;
  if (path === 'flat' && !flatOk)
    throw new GrpoKernelsError(
      'RANGE',
      'policyTuning.path: the flat path needs a loss other than gspo, gmpo and vespo, token-level ' +
        "rollout correction in a mode other than 'sequence-mask', no off-policy mask and an " +
        'aggregation other than seq-mean-token-mean',
      { argument: 'policyTuning.path' },
    );
  const flat = path === 'flat' || (path === 'auto' && flatOk);
  let chunk = 0;
  let tokChunk = 0;
  let respChunk = 0;
  let chunks: number;
  if (flat) {
    ({ tokChunk, chunks, respChunk } = policyFlatPlan(T, R, wg, policyTuning.chunkTokens));
  } else {
    chunk = wg * (policyTuning.chunkMultiple ?? Math.max(1, Math.ceil(R / (wg * MAX_CHUNKS))));
    chunks = Math.ceil(R / chunk);
  }
  const constants = { WG: wg };
  const [tokensPipe, reducePipe] = await Promise.all([
    chunks > 0 ? k.pipelines.get(MODULE, flat ? FLAT : TOKENS, constants) : undefined,
    !deviceScales || chunks === 0 ? k.pipelines.get(MODULE, REDUCE, constants) : undefined,
  ]);

  // Offsets inside the packed optional inputs (u32 words) and outputs (f32 elements).
  let at = 0;
  const place = (present: boolean, words: number) => {
    const o = at;
    if (present) at += words;
    return o;
  };
  const offRef = place(a.refLogprobs !== undefined, T);
  const offRoll = place(a.rolloutLogprobs !== undefined, T);
  const offEnt = place(a.entropy !== undefined, T);
  const offMask = place(a.mask !== undefined, Math.ceil(T / 4));
  const offGent = a.entropy ? T : 0;
  const offTloss = T * (a.entropy ? 2 : 1);

  const kl = a.kl;
  const rc = a.rollout;
  const base = {
    num_responses: R,
    num_chunks: chunks,
    chunk,
    phase: 0,
    num_tokens: T,
    tok_chunk: tokChunk,
    resp_chunk: respChunk,
    loss: POLICY_LOSS_CODE[a.loss],
    has_mask: a.mask ? 1 : 0,
    has_kl: kl ? 1 : 0,
    kl_est: kl ? KL_CODE[kl.estimator] : 0,
    kl_st: kl?.straightThrough ? 1 : 0,
    kl_value_all: kl?.valueClampAll ? 1 : 0,
    kl_token_mean: kl?.aggregation === 'token-mean' ? 1 : 0,
    has_ent: a.entropy ? 1 : 0,
    ent_token_mean: a.entropyAggregation === 'token-mean' ? 1 : 0,
    has_rollout: rc ? 1 : 0,
    rollout_level: rc ? LEVEL_CODE[rc.level] : 0,
    rollout_mode: rc ? MODE_CODE[rc.mode] : 0,
    rollout_normalize: rc?.normalize ? 1 : 0,
    aggregation: AGGREGATION_CODE[agg],
    seq_clamp1: a.seqTokenDivisor === 'clamp1' ? 1 : 0,
    norm_by_seq: a.normBySequences ? 1 : 0,
    has_tokens: a.tokens !== undefined ? 1 : 0,
    has_sequences: a.sequences !== undefined ? 1 : 0,
    want_token_loss: a.tokenLoss ? 1 : 0,
    off_ref: offRef,
    off_roll: offRoll,
    off_ent: offEnt,
    off_mask: offMask,
    off_gent: offGent,
    off_tloss: offTloss,
    clip_low: a.clipLow,
    clip_high: a.clipHigh,
    dual_clip: offZero(a.dualClip),
    log_clamp: offZero(a.logRatioClamp),
    gspo_clamp: offZero(a.gspoLogClamp),
    delta: offZero(a.delta),
    cispo_cap: a.cispoCap ? 1 : 0,
    tau_pos: a.sapoTauPos,
    tau_neg: a.sapoTauNeg,
    kl_coef: kl?.coef ?? 0,
    kl_in_clamp: kl ? offZero(kl.inputClamp) : 0,
    kl_value_clamp: kl ? offZero(kl.valueClamp) : 0,
    ent_coef: a.entropyCoef,
    rollout_lower: rc?.lower ?? 0,
    rollout_upper: rc?.upper ?? 0,
    rollout_log_clamp: rc ? offZero(rc.logClamp) : 0,
    scale_factor: a.scaleFactor,
    ranks: a.ranks,
    tokens: a.tokens ?? 0,
    sequences: a.sequences ?? 0,
    vespo_k_pos: a.vespoKPos,
    vespo_lambda_pos: a.vespoLambdaPos,
    vespo_k_neg: a.vespoKNeg,
    vespo_lambda_neg: a.vespoLambdaNeg,
    kl_bias: kl?.biasCorrection ? 1 : 0,
    has_roll: a.rolloutLogprobs !== undefined ? 1 : 0,
    has_opsm: a.offPolicyThreshold !== undefined ? 1 : 0,
    opsm_threshold: a.offPolicyThreshold ?? 0,
  };
  if (chunks * PART_WORDS * 4 > rt.limits.maxStorageBufferBindingSize) {
    throw new GrpoKernelsError(
      'SHAPE',
      `layout: ${flat ? `${T} tokens` : `${R} responses`} need more partial records than one binding holds`,
      {
        argument: 'layout',
      },
    );
  }

  return runWithScratch(k, 'policyLoss', (s) => {
    const grad = outputTensor(rt, 'f32', [T]);
    const gradEntropy = a.entropy ? outputTensor(rt, 'f32', [T]) : undefined;
    const tokenLoss = a.tokenLoss ? outputTensor(rt, 'f32', [T]) : undefined;
    const loss = outputTensor(rt, 'f32', [1]);
    const stats = outputTensor(rt, 'f32', [POLICY_STATS.length]);
    const result: PolicyLossResult = { loss, gradLogprobs: grad, stats };
    if (gradEntropy) result.gradEntropy = gradEntropy;
    if (tokenLoss) result.tokenLoss = tokenLoss;

    const enc = rt.device.createCommandEncoder({ label: 'policyLoss' });
    // Optional inputs → one buffer.
    let extra = k.dummies[0];
    if (at > 0) {
      extra = s.buffer(at * 4, 'policyLoss inputs');
      const copyIn = (t: Tensor | undefined, offWords: number, bytes: number) => {
        if (t !== undefined && bytes > 0)
          enc.copyBufferToBuffer(gpuStorage(t).buffer, 0, extra, offWords * 4, bytes);
      };
      copyIn(a.refLogprobs, offRef, 4 * T);
      copyIn(a.rolloutLogprobs, offRoll, 4 * T);
      copyIn(a.entropy, offEnt, 4 * T);
      copyIn(a.mask, offMask, roundUp(T, 4));
    }
    const outs =
      nOut === 1 ? gpuStorage(grad).buffer : s.buffer(Math.max(4 * T * nOut, 4), 'policyLoss outputs');
    const parts = s.buffer(Math.max(chunks, 1) * PART_WORDS * 4, 'policyLoss partials');
    const res = s.buffer(4 * (1 + POLICY_STATS.length), 'policyLoss result');
    const roff = rt.transientData(a.responseOffsets, Usage.STORAGE, 'responseOffsets');
    const input = (t: Tensor) => (T > 0 ? gpuStorage(t).buffer : k.dummies[1]);
    const bindings = (phase: number): Binding[] => [
      { binding: 0, buffer: rt.uniform(POLICY_PARAMS, { ...base, phase }) },
      { binding: 1, buffer: roff },
      { binding: 2, buffer: input(a.logprobs) },
      { binding: 3, buffer: input(a.oldLogprobs) },
      { binding: 4, buffer: input(a.advantages) },
      { binding: 5, buffer: extra },
      { binding: 6, buffer: T > 0 ? outs : k.dummies[2] },
      { binding: 7, buffer: parts },
      { binding: 8, buffer: res },
    ];
    const pass = enc.beginComputePass();
    if (chunks === 0) {
      rt.dispatch(pass, reducePipe!, bindings(0), 1);
    } else if (!deviceScales) {
      rt.dispatch(pass, tokensPipe!, bindings(0), chunks);
      rt.dispatch(pass, reducePipe!, bindings(0), 1);
    } else {
      rt.dispatch(pass, tokensPipe!, bindings(1), chunks);
      rt.dispatch(pass, tokensPipe!, bindings(2), chunks);
    }
    pass.end();
    if (nOut > 1 && T > 0) {
      enc.copyBufferToBuffer(outs, 0, gpuStorage(grad).buffer, 0, 4 * T);
      if (gradEntropy) enc.copyBufferToBuffer(outs, 4 * offGent, gpuStorage(gradEntropy).buffer, 0, 4 * T);
      if (tokenLoss) enc.copyBufferToBuffer(outs, 4 * offTloss, gpuStorage(tokenLoss).buffer, 0, 4 * T);
    }
    enc.copyBufferToBuffer(res, 0, gpuStorage(loss).buffer, 0, 4);
    enc.copyBufferToBuffer(res, 4, gpuStorage(stats).buffer, 0, 4 * POLICY_STATS.length);
    rt.submit(enc);
    return result;
  });
}
