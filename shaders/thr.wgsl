// grpo-kernels: the THR family on WebGPU (tokenHiddenReward, thrReweight; restrictedVocab runs on
// the host, see docs/webgpu.md). Concatenated after common.wgsl's base and x_<dtype> sections
// (src/backends/webgpu/shaders.ts); host side: src/backends/webgpu/thr.ts. Math: THR.md; reference:
// src/backends/cpu/thr.ts.
//
// Per non-degenerate group g (K = |V*_g| columns, T_g tokens, T⁺_g correct tokens, d dims),
// g_t[v] = 1[v = col(y_t)] − q_t[v], q = probs (group g's [T_g, K] block), w_t = 1/|y_r| or 1:
// THR_M (thr_m): M_g = Σ_{u∈P} g_u (w_u h_u)ᵀ, [K, d] f32 in the scratch `mbuf` (rows
//   kLocal + v, kLocal = Σ K of the chunk's earlier non-degenerate groups).
//   One workgroup (256) owns a 16 × 16 tile of M and loops over the group's correct tokens in
//   blocks of 16: G-tile [16 u × 16 v] and (w∘H)-tile [16 u × 16 k] staged in workgroup memory,
//   each invocation accumulating its element in token order (deterministic, no atomics).
//   FLOPs 2·K·d·T⁺. Reads: each tile re-reads 16 columns of Q⁺ and of H⁺ for every correct
//   token, ≈ T⁺·K·d/8 elements in all (from cache on a GPU); writes 4·K·d bytes.
// THR_SCORE (thr_score): s_t = g_tᵀ M_g h_t = Σ_v g_t[v]·U[t, v], U = H M_gᵀ, never stored: one
//   workgroup owns a block of 16 tokens of one group and loops over 16-row tiles of V*; per tile,
//   U[16 t × 16 v] is accumulated over 16-wide slabs of d (H and M tiles in workgroup memory),
//   then multiplied by g_t[v] and summed over the tile's 16 columns in order into the token's
//   running s (fixed order: tiles ascending, columns ascending). Writes the raw s_t into `thr`.
//   FLOPs 2·K·d·T_g + 2·K·T_g. Reads ≈ T_g·K·d/8 elements of M and H (a 16 × 16 tile of each
//   per 256 products) + T_g·K probabilities; writes 4·T_g bytes.
// THR_TAU (thr_tau): one workgroup per group. Degenerate groups (host flags): THR 0, tau NaN.
//   Otherwise invocations stride over the group's responses: correct responses keep +s and
//   contribute m_i = (Σ_t s_t in token order) / |y_i| when they have tokens; incorrect ones
//   flip to −s. tau = beta · min_i m_i (fixed-order tree, NaN-propagating as Math.min).
// REWEIGHT (thr_reweight): one invocation per token (response found by binary search in
//   responseOffsets; per-response group / correct / degenerate packed by the host):
//   'thr'/'thr-only': 1[|THR| > tau]·(1 + p·sign(THR))·A (mask off: A below the threshold);
//   'nthr': incorrect tokens with −THR > tau get eta_g·A; degenerate groups keep A; a NaN THR or
//   tau gives NaN wherever the rule could change A. 12 bytes read + 4 written per token.
// Numerics: f32 accumulation (hidden read as f32 whatever its dtype, exactly); inputs NaN/Inf
//   propagate through the sums as IEEE arithmetic gives.

struct ThrParams {
  count: u32, // thr_reweight: tokens; thr_m / thr_score: workgroups of this chunk
  groups: u32, // groups in this chunk (thr_m, thr_score); all groups (thr_tau)
  dim: u32,
  tiles_d: u32, // ceil(dim / 16)
  x_base: u32, // element index of the chunk's first hidden row inside the X window
  tok_base: u32, // global index of the chunk's first token (row 0 of the X window)
  probs_base: u32, // element index of the chunk's first probability inside the probs window
  num_responses: u32,
  mode: u32, // thr_reweight: 0 'thr'/'thr-only', 1 'nthr'
  mask: u32, // thr_reweight: 1 = zero the tokens at or below the threshold
  p: f32,
  beta: f32,
}

// Per group of a chunk (host-built, INFO_STRIDE u32 each).
const INFO_STRIDE: u32 = 8u;
const I_TOK0: u32 = 0u; // global first token of the group
const I_T: u32 = 1u; // tokens T_g
const I_KOFF: u32 = 2u; // first row of the group's M block in `mbuf`
const I_K: u32 = 3u; // |V*_g|
const I_POFF: u32 = 4u; // first probability of the group, relative to the chunk's first
const I_CSTART: u32 = 5u; // first entry in ctok / cw
const I_CCOUNT: u32 = 6u; // correct tokens T⁺_g
const I_WG0: u32 = 7u; // first workgroup of the group in this dispatch (thr_m or thr_score)

@group(0) @binding(0) var<uniform> P: ThrParams;
@group(0) @binding(3) var<storage, read> probs: array<f32>;
@group(0) @binding(4) var<storage, read> tcol: array<i32>;
@group(0) @binding(5) var<storage, read> info: array<u32>;
@group(0) @binding(6) var<storage, read> ctok: array<u32>;
@group(0) @binding(7) var<storage, read> cw: array<f32>;
@group(0) @binding(8) var<storage, read_write> mbuf: array<f32>;
@group(0) @binding(9) var<storage, read_write> thr: array<f32>;
@group(0) @binding(10) var<storage, read_write> tau: array<f32>;
@group(0) @binding(11) var<storage, read> roff: array<i32>;
@group(0) @binding(12) var<storage, read> goff: array<i32>;
@group(0) @binding(13) var<storage, read> correct_words: array<u32>;
@group(0) @binding(14) var<storage, read> gdeg: array<u32>;
@group(0) @binding(15) var<storage, read> adv_in: array<f32>;
@group(0) @binding(16) var<storage, read> thr_in: array<f32>;
@group(0) @binding(17) var<storage, read> tau_in: array<f32>;
@group(0) @binding(18) var<storage, read> rinfo: array<u32>;
@group(0) @binding(19) var<storage, read> eta: array<f32>;
@group(0) @binding(20) var<storage, read_write> out: array<f32>;

// Tiles are 16 × 16 with 256 invocations (WebGPU guarantees 256 invocations per workgroup).
const TILE: u32 = 16u;
const TWG: u32 = 256u;

var<workgroup> ta: array<f32, 256>;
var<workgroup> tb: array<f32, 256>;
var<workgroup> tp: array<f32, 256>;
var<workgroup> tmin: array<f32, WG>;

fn info_at(gl: u32, field: u32) -> u32 {
  return info[gl * INFO_STRIDE + field];
}

// The chunk-local group whose workgroup range holds workgroup `w` (last group with I_WG0 ≤ w).
fn group_of(w: u32) -> u32 {
  var a = 0u;
  var b = P.groups - 1u;
  while (a < b) {
    let m = (a + b + 1u) >> 1u;
    if (info_at(m, I_WG0) <= w) {
      a = m;
    } else {
      b = m - 1u;
    }
  }
  return a;
}

// Element k of the hidden row of global token t (inside this chunk's X window).
fn hidden(t: u32, k: u32) -> f32 {
  return load_x(P.x_base + (t - P.tok_base) * P.dim + k);
}

// g_t[v] for token t (global) of a group with first token tok0, K columns, probabilities at poff.
fn pred_err(t: u32, v: u32, tok0: u32, k: u32, poff: u32) -> f32 {
  let q = probs[P.probs_base + poff + (t - tok0) * k + v];
  return select(0.0, 1.0, u32(tcol[t]) == v) - q;
}

@compute @workgroup_size(TWG)
fn thr_m(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let w = flat_wg(wid, nwg);
  if (w >= P.count) {
    return;
  }
  let gl = group_of(w);
  let tile = w - info_at(gl, I_WG0);
  let tok0 = info_at(gl, I_TOK0);
  let k_rows = info_at(gl, I_K);
  let poff = info_at(gl, I_POFF);
  let c0 = info_at(gl, I_CSTART);
  let nc = info_at(gl, I_CCOUNT);
  let v0 = (tile / P.tiles_d) * TILE;
  let d0 = (tile % P.tiles_d) * TILE;
  let row = lid / TILE; // u in the loads, v in the product
  let col = lid % TILE; // v (G-tile) or k (WH-tile) in the loads, k in the product
  var acc = 0.0;
  for (var u0 = 0u; u0 < nc; u0 = u0 + TILE) {
    // Stage G[u][v] (ta) and w_u·h_u[k] (tb) for 16 correct tokens.
    var gv = 0.0;
    var wh = 0.0;
    if (u0 + row < nc) {
      let t = ctok[c0 + u0 + row];
      if (v0 + col < k_rows) {
        gv = pred_err(t, v0 + col, tok0, k_rows, poff);
      }
      if (d0 + col < P.dim) {
        wh = cw[c0 + u0 + row] * hidden(t, d0 + col);
      }
    }
    workgroupBarrier();
    ta[row * TILE + col] = gv;
    tb[row * TILE + col] = wh;
    workgroupBarrier();
    for (var uu = 0u; uu < TILE; uu = uu + 1u) {
      acc = acc + ta[uu * TILE + row] * tb[uu * TILE + col];
    }
  }
  if (v0 + row < k_rows && d0 + col < P.dim) {
    mbuf[(info_at(gl, I_KOFF) + v0 + row) * P.dim + d0 + col] = acc;
  }
}

@compute @workgroup_size(TWG)
fn thr_score(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let w = flat_wg(wid, nwg);
  if (w >= P.count) {
    return;
  }
  let gl = group_of(w);
  let block = w - info_at(gl, I_WG0);
  let tok0 = info_at(gl, I_TOK0);
  let tg = info_at(gl, I_T);
  let k_rows = info_at(gl, I_K);
  let koff = info_at(gl, I_KOFF);
  let poff = info_at(gl, I_POFF);
  let row = lid / TILE; // token within the block (and the load row)
  let col = lid % TILE; // v within the tile (and k in the loads)
  let tl = block * TILE + row; // token within the group
  let t = tok0 + tl;
  let live = tl < tg;
  var s = 0.0; // running s_t, kept by the invocations with col == 0
  for (var v0 = 0u; v0 < k_rows; v0 = v0 + TILE) {
    var u = 0.0; // U[t, v0 + col]
    for (var d0 = 0u; d0 < P.dim; d0 = d0 + TILE) {
      var hv = 0.0;
      var mv = 0.0;
      if (d0 + col < P.dim) {
        if (live) {
          hv = hidden(t, d0 + col);
        }
        if (v0 + row < k_rows) {
          mv = mbuf[(koff + v0 + row) * P.dim + d0 + col];
        }
      }
      workgroupBarrier();
      ta[lid] = hv; // H tile [token][k]
      tb[lid] = mv; // M tile [v][k]
      workgroupBarrier();
      for (var kk = 0u; kk < TILE; kk = kk + 1u) {
        u = u + ta[row * TILE + kk] * tb[col * TILE + kk];
      }
    }
    var gu = 0.0;
    if (live && v0 + col < k_rows) {
      gu = pred_err(t, v0 + col, tok0, k_rows, poff) * u;
    }
    workgroupBarrier();
    tp[lid] = gu;
    workgroupBarrier();
    if (col == 0u) {
      for (var j = 0u; j < TILE; j = j + 1u) {
        s = s + tp[row * TILE + j];
      }
    }
  }
  if (col == 0u && live) {
    thr[t] = s;
  }
}

fn min_nan(a: f32, b: f32) -> f32 {
  if (is_nan(a) || is_nan(b)) {
    return nan_f32();
  }
  return min(a, b);
}

fn is_correct(r: u32) -> bool {
  return ((correct_words[r >> 2u] >> ((r & 3u) * 8u)) & 0xffu) != 0u;
}

@compute @workgroup_size(WG)
fn thr_tau(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let g = flat_wg(wid, nwg);
  if (g >= P.groups) {
    return;
  }
  let r0 = u32(goff[g]);
  let r1 = u32(goff[g + 1u]);
  if (gdeg[g] != 0u) {
    for (var t = u32(roff[r0]) + lid; t < u32(roff[r1]); t = t + WG) {
      thr[t] = 0.0;
    }
    if (lid == 0u) {
      tau[g] = nan_f32();
    }
    return;
  }
  var inf_bits = 0x7f800000u; // +Inf, through a var (no Inf constant expressions in WGSL)
  var m = bitcast<f32>(inf_bits);
  for (var r = r0 + lid; r < r1; r = r + WG) {
    let a = u32(roff[r]);
    let b = u32(roff[r + 1u]);
    if (is_correct(r)) {
      var sum = 0.0;
      for (var t = a; t < b; t = t + 1u) {
        sum = sum + thr[t];
      }
      if (b > a) {
        m = min_nan(m, sum / f32(b - a));
      }
    } else {
      for (var t = a; t < b; t = t + 1u) {
        thr[t] = -thr[t];
      }
    }
  }
  tmin[lid] = m;
  for (var k = WG >> 1u; k > 0u; k = k >> 1u) {
    workgroupBarrier();
    if (lid < k) {
      tmin[lid] = min_nan(tmin[lid], tmin[lid + k]);
    }
  }
  workgroupBarrier();
  if (lid == 0u) {
    tau[g] = P.beta * tmin[0];
  }
}

@compute @workgroup_size(WG)
fn thr_reweight(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let t = flat_wg(wid, nwg) * WG + lid;
  if (t >= P.count) {
    return;
  }
  let ri = rinfo[response_of(t, P.num_responses)];
  let g = ri & 0x3fffffffu;
  let deg = (ri >> 30u) & 1u;
  let corr = ri >> 31u;
  let A = adv_in[t];
  if (deg == 1u) {
    out[t] = A;
    return;
  }
  let tg = tau_in[g];
  let x = thr_in[t];
  if (P.mode == 0u) {
    if (is_nan(tg) || is_nan(x)) {
      out[t] = nan_f32();
    } else if (abs(x) > tg) {
      out[t] = (1.0 + P.p * sign(x)) * A;
    } else if (P.mask == 1u) {
      out[t] = 0.0 * A;
    } else {
      out[t] = A;
    }
  } else {
    if (corr == 1u) {
      out[t] = A;
    } else if (is_nan(tg) || is_nan(x)) {
      out[t] = nan_f32();
    } else if (-x > tg) {
      out[t] = eta[g] * A;
    } else {
      out[t] = A;
    }
  }
}
