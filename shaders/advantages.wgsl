// grpo-kernels: the advantages family on WebGPU (advantages, expandToTokens, whiten).
// Concatenated after common.wgsl's base and reduce_* sections (src/backends/webgpu/shaders.ts);
// host side: src/backends/webgpu/advantages.ts. Reference: src/backends/cpu/advantages.ts (the
// conventions, degenerate groups and NaN rules below are that file's, in f32).
//
// ADV_GROUP (adv_group): one workgroup per group g, members [lo, hi), n = hi − lo; WG invocations
//   stride the members (any group size). With pivot p = r_lo (0 if r_lo is ±Inf/NaN):
//     d  = Σ (r − p) / n                  (mean − p; a workgroup reduction, fixed order)
//     c_i = (r_i − p) − d                 (deviations; never r_i − f32(mean), which loses the
//                                          low digits of rewards like 1e6 + noise)
//     M2 = Σ c_i²;  s = sqrt(M2 / (n − 1)) ('sample'; NaN for n = 1) or sqrt(M2 / n)
//   grpo (r−μ)/(D+eps) | dr_grpo, reinforce_pp_baseline r−μ | rloo n/(n−1)·(r−μ) | opo r − b,
//   b = Σ L r / Σ L (deviations from p again) | gpg α(r−μ) | grpo_passk: the first maximum gets
//   (max − second)/(D+eps), the others 0, all NaN if a member is NaN (max/argmin reductions);
//   D = s or the batch std (scale 'batch'). Zero variance is decided exactly (every member
//   equals the finite r_lo), not from M2 == 0 in f32. Singletons by policy (zero / mean0 / nan).
//   phase 1: writes the group's moment state (n, p, d, M2, #nonzero) to `states` only (for the
//            batch std of scale 'batch' and gpg's α); phase 0: writes advantages, mean, std and
//            a u32 degenerate flag (packed to u8 by pack_flags); reinforce_pp_baseline writes its
//            group-level values v_i to `vals` and a length-weighted state (Σ L, mean, M2) of them.
//   Shapes: rewards f32 [R], groupOffsets i32 [G+1], responseOffsets i32 [R+1] (opo, rpp);
//   out f32 [R], mean/std f32 [G], flags u32 [G]. Bytes ≈ 3 reads of the rewards (4R each;
//   grpo_passk 6) + 4R written + 16G. FLOPs ≈ 8 per member.
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

struct AdvParams {
  num_groups: u32,
  num_responses: u32,
  count: u32, // adv_merge: states; whiten_*: elements; expand: tokens; pack_flags: flags
  estimator: u32, // EST_* below
  std_sample: u32, // 1: group/batch std with n − 1
  scale: u32, // 0 group, 1 batch, 2 none
  singleton: u32, // 0 zero, 1 mean0, 2 nan
  phase: u32, // adv_group: 0 final, 1 moment states only
  need_batch: u32, // adv_group phase 0: read (batch std, α) from `batch`
  mode: u32, // adv_merge: 0 rewards, 1 whitening; expand_tokens: 0 copy, 1 affine
  var_sample: u32, // whitening: Bessel over valid elements
  var_clamp: u32, // whitening: rsqrt(max(var, 1e-8)) instead of rsqrt(var + 1e-8)
  keep_mean: u32,
  has_mask: u32,
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
@group(0) @binding(5) var<storage, read_write> mean_out: array<f32>;
@group(0) @binding(6) var<storage, read_write> std_out: array<f32>;
@group(0) @binding(7) var<storage, read_write> deg_words: array<u32>;
@group(0) @binding(8) var<storage, read_write> states: array<St>;
@group(0) @binding(9) var<storage, read_write> batch: array<f32>;
@group(0) @binding(10) var<storage, read_write> vals: array<f32>;
@group(0) @binding(11) var<storage, read> mask: array<u32>;
@group(0) @binding(12) var<storage, read_write> flags: array<u32>;

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

fn is_nonzero(x: f32) -> bool {
  return (bitcast<u32>(x) & 0x7fffffffu) != 0u; // NaN counts as nonzero (torch.count_nonzero)
}

@compute @workgroup_size(WG)
fn adv_group(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let g = flat_wg(wid, nwg);
  if (g >= P.num_groups) {
    return;
  }
  let lo = u32(goff[g]);
  let hi = u32(goff[g + 1u]);
  let n = hi - lo;
  let est = P.estimator;
  if (n == 0u) {
    // Empty group: no members; mean 0, std 0, degenerate.
    if (lid == 0u) {
      if (P.phase == 1u || est == EST_RPP) {
        states[g] = st_empty();
      }
      if (P.phase == 0u) {
        mean_out[g] = 0.0;
        std_out[g] = 0.0;
        flags[g] = 1u;
      }
    }
    return;
  }
  let nf = f32(n);
  let r0 = X[lo];
  let piv = select(0.0, r0, is_finite(r0));

  // Pass 1: Σ (r − p), members ≠ r_lo, nonzero members, NaN members.
  var acc = vec4<f32>(0.0);
  for (var i = lo + lid; i < hi; i = i + WG) {
    let r = X[i];
    acc = acc + vec4<f32>(
      r - piv,
      select(0.0, 1.0, r != r0 || is_nan(r)),
      select(0.0, 1.0, is_nonzero(r)),
      select(0.0, 1.0, is_nan(r)),
    );
  }
  let s1 = wg_sum4(acc, lid);
  let d = s1.x / nf;

  // Pass 2: M2 = Σ ((r − p) − d)².
  var a2 = 0.0;
  for (var i = lo + lid; i < hi; i = i + WG) {
    let c = (X[i] - piv) - d;
    a2 = a2 + c * c;
  }
  let m2 = wg_sum4(vec4<f32>(a2, 0.0, 0.0, 0.0), lid).x;
  let single = n == 1u;
  var s: f32;
  if (P.std_sample == 1u) {
    s = select(sqrt(m2 / (nf - 1.0)), nan_f32(), single);
  } else {
    s = sqrt(m2 / nf);
  }

  if (P.phase == 1u) {
    if (lid == 0u) {
      states[g] = St(n, u32(s1.z), piv, d, m2);
    }
    return;
  }

  // opo: b − p = Σ L (r − p) / Σ L (0/0 → NaN, explicitly).
  var lsum = 0.0;
  var db = 0.0;
  if (est == EST_OPO) {
    var w = 0.0;
    for (var i = lo + lid; i < hi; i = i + WG) {
      w = w + f32(roff[i + 1u] - roff[i]) * (X[i] - piv);
    }
    let sw = wg_sum4(vec4<f32>(w, 0.0, 0.0, 0.0), lid).x;
    lsum = f32(roff[hi] - roff[lo]);
    db = select(sw / lsum, nan_f32(), lsum == 0.0);
  }

  // grpo_passk: the maximum over non-NaN members, the first member holding it, the runner-up.
  var best = NO_INDEX;
  var gap = 0.0;
  if (est == EST_PASSK) {
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
    best = wg_min_u32(bi, lid);
    var sec = neg_inf();
    for (var i = lo + lid; i < hi; i = i + WG) {
      let r = X[i];
      if (!is_nan(r) && i != best) {
        sec = max(sec, r);
      }
    }
    sec = wg_max(sec, lid);
    gap = mx - sec;
    if (best == NO_INDEX) {
      best = lo; // every member NaN: the group is NaN below anyway
    }
  }

  // Group-level parameters (the same in every invocation).
  let zero_var = !single && s1.y == 0.0 && is_finite(r0);
  let zero_out = zero_var || (single && P.singleton == SINGLE_ZERO);
  let mean0 = single && P.singleton == SINGLE_MEAN0;
  let divides = est == EST_GRPO || est == EST_PASSK;
  let batch_scale = divides && P.scale == SCALE_BATCH;
  var batch_std = 0.0;
  var alpha = 1.0;
  if (P.need_batch == 1u) {
    batch_std = batch[0];
    alpha = batch[1];
  }
  var p = piv; // value_i = (r_i − p) − shift
  var shift = d;
  var sd = s;
  if (est == EST_OPO) {
    shift = db;
  }
  if (mean0) {
    p = 0.0;
    shift = 0.0;
    sd = 1.0;
  }
  let div = select(sd, batch_std, batch_scale);
  let has_nan = s1.w > 0.0;
  var passk_value = gap;
  if (P.scale != SCALE_NONE) {
    passk_value = gap / (div + P.eps);
  }

  if (est == EST_RPP) {
    // Group-level values v_i (dr_grpo's), then their length-weighted moments (weights L_i).
    var wv = 0.0;
    for (var i = lo + lid; i < hi; i = i + WG) {
      var v = 0.0;
      if (!zero_out) {
        v = (X[i] - p) - shift;
      }
      vals[i] = v;
      wv = wv + f32(roff[i + 1u] - roff[i]) * v;
    }
    let sv = wg_sum4(vec4<f32>(wv, 0.0, 0.0, 0.0), lid).x;
    let wn = u32(roff[hi] - roff[lo]);
    let wm = select(sv / f32(wn), sv, wn == 0u);
    var wq = 0.0;
    for (var i = lo + lid; i < hi; i = i + WG) {
      let c = vals[i] - wm; // this invocation's own write above
      wq = wq + f32(roff[i + 1u] - roff[i]) * c * c;
    }
    let sq = wg_sum4(vec4<f32>(wq, 0.0, 0.0, 0.0), lid).x;
    if (lid == 0u) {
      states[g] = St(wn, 0u, 0.0, wm, sq);
    }
  } else {
    for (var i = lo + lid; i < hi; i = i + WG) {
      var v = 0.0;
      if (!zero_out) {
        let c = (X[i] - p) - shift;
        switch est {
          case EST_GRPO: {
            v = select(c / (div + P.eps), c, P.scale == SCALE_NONE);
          }
          case EST_RLOO: {
            if (single) {
              v = select(nan_f32(), c, mean0); // n/(n−1) = ∞ times 0 under 'nan'
            } else {
              v = c * (nf / (nf - 1.0));
            }
          }
          case EST_GPG: {
            v = alpha * c;
          }
          case EST_PASSK: {
            v = select(0.0, passk_value, i == best);
            if (has_nan) {
              v = nan_f32();
            }
          }
          default: {
            v = c; // dr_grpo, opo
          }
        }
      }
      out[i] = v;
    }
  }

  if (lid == 0u) {
    var mu = p + shift;
    var deg = single || zero_var;
    if (zero_out) {
      mu = piv + d;
    } else if (est == EST_OPO && !mean0 && lsum == 0.0) {
      deg = true;
    }
    mean_out[g] = mu;
    var so = sd;
    if (zero_out) {
      so = 0.0;
    }
    std_out[g] = select(so, batch_std, batch_scale);
    flags[g] = select(0u, 1u, deg);
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
    batch[1] = f32(P.num_responses) / f32(max(st.aux, 1u));
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
fn expand_tokens(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let t = flat_wg(wid, nwg) * WG + lid;
  if (t >= P.count) {
    return;
  }
  let v = X[response_of(t, P.num_responses)];
  if (P.mode == 0u) {
    out[t] = v;
  } else {
    out[t] = ((v - batch[0]) - batch[1]) * batch[2];
  }
}

fn is_valid(i: u32) -> bool {
  if (P.has_mask == 0u) {
    return true;
  }
  return ((mask[i >> 2u] >> ((i & 3u) * 8u)) & 0xffu) != 0u;
}

@compute @workgroup_size(WG)
fn whiten_partial(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let c = flat_wg(wid, nwg);
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
fn whiten_apply(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let i = flat_wg(wid, nwg) * WG + lid;
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
fn pack_flags(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let w = flat_wg(wid, nwg) * WG + lid;
  if (w * 4u >= P.count) {
    return;
  }
  var word = 0u;
  for (var j = 0u; j < 4u; j = j + 1u) {
    let f = w * 4u + j;
    if (f < P.count) {
      word = word | (flags[f] << (8u * j));
    }
  }
  deg_words[w] = word;
}
