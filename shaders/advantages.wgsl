// grpo-kernels: the advantages family on WebGPU (advantages, expandToTokens, whiten).
// Concatenated after common.wgsl's base and reduce_* sections (src/backends/webgpu/shaders.ts);
// host side: src/backends/webgpu/advantages.ts. Reference: src/backends/cpu/advantages.ts (the
// conventions, degenerate groups and NaN rules below are that file's, in f32).
//
// GROUP STATISTICS, per group g with members [lo, hi), n = hi − lo, pivot p = r_lo (0 if r_lo is
//   ±Inf/NaN):
//     d  = Σ (r − p) / n                  (mean − p)
//     c_i = (r_i − p) − d                 (deviations; never r_i − f32(mean), which loses the
//                                          low digits of rewards like 1e6 + noise)
//     M2 = Σ c_i²;  s = sqrt(M2 / (n − 1)) ('sample'; NaN for n = 1) or sqrt(M2 / n)
//   grpo (r−μ)/(D+eps) | dr_grpo, reinforce_pp_baseline r−μ | rloo n/(n−1)·(r−μ) | opo r − b,
//   b = Σ L r / Σ L (deviations from p again) | gpg α(r−μ) | grpo_passk: the first maximum gets
//   (max − second)/(D+eps), the others 0, all NaN if a member is NaN; D = s or the batch std
//   (scale 'batch'). Zero variance is decided exactly (every member equals the finite r_lo), not
//   from M2 == 0 in f32. Singletons by policy (zero / mean0 / nan).
//   Two entry points compute this with the same functions (moments / plan_group / member_value /
//   write_group below); only the loops over members differ. The host splits the groups at
//   small_max (64 by default, src/backends/webgpu/advantages.ts says why):
//   - ADV_SMALL (adv_small): one INVOCATION per group with n ≤ small_max (empty groups included),
//     dispatched over all G (an invocation whose group is larger returns at once). It walks its
//     members in index order: sequential f32 sums of ≤ small_max terms, grpo_passk's maximum,
//     first maximum and runner-up in one pass.
//   - ADV_GROUP (adv_group): one WORKGROUP per group with n > small_max, dispatched over the
//     host's list of those groups (`count` of them, appended to the uploaded group offsets at
//     G + 1; no dispatch when there are none). WG
//     invocations stride the members; fixed-order workgroup reductions (wg_sum4, wg_max,
//     wg_min_u32 for the first maximum).
//   phase 1: writes the group's moment state (n, p, d, M2, #nonzero) to `states[g]` only (for the
//            batch std of scale 'batch' and gpg's α; adv_merge folds states[0..G) in a fixed
//            order, so the batch result does not depend on which entry point wrote a state);
//   phase 0: writes advantages, and mean, std and a u32 degenerate flag into `gout` (the host
//            copies mean and std out; pack_flags packs the flags to u8); reinforce_pp_baseline writes its group-level values v_i to `vals` and a
//            length-weighted state (Σ L, pivot, mean − pivot, M2) of them (weighted_mean says which
//            pivot).
//   Shapes: rewards f32 [R], groupOffsets i32 [G+1] followed by the large groups' indices,
//   responseOffsets i32 [R+1] (opo, rpp); out f32 [R], gout u32 [3G] (mean bits, std bits, flags).
//   At most 8 storage buffers per entry point (WebGPU's default limit). Bytes ≈ 3 reads of the rewards
//   (4R each; opo 4 + 8R of lengths, grpo_passk 4 in adv_small, 6 in adv_group) + 4R written +
//   8(G+1) of offsets read + 12G written (+ 4·#large). adv_small's re-reads are of the
//   invocation's own ≤ small_max contiguous members, so they hit cache: DRAM traffic ≈ 1 read.
//   FLOPs ≈ 8 per member, plus adv_group's log2(WG)-step reductions per group.
// ADV_MERGE (adv_merge): one workgroup merges `count` moment states: invocation j folds states
//   j, j+WG, … in order, then a fixed-order tree (Chan et al.'s pairwise update:
//   δ = (p_b − p_a) + (d_b − d_a), d = d_a + δ·n_b/n, M2 = M2_a + M2_b + δ²·n_a·n_b/n, the
//   result keeping p_a). mode 0 → batch = (batch std, α = R / max(#nonzero, 1)); mode 1 → the
//   whitening affine map (p, shift, rstd, keep) of the resolved convention (maskEps, sample or
//   population, + 1e-8 or clamp; see WhitenVarianceEps in src/backends/backend.ts).
// EXPAND (expand_tokens): one invocation per token t, response r found by binary search in
//   responseOffsets; out[t] = v[r] (mode 0) or ((v[r] − p) − shift)·rstd (mode 1, rpp). Bytes:
//   4T written + ~4·log2(R) gathered reads per token.
// WHITEN: whiten_partial (one workgroup per chunk of WG·ITEMS elements: pivot = the chunk's first
//   valid element, two-pass count/mean/M2 over valid elements) → adv_merge (mode 1) →
//   whiten_apply (one invocation per element: valid ? ((x − p) − shift)·rstd + keep : 0; masked
//   elements are never read). Bytes: 3 reads of x (+ mask) + 1 write; ~6 FLOPs per element.
// Numerics: f32 throughout; every reduction has a fixed order (no atomics), so two runs give the
//   same bits; the subgroup and tree variants of common.wgsl may differ from each other in the
//   last bits. NaN/Inf follow IEEE arithmetic as the cpu reference; the cases where WGSL's
//   division by 0 or NaN would be implementation-defined (n = 1 Bessel, rloo's n/(n−1), opo's
//   Σ L = 0, grpo_passk with a NaN) write NaN explicitly.
// NAN_SKIP (nan_skip = 1: nanRewards 'unscorable', TRL): every member loop skips NaN rewards, so a
//   group's n, pivot (its first scorable member), sums, zero-variance test, opo baseline, grpo_passk
//   and the moment state merged for the batch (batch std, gpg's α = #scorable / #nonzero) are those of
//   its scorable members; a group with none is an empty group. A NaN member's advantage is 0
//   (reinforce_pp_baseline: its value is NaN, left out of the length-weighted state, and its tokens
//   come out 0), and every advantage goes through nan_to_num (NaN → 0, ±Inf → ±f32 max). grpo_passk
//   with fewer than two scorable members gives 0.

struct AdvParams {
  num_groups: u32,
  num_responses: u32,
  count: u32, // adv_group: listed groups; adv_merge: states; whiten_*: elements; expand: tokens; pack_flags: flags
  estimator: u32, // EST_* below
  std_sample: u32, // 1: group/batch std with n − 1
  scale: u32, // 0 group, 1 batch, 2 none
  singleton: u32, // 0 zero, 1 mean0, 2 nan
  phase: u32, // adv_small / adv_group: 0 final, 1 moment states only
  need_batch: u32, // adv_small / adv_group phase 0: read (batch std, α) from `batch`
  mode: u32, // adv_merge: 0 rewards, 1 whitening; expand_tokens: 0 copy, 1 affine
  var_sample: u32, // whitening: Bessel over valid elements
  var_clamp: u32, // whitening: rsqrt(max(var, 1e-8)) instead of rsqrt(var + 1e-8)
  keep_mean: u32,
  has_mask: u32,
  small_max: u32, // adv_small / adv_group: groups with n ≤ small_max are adv_small's
  nan_skip: u32, // 1: NaN rewards are unscorable (see NAN_SKIP above)
  eps: f32,
  mask_eps: f32,
}

// Moment state of a set of (weighted) values: count n, pivot p, mean − p, centred squares, aux
// (#nonzero rewards). An empty state has n = 0 and d = m2 = 0, unless a NaN taints them.
struct St {
  n: u32,
  aux: u32,
  piv: f32,
  d: f32,
  m2: f32,
}

@group(0) @binding(0) var<uniform> P: AdvParams;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> goff: array<i32>;
@group(0) @binding(3) var<storage, read> roff: array<i32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(7) var<storage, read_write> deg_words: array<u32>;
@group(0) @binding(8) var<storage, read_write> states: array<St>;
@group(0) @binding(9) var<storage, read_write> batch: array<f32>;
@group(0) @binding(10) var<storage, read_write> vals: array<f32>;
@group(0) @binding(11) var<storage, read> mask: array<u32>;
// Per-group outputs, one u32 buffer so that the group kernels stay within WebGPU's default limit of
// 8 storage buffers per stage (Chromium's SwiftShader allows 10, Dawn on lavapipe more): words
// [0, G) the mean's bits, [G, 2G) the std's bits (u32 stores keep every bit; the host copies them
// into the mean and std tensors), [2G, 3G) the degenerate flag.
@group(0) @binding(12) var<storage, read_write> gout: array<u32>;

const EST_GRPO: u32 = 0u;
const EST_DR_GRPO: u32 = 1u;
const EST_RLOO: u32 = 2u;
const EST_OPO: u32 = 3u;
const EST_PASSK: u32 = 4u;
const EST_GPG: u32 = 5u;
const EST_RPP: u32 = 6u;
const SCALE_BATCH: u32 = 1u;
const SCALE_NONE: u32 = 2u;
const SINGLE_ZERO: u32 = 0u;
const SINGLE_MEAN0: u32 = 1u;
const NO_INDEX: u32 = 0xffffffffu;
// Elements per invocation in whiten_partial (a chunk is WG·ITEMS elements).
const ITEMS: u32 = 16u;
const WHITEN_VAR_EPS: f32 = 1e-8;

var<workgroup> wmin: array<u32, WG>;
var<workgroup> wcount: u32;
var<workgroup> wst: array<St, WG>;

fn is_finite(x: f32) -> bool {
  return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

// Lowest u32 over the workgroup (fixed-order tree; every invocation gets it).
fn wg_min_u32(v: u32, lid: u32) -> u32 {
  workgroupBarrier();
  wmin[lid] = v;
  for (var k = WG >> 1u; k > 0u; k = k >> 1u) {
    workgroupBarrier();
    if (lid < k) {
      wmin[lid] = min(wmin[lid], wmin[lid + k]);
    }
  }
  workgroupBarrier();
  return wmin[0];
}

fn st_empty() -> St {
  return St(0u, 0u, 0.0, 0.0, 0.0);
}

// Chan's pairwise merge; the result keeps a's pivot. Adding an empty state adds its (zero or NaN)
// d and m2, so a NaN in an empty rpp group still propagates as in the reference (0·NaN).
fn st_merge(a: St, b: St) -> St {
  if (b.n == 0u) {
    return St(a.n, a.aux + b.aux, a.piv, a.d + b.d, a.m2 + b.m2);
  }
  if (a.n == 0u) {
    return St(b.n, a.aux + b.aux, b.piv, b.d + a.d, b.m2 + a.m2);
  }
  let na = f32(a.n);
  let nb = f32(b.n);
  let n = a.n + b.n;
  let nf = f32(n);
  let delta = (b.piv - a.piv) + (b.d - a.d);
  return St(n, a.aux + b.aux, a.piv, a.d + delta * (nb / nf), a.m2 + b.m2 + delta * delta * (na * (nb / nf)));
}

// A member left out of every statistic: a NaN reward under nan_skip.
fn skipped(r: f32) -> bool {
  return P.nan_skip == 1u && is_nan(r);
}

// torch.nan_to_num of an advantage under nan_skip: NaN → 0, ±Inf → ±f32 max; else the value itself.
fn fix_adv(x: f32) -> f32 {
  if (P.nan_skip == 0u) {
    return x;
  }
  if (is_nan(x)) {
    return 0.0;
  }
  if (is_pos_inf(x)) {
    return bitcast<f32>(0x7f7fffffu);
  }
  if (is_neg_inf(x)) {
    return -bitcast<f32>(0x7f7fffffu);
  }
  return x;
}

fn is_nonzero(x: f32) -> bool {
  return (bitcast<u32>(x) & 0x7fffffffu) != 0u; // NaN counts as nonzero (torch.count_nonzero)
}

// ---------------------------------------------------------------- per-group pieces
// Shared by adv_small (one invocation owns a group) and adv_group (one workgroup owns a group).
// Only the loops over members differ: the *_serial functions walk [lo, hi) in index order in one
// invocation, the *_wg functions stride it over the workgroup and reduce in a fixed order (so
// they must be called from workgroup-uniform control flow). Everything else (the estimator's
// arithmetic, degenerate rules, what is written for the group) is one function used by both.

// The group's two passes: pivot, mean − pivot, M2 and three counts.
struct Moments {
  n: u32,
  r0: f32, // the first reward
  piv: f32, // pivot p: r0, or 0 if r0 is ±Inf/NaN
  d: f32, // mean − p = Σ (r − p) / n
  m2: f32, // Σ ((r − p) − d)²
  ne: u32, // members ≠ r0 (NaN counts): 0 ⇔ zero variance when r0 is finite
  nonzero: u32, // members ≠ 0 (NaN counts), for gpg's α
  nans: u32, // NaN members
}

// grpo_passk: the first member holding the maximum over non-NaN members, and max − runner-up.
struct Best {
  index: u32,
  gap: f32,
}

// What each member's value is made of, the same for every member of the group:
// value_i = (r_i − p) − shift, then the estimator's factor.
struct Plan {
  p: f32,
  shift: f32,
  sd: f32, // the group's std (1 for a mean0 singleton)
  div: f32, // grpo / grpo_passk divisor before eps: sd or the batch std
  batch_std: f32,
  alpha: f32, // gpg's α (1 otherwise)
  passk_value: f32, // what the best member gets
  best: u32,
  single: bool,
  zero_var: bool,
  zero_out: bool, // every value is 0 by rule (zero variance, or a singleton under 'zero')
  mean0: bool,
  has_nan: bool,
  batch_scale: bool,
  opo_empty: bool, // opo with Σ L = 0
}

fn pivot_of(r0: f32) -> f32 {
  return select(0.0, r0, is_finite(r0));
}

// Response i's length L_i (opo, reinforce_pp_baseline).
fn length_of(i: u32) -> f32 {
  return f32(roff[i + 1u] - roff[i]);
}

// Pass 1 (Σ (r − p) and the counts), pass 2 (M2 of the deviations), one invocation, index order.
fn moments_serial(lo: u32, hi: u32) -> Moments {
  var first = lo;
  while (first < hi && skipped(X[first])) {
    first = first + 1u;
  }
  if (first == hi) {
    return Moments(0u, 0.0, 0.0, 0.0, 0.0, 0u, 0u, 0u); // every member skipped: an empty group
  }
  let r0 = X[first];
  let piv = pivot_of(r0);
  var sum = 0.0;
  var n = 0u;
  var ne = 0u;
  var nonzero = 0u;
  var nans = 0u;
  for (var i = lo; i < hi; i = i + 1u) {
    let r = X[i];
    if (skipped(r)) {
      continue;
    }
    n = n + 1u;
    sum = sum + (r - piv);
    ne = ne + select(0u, 1u, r != r0 || is_nan(r));
    nonzero = nonzero + select(0u, 1u, is_nonzero(r));
    nans = nans + select(0u, 1u, is_nan(r));
  }
  let d = sum / f32(n);
  var m2 = 0.0;
  for (var i = lo; i < hi; i = i + 1u) {
    let r = X[i];
    if (skipped(r)) {
      continue;
    }
    let c = (r - piv) - d;
    m2 = m2 + c * c;
  }
  return Moments(n, r0, piv, d, m2, ne, nonzero, nans);
}

// The same two passes strided over the workgroup (counts summed in f32: exact below 2^24).
fn moments_wg(lo: u32, hi: u32, lid: u32) -> Moments {
  // The first member the statistics use (lo, or under nan_skip the first scorable one).
  var mine = NO_INDEX;
  for (var i = lo + lid; i < hi; i = i + WG) {
    if (!skipped(X[i])) {
      mine = min(mine, i);
    }
  }
  let first = wg_min_u32(mine, lid);
  var r0 = 0.0;
  if (first != NO_INDEX) {
    r0 = X[first];
  }
  let piv = pivot_of(r0);
  var acc = vec4<f32>(0.0);
  var cnt = 0.0;
  for (var i = lo + lid; i < hi; i = i + WG) {
    let r = X[i];
    if (skipped(r)) {
      continue;
    }
    cnt = cnt + 1.0;
    acc = acc + vec4<f32>(
      r - piv,
      select(0.0, 1.0, r != r0 || is_nan(r)),
      select(0.0, 1.0, is_nonzero(r)),
      select(0.0, 1.0, is_nan(r)),
    );
  }
  let s1 = wg_sum4(acc, lid);
  let n = u32(wg_sum4(vec4<f32>(cnt, 0.0, 0.0, 0.0), lid).x);
  let d = s1.x / f32(max(n, 1u));
  var a2 = 0.0;
  for (var i = lo + lid; i < hi; i = i + WG) {
    let r = X[i];
    if (skipped(r)) {
      continue;
    }
    let c = (r - piv) - d;
    a2 = a2 + c * c;
  }
  let m2 = wg_sum4(vec4<f32>(a2, 0.0, 0.0, 0.0), lid).x;
  return Moments(n, r0, piv, d, m2, u32(s1.y), u32(s1.z), u32(s1.w));
}

// The group's std of kind P.std_sample; NaN for a singleton under 'sample' (explicitly: 0/0).
fn group_std(m: Moments) -> f32 {
  let nf = f32(m.n);
  if (P.std_sample == 1u) {
    return select(sqrt(m.m2 / (nf - 1.0)), nan_f32(), m.n == 1u);
  }
  return sqrt(m.m2 / nf);
}

// Phase 1's moment state of the group's rewards (merged by adv_merge mode 0).
fn moment_state(m: Moments) -> St {
  return St(m.n, m.nonzero, m.piv, m.d, m.m2);
}

// opo's (Σ L, b − p) from sw = Σ L (r − p); b − p = sw / Σ L, NaN when Σ L = 0 (explicitly).
fn opo_baseline(sw: f32, lsum: f32) -> vec2<f32> {
  return vec2<f32>(lsum, select(sw / lsum, nan_f32(), lsum == 0.0));
}

// Σ L over the members the statistics use (exact: integer lengths summed in f32 below 2^24).
fn opo_serial(lo: u32, hi: u32, piv: f32) -> vec2<f32> {
  var w = 0.0;
  var l = 0.0;
  for (var i = lo; i < hi; i = i + 1u) {
    if (skipped(X[i])) {
      continue;
    }
    w = w + length_of(i) * (X[i] - piv);
    l = l + length_of(i);
  }
  return opo_baseline(w, l);
}

fn opo_wg(lo: u32, hi: u32, piv: f32, lid: u32) -> vec2<f32> {
  var w = 0.0;
  var l = 0.0;
  for (var i = lo + lid; i < hi; i = i + WG) {
    if (skipped(X[i])) {
      continue;
    }
    w = w + length_of(i) * (X[i] - piv);
    l = l + length_of(i);
  }
  let s = wg_sum4(vec4<f32>(w, l, 0.0, 0.0), lid);
  return opo_baseline(s.x, s.y);
}

// One pass in index order: a member takes the lead only when strictly greater (so ties keep the
// first maximum) and the old leader becomes the runner-up; NaN members are skipped.
fn passk_serial(lo: u32, hi: u32) -> Best {
  var mx = neg_inf();
  var sec = neg_inf();
  var best = NO_INDEX;
  for (var i = lo; i < hi; i = i + 1u) {
    let r = X[i];
    if (is_nan(r)) {
      continue;
    }
    if (best == NO_INDEX) {
      mx = r;
      best = i;
    } else if (r > mx) {
      sec = mx;
      mx = r;
      best = i;
    } else {
      sec = max(sec, r);
    }
  }
  // Every member NaN: the group is NaN anyway (Plan.has_nan).
  return Best(select(best, lo, best == NO_INDEX), mx - sec);
}

// Three reductions: the maximum, the lowest index holding it, the maximum of the others.
fn passk_wg(lo: u32, hi: u32, lid: u32) -> Best {
  var mx = neg_inf();
  for (var i = lo + lid; i < hi; i = i + WG) {
    let r = X[i];
    if (!is_nan(r)) {
      mx = max(mx, r);
    }
  }
  mx = wg_max(mx, lid);
  var bi = NO_INDEX;
  for (var i = lo + lid; i < hi; i = i + WG) {
    let r = X[i];
    if (!is_nan(r) && r == mx) {
      bi = min(bi, i);
    }
  }
  let best = wg_min_u32(bi, lid);
  var sec = neg_inf();
  for (var i = lo + lid; i < hi; i = i + WG) {
    let r = X[i];
    if (!is_nan(r) && i != best) {
      sec = max(sec, r);
    }
  }
  sec = wg_max(sec, lid);
  return Best(select(best, lo, best == NO_INDEX), mx - sec);
}

// The group's plan from its moments, opo's (Σ L, b − p) and grpo_passk's best member (each
// ignored by the other estimators), and the batch quantities of phase 0 (need_batch).
fn plan_group(m: Moments, opo: vec2<f32>, pk: Best) -> Plan {
  let est = P.estimator;
  var pl: Plan;
  pl.single = m.n == 1u;
  pl.zero_var = !pl.single && m.ne == 0u && is_finite(m.r0);
  pl.zero_out = pl.zero_var || (pl.single && P.singleton == SINGLE_ZERO);
  pl.mean0 = pl.single && P.singleton == SINGLE_MEAN0;
  pl.batch_scale = (est == EST_GRPO || est == EST_PASSK) && P.scale == SCALE_BATCH;
  pl.batch_std = 0.0;
  pl.alpha = 1.0;
  if (P.need_batch == 1u) {
    pl.batch_std = batch[0];
    pl.alpha = batch[1];
  }
  pl.p = m.piv;
  pl.shift = select(m.d, opo.y, est == EST_OPO);
  pl.sd = group_std(m);
  if (pl.mean0) {
    pl.p = 0.0;
    pl.shift = 0.0;
    pl.sd = 1.0;
  }
  pl.div = select(pl.sd, pl.batch_std, pl.batch_scale);
  pl.has_nan = m.nans > 0u;
  pl.best = pk.index;
  pl.passk_value = pk.gap;
  if (P.scale != SCALE_NONE) {
    pl.passk_value = pk.gap / (pl.div + P.eps);
  }
  if (m.n < 2u) {
    pl.passk_value = 0.0; // only under nan_skip (the API rejects smaller groups)
  }
  pl.opo_empty = est == EST_OPO && !pl.mean0 && opo.x == 0.0;
  return pl;
}

// Member i's advantage (reward r) for every estimator but reinforce_pp_baseline.
fn member_value(pl: Plan, n: u32, i: u32, r: f32) -> f32 {
  if (pl.zero_out || skipped(r)) {
    return 0.0;
  }
  let c = (r - pl.p) - pl.shift;
  switch P.estimator {
    case EST_GRPO: {
      return select(c / (pl.div + P.eps), c, P.scale == SCALE_NONE);
    }
    case EST_RLOO: {
      if (pl.single) {
        return select(nan_f32(), c, pl.mean0); // n/(n−1) = ∞ times 0 under 'nan'
      }
      let nf = f32(n);
      return c * (nf / (nf - 1.0));
    }
    case EST_GPG: {
      return pl.alpha * c;
    }
    case EST_PASSK: {
      return select(select(0.0, pl.passk_value, i == pl.best), nan_f32(), pl.has_nan);
    }
    default: {
      return c; // dr_grpo, opo
    }
  }
}

// reinforce_pp_baseline's group-level value (dr_grpo's), before the batch whitening.
fn rpp_value(pl: Plan, r: f32) -> f32 {
  if (skipped(r)) {
    return nan_f32(); // left out of the whitening; its tokens come out 0 (fix_adv)
  }
  return select((r - pl.p) - pl.shift, 0.0, pl.zero_out);
}

// reinforce_pp_baseline's length-weighted state of the group's values: (Σ L, pivot p, mean − p, M2)
// from Σ L·(v − p) and then Σ L·((v − p) − d)² (d from weighted_mean, between the two passes). The
// pivot is the value of the group's first scorable member with tokens (0 if that value is ±Inf/NaN or
// there is none), so values like 1e6 + noise, or all equal, keep their low digits through the batch
// merge (adv_merge keeps the first state's pivot; never an f32-rounded mean). A group without tokens
// is an empty state whose d is Σ 0·v: 0, or NaN from a non-finite value (the reference's 0·NaN).
fn weighted_mean(sv: f32, wn: u32) -> f32 {
  return select(sv / f32(wn), sv, wn == 0u);
}

// The group's mean, std and u32 degenerate flag.
fn write_group(g: u32, m: Moments, pl: Plan) {
  var mu = pl.p + pl.shift;
  if (pl.zero_out) {
    mu = m.piv + m.d;
  }
  gout[g] = bitcast<u32>(mu);
  gout[P.num_groups + g] = bitcast<u32>(select(select(pl.sd, 0.0, pl.zero_out), pl.batch_std, pl.batch_scale));
  let deg = pl.single || pl.zero_var || (!pl.zero_out && pl.opo_empty);
  gout[2u * P.num_groups + g] = select(0u, 1u, deg);
}

// An empty group: no members; mean 0, std 0, degenerate (and an empty state where one is merged).
fn write_empty(g: u32) {
  if (P.phase == 1u || P.estimator == EST_RPP) {
    states[g] = st_empty();
  }
  if (P.phase == 0u) {
    gout[g] = bitcast<u32>(0.0);
    gout[P.num_groups + g] = bitcast<u32>(0.0);
    gout[2u * P.num_groups + g] = 1u;
  }
}

// ---------------------------------------------------------------- group entry points
// One invocation per group index g < num_groups; groups with n > small_max return at once
// (adv_group owns them). The invocation walks its members in index order: one short contiguous
// run, re-read per pass from cache.
@compute @workgroup_size(WG)
fn adv_small(grid: Grid, @builtin(local_invocation_index) lid: u32) {
  let g = flat_wg(grid) * WG + lid;
  if (g >= P.num_groups) {
    return;
  }
  let lo = u32(goff[g]);
  let hi = u32(goff[g + 1u]);
  let n = hi - lo;
  if (n > P.small_max) {
    return;
  }
  if (n == 0u) {
    write_empty(g);
    return;
  }
  let m = moments_serial(lo, hi);
  if (m.n == 0u) {
    // Every member skipped (nan_skip): an empty group whose members get 0 (rpp: NaN → 0 later).
    write_empty(g);
    if (P.phase == 0u) {
      for (var i = lo; i < hi; i = i + 1u) {
        if (P.estimator == EST_RPP) {
          vals[i] = nan_f32();
        } else {
          out[i] = 0.0;
        }
      }
    }
    return;
  }
  if (P.phase == 1u) {
    states[g] = moment_state(m);
    return;
  }
  var opo = vec2<f32>(0.0);
  if (P.estimator == EST_OPO) {
    opo = opo_serial(lo, hi, m.piv);
  }
  var pk = Best(lo, 0.0);
  if (P.estimator == EST_PASSK) {
    pk = passk_serial(lo, hi);
  }
  let pl = plan_group(m, opo, pk);
  if (P.estimator == EST_RPP) {
    var piv = 0.0;
    var found = false;
    var sv = 0.0;
    var wn = 0u;
    for (var i = lo; i < hi; i = i + 1u) {
      let r = X[i];
      let v = rpp_value(pl, r);
      vals[i] = v;
      if (skipped(r)) {
        continue;
      }
      let len = u32(roff[i + 1u] - roff[i]);
      if (!found && len > 0u) {
        found = true;
        piv = pivot_of(v);
      }
      sv = sv + length_of(i) * (v - piv);
      wn = wn + len;
    }
    let wd = weighted_mean(sv, wn);
    var sq = 0.0;
    for (var i = lo; i < hi; i = i + 1u) {
      if (skipped(X[i])) {
        continue;
      }
      let c = (vals[i] - piv) - wd;
      sq = sq + length_of(i) * c * c;
    }
    states[g] = St(wn, 0u, piv, wd, sq);
  } else {
    for (var i = lo; i < hi; i = i + 1u) {
      out[i] = fix_adv(member_value(pl, m.n, i, X[i]));
    }
  }
  write_group(g, m, pl);
}

// One workgroup per listed group: workgroup j owns group goff[G + 1 + j], j < count (the host
// appends the groups with n > small_max to the group offsets it uploads, so n ≥ 1 here; one buffer
// for both keeps the kernel within 8 storage buffers). Members strided over the workgroup.
@compute @workgroup_size(WG)
fn adv_group(grid: Grid, @builtin(local_invocation_index) lid: u32) {
  let j = flat_wg(grid);
  if (j >= P.count) {
    return;
  }
  let g = u32(goff[P.num_groups + 1u + j]);
  let lo = u32(goff[g]);
  let hi = u32(goff[g + 1u]);
  let m = moments_wg(lo, hi, lid);
  // m.n is the same on every invocation, but it comes through workgroup memory: a uniform load lets
  // the branch below keep the reductions after it in uniform control flow.
  if (lid == 0u) {
    wcount = m.n;
  }
  if (workgroupUniformLoad(&wcount) == 0u) {
    // Every member skipped (nan_skip): an empty group whose members get 0 (rpp: NaN → 0 later).
    if (lid == 0u) {
      write_empty(g);
    }
    if (P.phase == 0u) {
      for (var i = lo + lid; i < hi; i = i + WG) {
        if (P.estimator == EST_RPP) {
          vals[i] = nan_f32();
        } else {
          out[i] = 0.0;
        }
      }
    }
    return;
  }
  if (P.phase == 1u) {
    if (lid == 0u) {
      states[g] = moment_state(m);
    }
    return;
  }
  var opo = vec2<f32>(0.0);
  if (P.estimator == EST_OPO) {
    opo = opo_wg(lo, hi, m.piv, lid);
  }
  var pk = Best(lo, 0.0);
  if (P.estimator == EST_PASSK) {
    pk = passk_wg(lo, hi, lid);
  }
  let pl = plan_group(m, opo, pk);
  if (P.estimator == EST_RPP) {
    // The pivot: the value of the first scorable member with tokens (each invocation's first is
    // its lowest; the workgroup's minimum is the group's), recomputed from its reward.
    var first = NO_INDEX;
    for (var i = lo + lid; i < hi; i = i + WG) {
      if (!skipped(X[i]) && roff[i + 1u] > roff[i]) {
        first = i;
        break;
      }
    }
    let fi = wg_min_u32(first, lid);
    var piv = 0.0;
    if (fi != NO_INDEX) {
      piv = pivot_of(rpp_value(pl, X[fi]));
    }
    var wv = 0.0;
    var wl = 0.0;
    for (var i = lo + lid; i < hi; i = i + WG) {
      let r = X[i];
      let v = rpp_value(pl, r);
      vals[i] = v;
      if (skipped(r)) {
        continue;
      }
      wv = wv + length_of(i) * (v - piv);
      wl = wl + length_of(i);
    }
    let sw = wg_sum4(vec4<f32>(wv, wl, 0.0, 0.0), lid);
    let wn = u32(sw.y);
    let wd = weighted_mean(sw.x, wn);
    var wq = 0.0;
    for (var i = lo + lid; i < hi; i = i + WG) {
      if (skipped(X[i])) {
        continue;
      }
      let c = (vals[i] - piv) - wd; // this invocation's own write above
      wq = wq + length_of(i) * c * c;
    }
    let sq = wg_sum4(vec4<f32>(wq, 0.0, 0.0, 0.0), lid).x;
    if (lid == 0u) {
      states[g] = St(wn, 0u, piv, wd, sq);
    }
  } else {
    for (var i = lo + lid; i < hi; i = i + WG) {
      out[i] = fix_adv(member_value(pl, m.n, i, X[i]));
    }
  }
  if (lid == 0u) {
    write_group(g, m, pl);
  }
}

// Whitening affine map (mode 1) from a merged state: mean' = Σx / (n + maskEps) = p + shift.
fn whiten_map(st: St) -> vec4<f32> {
  if (st.n == 0u) {
    return vec4<f32>(0.0, 0.0, 0.0, 0.0);
  }
  let nf = f32(st.n);
  let denom = nf + P.mask_eps;
  let corr = (st.piv + st.d) * (P.mask_eps / denom); // mean − mean'
  let shift = st.d - corr;
  var v = (st.m2 + nf * corr * corr) / denom;
  if (P.var_sample == 1u) {
    v = select(v * (nf / (nf - 1.0)), nan_f32(), st.n == 1u);
  }
  var rstd: f32;
  if (is_nan(v)) {
    rstd = nan_f32();
  } else if (P.var_clamp == 1u) {
    rstd = 1.0 / sqrt(max(v, WHITEN_VAR_EPS));
  } else {
    rstd = 1.0 / sqrt(v + WHITEN_VAR_EPS);
  }
  let keep = select(0.0, st.piv + shift, P.keep_mean == 1u);
  return vec4<f32>(st.piv, shift, rstd, keep);
}

@compute @workgroup_size(WG)
fn adv_merge(@builtin(local_invocation_index) lid: u32) {
  var acc = st_empty();
  for (var j = lid; j < P.count; j = j + WG) {
    acc = st_merge(acc, states[j]);
  }
  wst[lid] = acc;
  for (var k = WG >> 1u; k > 0u; k = k >> 1u) {
    workgroupBarrier();
    if (lid < k) {
      wst[lid] = st_merge(wst[lid], wst[lid + k]);
    }
  }
  workgroupBarrier();
  if (lid != 0u) {
    return;
  }
  let st = wst[0];
  if (P.mode == 0u) {
    let nf = f32(st.n);
    var bs: f32;
    if (P.std_sample == 1u) {
      bs = select(sqrt(st.m2 / (nf - 1.0)), nan_f32(), st.n <= 1u);
    } else {
      bs = sqrt(st.m2 / nf);
    }
    batch[0] = bs;
    // gpg's α = R / max(#nonzero, 1): over the scorable rewards under nan_skip.
    batch[1] = select(f32(P.num_responses), f32(st.n), P.nan_skip == 1u) / f32(max(st.aux, 1u));
    batch[2] = 0.0;
    batch[3] = 0.0;
  } else {
    let m = whiten_map(st);
    batch[0] = m.x;
    batch[1] = m.y;
    batch[2] = m.z;
    batch[3] = m.w;
  }
}

@compute @workgroup_size(WG)
fn expand_tokens(grid: Grid, @builtin(local_invocation_index) lid: u32) {
  let t = flat_wg(grid) * WG + lid;
  if (t >= P.count) {
    return;
  }
  let v = X[response_of(t, P.num_responses)];
  if (P.mode == 0u) {
    out[t] = v;
  } else {
    out[t] = fix_adv(((v - batch[0]) - batch[1]) * batch[2]);
  }
}

fn is_valid(i: u32) -> bool {
  if (P.has_mask == 0u) {
    return true;
  }
  return ((mask[i >> 2u] >> ((i & 3u) * 8u)) & 0xffu) != 0u;
}

@compute @workgroup_size(WG)
fn whiten_partial(grid: Grid, @builtin(local_invocation_index) lid: u32) {
  let c = flat_wg(grid);
  let i0 = c * WG * ITEMS;
  if (i0 >= P.count) {
    return;
  }
  let i1 = min(i0 + WG * ITEMS, P.count);
  // Pivot: the chunk's first valid element (0 if it is ±Inf/NaN).
  var first = NO_INDEX;
  for (var i = i0 + lid; i < i1; i = i + WG) {
    if (is_valid(i)) {
      first = min(first, i);
    }
  }
  first = wg_min_u32(first, lid);
  var piv = 0.0;
  if (first != NO_INDEX) {
    let x0 = X[first];
    piv = select(0.0, x0, is_finite(x0));
  }
  var acc = vec4<f32>(0.0);
  for (var i = i0 + lid; i < i1; i = i + WG) {
    if (is_valid(i)) {
      acc = acc + vec4<f32>(1.0, X[i] - piv, 0.0, 0.0);
    }
  }
  let s = wg_sum4(acc, lid);
  let d = select(s.y / s.x, 0.0, s.x == 0.0);
  var q = 0.0;
  for (var i = i0 + lid; i < i1; i = i + WG) {
    if (is_valid(i)) {
      let e = (X[i] - piv) - d;
      q = q + e * e;
    }
  }
  let m2 = wg_sum4(vec4<f32>(q, 0.0, 0.0, 0.0), lid).x;
  if (lid == 0u) {
    states[c] = St(u32(s.x), 0u, piv, d, m2);
  }
}

@compute @workgroup_size(WG)
fn whiten_apply(grid: Grid, @builtin(local_invocation_index) lid: u32) {
  let i = flat_wg(grid) * WG + lid;
  if (i >= P.count) {
    return;
  }
  if (is_valid(i)) {
    out[i] = ((X[i] - batch[0]) - batch[1]) * batch[2] + batch[3];
  } else {
    out[i] = 0.0;
  }
}

// Packs the u32 degenerate flags into u8 [G] (4 per word; one invocation per word).
@compute @workgroup_size(WG)
fn pack_flags(grid: Grid, @builtin(local_invocation_index) lid: u32) {
  let w = flat_wg(grid) * WG + lid;
  if (w * 4u >= P.count) {
    return;
  }
  var word = 0u;
  for (var j = 0u; j < 4u; j = j + 1u) {
    let f = w * 4u + j;
    if (f < P.count) {
      word = word | (gout[2u * P.num_groups + f] << (8u * j));
    }
  }
  deg_words[w] = word;
}
