/**
 * CPU reference kernels of the advantages family: advantages, expandToTokens, whiten.
 * Float64 throughout, one rounding to f32 per output. Every reduction is a plain sequential sum in
 * index order (group by group, member by member, token by token); variances are two-pass
 * (Σ(x − mean)² after the mean), never E[x²] − E[x]². The arguments arrive resolved and validated
 * (src/api/advantages.ts); docs/PRESETS.md maps each convention to the trainer code it mirrors.
 */
import type { Tensor } from '../../tensor.js';
import type {
  AdvantagesArgs,
  AdvantagesResult,
  ExpandToTokensArgs,
  StdKind,
  WhitenArgs,
  WhitenVarianceEps,
} from '../backend.js';
import { hostData, jsOutput, jsTensor } from './storage.js';

/** The 1e-8 every whitening convention adds to (or clamps) the variance. */
const WHITEN_VAR_EPS = 1e-8;

interface WhitenConvention {
  maskEps: number;
  variance: StdKind;
  varianceEps: WhitenVarianceEps;
  keepMean: boolean;
}

/**
 * The whitening affine map from the valid count n, a pivot p (an element's value: 0 if it is ±Inf or
 * NaN), Σ (x − p) and the centred sum of squares:
 *   mean = Σ x / (n + maskEps) = p + shift, shift = (Σ (x − p) − p·maskEps) / (n + maskEps);
 *   var = m2(shift) / (n + maskEps) · (n / (n − 1) for 'sample'), m2 = Σ ((x − p) − shift)²
 *   rstd = rsqrt(var + 1e-8) ('add') or rsqrt(max(var, 1e-8)) ('clamp')
 * out = ((x − p) − shift)·rstd: deviations from the pivot, so equal elements give exactly 0 (with
 * maskEps 0) and offset values (1e6 + noise) keep their low digits, as the kernels do.
 * n = 1 with 'sample' gives rstd NaN (unbiased variance 0/0; verl and TRL raise there).
 */
function whitenAffine(
  conv: WhitenConvention,
  n: number,
  pivot: number,
  sumDev: number,
  centredSquares: (shift: number) => number,
): { shift: number; rstd: number } {
  const denom = n + conv.maskEps;
  const shift = (sumDev - pivot * conv.maskEps) / denom;
  let variance = centredSquares(shift) / denom;
  if (conv.variance === 'sample') variance = n === 1 ? Number.NaN : variance * (n / (n - 1));
  const v = conv.varianceEps === 'add' ? variance + WHITEN_VAR_EPS : Math.max(variance, WHITEN_VAR_EPS);
  return { shift, rstd: 1 / Math.sqrt(v) };
}

/** A whitening pivot: the value, or 0 if it is ±Inf or NaN (or absent). */
const pivotOf = (x: number | undefined) => (x !== undefined && Number.isFinite(x) ? x : 0);

/**
 * whiten(x) over the valid elements (mask[i] ≠ 0, or all when mask is undefined), written to out:
 * out_i = ((x_i − p) − shift)·rstd (+ mean with keepMean), invalid → 0; p the first valid element,
 * shift and rstd from whitenAffine.
 * Owns: the whole array (one reduction over every valid element). Shapes: x, mask, out [N].
 * Bytes: 3 reads of x (+ mask) and 1 write; ~5 FLOPs per element.
 * Numerics: two passes in f64, index order. n = 0 → all 0. Invalid elements are never read, so a
 * NaN outside the mask does not leak in (as verl's masked_sum).
 */
function whitenInto(
  x: ArrayLike<number>,
  mask: Uint8Array | undefined,
  out: Float32Array,
  conv: WhitenConvention,
): void {
  const len = out.length;
  const valid = (i: number) => mask === undefined || mask[i] !== 0;
  let n = 0;
  let first: number | undefined;
  for (let i = 0; i < len && first === undefined; i++) if (valid(i)) first = x[i];
  const p = pivotOf(first);
  let sum = 0;
  for (let i = 0; i < len; i++) {
    if (!valid(i)) continue;
    n++;
    sum += x[i] - p;
  }
  if (n === 0) {
    out.fill(0);
    return;
  }
  const { shift, rstd } = whitenAffine(conv, n, p, sum, (sh) => {
    let m2 = 0;
    for (let i = 0; i < len; i++) {
      if (!valid(i)) continue;
      const c = x[i] - p - sh;
      m2 += c * c;
    }
    return m2;
  });
  const keep = conv.keepMean ? p + shift : 0;
  for (let i = 0; i < len; i++) out[i] = valid(i) ? (x[i] - p - shift) * rstd + keep : 0;
}

/**
 * whiten(values, mask): see whitenInto. values f32 [any shape], mask u8 [same] → f32 [same].
 */
export function jsWhiten(a: WhitenArgs): Tensor<'f32'> {
  const x = hostData(a.values);
  const mask = a.mask === undefined ? undefined : hostData(a.mask);
  const out = jsOutput('f32', x.length);
  whitenInto(x, mask, out, a);
  return jsTensor(out, a.values.shape, 'f32');
}

/**
 * expandToTokens: out[t] = values[r] for t in [responseOffsets[r], responseOffsets[r+1]).
 * Owns: every token of every response. values f32 [R], responseOffsets i32 [R+1] → f32 [Ttotal].
 * Bytes: 4R + 4(R+1) read, 4·Ttotal written; no FLOPs. Exact (a copy).
 */
export function jsExpandToTokens(a: ExpandToTokensArgs): Tensor<'f32'> {
  const v = hostData(a.values);
  const ro = a.responseOffsets;
  const out = jsOutput('f32', a.numTokens);
  for (let r = 0; r + 1 < ro.length; r++) out.fill(v[r], ro[r], ro[r + 1]);
  return jsTensor(out, [a.numTokens], 'f32');
}

/**
 * Group-relative advantages (docs/ESTIMATORS.md, conventions resolved by the API). Per group g with
 * members [lo, hi), n = hi − lo, rewards r (f32 read as f64):
 *   μ = Σ r / n;  M2 = Σ (r − μ)²;  s = sqrt(M2/(n−1)) ('sample') or sqrt(M2/n) ('population')
 *   grpo           (r_i − μ) / (D + eps), D = s (scale 'group') | batch std (scale 'batch');
 *                  r_i − μ with scale 'none'
 *   dr_grpo        r_i − μ
 *   rloo           n/(n−1) · (r_i − μ)   (= r_i − mean of the others)
 *   opo            r_i − b, b = Σ L_j r_j / Σ L_j, L_j = response length from responseOffsets
 *   grpo_passk     the first maximum i*: (r_max − r_second) / (D + eps) (or undivided under 'none');
 *                  every other member 0
 *   gpg            α (r_i − μ), α = R / max(#{r ≠ 0 in the batch}, 1) (NaN counts as nonzero)
 *   reinforce_pp_baseline  v_i = r_i − μ, expanded to tokens, then whitened over all Ttotal tokens
 *                  (whitenAffine with the resolved convention; Σ over tokens taken as Σ_i L_i·v_i)
 * Degenerate groups (flagged): empty (no outputs; mean 0, std 0); zero variance (M2 = 0, n ≥ 2):
 * group-level value 0 for every estimator (before reinforce_pp_baseline's whitening); singletons
 * by policy — 'zero': value 0, mean r, std 0; 'mean0': μ := 0 and s := 1 (verl: grpo r/(1 + eps),
 * dr_grpo/rloo/opo/reinforce_pp_baseline r, gpg α·r); 'nan': the plain formulas above with n = 1
 * (grpo with a sample std and rloo give NaN, the others 0); opo with Σ L_j = 0 and unequal
 * rewards: NaN (0/0 baseline), flagged.
 * Outputs: advantages f32 [R] (or [Ttotal]); mean f32 [G] = the baseline subtracted (μ; opo b;
 * 0 for a 'mean0' singleton); std f32 [G] = the divisor D for grpo/grpo_passk, else the group's s
 * (a singleton's s: 0 'zero', 1 'mean0', plain formula 'nan'); degenerate u8 [G].
 * Owns: everything (one sequential pass per group, plus batch passes for 'batch'/gpg/whitening).
 * Bytes: ~3 reads of rewards (4R each) + 4R written + 9G; reinforce_pp_baseline writes 4·Ttotal
 * instead of 4R and reads responseOffsets three times (its token sums are run-length, per
 * response). FLOPs ~6R (+ 1 per token for reinforce_pp_baseline).
 * Numerics: f64 two-pass per group and for the batch std, index order; the zero-variance rule makes
 * eps = 0 safe. NaN rewards propagate to their group (grpo_passk: a NaN member makes the whole group
 * NaN) and, through batch statistics, to the batch. Under nanRewards 'unscorable' (TRL) see
 * unscorableAdvantages below.
 */
export function jsAdvantages(a: AdvantagesArgs): AdvantagesResult {
  return a.nanRewards === 'unscorable' ? unscorableAdvantages(a) : propagatingAdvantages(a);
}

/**
 * nanRewards 'unscorable' (TRL's nan-aware reductions): the advantages of the batch without its NaN
 * rewards (every group keeps its scorable members, in order; a group with none is an empty group), so
 * every statistic leaves them out; then each NaN member's advantage is 0 (its tokens' for
 * reinforce_pp_baseline, whose whitening counts only scorable responses' tokens), and torch.nan_to_num:
 * NaN → 0, ±Inf → ±f32 max. grpo_passk needs two scorable members; with fewer its group is 0.
 */
function unscorableAdvantages(a: AdvantagesArgs): AdvantagesResult {
  const r = hostData(a.rewards);
  const go = a.groupOffsets;
  const ro = a.responseOffsets;
  const keep: number[] = [];
  const goC = new Int32Array(go.length);
  for (let g = 0; g < a.numGroups; g++) {
    for (let i = go[g]; i < go[g + 1]; i++) if (!Number.isNaN(r[i])) keep.push(i);
    goC[g + 1] = keep.length;
  }
  const rewardsC = Float32Array.from(keep, (i) => r[i]);
  let roC: Int32Array | undefined;
  if (ro !== undefined) {
    roC = new Int32Array(keep.length + 1);
    keep.forEach((i, j) => {
      roC![j + 1] = roC![j] + ro[i + 1] - ro[i];
    });
  }
  const inner = propagatingAdvantages({
    ...a,
    rewards: jsTensor(rewardsC, [rewardsC.length], 'f32'),
    groupOffsets: goC,
    responseOffsets: roC,
    numResponses: keep.length,
    numTokens: roC === undefined ? 0 : roC[keep.length],
    nanRewards: 'propagate',
  });
  const advC = hostData(inner.advantages);
  const perToken = a.estimator === 'reinforce_pp_baseline';
  const adv = jsOutput('f32', perToken ? a.numTokens : a.numResponses);
  adv.fill(0);
  const F32_MAX = 3.4028234663852886e38;
  const fix = (x: number) =>
    Number.isNaN(x) ? 0 : x === Infinity ? F32_MAX : x === -Infinity ? -F32_MAX : x;
  keep.forEach((i, j) => {
    if (perToken) for (let t = 0; t < ro![i + 1] - ro![i]; t++) adv[ro![i] + t] = fix(advC[roC![j] + t]);
    else adv[i] = fix(advC[j]);
  });
  inner.advantages.dispose();
  return { ...inner, advantages: jsTensor(adv, [adv.length], 'f32') };
}

function propagatingAdvantages(a: AdvantagesArgs): AdvantagesResult {
  const r = hostData(a.rewards);
  const go = a.groupOffsets;
  const ro = a.responseOffsets;
  const R = a.numResponses;
  const G = a.numGroups;
  const est = a.estimator;
  const perToken = est === 'reinforce_pp_baseline';
  const divides = est === 'grpo' || est === 'grpo_passk';
  const sample = a.std === 'sample';

  const adv = jsOutput('f32', perToken ? a.numTokens : R);
  const meanOut = jsOutput('f32', G);
  const stdOut = jsOutput('f32', G);
  const deg = jsOutput('u8', G);
  // Group-level values before expansion and whitening (reinforce_pp_baseline only).
  const values = perToken ? new Float64Array(R) : undefined;

  // Batch statistics, each a sequential two-pass over all R rewards.
  let batchStd = Number.NaN;
  if (divides && a.scale === 'batch') {
    let sum = 0;
    for (let i = 0; i < R; i++) sum += r[i];
    const m = sum / R;
    let m2 = 0;
    for (let i = 0; i < R; i++) {
      const c = r[i] - m;
      m2 += c * c;
    }
    batchStd = Math.sqrt(sample ? m2 / (R - 1) : m2 / R);
  }
  let alpha = 1;
  if (est === 'gpg') {
    let nonzero = 0;
    for (let i = 0; i < R; i++) if (r[i] !== 0) nonzero++;
    alpha = R / Math.max(nonzero, 1);
  }

  const write = (i: number, value: number) => {
    if (values !== undefined) values[i] = value;
    else adv[i] = value;
  };

  for (let g = 0; g < G; g++) {
    const lo = go[g];
    const hi = go[g + 1];
    const n = hi - lo;
    if (n === 0) {
      meanOut[g] = 0;
      stdOut[g] = 0;
      deg[g] = 1;
      continue;
    }
    let sum = 0;
    for (let i = lo; i < hi; i++) sum += r[i];
    let mu = sum / n;
    let m2 = 0;
    for (let i = lo; i < hi; i++) {
      const c = r[i] - mu;
      m2 += c * c;
    }
    let s = Math.sqrt(sample ? m2 / (n - 1) : m2 / n);
    const single = n === 1;
    const zeroVar = !single && m2 === 0;
    let isDeg = single || zeroVar;

    // Degenerate groups whose value is 0 by rule: zero variance, or a singleton under 'zero'.
    if (zeroVar || (single && a.singleton === 'zero')) {
      meanOut[g] = mu;
      stdOut[g] = divides && a.scale === 'batch' ? batchStd : 0;
      deg[g] = 1;
      for (let i = lo; i < hi; i++) write(i, 0);
      continue;
    }
    if (single && a.singleton === 'mean0') {
      mu = 0;
      s = 1;
    }
    const divisor = a.scale === 'batch' ? batchStd : s;

    switch (est) {
      case 'grpo':
        for (let i = lo; i < hi; i++) {
          const d = r[i] - mu;
          write(i, a.scale === 'none' ? d : d / (divisor + a.eps));
        }
        break;
      case 'dr_grpo':
      case 'reinforce_pp_baseline':
        for (let i = lo; i < hi; i++) write(i, r[i] - mu);
        break;
      case 'rloo':
        if (single && a.singleton === 'mean0') {
          // verl leaves a singleton's score as it is (baseline 0).
          write(lo, r[lo]);
        } else {
          const k = n / (n - 1);
          for (let i = lo; i < hi; i++) write(i, k * (r[i] - mu));
        }
        break;
      case 'gpg':
        for (let i = lo; i < hi; i++) write(i, alpha * (r[i] - mu));
        break;
      case 'opo': {
        if (!(single && a.singleton === 'mean0')) {
          let wsum = 0;
          let lsum = 0;
          for (let i = lo; i < hi; i++) {
            const L = ro![i + 1] - ro![i];
            wsum += L * r[i];
            lsum += L;
          }
          mu = wsum / lsum;
          if (lsum === 0) isDeg = true;
        }
        for (let i = lo; i < hi; i++) write(i, r[i] - mu);
        break;
      }
      case 'grpo_passk': {
        // n ≥ 2 (the API rejects smaller groups; fewer scorable members under 'unscorable' give 0).
        // First maximum wins ties; a NaN member makes the maximum undefined, so the whole group is NaN.
        if (n < 2) {
          write(lo, 0);
          break;
        }
        let best = lo;
        let hasNaN = false;
        for (let i = lo; i < hi; i++) {
          if (Number.isNaN(r[i])) hasNaN = true;
          else if (r[i] > r[best]) best = i;
        }
        let second = Number.NEGATIVE_INFINITY;
        for (let i = lo; i < hi; i++) if (i !== best && r[i] > second) second = r[i];
        const gap = r[best] - second;
        const value = a.scale === 'none' ? gap : gap / (divisor + a.eps);
        for (let i = lo; i < hi; i++) write(i, hasNaN ? Number.NaN : i === best ? value : 0);
        break;
      }
    }
    meanOut[g] = mu;
    stdOut[g] = divides && a.scale === 'batch' ? batchStd : s;
    deg[g] = isDeg ? 1 : 0;
  }

  if (values !== undefined) {
    // Whiten expand(values) over all Ttotal tokens without materialising it: response i
    // contributes L_i copies of values[i], so Σ (x − p) = Σ_i L_i·(v_i − p) and Σ ((x − p) − shift)² =
    // Σ_i L_i·((v_i − p) − shift)², summed in response order (the f64 sums of L_i equal terms, taken
    // at once); the pivot p is the value of the first response with tokens.
    const T = a.numTokens;
    if (T > 0) {
      let first = 0;
      while (ro![first + 1] === ro![first]) first++;
      const p = pivotOf(values[first]);
      let sum = 0;
      for (let i = 0; i < R; i++) sum += (ro![i + 1] - ro![i]) * (values[i] - p);
      const { shift, rstd } = whitenAffine(
        {
          maskEps: a.whitenMaskEps,
          variance: a.whitenVariance,
          varianceEps: a.whitenVarianceEps,
          keepMean: false,
        },
        T,
        p,
        sum,
        (sh) => {
          let m2 = 0;
          for (let i = 0; i < R; i++) {
            const c = values[i] - p - sh;
            m2 += (ro![i + 1] - ro![i]) * c * c;
          }
          return m2;
        },
      );
      for (let i = 0; i < R; i++) adv.fill((values[i] - p - shift) * rstd, ro![i], ro![i + 1]);
    }
  }

  return {
    advantages: jsTensor(adv, [adv.length], 'f32'),
    mean: jsTensor(meanOut, [G], 'f32'),
    std: jsTensor(stdOut, [G], 'f32'),
    degenerate: jsTensor(deg, [G], 'u8'),
  };
}
