// grpo-kernels: the THR family on WebGPU (tokenHiddenReward, thrReweight; restrictedVocab runs on
// the host, see docs/webgpu.md). Concatenated after common.wgsl's base, x_<dtype>, response_of and
// tile_gemm sections (src/backends/webgpu/shaders.ts); host side: src/backends/webgpu/thr.ts. Math:
// docs/THR.md; reference: src/backends/js/thr.ts.
//
// Per non-degenerate group g (K = |V*_g| columns, T_g tokens, T⁺_g correct tokens, d dims),
// g_t[v] = 1[v = col(y_t)] − q_t[v], q = probs (group g's [T_g, K] block), w_t = 1/|y_r| or 1:
// THR_M (thr_m): M_g = Σ_{u∈P} g_u (w_u h_u)ᵀ = Gᵀ·(w∘H⁺) with G = [T⁺_g, K] prediction errors
//   of the correct tokens, [K, d] f32 in the scratch `mbuf` (rows kLocal + v, kLocal = Σ K of the
//   chunk's earlier non-degenerate groups). The one-hot part enters as g_u[v] = 1 − q_u[v] at the
//   token's column (1 − q is exact for q ≥ 1/2), formed while staging (as before the register blocking).
//   One workgroup owns a 64 (v) × 64 (k) tile of M (ceil(K/64)·ceil(d/64) workgroups per group)
//   and loops over the group's correct tokens 16 at a time (k-steps, token order): stages G[16 u ×
//   64 v] and (w∘H)[16 u × 64 k], each invocation accumulates a 4 × 4 block, every element
//   summing its terms in token order in one f32 accumulator (deterministic, no atomics). A group too
//   large for one binding runs in parts of its correct tokens (src/backends/webgpu/thr.ts): with
//   P.m_accum a part's accumulators start from the f32 sums the earlier parts stored, so every element
//   takes the same additions in the same order as in one pass (parts cut at multiples of 16 tokens);
//   a group whose M does not fit one binding runs per block of V* rows (P.v_base, P.v_count: tiles
//   from row v_base, the mbuf window starting there). thr_score's workgroups then take that block's
//   slices only, into their places in spart, and thr_fold adds all of them as in one pass.
//   FLOPs 2·K·d·T⁺ (+ T⁺·(K + d) forming g and w·h, once per tile that reads them). Reads: each
//   tile reads 64 columns of Q⁺ and 64 of H⁺ per correct token, so Q⁺ is read ceil(d/64) times
//   and H⁺ ceil(K/64) times, ≈ T⁺·K·d/32 elements in all (from cache on a GPU; the 16 × 16 tiles
//   before read T⁺·K·d/8), + 12 bytes of ctok / cw / tcol per token per tile; writes 4·K·d bytes.
// THR_SCORE (thr_score): s_t = g_tᵀ M_g h_t = Σ_v g_t[v]·U[t, v], U = H M_gᵀ, never stored: one
//   workgroup owns a block of 64 tokens × a slice of 128 columns of V* (two 64-column tiles) of one
//   group: ceil(T_g/64)·ceil(K/128) workgroups per group (slices split the work of a lone large
//   group over more workgroups; their count depends on K alone). Per tile, U[64 t × 64 v] is
//   accumulated over k-steps of 16 dimensions (H and M slices staged transposed), each invocation
//   holding a 4 t × 4 v block and each element summing over k in order. The epilogue adds
//   Σ_j g_t[v]·U[t, v] over the block's 4 columns (ascending) to the invocation's running partial
//   r_t (tiles ascending); then the slice's part Σ_{tx=0..15} r_t(tx), in lane order through
//   workgroup memory, goes to spart[slice][t] (chunk scratch, 4·T_g·ceil(K/128) bytes per group).
//   FLOPs 2·K·d·T_g + 2·K·T_g. Reads: H is read ceil(K/64) times and M_g ceil(T_g/64) times,
//   ≈ T_g·K·d/32 elements (T_g·K·d/8 with the 16 × 16 tiles before), + T_g·K probabilities once;
//   writes 4·T_g·ceil(K/128) bytes.
// THR_FOLD (thr_fold): one invocation per token of the chunk's groups: s_t = Σ_slice spart[slice][t],
//   slices ascending, into `thr` (raw, before the signs). Reads 4·ceil(K/128) bytes, writes 4.
// Batch invariance: every tile, slice and summation order is fixed by the group's own origin
//   (token, V* and d offsets inside the group), K and d, never by the chunk, the other groups or
//   the dispatch, so a group's THR has the same bits alone, among others or chunked (tested).
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
  count: u32, // thr_reweight: tokens; thr_m / thr_score / thr_fold: workgroups of this chunk
  groups: u32, // groups in this chunk (thr_m, thr_score, thr_fold); all groups (thr_tau)
  dim: u32,
  tiles_d: u32, // ceil(dim / 64): M tiles along d (thr_m)
  x_base: u32, // element index of the chunk's first hidden row inside the X window
  tok_base: u32, // global index of the chunk's first token (row 0 of the X window)
  probs_base: u32, // element index of the chunk's first probability inside the probs window
  num_responses: u32,
  mode: u32, // thr_reweight: 0 'thr'/'thr-only', 1 'nthr'
  mask: u32, // thr_reweight: 1 = zero the tokens at or below the threshold
  p: f32,
  beta: f32,
  m_base: u32, // element index of the chunk's first M row in the mbuf window (thr_m, thr_score)
  m_accum: u32, // thr_m: 1 = continue the sums already in M (a later part of a split group)
  v_base: u32, // a split group's part: its first row of V*_g (a multiple of 128; mbuf's window starts there)
  v_count: u32, // ... and its rows (0: every group's whole K)
}

// Per group of a chunk (host-built, INFO_STRIDE u32 each).
const INFO_STRIDE: u32 = 10u;
const I_TOK0: u32 = 0u; // global first token of the group
const I_T: u32 = 1u; // tokens T_g
const I_KOFF: u32 = 2u; // first row of the group's M block in `mbuf`
const I_K: u32 = 3u; // |V*_g|
const I_POFF: u32 = 4u; // first probability of the group, relative to the chunk's first
const I_CSTART: u32 = 5u; // first entry in ctok / cw
const I_CCOUNT: u32 = 6u; // correct tokens T⁺_g
const I_WG0: u32 = 7u; // first workgroup of the group in this dispatch (thr_m or thr_score)
const I_SOFF: u32 = 8u; // first partial of the group in `spart` (thr_score, thr_fold)
const I_WG1: u32 = 9u; // first workgroup of the group in the thr_fold dispatch

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
@group(0) @binding(21) var<storage, read_write> spart: array<f32>;

// Register-blocked tiles (thr_m and thr_score): common.wgsl's tile_gemm section (TB, LANES, KS,
// TSTRIDE, TWG, sa, sb, tile_step): 256 invocations own a 64 × 64 output tile, 4 × 4 per invocation,
// in k-steps of 16 staged k-major in workgroup memory (8704 B ≤ 16 KiB). ≤ 7 storage
// buffers (≤ 8). Out-of-range rows, columns and k are staged as 0 (partial tiles) and never stored.
const SLICE: u32 = 128u; // V* columns per thr_score workgroup (2 tiles): SCORE_SLICE in thr.ts

var<workgroup> tmin: array<f32, WG>;

fn info_at(gl: u32, field: u32) -> u32 {
  return info[gl * INFO_STRIDE + field];
}

// The chunk-local group whose workgroup range holds workgroup `w` (last group with info ≤ w in
// `field`: I_WG0 or I_WG1).
fn group_of(w: u32, field: u32) -> u32 {
  var a = 0u;
  var b = P.groups - 1u;
  while (a < b) {
    let m = (a + b + 1u) >> 1u;
    if (info_at(m, field) <= w) {
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

// g_t[v] = 1[v = col(y_t)] − q_t[v] from the token's column `col` and its probability row `prow`
// (index of q_t[0] in probs); 0 outside the group's K columns (partial tiles).
fn pred_err(prow: u32, col: u32, v: u32, k_rows: u32) -> f32 {
  if (v >= k_rows) {
    return 0.0;
  }
  return select(0.0, 1.0, col == v) - probs[prow + v];
}

// w·h_t[k], 0 past the last dimension (partial tiles).
fn weighted_hidden(t: u32, w: f32, k: u32) -> f32 {
  if (k >= P.dim) {
    return 0.0;
  }
  return w * hidden(t, k);
}

@compute @workgroup_size(TWG)
fn thr_m(grid: Grid, @builtin(local_invocation_index) lid: u32) {
  let w = flat_wg(grid);
  if (w >= P.count) {
    return; // the whole workgroup: barriers below stay uniform
  }
  let gl = group_of(w, I_WG0);
  let tile = w - info_at(gl, I_WG0);
  let tok0 = info_at(gl, I_TOK0);
  let k_rows = info_at(gl, I_K);
  let poff = info_at(gl, I_POFF);
  let c0 = info_at(gl, I_CSTART);
  let nc = info_at(gl, I_CCOUNT);
  let v0 = P.v_base + (tile / P.tiles_d) * TB;
  let d0 = (tile % P.tiles_d) * TB;
  let ty = lid / LANES; // product: rows v0 + ty + 16·i of M
  let tx = lid % LANES; // product: columns d0 + tx + 16·j
  let lu = lid / LANES; // staging: correct token u0 + lu of the step
  let lq = lid % LANES; // staging: v0 + lq + 16·c (sa) and d0 + lq + 16·c (sb), c = 0..3
  let koff = info_at(gl, I_KOFF);
  var acc = mat4x4<f32>(); // M[v0 + ty + 16·i][d0 + tx + 16·j] in acc[i][j]
  if (P.m_accum != 0u) {
    // A split group's later part: its sums go on from the f32 values the earlier parts stored, so
    // each element adds the same terms in the same order as one pass would.
    for (var i = 0u; i < 4u; i = i + 1u) {
      for (var j = 0u; j < 4u; j = j + 1u) {
        acc[i][j] = m_or0(koff, v0 + ty + 16u * i, k_rows, d0 + tx + 16u * j);
      }
    }
  }
  for (var u0 = 0u; u0 < nc; u0 = u0 + KS) {
    // Stage G[u][v0 + ·] (sa) and w_u·h_u[d0 + ·] (sb) for 16 correct tokens, in token order;
    // each invocation loads 4 elements 16 apart of one row of each.
    var gv = vec4<f32>(0.0);
    var wh = vec4<f32>(0.0);
    if (u0 + lu < nc) {
      let t = ctok[c0 + u0 + lu];
      let wt = cw[c0 + u0 + lu];
      let col = u32(tcol[t]);
      let prow = P.probs_base + poff + (t - tok0) * k_rows;
      let v = v0 + lq;
      gv = vec4<f32>(
        pred_err(prow, col, v, k_rows),
        pred_err(prow, col, v + 16u, k_rows),
        pred_err(prow, col, v + 32u, k_rows),
        pred_err(prow, col, v + 48u, k_rows),
      );
      let k = d0 + lq;
      wh = vec4<f32>(
        weighted_hidden(t, wt, k),
        weighted_hidden(t, wt, k + 16u),
        weighted_hidden(t, wt, k + 32u),
        weighted_hidden(t, wt, k + 48u),
      );
    }
    // Every element of the 4 × 4 block adds its 16 terms in token order.
    acc = tile_step(acc, lu * TSTRIDE + lq, gv, lu * TSTRIDE + lq, wh, lid);
  }
  let v = v0 + ty;
  let k = d0 + tx;
  store_m_row(koff, v, k, k_rows, acc[0]);
  store_m_row(koff, v + 16u, k, k_rows, acc[1]);
  store_m_row(koff, v + 32u, k, k_rows, acc[2]);
  store_m_row(koff, v + 48u, k, k_rows, acc[3]);
}

// M[v][k + 16·j] (the in-range ones) of the group whose block starts at row koff of mbuf (a split
// group's part: whose row v_base starts there).
fn store_m_row(koff: u32, v: u32, k: u32, k_rows: u32, x: vec4<f32>) {
  if (v >= k_rows) {
    return;
  }
  let row = P.m_base + (koff + v - P.v_base) * P.dim;
  for (var j = 0u; j < 4u; j = j + 1u) {
    if (k + 16u * j < P.dim) {
      mbuf[row + k + 16u * j] = x[j];
    }
  }
}

// h_t[k] for token tl of the group (0 past the group's tokens or the last dimension).
fn hidden_or0(tok0: u32, tl: u32, tg: u32, k: u32) -> f32 {
  if (tl >= tg || k >= P.dim) {
    return 0.0;
  }
  return hidden(tok0 + tl, k);
}

// M[v][k] of the group whose block starts at row koff (row v_base of it, a split group's part; 0 past
// K or the last dimension).
fn m_or0(koff: u32, v: u32, k_rows: u32, k: u32) -> f32 {
  if (v >= k_rows || k >= P.dim) {
    return 0.0;
  }
  return mbuf[P.m_base + (koff + v - P.v_base) * P.dim + k];
}

// Σ_j g_t[v + 16·j]·u[j] over the in-range columns, j ascending, for token tl of the group (0
// past its tokens). A column past K is skipped, not multiplied by 0: its U is 0·h, NaN when h is.
fn row_dot(tok0: u32, tl: u32, tg: u32, poff: u32, k_rows: u32, v: u32, u: vec4<f32>) -> f32 {
  if (tl >= tg) {
    return 0.0;
  }
  let col = u32(tcol[tok0 + tl]);
  let prow = P.probs_base + poff + tl * k_rows;
  var s = 0.0;
  for (var j = 0u; j < 4u; j = j + 1u) {
    if (v + 16u * j < k_rows) {
      s = s + pred_err(prow, col, v + 16u * j, k_rows) * u[j];
    }
  }
  return s;
}

@compute @workgroup_size(TWG)
fn thr_score(grid: Grid, @builtin(local_invocation_index) lid: u32) {
  let w = flat_wg(grid);
  if (w >= P.count) {
    return; // the whole workgroup: barriers below stay uniform
  }
  let gl = group_of(w, I_WG0);
  let tok0 = info_at(gl, I_TOK0);
  let tg = info_at(gl, I_T);
  let k_rows = info_at(gl, I_K);
  // Workgroups of a group: token blocks × V* slices (a split group's part: its slices), slices fastest.
  let nsl = (select(k_rows, P.v_count, P.v_count != 0u) + SLICE - 1u) / SLICE;
  let local = w - info_at(gl, I_WG0);
  let slice = P.v_base / SLICE + local % nsl;
  let tb0 = (local / nsl) * TB; // first token of the block, within the group
  let v_end = min(k_rows, (slice + 1u) * SLICE);
  let koff = info_at(gl, I_KOFF);
  let poff = info_at(gl, I_POFF);
  let ty = lid / LANES; // product: tokens tb0 + ty + 16·i
  let tx = lid % LANES; // product: columns v0 + tx + 16·j of the V* tile
  let lk = lid % LANES; // staging: dimension d0 + lk
  let lq = lid / LANES; // staging: tokens (sa) and V* rows (sb) lq + 16·c, c = 0..3
  // r[i]: token tb0 + ty + 16·i's partial s over this invocation's columns of every V* tile so far.
  var r = vec4<f32>(0.0);
  for (var v0 = slice * SLICE; v0 < v_end; v0 = v0 + TB) {
    var acc = mat4x4<f32>(); // U[tb0 + ty + 16·i][v0 + tx + 16·j] in acc[i][j]
    for (var d0 = 0u; d0 < P.dim; d0 = d0 + KS) {
      // Stage H[tokens][d0 + ·] and M[v0 + ·][d0 + ·] transposed (k-major): each invocation loads
      // one dimension of 4 rows of each (16 invocations read 16 consecutive elements of a row).
      let k = d0 + lk;
      let tq = tb0 + lq;
      let hv = vec4<f32>(
        hidden_or0(tok0, tq, tg, k),
        hidden_or0(tok0, tq + 16u, tg, k),
        hidden_or0(tok0, tq + 32u, tg, k),
        hidden_or0(tok0, tq + 48u, tg, k),
      );
      let vq = v0 + lq;
      let mv = vec4<f32>(
        m_or0(koff, vq, k_rows, k),
        m_or0(koff, vq + 16u, k_rows, k),
        m_or0(koff, vq + 32u, k_rows, k),
        m_or0(koff, vq + 48u, k_rows, k),
      );
      // Every element of the 4 × 4 block adds its 16 terms in dimension order.
      acc = tile_step(acc, lk * TSTRIDE + lq, hv, lk * TSTRIDE + lq, mv, lid);
    }
    // Row-dot epilogue: r[i] += Σ_j g_t[v]·U[t, v] over this invocation's 4 columns.
    let tl = tb0 + ty;
    let v = v0 + tx;
    r.x = r.x + row_dot(tok0, tl, tg, poff, k_rows, v, acc[0]);
    r.y = r.y + row_dot(tok0, tl + 16u, tg, poff, k_rows, v, acc[1]);
    r.z = r.z + row_dot(tok0, tl + 32u, tg, poff, k_rows, v, acc[2]);
    r.w = r.w + row_dot(tok0, tl + 48u, tg, poff, k_rows, v, acc[3]);
  }
  // The slice's part of s_t = Σ_tx r (lanes tx = 0..15 in order), through the staging memory
  // (free after a barrier), into spart[slice][t].
  workgroupBarrier();
  sa[tx * TSTRIDE + ty] = r;
  workgroupBarrier();
  if (lid < TB) {
    let tl = tb0 + lid;
    if (tl < tg) {
      var s = 0.0;
      for (var j = 0u; j < LANES; j = j + 1u) {
        s = s + sa[j * TSTRIDE + lid % LANES][lid / LANES]; // token lid = ty + 16·i
      }
      spart[info_at(gl, I_SOFF) + slice * tg + tl] = s;
    }
  }
}

@compute @workgroup_size(WG)
fn thr_fold(grid: Grid, @builtin(local_invocation_index) lid: u32) {
  let w = flat_wg(grid);
  if (w >= P.count) {
    return;
  }
  let gl = group_of(w, I_WG1);
  let tl = (w - info_at(gl, I_WG1)) * WG + lid;
  let tg = info_at(gl, I_T);
  if (tl >= tg) {
    return;
  }
  let nsl = (info_at(gl, I_K) + SLICE - 1u) / SLICE;
  let base = info_at(gl, I_SOFF) + tl;
  var s = 0.0;
  for (var j = 0u; j < nsl; j = j + 1u) {
    s = s + spart[base + j * tg];
  }
  thr[info_at(gl, I_TOK0) + tl] = s;
}

fn is_correct(r: u32) -> bool {
  return ((correct_words[r >> 2u] >> ((r & 3u) * 8u)) & 0xffu) != 0u;
}

@compute @workgroup_size(WG)
fn thr_tau(grid: Grid, @builtin(local_invocation_index) lid: u32) {
  let g = flat_wg(grid);
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
fn thr_reweight(grid: Grid, @builtin(local_invocation_index) lid: u32) {
  let t = flat_wg(grid) * WG + lid;
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
      // The literal 0·A (−0 for negative A, NaN for a NaN or infinite A), spelled out: a WGSL
      // compiler may fold 0.0 * A to 0.0.
      out[t] = select(bitcast<f32>(bitcast<u32>(A) & 0x80000000u), nan_f32(), is_nan(A) || is_pos_inf(abs(A)));
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
