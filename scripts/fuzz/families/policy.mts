/**
 * Family 'policy': policyLoss with every loss, KL estimator (straight-through or not, bias-corrected
 * or not), rollout correction (every level and mode), the off-policy mask, aggregation and preset,
 * entropy bonus, mask, global counts and ranks, the per-token loss.
 *
 * Inputs: ≤ 12 responses of ≤ 12 tokens (empty ones; in one case of 16 ≤ 64 responses of ≤ 300 tokens,
 * several 1024-token blocks), advantages per token or (half the cases) per response with some at 0,
 * ℓ ≤ 0, ℓ − ℓ° of spread 0.01 to 3 (ratios
 * beyond the clips and the ±20 clamp), ℓ − ℓʳ of spread 1e-4 to 3 (k3's cancellation near 0), host
 * arrays or device tensors, sometimes a NaN log-prob; one case in ten sets options the loss does not
 * use (a RANGE error on every backend).
 *
 * Tolerances: test/cases/policy.ts POLICY_TOLERANCES, with the scales of that table's reference
 * (refPolicy under conventionsOf, through wantOf): loss relative to Σ|terms|, gradLogprobs to the
 * tensor's largest |gradient| (gmpo: or its response's Σ|c·A|·s_r/n_r), tokenLoss to each token's own terms, stats to the mean of |terms|.
 */
import {
  AGGREGATIONS,
  type Context,
  KL_ESTIMATORS,
  POLICY_LOSSES,
  type PolicyLossInputs,
  type PolicyLossOptions,
  type PolicyLossResult,
  PRESETS,
  ROLLOUT_LEVELS,
  ROLLOUT_MODES,
  type TensorLike,
} from '../../../src/index.js';
import {
  conventionsOf,
  POLICY_TOLERANCES,
  type PolicyData,
  refPolicy,
  wantOf,
} from '../../../test/cases/policy.js';
import { offsetsText, raggedLayout } from '../gen.mjs';
import { type Expect, type Family, type Keep, readValues, type Values } from '../harness.mjs';

async function readPolicy(res: PolicyLossResult, keep: Keep): Promise<Values> {
  for (const t of [res.loss, res.gradLogprobs, res.stats, res.gradEntropy, res.tokenLoss]) keep(t);
  const out: Values = {
    loss: await readValues(res.loss),
    gradLogprobs: await readValues(res.gradLogprobs),
    stats: await readValues(res.stats),
  };
  if (res.gradEntropy) out.gradEntropy = await readValues(res.gradEntropy);
  if (res.tokenLoss) out.tokenLoss = await readValues(res.tokenLoss);
  return out;
}

export const policyFamily: Family = {
  name: 'policy',
  ops: 'policyLoss',
  async run(r, s) {
    // One case in 16 is large: thousands of tokens in responses of up to 300 (several of the flat
    // kernel's 1024-token blocks; responses longer than a warp's 32 lanes on the warp path).
    const big = r.bool(1 / 16);
    const lay = raggedLayout(
      r,
      big
        ? { maxGroups: 8, maxGroupSize: 8, maxLength: 300, maxTokens: 6000, minGroups: 1 }
        : { maxGroups: 4, maxGroupSize: 4, maxLength: 12, maxTokens: 144, minGroups: 1 },
    );
    const T = lay.tokens;
    const lp = Float32Array.from({ length: T }, () => -Math.abs(r.normal()) * 2);
    const spread = r.pick([0.01, 0.1, 0.3, 0.5, 3]);
    const old = Float32Array.from(lp, (v) => v + r.normal() * spread);
    const adv = Float32Array.from({ length: T }, () => r.normal());
    const data: PolicyData = { offsets: lay.responseOffsets, lp, old, adv };
    const o: PolicyLossOptions = { loss: r.pick(POLICY_LOSSES) };
    if (r.bool(0.3)) o.preset = r.pick(PRESETS);
    const loose = r.bool(0.1); // options the loss may not use: RANGE on every backend
    const uses = (...losses: string[]) => loose || losses.includes(o.loss!);
    if (uses('ppo', 'gspo', 'cispo', 'gmpo') && r.bool(0.35)) o.clipLow = r.pick([0.1, 0.2, 0.28, 0.4, 1e-3]);
    if (uses('ppo', 'gspo', 'cispo', 'gmpo') && r.bool(0.35)) o.clipHigh = r.pick([0.2, 0.28, 0.5, 5]);
    // GRPO's advantages (one per response, a few responses at 0) as often as per-token ones.
    if (r.bool(0.5)) {
      const ro = lay.responseOffsets;
      for (let i = 0; i + 1 < ro.length; i++) adv.fill(r.bool(0.1) ? 0 : r.normal(), ro[i], ro[i + 1]);
    }
    if (uses('ppo') && r.bool(0.3)) o.dualClip = r.pick([3, 1.5, 'off'] as const);
    if (uses('ppo', 'cispo', 'sapo', 'reinforce') && r.bool(0.2))
      o.logRatioClamp = r.pick([20, 5, 0.5, 'off'] as const);
    if (uses('ppo', 'gspo') && r.bool(0.2)) o.delta = r.pick([1.05, 1.5, 2, 4]);
    if (uses('sapo') && r.bool(0.4)) o.sapoTau = { pos: r.pick([1, 0.5, 3]), neg: r.pick([1.05, 2, 0.1]) };
    // (k, λ) with φ = e^{λ + k·ln W − λ·W} well inside f32 (its largest: e^{k·ln(k/λ) − k + λ}); the
    // case table holds φ past f32 (k 6, λ 1e-9), where a response's f32 sum of its L overflows too.
    if (uses('vespo') && r.bool(0.4))
      o.vespo = {
        kPos: r.pick([2, 1, 0, 6]),
        lambdaPos: r.pick([3, 0.5, 0.05]),
        kNeg: r.pick([3, 4, -1]),
        lambdaNeg: r.pick([2, 1, 8]),
      };
    if (r.bool(0.4)) {
      const refSpread = r.pick([1e-4, 1e-2, 0.3, 3]);
      data.ref = Float32Array.from(lp, (v) => v + r.normal() * refSpread);
      o.kl = { coef: r.pick([0, 0.01, 0.1]), estimator: r.pick(KL_ESTIMATORS), straightThrough: r.bool(0.3) };
      // TRL's use_bias_correction_kl: token ratios only (gspo, gmpo: RANGE).
      if (uses('ppo', 'cispo', 'sapo', 'reinforce', 'vespo') && r.bool(0.3)) o.kl.biasCorrection = true;
    }
    if (r.bool(0.35)) {
      data.ent = Float32Array.from({ length: T }, () => Math.abs(r.normal()) * 2);
      if (r.bool(0.7)) o.entropyCoef = r.pick([0.01, -0.001, 0]);
    }
    if (r.bool(0.3)) {
      data.roll = Float32Array.from(old, (v) => v + r.normal() * 0.2);
      // vespo takes token-level, unnormalised weights only (RANGE otherwise; one case in ten tries).
      const vespoRoll = o.loss === 'vespo' && !loose;
      const mode = r.pick(ROLLOUT_MODES);
      // sequence-mask takes token weights only (RANGE at the other levels, tried when loose).
      o.rolloutCorrection = {
        level: vespoRoll || (mode === 'sequence-mask' && !loose) ? 'token' : r.pick(ROLLOUT_LEVELS),
        mode,
        normalize: vespoRoll ? false : r.bool(0.3),
        ...(r.bool(0.3) ? { lower: 0.5, upper: r.pick([2, 3, 5]) } : {}),
      };
    }
    // TRL's off-policy sequence mask, its κ_r from the rollout log-probs when given (which it may be
    // without rollout correction), else from the old ones.
    if (r.bool(0.25)) {
      o.offPolicyMask = { threshold: r.pick([0, 0.02, 0.1, -0.05, 1]) };
      if (!data.roll && r.bool(0.5)) data.roll = Float32Array.from(old, (v) => v + r.normal() * 0.2);
    }
    if (r.bool(0.4)) data.mask = Uint8Array.from({ length: T }, () => (r.bool(0.8) ? 1 : 0));
    if (r.bool(0.6)) o.aggregation = r.pick(AGGREGATIONS);
    if (o.aggregation === 'seq-mean-token-sum-norm' ? r.bool(0.8) : r.bool(0.03))
      o.scaleFactor = r.pick([1, 3, 64, 2048]);
    if (r.bool(0.15)) o.globalTokens = r.int(1, 500);
    if (r.bool(0.15)) o.globalSequences = r.int(1, 20);
    if (r.bool(0.15)) o.ranks = r.int(1, 4);
    o.tokenLoss = r.bool(0.6);
    if (T > 0 && r.bool(0.03)) lp[r.int(0, T - 1)] = Number.NaN;
    const groupOffsets = r.bool(0.3) ? lay.groupOffsets : undefined;
    const tensors = r.bool(0.2);
    const deviceMask = data.mask !== undefined && r.bool(0.3);
    const desc = `T=${T} ro=${offsetsText(lay.responseOffsets)} spread=${spread} ${JSON.stringify(o)} mask=${data.mask !== undefined}${deviceMask ? '(device)' : ''} entropy=${data.ent !== undefined} tensors=${tensors}`;

    await s.compare({
      op: 'policyLoss',
      desc,
      async run(ctx: Context, keep) {
        const up = (a: Float32Array | undefined): TensorLike<'f32'> | undefined =>
          a === undefined ? undefined : tensors ? keep(ctx.tensor(a)) : a;
        const inputs: PolicyLossInputs = {
          logprobs: up(lp)!,
          oldLogprobs: up(old)!,
          advantages: up(adv)!,
          layout: { responseOffsets: lay.responseOffsets, ...(groupOffsets ? { groupOffsets } : {}) },
        };
        if (data.ref) inputs.refLogprobs = up(data.ref);
        if (data.roll) inputs.rolloutLogprobs = up(data.roll);
        if (data.ent) inputs.entropy = up(data.ent);
        if (data.mask) inputs.mask = deviceMask ? keep(ctx.tensor(data.mask)) : data.mask;
        return readPolicy(await ctx.policyLoss(inputs, o), keep);
      },
      expect(js) {
        const want = wantOf(refPolicy(data, conventionsOf(o, data)), o);
        const out: Record<string, Expect> = {};
        for (const k of ['loss', 'gradLogprobs', 'gradEntropy', 'tokenLoss', 'stats'])
          out[k] = { tol: POLICY_TOLERANCES[k], scale: want[k]?.scale, terms: want[k]?.terms };
        // The table's gradient scale is max |g| of its reference's gradient, a central difference
        // with step 1e-6: exact to ~1e-10 of the loss's terms, so a gradient far below that (sapo's
        // saturated sigmoid: 1e-24) reads as 0 there. js's gradient is the analytic one in f64.
        // gmpo's per-response scales (its Q_r sums) stay where they exceed it.
        let g = 0;
        for (const v of js.gradLogprobs) if (Number.isFinite(v)) g = Math.max(g, Math.abs(v));
        out.gradLogprobs.scale = Float64Array.from(want.gradLogprobs.scale!, (x) => Math.max(g, x));
        return out;
      },
    });
  },
};
