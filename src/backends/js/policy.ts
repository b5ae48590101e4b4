/**
 * CPU reference of policyLoss (POLICY.md; conventions resolved by src/api/policy.ts, sources in
 * docs/PRESETS.md). Float64 throughout, one rounding to f32 per output. The GPU kernels
 * (shaders/policy.wgsl, native/cuda/policy.cu) compute the same definitions in f32; this file states
 * them once, in the order they are evaluated.
 *
 * Per response r (tokens [o_r, o_{r+1}), valid when m_t ≠ 0; masked tokens are never read):
 *   n_r = Σ m_t;  gspo: log s_r = Σ_valid (ℓ − ℓ°) / max(n_r, 1);
 *   gmpo: log s_r = Σ_valid Δ̂_t / (n_r + 1e-8), Δ̂ = min(Δ, ε_high) if A > 0, max(Δ, −ε_low) if A < 0,
 *   0·Δ if A = 0 (verl's sign(A)·min(sign(A)·Δ, sign(A)·clamp(Δ, −ε_low, ε_high)), Δ = ℓ − ℓ° unclamped);
 *   Q_r = Σ_valid w·A (w the rollout weight below);
 *   vespo: ln W_r = clamp(Σ_valid clamp(Δ, ±20) + Σ_valid clamp(ln w_t, ln 1e-8, 20), ln 1e-8, 20), the
 *   second sum with token-level rollout correction only (the weights fold into W_r; TRL's
 *   get_gamma_weights), W_r = e^{ln W_r};
 *   rollout (sequence | geometric, and token-level sequence-mask's filter): Λ_r = Σ_valid λ_t (| / max(n_r, 1)),
 *   λ_t = ℓ°_t − ℓᵛ_t;
 *   off-policy mask (TRL's OPSM, threshold δ): κ_r = Σ_valid (ℓᵛ_t − ℓ_t) / max(n_r, 1), ℓᵛ = ℓ° without
 *   rolloutLogprobs; a token's keep factor k_t = 1 if A_t ≥ 0 or κ_r ≤ δ, 0 if κ_r > δ, NaN if κ_r is NaN
 *   (NaN in, NaN out), a stop-gradient; without the mask k_t = 1.
 * Per valid token:
 *   Δ = ℓ − ℓ°; ρ = e^{clamp(Δ, ±c_Δ)}, dρ/dℓ = ρ inside the clamp (bounds included, as torch.clamp), else 0;
 *   gspo: ρ = e^{min(log s_r, c_g)} with dρ/dℓ = ρ (straight through: s_r is a stop-gradient), 0 above c_g.
 *   ppo, gspo: u1 = −A·min(ρ, δ), u2 = −A·clip(ρ, 1 − ε_low, 1 + ε_high); L = u2 if u2 > u1 (clipped) else u1;
 *              ppo with dual clip c, A < 0, L > −A·c: L = −A·c (lower clipped, no gradient).
 *   cispo:     L = −sg[clip(ρ, 1 − ε_low, 1 + ε_high)]·A·ℓ (or TRL's sg[min(ρ, ε_high)]), clipped where that differs from ρ.
 *   sapo:      L = −(4/τ)·σ(τ(ρ − 1))·A, τ = τ_pos if A > 0 else τ_neg.
 *   reinforce: L = −A·ℓ.
 *   vespo:     L = −sg[φ]·A·ℓ, φ = e^{λ + k·ln W_r − λ·W_r} with (k, λ) = (k₊, λ₊) if A ≥ 0 else (k₋, λ₋), φ
 *              past f32's largest value → 0 (TRL's f32 +Inf, nan_to_num; a NaN stays NaN here); ρ = e^{clamp(Δ, ±20)} (the ratio stats and
 *              ppo_kl), never clipped; the rollout weight is not a factor of L (it is inside W_r).
 *   gmpo:      L = −A·s_r, ρ = s_r; ℓ_t enters every L of its response through s_r (no stop-gradient):
 *              w·∂(Σ_r w·L)/∂ℓ_t := −Q_r·s_r·d_t/(n_r + 1e-8), d_t = 1 where t's own Δ̂ follows Δ (A > 0 and
 *              Δ ≤ ε_high, or A < 0 and Δ ≥ −ε_low; torch's min and clamp pass the gradient at a tie), else
 *              0, and a NaN of that product passes the mask; clipped (clipFraction) where A > 0 and Δ lies
 *              outside [−ε_low, ε_high] (NaN included), lower clipped (clipFractionLower) where A < 0 and
 *              it does (verl's geo_mean pg_clipfrac and pg_clipfrac_lower).
 *   KL (x = ℓ − ℓʳ): k1 x | abs |x| | k2 x²/2 | k3 e^y − y − 1, y = clamp(−x, ±c_in); value clamped to ±c_v
 *   (k3 only, or every estimator); straight-through: gradient x (k2's).
 *   KL bias correction (TRL's use_bias_correction_kl; token ratios only): KL ← KL·ρ, ∂KL ← ∂KL·ρ + KL·dρ/dℓ
 *   (after the clamps and the straight-through choice; vespo's ρ and dρ/dℓ are e^{clamp(Δ, ±20)}'s).
 *   rollout weight w (no gradient): e^{clamp(λ_t, ±c_λ)} (token) or e^{clamp(Λ_r, ±c_λ)} (sequence, geometric),
 *   then truncate: clamp(w, lower, upper), or mask: w·1[lower ≤ w ≤ upper], or sequence-mask (token level):
 *   w·1[lower ≤ e^{clamp(Λ_r, ±c_λ)} ≤ upper] with Λ_r the mean (the weight kept whole inside, 0 outside,
 *   NaN for a NaN Λ_r; every token of the response counted clipped outside); w = 1 without rollout
 *   correction. The policy term's weight is w·k_t (vespo: k_t, its w is inside W_r).
 * Aggregation (D ranks, K scale factor, N_tok / N_seq global or this batch's):
 *   S_r = Σ_valid w·L, K_r = Σ_valid KL, H_r = Σ_valid H;  a_r = 1/(n_r + 1e-8) or 1/max(n_r, 1) for
 *   seq-mean-token-mean, else 1;  G = D/max(N_tok, 1) (token-mean), D (token-sum), D/max(N_seq, 1)
 *   (seq-mean-*), D/(max(N_seq, 1)·K) or verl's 1/K (seq-mean-token-sum-norm);  a token-mean term (KL or
 *   entropy under their 'token-mean' convention) uses a_r = 1 and G_tm = D/max(N_tok, 1). With normalize,
 *   W̄ = mean of the weights (valid tokens, or nonempty sequences), 1 when ≤ 1e-8.
 *   loss = G·Σ a_r S_r / W̄ + β·G_kl·Σ a^kl_r K_r − c_H·G_H·Σ a^H_r H_r   (S_r = Σ_valid w·k·L)
 *   dloss/dℓ_t = m_t·(G·a_r·(w·k/W̄)·∂L/∂ℓ + β·G_kl·a^kl_r·∂KL/∂ℓ) (gmpo: Q_r = Σ w·k·A as above);
 *   dloss/dH_t = −c_H·m_t·G_H·a^H_r;
 *   tokenLoss_t = m_t·((w·k/W̄)·L + β·KL − c_H·H).
 * Owns: everything, one response after another. Bytes: each input read twice (4–7 f32 + the mask),
 * 1–3 f32 outputs written. FLOPs ~40 per token.
 * Numerics: f64 sums in token order; NaN and ±Inf follow IEEE arithmetic (a masked token never enters).
 * NaN in, NaN out: a clamp keeps a NaN, every derivative mask ("inside the clamp", ppo's cap ρ ≤ δ, the
 * mask mode's band) lets it through, so a NaN input at a valid token makes the loss and that token's
 * gradient and tokenLoss NaN (and every token of its response, through a per-response quantity);
 * never a finite number, never the ±A·δ of a failed comparison. Every backend follows these rules.
 * sapo's σ'(z) = s(1 − s) is taken as e^{−z}·s² for z ≥ 0 (no cancellation in 1 − s as s → 1).
 */
import type { Tensor } from '../../tensor.js';
import { POLICY_STATS, type PolicyLossArgs, type PolicyLossResult } from '../backend.js';
import { hostData, jsOutput, jsTensor } from './storage.js';

const clamp = (x: number, lo: number, hi: number) => Math.min(Math.max(x, lo), hi);
/** vespo's clamps (TRL's get_gamma_weights): the log-ratios to ±20, ln W_r and the weights' logs to ≥ ln 1e-8. */
const VESPO_CLAMP = 20;
const VESPO_LOG_MIN = Math.log(1e-8);
/** f32's largest finite value: vespo's φ past it is 0, as in TRL's f32 arithmetic (every backend). */
const F32_MAX = 3.4028234663852886e38;

/** The aggregation constants of PolicyLossArgs from the counts (shared by the loss and the gradient). */
export function aggregationScales(
  a: PolicyLossArgs,
  localTokens: number,
  localSequences: number,
): { g: number; gTokenMean: number } {
  const nTok = Math.max(a.tokens ?? localTokens, 1);
  const nSeq = Math.max(a.sequences ?? localSequences, 1);
  const D = a.ranks;
  const gTokenMean = D / nTok;
  let g: number;
  switch (a.aggregation) {
    case 'token-mean':
      g = gTokenMean;
      break;
    case 'token-sum':
      g = D;
      break;
    case 'seq-mean-token-sum':
    case 'seq-mean-token-mean':
      g = D / nSeq;
      break;
    case 'seq-mean-token-sum-norm':
      g = a.normBySequences ? D / (nSeq * a.scaleFactor) : 1 / a.scaleFactor;
      break;
  }
  return { g, gTokenMean };
}

export function jsPolicyLoss(a: PolicyLossArgs): PolicyLossResult {
  const T = a.numTokens;
  const R = a.numResponses;
  const ro = a.responseOffsets;
  const lp = hostData(a.logprobs);
  const old = hostData(a.oldLogprobs);
  const adv = hostData(a.advantages);
  const ref = a.refLogprobs && hostData(a.refLogprobs);
  const roll = a.rolloutLogprobs && hostData(a.rolloutLogprobs);
  const ent = a.entropy && hostData(a.entropy);
  const mask = a.mask && hostData(a.mask);
  const valid = (t: number) => mask === undefined || mask[t] !== 0;

  const grad = jsOutput('f32', T);
  const gradEnt = ent ? jsOutput('f32', T) : undefined;
  const tokLoss = a.tokenLoss ? jsOutput('f32', T) : undefined;

  // ---------------------------------------------------------------- per response, first pass
  const n = new Float64Array(R);
  const logS = new Float64Array(R); // gspo, gmpo
  const logW = new Float64Array(R); // vespo: ln W_r
  const gmpo = a.loss === 'gmpo';
  const vespo = a.loss === 'vespo';
  // gmpo's Δ̂: Δ on A's side of the band, the bound on the other (NaN in, NaN out).
  const gmpoDelta = (A: number, delta: number) =>
    A > 0 ? Math.min(delta, a.clipHigh) : A < 0 ? Math.max(delta, -a.clipLow) : A === 0 ? 0 * delta : A;
  const seqW = new Float64Array(R); // rollout sequence / geometric weight; sequence-mask: the filter (1, 0, NaN)
  const seqClipped = new Uint8Array(R);
  const rc = a.rollout;
  const seqLevel = rc !== undefined && rc.level !== 'token';
  const seqMask = rc?.mode === 'sequence-mask';
  const opsm = a.offPolicyThreshold;
  const kappa = new Float64Array(R); // the off-policy mask's κ_r
  const opsmRef = roll ?? old;
  const correct = (w: number): [number, boolean] => {
    // truncate: clamp(w, lower, upper); mask: w·1[lower ≤ w ≤ upper]. A NaN weight is counted as
    // clipped and stays NaN either way (NaN in, NaN out: masking it to 0 would hide it).
    const inside = w >= rc!.lower && w <= rc!.upper;
    if (rc!.mode === 'truncate') return [clamp(w, rc!.lower, rc!.upper), !inside];
    return [w < rc!.lower || w > rc!.upper ? 0 : w, !inside];
  };
  let localTokens = 0;
  let localSequences = 0;
  for (let r = 0; r < R; r++) {
    let cnt = 0;
    let dsum = 0;
    let lsum = 0;
    let ksum = 0;
    for (let t = ro[r]; t < ro[r + 1]; t++) {
      if (!valid(t)) continue;
      cnt++;
      if (a.loss === 'gspo') dsum += lp[t] - old[t];
      else if (gmpo) dsum += gmpoDelta(adv[t], lp[t] - old[t]);
      else if (vespo) dsum += clamp(lp[t] - old[t], -VESPO_CLAMP, VESPO_CLAMP);
      if (seqLevel || seqMask) lsum += old[t] - roll![t];
      if (opsm !== undefined) ksum += opsmRef[t] - lp[t];
    }
    kappa[r] = ksum / Math.max(cnt, 1);
    if (seqMask) {
      const geo = Math.exp(clamp(lsum / Math.max(cnt, 1), -rc.logClamp, rc.logClamp));
      const inside = geo >= rc.lower && geo <= rc.upper;
      seqW[r] = inside ? 1 : Number.isNaN(geo) ? Number.NaN : 0;
      seqClipped[r] = inside ? 0 : 1;
    }
    n[r] = cnt;
    localTokens += cnt;
    if (cnt > 0) localSequences++;
    logS[r] = gmpo ? dsum / (cnt + 1e-8) : dsum / Math.max(cnt, 1);
    logW[r] = dsum; // (vespo: Σ clamp(Δ, ±20), the weights added below)
    if (seqLevel) {
      const lam = rc.level === 'sequence' ? lsum : lsum / Math.max(cnt, 1);
      const [w, clipped] = correct(Math.exp(clamp(lam, -rc.logClamp, rc.logClamp)));
      seqW[r] = w;
      seqClipped[r] = clipped ? 1 : 0;
    }
  }
  if (a.seqCount === 'all') localSequences = R;
  let nonempty = 0;
  for (let r = 0; r < R; r++) if (n[r] > 0) nonempty++;

  // Rollout weights of every valid token (token level) and their statistics.
  const tokW = rc !== undefined && !seqLevel ? new Float64Array(T) : undefined;
  let wSum = 0;
  let wSq = 0;
  let wCount = 0;
  let wClipped = 0;
  if (rc !== undefined) {
    for (let r = 0; r < R; r++) {
      if (seqLevel) {
        if (n[r] === 0) continue;
        wSum += seqW[r];
        wSq += seqW[r] * seqW[r];
        wCount++;
        wClipped += seqClipped[r];
        continue;
      }
      for (let t = ro[r]; t < ro[r + 1]; t++) {
        if (!valid(t)) continue;
        const raw = Math.exp(clamp(old[t] - roll![t], -rc.logClamp, rc.logClamp));
        // sequence-mask: kept whole inside the band, 0 outside (not 0·w: an infinite weight stays
        // out), NaN for NaN; its response's decision.
        const [w, clipped] = seqMask ? [seqW[r] === 1 ? raw : seqW[r], seqClipped[r] === 1] : correct(raw);
        tokW![t] = w;
        wSum += w;
        wSq += w * w;
        wCount++;
        if (clipped) wClipped++;
      }
    }
  }
  // vespo: ln W_r, the token weights folded in (their logs clamped to [ln 1e-8, 20]).
  if (vespo) {
    for (let r = 0; r < R; r++) {
      let x = logW[r];
      if (tokW !== undefined)
        for (let t = ro[r]; t < ro[r + 1]; t++)
          if (valid(t)) x += clamp(Math.log(tokW[t]), VESPO_LOG_MIN, VESPO_CLAMP);
      logW[r] = clamp(x, VESPO_LOG_MIN, VESPO_CLAMP);
    }
  }
  // The off-policy mask's keep factor k_t: 1, 0, or NaN for a NaN κ_r (never 0 for a NaN).
  const keepOf = (r: number, A: number) =>
    opsm === undefined || A >= 0 || kappa[r] <= opsm ? 1 : kappa[r] > opsm ? 0 : Number.NaN;
  // gmpo: Q_r = Σ_valid w·k·A, with the weights before normalisation (W̄ divides the gradient below).
  const Q = new Float64Array(R);
  if (gmpo) {
    for (let r = 0; r < R; r++) {
      let q = 0;
      for (let t = ro[r]; t < ro[r + 1]; t++) {
        if (!valid(t)) continue;
        q += (rc === undefined ? 1 : seqLevel ? seqW[r] : tokW![t]) * keepOf(r, adv[t]) * adv[t];
      }
      Q[r] = q;
    }
  }
  let invWbar = 1;
  if (rc?.normalize && wCount > 0) {
    const mean = wSum / wCount;
    if (mean > 1e-8) invWbar = 1 / mean;
  }

  // ---------------------------------------------------------------- scales
  const { g, gTokenMean } = aggregationScales(a, localTokens, localSequences);
  const seqMean = a.aggregation === 'seq-mean-token-mean';
  const aOf = (r: number) =>
    !seqMean ? 1 : a.seqTokenDivisor === 'eps' ? 1 / (n[r] + 1e-8) : 1 / Math.max(n[r], 1);
  const kl = a.kl;
  const klLoss = kl?.aggregation !== 'token-mean';
  const entLoss = a.entropyAggregation !== 'token-mean';
  const gKl = klLoss ? g : gTokenMean;
  const gH = entLoss ? g : gTokenMean;
  const beta = kl?.coef ?? 0;
  const cH = a.entropyCoef;

  // ---------------------------------------------------------------- per token
  const epsLo = 1 - a.clipLow;
  const epsHi = 1 + a.clipHigh;
  let pg = 0;
  let klSumW = 0;
  let entSumW = 0;
  let clipCount = 0;
  let lowerCount = 0;
  let ppoKl = 0;
  let klSum = 0;
  let entSum = 0;
  let ratioSum = 0;
  let ratioMin = Number.POSITIVE_INFINITY;
  let ratioMax = Number.NEGATIVE_INFINITY;
  for (let r = 0; r < R; r++) {
    const ar = aOf(r);
    const aKl = klLoss ? ar : 1;
    const aH = entLoss ? ar : 1;
    let S = 0;
    let Kr = 0;
    let Hr = 0;
    for (let t = ro[r]; t < ro[r + 1]; t++) {
      if (!valid(t)) {
        grad[t] = 0;
        if (gradEnt) gradEnt[t] = 0;
        if (tokLoss) tokLoss[t] = 0;
        continue;
      }
      const A = adv[t];
      const delta = lp[t] - old[t];
      // The ratio and dρ/dℓ.
      let rho: number;
      let drho: number;
      if (a.loss === 'gspo') {
        const l = Math.min(logS[r], a.gspoLogClamp);
        rho = Math.exp(l);
        drho = logS[r] > a.gspoLogClamp ? 0 : rho; // (NaN passes, as every mask below)
        ppoKl -= delta;
      } else if (vespo) {
        const dc = clamp(delta, -VESPO_CLAMP, VESPO_CLAMP);
        rho = Math.exp(dc);
        drho = delta < -VESPO_CLAMP || delta > VESPO_CLAMP ? 0 : rho; // (the bias-corrected KL's only: φ is a stop-gradient)
        ppoKl -= dc;
      } else if (gmpo) {
        rho = Math.exp(logS[r]);
        drho = 0; // (unused: gmpo's gradient is the response's, below)
        ppoKl -= delta;
      } else {
        const c = a.logRatioClamp;
        const dc = clamp(delta, -c, c);
        rho = Math.exp(dc);
        drho = delta < -c || delta > c ? 0 : rho;
        ppoKl -= dc;
      }
      ratioSum += rho;
      ratioMin = Math.min(ratioMin, rho);
      ratioMax = Math.max(ratioMax, rho);
      // The surrogate L and ∂L/∂ℓ.
      let L: number;
      let dL: number;
      switch (a.loss) {
        case 'ppo':
        case 'gspo': {
          const capped = !(rho > a.delta); // a NaN ratio: u1 = NaN, never −A·δ
          const u1 = -A * (capped ? rho : a.delta);
          const inBand = rho >= epsLo && rho <= epsHi;
          const u2 = -A * clamp(rho, epsLo, epsHi);
          if (u2 > u1) {
            clipCount++;
            L = u2;
            dL = inBand ? -A * drho : 0;
          } else {
            L = u1;
            dL = capped ? -A * drho : 0;
          }
          if (a.loss === 'ppo' && A < 0 && L > -A * a.dualClip) {
            lowerCount++;
            L = -A * a.dualClip;
            dL = 0;
          }
          break;
        }
        case 'cispo': {
          const wc = a.cispoCap ? Math.min(rho, a.clipHigh) : clamp(rho, epsLo, epsHi);
          if (wc !== rho) clipCount++;
          L = -wc * A * lp[t];
          dL = -wc * A;
          break;
        }
        case 'sapo': {
          const tau = A > 0 ? a.sapoTauPos : a.sapoTauNeg;
          // s(1 − s) = e·s² with e = e^{−z}, z = τ(ρ − 1): no cancellation in 1 − s as s → 1.
          const z = tau * (rho - 1);
          const e = Math.exp(-z);
          const s = 1 / (1 + e);
          L = -(4 / tau) * s * A;
          dL = -4 * (z >= 0 ? e * s * s : s * (1 - s)) * A * drho;
          break;
        }
        case 'reinforce':
          L = -A * lp[t];
          dL = -A;
          break;
        case 'vespo': {
          const pos = A >= 0;
          const k = pos ? a.vespoKPos : a.vespoKNeg;
          const lam = pos ? a.vespoLambdaPos : a.vespoLambdaNeg;
          const phi0 = Math.exp(lam + k * logW[r] - lam * Math.exp(logW[r]));
          const phi = phi0 > F32_MAX ? 0 : phi0; // (TRL's f32 e^x overflows to +Inf, then nan_to_num: 0)
          L = -phi * A * lp[t];
          dL = -phi * A;
          break;
        }
        case 'gmpo': {
          const inBand = delta >= -a.clipLow && delta <= a.clipHigh;
          if (!inBand && A > 0) clipCount++;
          if (!inBand && A < 0) lowerCount++;
          L = -A * rho;
          // w·∂L/∂ℓ of the whole response: −Q_r·s_r/(n_r + 1e-8) where t's Δ̂ follows Δ, else 0.
          const follows = A > 0 ? !(delta > a.clipHigh) : A < 0 ? !(delta < -a.clipLow) : false;
          const whole = (-Q[r] * rho) / (n[r] + 1e-8);
          dL = follows || Number.isNaN(whole) ? whole : 0;
          break;
        }
      }
      const w = (rc === undefined || vespo ? 1 : seqLevel ? seqW[r] : tokW![t]) * keepOf(r, A);
      S += w * L;
      let gradT = g * ar * (gmpo ? 1 : w) * invWbar * dL;
      let klv = 0;
      if (kl !== undefined) {
        const x = lp[t] - ref![t];
        let v: number;
        let dv: number;
        switch (kl.estimator) {
          case 'k1':
            v = x;
            dv = 1;
            break;
          case 'abs':
            v = Math.abs(x);
            dv = x > 0 ? 1 : x < 0 ? -1 : 0;
            break;
          case 'k2':
            v = 0.5 * x * x;
            dv = x;
            break;
          case 'k3': {
            const y = -x;
            const c = kl.inputClamp;
            const yc = clamp(y, -c, c);
            const em1 = Math.expm1(yc); // (e^y − 1 − y from expm1: no cancellation near y = 0)
            v = em1 - yc;
            dv = y < -c || y > c ? 0 : -em1;
            break;
          }
        }
        if (kl.estimator === 'k3' || kl.valueClampAll) {
          const c = kl.valueClamp;
          if (v < -c || v > c) dv = 0;
          v = clamp(v, -c, c);
        }
        if (kl.straightThrough || Number.isNaN(x)) dv = x; // (a NaN x: a NaN derivative, every estimator)
        if (kl.biasCorrection) {
          // TRL's KL·ρ, differentiated through both factors.
          dv = dv * rho + v * drho;
          v *= rho;
        }
        klv = v;
        Kr += v;
        klSum += v;
        gradT += beta * gKl * aKl * dv;
      }
      grad[t] = gradT;
      const H = ent ? ent[t] : 0;
      if (ent) {
        Hr += H;
        entSum += H;
        gradEnt![t] = -cH * gH * aH;
      }
      if (tokLoss) tokLoss[t] = w * invWbar * L + beta * klv - cH * H;
    }
    pg += ar * S;
    klSumW += aKl * Kr;
    entSumW += aH * Hr;
  }
  // Masked tokens outside every response cannot exist (the offsets cover [0, T)).

  const loss = g * pg * invWbar + beta * gKl * klSumW - cH * gH * entSumW;
  const N = localTokens;
  const stat: Record<(typeof POLICY_STATS)[number], number> = {
    clipFraction: clipCount / N,
    clipFractionLower: lowerCount / N,
    ppoKl: ppoKl / N,
    klMean: kl ? klSum / N : Number.NaN,
    entropyMean: ent ? entSum / N : Number.NaN,
    ratioMin: N > 0 ? ratioMin : Number.NaN,
    ratioMean: ratioSum / N,
    ratioMax: N > 0 ? ratioMax : Number.NaN,
    rolloutWeightMean: rc ? wSum / wCount : Number.NaN,
    rolloutClippedFraction: rc ? wClipped / wCount : Number.NaN,
    rolloutEss: rc ? (wSum * wSum) / wSq : Number.NaN,
    tokens: localTokens,
    sequences: nonempty,
  };
  const stats = jsOutput('f32', POLICY_STATS.length);
  POLICY_STATS.forEach((k, i) => {
    stats[i] = stat[k];
  });
  const lossOut = jsOutput('f32', 1);
  lossOut[0] = loss;
  const result: PolicyLossResult = {
    loss: jsTensor(lossOut, [1], 'f32'),
    gradLogprobs: jsTensor(grad, [T], 'f32'),
    stats: jsTensor(stats, [POLICY_STATS.length], 'f32') as Tensor<'f32'>,
  };
  if (gradEnt) result.gradEntropy = jsTensor(gradEnt, [T], 'f32');
  if (tokLoss) result.tokenLoss = jsTensor(tokLoss, [T], 'f32');
  return result;
}
