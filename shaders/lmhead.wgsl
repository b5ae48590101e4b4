// grpo-kernels: the LM-head family on WebGPU (linearLogprobs, its backward, the sharded states).
// Concatenated after common.wgsl's base, x_<dtype> (hidden states, or logits, at @binding(1)),
// w_<dtype> (the head's weight at @binding(2), its bias at @binding(3)), online_state and tile_gemm
// sections (src/backends/webgpu/shaders.ts); host side: src/backends/webgpu/lmhead.ts.
//
// FORWARD (lm_fwd, then lm_finish or lm_state_out): x[n, v] = h_n · W_v + b_v, never stored; per row
//   the online state (raw max m, s = Σ e^d, sx = Σ e^d·d, sq = Σ e^{2d}, d = (x − m)/T; online_state)
//   as logprobs.wgsl keeps it, so the outputs are logprobs' on those logits.
//   lm_fwd: one workgroup owns 64 rows × one slice of the vocabulary (SLICE_TILES tiles of 64
//   columns; slices from V alone): per tile, the 64 × 64 logits as a register-blocked GEMM over d
//   (common.wgsl's tile_gemm: 256 invocations, each a 4 × 4 block, rows ty + 16i and columns
//   tx + 16j; k-steps of 16 staged in workgroup memory, k-major), then each invocation pushes its 16
//   logits (+ bias) into the online states of its 4 rows (columns in order, tiles in order). At the
//   slice's end the 16 invocations sharing a row fold their states in lane order (tx = 0..15) through
//   workgroup memory, into partial[row][slice]. The invocation owning (row, target column) stores
//   the target's raw logit in xt[row]: the same bits as the logit folded into the state.
//   lm_finish: one invocation per row folds its slices in order and writes logprobs, lse, entropy,
//   Σp² (common.wgsl's st_outputs, as logprobs.wgsl's finish); lm_state_out writes the state instead (the public
//   format of LogprobStates: raw max, sums, the target's logit when it lies in the shard, else 0).
//   Batch invariance: a row's logits, the order of its pushes and of every fold depend on V, d and
//   the device's variant alone, never on N, the row's position or the chunking (tested).
//   Bytes: hidden read ceil(slices-per-row) times per row block (once per slice: 2·d·64 bytes per
//   64 rows and 64 columns from cache), the weight read ceil(N/64) times; writes 20·slices per row.
//   FLOPs: 2·N·V·d (the logits) + ~10·N·V (the online states).
// LOGIT STATES (lm_logit_states, then lm_state_out): logprobStates over materialised logits X
//   [rows, V] of a shard: one workgroup per (row, slice): invocation l pushes columns l, l + WG, …
//   of the slice in order, then invocation 0 folds the WG states in lane order into partial.
// MERGE (lm_merge_state per state, then lm_finish): mergeLogprobStates. One invocation per row folds
//   state k into the accumulator acc[row] (partial with one slice; `first` starts it) and takes
//   state k's targetLogit when the row's target lies in state k's shard [vocab_start, +vocab).
// BACKWARD, per chunk of rows (a multiple of 64) × chunk of the vocabulary (a multiple of 64, the
//   G buffer's width gcols), in that loop order:
//   lm_grad_logits: one workgroup per 64 × 64 tile: the logits tile as in lm_fwd, then
//     G = (onehot − p)·g/T − (gE/T)·p·(log p + H), p = e^{x/T − lse} (as logprobs_backward's grad_at,
//     from the row scalars lse | g | gE | H in rowinfo) into gbuf [rows][gcols] (f32).
//   lm_grad_hidden: gradHidden[chunk rows] (+)= G · W[chunk vocab]: 64 rows × 64 dims per workgroup,
//     k over the chunk's vocabulary in steps of 16; `accumulate` (every vocabulary chunk after the
//     first) starts each element from the stored value, so the sum over v runs on in one f32
//     accumulator: the same bits as one long reduction, whatever the chunking.
//   lm_grad_weight: gradWeight[chunk vocab] (+)= Gᵀ · H[chunk rows]: 64 vocabulary rows × 64 dims
//     per workgroup, k over the chunk's rows in steps of 16, carried across row chunks likewise:
//     gradWeight's sum over n is one fixed sequence, independent of how rows are chunked.
//   lm_grad_bias: one invocation per vocabulary row: gradBias (+)= Σ_n G[n, v], n ascending.
//   No float atomics. Bytes: G written and read twice (4·rows·gcols each way per chunk pair); FLOPs
//   3 × 2·N·V·d. Bad targets: G = 0 for the row and flag[FLAG_TARGET_ROW] (atomicMin), as logprobs.
//   Gradients in the input dtype (gradDtype 'input', f16/bf16): the GEMMs above run on f32
//   accumulators of one chunk (gout bound to scratch instead of the output: [rows × d] for gradHidden,
//   [vcount × d] and [vcount] for gradWeight and gradBias), and when a chunk's sum is complete lm_pack
//   rounds it once into the output's packed words (16-bit elements in u32 pairs, as every f16/bf16
//   tensor here is stored; a GEMM tile cannot store them itself: two invocations own the halves of a
//   word, and for odd d a word straddles two rows, so two tiles). With more than one row chunk the
//   host runs gradWeight and gradBias in a second pass, vocabulary chunks outer, so their accumulators
//   are one vocabulary chunk's, never [V, d]. The same kernels in the same order per element: the f32
//   gradients rounded, bit for bit.
//   lm_pack: one invocation per output word: elements 2w and 2w + 1 of the chunk's count (a chunk
//     starts at an even element; only the tensor's last word may hold one element and zero padding).
// Workgroup memory: 2 · 16 · 17 · 16 B = 8704 B (≤ 16 KiB); 256 invocations; ≤ 8 storage buffers.

struct LmParams {
  rows: u32, // rows of this chunk
  dim: u32,
  vocab: u32, // weight rows (the shard's width), or logits columns
  row0: u32, // global index of the chunk's first row (targets, outputs, xt, rowinfo)
  h_base: u32, // element index of the chunk's first row in the X window
  v0: u32, // first vocabulary row of this call's window (within the shard)
  vcount: u32, // vocabulary rows of the window
  w_base: u32, // element index of weight row v0 in the W window
  o_base: u32, // element index of the first output element in the gout window
  slices: u32, // forward: slices per row (from V)
  slice_cols: u32, // forward: columns per slice (a multiple of 64)
  gcols: u32, // backward: G's row stride
  accumulate: u32, // backward GEMMs: 1 = add to what gout holds
  has_bias: u32,
  vocab_start: u32, // the shard's first column in the full vocabulary (targets are global ids)
  first: u32, // lm_merge_state: 1 for the first state
  n_total: u32, // rows of the whole call (rowinfo is [4][n_total])
  inv_t: f32,
  ignore_index: i32,
  count: u32, // lm_pack: elements of the chunk
}

@group(0) @binding(0) var<uniform> P: LmParams;
@group(0) @binding(4) var<storage, read> targets: array<i32>;
@group(0) @binding(5) var<storage, read_write> partial: array<f32>;
@group(0) @binding(6) var<storage, read_write> xt: array<f32>;
@group(0) @binding(7) var<storage, read_write> out_a: array<f32>; // logprobs | state max
@group(0) @binding(8) var<storage, read_write> out_b: array<f32>; // lse | state sumExp
@group(0) @binding(9) var<storage, read_write> out_c: array<f32>; // entropy | state sumExpDelta
@group(0) @binding(10) var<storage, read_write> out_d: array<f32>; // sumSquares | state sumExpSq
@group(0) @binding(11) var<storage, read_write> flag: array<atomic<u32>, 4>;
@group(0) @binding(12) var<storage, read> rowinfo: array<f32>; // [4][N]: lse | g | gE | H
@group(0) @binding(13) var<storage, read_write> gbuf: array<f32>;
@group(0) @binding(14) var<storage, read_write> gout: array<f32>;
@group(0) @binding(15) var<storage, read_write> out_xt: array<f32>; // state targetLogit
@group(0) @binding(16) var<storage, read> in_max: array<f32>;
@group(0) @binding(17) var<storage, read> in_s: array<f32>;
@group(0) @binding(18) var<storage, read> in_sd: array<f32>;
@group(0) @binding(19) var<storage, read> in_sq: array<f32>;
@group(0) @binding(20) var<storage, read> in_xt: array<f32>;
@group(0) @binding(21) var<storage, read_write> gpack: array<u32>; // lm_pack: f16/bf16 pairs

override ENTROPY: bool = false;
override SUMSQ: bool = false;
override GRAD_ENTROPY: bool = false;
override GRAD_F16: bool = false; // lm_pack: f16 words (else bf16)

const STATE: u32 = 5u; // floats per state in `partial`: m, s, sx, sq, nan
// TB, LANES, KS, TSTRIDE, TWG, sa, sb, tile_step: common.wgsl's tile_gemm section.
const FLAG_NEG_INF_ROW: u32 = 0u;
const FLAG_TARGET_ROW: u32 = 1u;
const FLAG_TARGET_VALUE: u32 = 2u;
const NO_ROW: u32 = 0xffffffffu;

// -------------------------------------------------------------------------------- operands
// Hidden element k of chunk row r (0 past the chunk's rows or d).
fn hid(r: u32, k: u32) -> f32 {
  if (r >= P.rows || k >= P.dim) {
    return 0.0;
  }
  return load_x(P.h_base + r * P.dim + k);
}

// Weight element k of window row v (0 past the window or d).
fn wgt(v: u32, k: u32) -> f32 {
  if (v >= P.vcount || k >= P.dim) {
    return 0.0;
  }
  return load_w(P.w_base + v * P.dim + k);
}

// The 64 × 64 logits tile (no bias) of chunk rows r0 + ·, window rows vt + ·: acc[i][j] for row
// r0 + ty + 16i, column vt + tx + 16j. k-steps of 16 over d, each element summing in k order.
fn logits_tile(r0: u32, vt: u32, lid: u32) -> mat4x4<f32> {
  let lk = lid % LANES; // staging: dimension d0 + lk
  let lq = lid / LANES; // staging: rows (sa) and vocabulary rows (sb) lq + 16c
  var acc = mat4x4<f32>();
  for (var d0 = 0u; d0 < P.dim; d0 = d0 + KS) {
    let k = d0 + lk;
    let r = r0 + lq;
    let hv = vec4<f32>(hid(r, k), hid(r + 16u, k), hid(r + 32u, k), hid(r + 48u, k));
    let v = vt + lq;
    let wv = vec4<f32>(wgt(v, k), wgt(v + 16u, k), wgt(v + 32u, k), wgt(v + 48u, k));
    acc = tile_step(acc, lk * TSTRIDE + lq, hv, lk * TSTRIDE + lq, wv, lid);
  }
  return acc;
}

fn bias_at(v: u32) -> f32 {
  if (P.has_bias == 0u) {
    return 0.0;
  }
  return load_b(v);
}

// ---------------------------------------------------------------------------------- forward
fn partial_at(r: u32, slice: u32) -> u32 {
  return (r * P.slices + slice) * STATE;
}

fn store_partial(r: u32, slice: u32, st: St) {
  let o = partial_at(r, slice);
  partial[o] = st.m;
  partial[o + 1u] = st.s;
  partial[o + 2u] = st.sx;
  partial[o + 3u] = st.sq;
  partial[o + 4u] = st.nan;
}

fn load_partial(r: u32, slice: u32) -> St {
  let o = partial_at(r, slice);
  return St(partial[o], partial[o + 1u], partial[o + 2u], partial[o + 3u], partial[o + 4u]);
}

// Shares invocation `lid`'s state with the workgroup through slot lid of sa and sb (272 slots ≥ WG,
// TWG). Called from uniform control flow.
fn share_state(lid: u32, st: St) {
  workgroupBarrier();
  sa[lid] = vec4<f32>(st.m, st.s, st.sx, st.sq);
  sb[lid] = vec4<f32>(st.nan, 0.0, 0.0, 0.0);
  workgroupBarrier();
}

// The shared states of slots [first, first + count) folded in slot order from st_empty().
fn fold_shared(first: u32, count: u32) -> St {
  var acc = st_empty();
  for (var j = first; j < first + count; j = j + 1u) {
    let q = sa[j];
    acc = st_fold(acc, St(q.x, q.y, q.z, q.w, sb[j].x));
  }
  return acc;
}

// Folds the 16 lane states of the row block's rows ty + 16·i (one round per i) in lane order and
// stores them as slice `slice`'s partial state. Called from uniform control flow.
fn fold_lanes(r0: u32, slice: u32, lid: u32, st: array<St, 4>) {
  let ty = lid / LANES;
  let tx = lid % LANES;
  for (var i = 0u; i < 4u; i = i + 1u) {
    share_state(lid, st[i]);
    let r = r0 + ty + 16u * i;
    if (tx == 0u && r < P.rows) {
      store_partial(r, slice, fold_shared(ty * LANES, LANES));
    }
  }
}

@compute @workgroup_size(TWG)
fn lm_fwd(grid: Grid, @builtin(local_invocation_index) lid: u32) {
  let w = flat_wg(grid);
  let nsl = (P.vcount + P.slice_cols - 1u) / P.slice_cols; // slices of this window
  if (w >= ((P.rows + TB - 1u) / TB) * nsl) {
    return; // the whole workgroup
  }
  let r0 = (w / nsl) * TB;
  let sl = w % nsl;
  let slice = P.v0 / P.slice_cols + sl; // the slice's index in the row
  let c0 = sl * P.slice_cols; // window rows of the slice
  let c1 = min(P.vcount, c0 + P.slice_cols);
  let ty = lid / LANES;
  let tx = lid % LANES;
  // The rows' targets, as window columns (or none).
  var tcol: array<i32, 4>;
  var live: array<bool, 4>;
  for (var i = 0u; i < 4u; i = i + 1u) {
    let r = r0 + ty + 16u * i;
    live[i] = r < P.rows;
    tcol[i] = -1;
    if (live[i]) {
      let t = targets[P.row0 + r];
      live[i] = t != P.ignore_index;
      tcol[i] = t - i32(P.vocab_start) - i32(P.v0);
    }
  }
  var st = array<St, 4>(st_empty(), st_empty(), st_empty(), st_empty());
  for (var vt = c0; vt < c1; vt = vt + TB) {
    let acc = logits_tile(r0, vt, lid);
    for (var i = 0u; i < 4u; i = i + 1u) {
      if (!live[i]) {
        continue;
      }
      for (var j = 0u; j < 4u; j = j + 1u) {
        let v = vt + tx + 16u * j;
        if (v < c1) {
          let x = acc[i][j] + bias_at(P.v0 + v);
          st_push(&st[i], x);
          if (i32(v) == tcol[i]) {
            xt[P.row0 + r0 + ty + 16u * i] = x;
          }
        }
      }
    }
  }
  fold_lanes(r0, slice, lid, st);
}

fn bad_target(t: i32, vocab: u32) -> bool {
  return t != P.ignore_index && (t < 0 || u32(t) >= vocab);
}

// The row's slices folded in order.
fn row_state(r: u32) -> St {
  var acc = st_empty();
  for (var s = 0u; s < P.slices; s = s + 1u) {
    acc = st_fold(acc, load_partial(r, s));
  }
  return acc;
}

// out_a..out_d[g] = o (out_c with ENTROPY, out_d with SUMSQ).
fn write_outputs(g: u32, o: vec4<f32>) {
  out_a[g] = o.x;
  out_b[g] = o.y;
  if (ENTROPY) {
    out_c[g] = o.z;
  }
  if (SUMSQ) {
    out_d[g] = o.w;
  }
}

// lm_finish: the logprobs outputs of chunk row r (P.vocab is the full vocabulary here).
@compute @workgroup_size(WG)
fn lm_finish(grid: Grid, @builtin(local_invocation_index) lid: u32) {
  let r = flat_wg(grid) * WG + lid;
  if (r >= P.rows) {
    return;
  }
  let g = P.row0 + r;
  let tgt = targets[g];
  var o = vec4<f32>(0.0); // logprob, lse, entropy, sumSquares
  if (tgt != P.ignore_index) {
    if (bad_target(tgt, P.vocab)) {
      atomicMin(&flag[FLAG_TARGET_ROW], g);
      o = vec4<f32>(nan_f32());
    } else {
      let st = row_state(r);
      let t = vec4<f32>(st.s, st.sx, st.sq, st.nan);
      if (st_all_neg_inf(st.m, t)) {
        atomicMin(&flag[FLAG_NEG_INF_ROW], g);
      }
      o = st_outputs(st.m, t, xt[g]);
    }
  }
  write_outputs(g, o);
}

// lm_state_out: the public state of chunk row r over this shard (0s for ignored rows).
@compute @workgroup_size(WG)
fn lm_state_out(grid: Grid, @builtin(local_invocation_index) lid: u32) {
  let r = flat_wg(grid) * WG + lid;
  if (r >= P.rows) {
    return;
  }
  let g = P.row0 + r;
  let tgt = targets[g];
  var st = St(0.0, 0.0, 0.0, 0.0, 0.0);
  var x = 0.0;
  if (tgt != P.ignore_index) {
    st = row_state(r);
    if (st.nan > 0.0 || is_pos_inf(st.m)) { // NaN or +Inf in the row: NaN sums (st_outputs's rule)
      st.s = nan_f32();
      st.sx = nan_f32();
      st.sq = nan_f32();
    }
    let c = tgt - i32(P.vocab_start);
    if (c >= 0 && u32(c) < P.vocab) {
      x = xt[g];
    }
  }
  write_outputs(g, vec4<f32>(st.m, st.s, st.sx, st.sq));
  out_xt[g] = x;
}

// lm_logit_states: slice `w mod slices` of chunk row `w / slices` of materialised logits.
@compute @workgroup_size(WG)
fn lm_logit_states(grid: Grid, @builtin(local_invocation_index) lid: u32) {
  let w = flat_wg(grid);
  if (w >= P.rows * P.slices) {
    return;
  }
  let r = w / P.slices;
  let slice = w % P.slices;
  let g = P.row0 + r;
  let tgt = targets[g];
  if (tgt == P.ignore_index) {
    return; // lm_state_out writes the row's zeros
  }
  let c0 = slice * P.slice_cols;
  let c1 = min(P.vocab, c0 + P.slice_cols);
  let base = P.h_base + r * P.vocab;
  var st = st_empty();
  for (var c = c0 + lid; c < c1; c = c + WG) {
    st_push(&st, load_x(base + c));
  }
  let ct = tgt - i32(P.vocab_start);
  if (lid == 0u && ct >= i32(c0) && ct < i32(c1)) {
    xt[g] = load_x(base + u32(ct));
  }
  // The WG lane states folded in lane order by invocation 0.
  share_state(lid, st);
  if (lid == 0u) {
    store_partial(r, slice, fold_shared(0u, WG));
  }
}

// lm_merge_state: folds one public state (bindings 16–20, its shard [vocab_start, +vocab)) into the
// accumulator partial[r] (one slice), and takes its targetLogit into xt when the target is there.
@compute @workgroup_size(WG)
fn lm_merge_state(grid: Grid, @builtin(local_invocation_index) lid: u32) {
  let r = flat_wg(grid) * WG + lid;
  if (r >= P.rows) {
    return;
  }
  let g = P.row0 + r;
  let s = in_s[g];
  var st = St(in_max[g], s, 0.0, 0.0, select(0.0, 1.0, is_nan(s)));
  if (ENTROPY) {
    st.sx = in_sd[g];
  }
  if (SUMSQ) {
    st.sq = in_sq[g];
  }
  if (P.first == 1u) {
    store_partial(r, 0u, st_fold(st_empty(), st));
    xt[g] = 0.0;
  } else {
    store_partial(r, 0u, st_fold(load_partial(r, 0u), st));
  }
  let c = targets[g] - i32(P.vocab_start);
  if (c >= 0 && u32(c) < P.vocab) {
    xt[g] = in_xt[g];
  }
}

// ---------------------------------------------------------------------------------- backward
// Workgroup w's tile in a grid of ceil(rows / TB) × ceil(cols / TB) tiles, columns fastest: its
// (row, column) origin, or x = NO_ROW past the grid (the whole workgroup returns).
fn tile_of(w: u32, rows: u32, cols: u32) -> vec2<u32> {
  let nc = (cols + TB - 1u) / TB;
  if (w >= ((rows + TB - 1u) / TB) * nc) {
    return vec2<u32>(NO_ROW, 0u);
  }
  return vec2<u32>((w / nc) * TB, (w % nc) * TB);
}

@compute @workgroup_size(TWG)
fn lm_grad_logits(grid: Grid, @builtin(local_invocation_index) lid: u32) {
  let tile = tile_of(flat_wg(grid), P.rows, P.vcount);
  if (tile.x == NO_ROW) {
    return;
  }
  let r0 = tile.x;
  let vt = tile.y;
  let ty = lid / LANES;
  let tx = lid % LANES;
  let acc = logits_tile(r0, vt, lid);
  let n = P.n_total;
  for (var i = 0u; i < 4u; i = i + 1u) {
    let r = r0 + ty + 16u * i;
    if (r >= P.rows) {
      continue;
    }
    let g = P.row0 + r;
    let tgt = targets[g];
    let ignored = tgt == P.ignore_index;
    let bad = bad_target(tgt, P.vocab);
    if (bad) {
      atomicMin(&flag[FLAG_TARGET_ROW], g);
    }
    let lse = rowinfo[g];
    let gl = rowinfo[n + g] * P.inv_t;
    let ge = rowinfo[2u * n + g] * P.inv_t;
    let hh = rowinfo[3u * n + g];
    for (var j = 0u; j < 4u; j = j + 1u) {
      let v = vt + tx + 16u * j;
      if (v >= P.vcount) {
        continue;
      }
      var d = 0.0;
      if (!ignored && !bad) {
        let x = acc[i][j] + bias_at(P.v0 + v);
        let lp = x * P.inv_t - lse;
        let p = select(select(exp(lp), 0.0, is_neg_inf(x) || is_pos_inf(lse)), nan_f32(), is_nan(lse)); // a NaN row: NaN everywhere
        d = (select(0.0, 1.0, i32(P.vocab_start + P.v0 + v) == tgt) - p) * gl;
        if (GRAD_ENTROPY) {
          d = d - ge * select(0.0, p * (lp + hh), p > 0.0);
        }
      }
      gbuf[r * P.gcols + v] = d;
    }
  }
}

// G element (chunk row r, window column v), 0 outside.
fn g_at(r: u32, v: u32) -> f32 {
  if (r >= P.rows || v >= P.vcount) {
    return 0.0;
  }
  return gbuf[r * P.gcols + v];
}

// The index in gout of element (i, j) of this invocation's 4 × 4 block of the 64 × 64 output tile at
// (m0, n0) (row m0 + ty + 16i, column n0 + tx + 16j of a [mrows, P.dim] matrix), or NO_ROW outside.
fn gout_at(m0: u32, n0: u32, mrows: u32, lid: u32, i: u32, j: u32) -> u32 {
  let m = m0 + lid / LANES + 16u * i;
  let n = n0 + lid % LANES + 16u * j;
  if (m >= mrows || n >= P.dim) {
    return NO_ROW;
  }
  return P.o_base + m * P.dim + n;
}

// Stores the 4 × 4 block of the output tile at (m0, n0) of gout.
fn store_tile(acc: mat4x4<f32>, m0: u32, n0: u32, mrows: u32, lid: u32) {
  for (var i = 0u; i < 4u; i = i + 1u) {
    for (var j = 0u; j < 4u; j = j + 1u) {
      let e = gout_at(m0, n0, mrows, lid, i, j);
      if (e != NO_ROW) {
        gout[e] = acc[i][j];
      }
    }
  }
}

// The stored block to continue from (accumulate), or zeros.
fn start_tile(m0: u32, n0: u32, mrows: u32, lid: u32) -> mat4x4<f32> {
  var acc = mat4x4<f32>();
  if (P.accumulate == 0u) {
    return acc;
  }
  for (var i = 0u; i < 4u; i = i + 1u) {
    for (var j = 0u; j < 4u; j = j + 1u) {
      let e = gout_at(m0, n0, mrows, lid, i, j);
      if (e != NO_ROW) {
        acc[i][j] = gout[e];
      }
    }
  }
  return acc;
}

@compute @workgroup_size(TWG)
fn lm_grad_hidden(grid: Grid, @builtin(local_invocation_index) lid: u32) {
  let tile = tile_of(flat_wg(grid), P.rows, P.dim);
  if (tile.x == NO_ROW) {
    return;
  }
  let r0 = tile.x;
  let n0 = tile.y;
  var acc = start_tile(r0, n0, P.rows, lid);
  let lk = lid % LANES;
  let lq = lid / LANES;
  for (var v0 = 0u; v0 < P.vcount; v0 = v0 + KS) {
    // sa: G[rows r0 + lq + 16c][v0 + lk] (k-major); sb: W[v0 + lq][n0 + lk + 16c] (one k-row each).
    let gv = vec4<f32>(g_at(r0 + lq, v0 + lk), g_at(r0 + lq + 16u, v0 + lk), g_at(r0 + lq + 32u, v0 + lk), g_at(r0 + lq + 48u, v0 + lk));
    let ku = v0 + lq; // sb row: the k (vocabulary) index lq, columns lk + 16c
    let n = n0 + lk;
    let wv = vec4<f32>(wgt(ku, n), wgt(ku, n + 16u), wgt(ku, n + 32u), wgt(ku, n + 48u));
    acc = tile_step(acc, lk * TSTRIDE + lq, gv, lq * TSTRIDE + lk, wv, lid);
  }
  store_tile(acc, r0, n0, P.rows, lid);
}

@compute @workgroup_size(TWG)
fn lm_grad_weight(grid: Grid, @builtin(local_invocation_index) lid: u32) {
  let tile = tile_of(flat_wg(grid), P.vcount, P.dim);
  if (tile.x == NO_ROW) {
    return;
  }
  let m0 = tile.x; // window vocabulary rows
  let n0 = tile.y;
  var acc = start_tile(m0, n0, P.vcount, lid);
  let lq = lid % LANES;
  let lu = lid / LANES;
  for (var k0 = 0u; k0 < P.rows; k0 = k0 + KS) {
    // sa: A[m][k] = G[k0 + lu][m0 + lq + 16c] (MN-major: one k-row each); sb: H[k0 + lu][n0 + lq + 16c].
    let r = k0 + lu;
    let m = m0 + lq;
    let gv = vec4<f32>(g_at(r, m), g_at(r, m + 16u), g_at(r, m + 32u), g_at(r, m + 48u));
    let n = n0 + lq;
    let hv = vec4<f32>(hid(r, n), hid(r, n + 16u), hid(r, n + 32u), hid(r, n + 48u));
    acc = tile_step(acc, lu * TSTRIDE + lq, gv, lu * TSTRIDE + lq, hv, lid);
  }
  store_tile(acc, m0, n0, P.vcount, lid);
}

@compute @workgroup_size(WG)
fn lm_grad_bias(grid: Grid, @builtin(local_invocation_index) lid: u32) {
  let v = flat_wg(grid) * WG + lid;
  if (v >= P.vcount) {
    return;
  }
  var s = 0.0;
  if (P.accumulate == 1u) {
    s = gout[P.o_base + v];
  }
  for (var r = 0u; r < P.rows; r = r + 1u) {
    s = s + gbuf[r * P.gcols + v];
  }
  gout[P.o_base + v] = s;
}

// lm_pack: gout[0, count) (a finished f32 chunk of a gradient) rounded to f16/bf16 (common.wgsl's
// converters, nearest even) into gpack's words from element o_base (even) on.
@compute @workgroup_size(WG)
fn lm_pack(grid: Grid, @builtin(local_invocation_index) lid: u32) {
  let w = flat_wg(grid) * WG + lid;
  let e = 2u * w;
  if (e >= P.count) {
    return;
  }
  var lo = 0u;
  var hi = 0u;
  if (GRAD_F16) {
    lo = f32_to_f16(gout[e]);
    if (e + 1u < P.count) {
      hi = f32_to_f16(gout[e + 1u]);
    }
  } else {
    lo = f32_to_bf16(gout[e]);
    if (e + 1u < P.count) {
      hi = f32_to_bf16(gout[e + 1u]);
    }
  }
  gpack[(P.o_base >> 1u) + w] = lo | (hi << 16u);
}

// One invocation: the lowest bad row's target next to its index (as logprobs.wgsl's MODE_FLAG).
@compute @workgroup_size(1)
fn lm_flag() {
  let r = atomicLoad(&flag[FLAG_TARGET_ROW]);
  if (r != NO_ROW) {
    atomicStore(&flag[FLAG_TARGET_VALUE], bitcast<u32>(targets[r]));
  }
}
