// grpo-kernels: the logprobs family on WebGPU (forward, backward, gatherProbs).
// Concatenated after common.wgsl's base, x_<dtype>, y_<dtype>, reduce_* and online_state sections
// (src/backends/webgpu/shaders.ts); host side: src/backends/webgpu/logprobs.ts.
//
// FORWARD  y = logits / T (one row of V at a time), for every row whose target ≠ ignoreIndex:
//   lse = logsumexp(y) = m + log s,  s = Σ e^(y−m),  m = max y
//   logprob = y[target] − lse
//   entropy = −Σ p log p = log s − sx / s,   sx = Σ e^(y−m)·(y−m)
//   sumSquares = Σ p² = sq / s²,             sq = Σ e^(2(y−m))
//   Ignored rows are not read and give 0 in every output.
// One pass over the row with an online max: when the max moves from m to y, the running sums
// are rescaled by a = e^(m−y) (sx by a·(sx + (m−y)·s)). Accumulators in f32.
// Batch invariance (DESIGN.md, Numerics): a row's bits depend on that row alone, never on N, its
// position or the chunking, so one fixed reduction tree per V:
//   1. the row is cut into `segments` segments of seg_cols columns (the last may be shorter), both
//      from V alone (logprobs.ts, segmentsFor: about 8192 columns each);
//   2. lane l (of WG) keeps an online state over its columns of a segment, l, l + WG, … from the
//      segment's start (lane_segment);
//   3. lane l folds its segment states in column order, from st_empty() (st_fold);
//   4. one workgroup reduction over the lanes' folded states (wg_max, then wg_sum4 of the states
//      re-expressed relative to that max), and invocation 0 writes the outputs (finish).
// Three modes of the one entry point logprobs_rows run that tree in two schedules, chosen per
// chunk by its row count for speed only (the bits are the same):
//   MODE_ROWS:     many rows: one workgroup per row does 1–4 (one pass, no partial states);
//   MODE_SEGMENTS, then MODE_MERGE: few rows: one workgroup per (row, segment) does 2 and stores
//                  its WG lane states in `partial` (segments× the workgroups share the loads);
//                  then one workgroup per row reads them back and does 3 and 4.
// One entry point, so one compiled pipeline: a driver may choose the subgroup size per pipeline
// (AMD wave32/64, Intel SIMD8/16/32) and reduce_subgroup's order depends on it. What sets the bits
// besides V: WG (from the device's limits), reduce_subgroup vs reduce_tree (device features and
// tuning) and the subgroup size: per device and variant, never N.
//   Shapes: logits [rows, V] f32/f16/bf16 (a window of it per chunk, X), targets i32 [N],
//   outputs f32 [N]. Bytes: rows·V·sizeof(dtype) read once + 20·rows; the split schedule adds
//   20·WG·segments per row written and read (≈ 0.6 bytes per logit each way at WG = 256).
//   FLOPs: ~6 per logit (one exp, scale, compare, 3 FMA) + ~3 more with entropy/sumSquares, +
//   a fold (2 exp) per lane and segment (every ~32 logits of a lane).
//   Numerics: all state in f32; a NaN logit makes every output of its row NaN (counted with a
//   bit test, since max() of NaN is implementation-defined); a row of all −Inf has lse = −Inf
//   and sets flag[FLAG_NEG_INF_ROW] to the lowest such row (atomicMin on u32: deterministic); a
//   target outside [0, V) that is not ignoreIndex sets flag[FLAG_TARGET_ROW] the same way and gives
//   NaN outputs; a +Inf logit makes every output of its row NaN (Inf/Inf). After the rows, one
//   MODE_FLAG workgroup copies the lowest bad row's target into flag[FLAG_TARGET_VALUE]. The host
//   does not wait for the flags: the next wait reads them and throws RANGE naming targets or logits
//   (docs/DESIGN.md, "Errors from the device").
//
// BACKWARD (logprobs_backward): gradLogits[r, j] = (onehot(target)_j − p_j)·g_r / T
//   − (gE_r / T)·p_j·(log p_j + H_r)   (the second term only with gradEntropy),
//   p_j = e^(y_j − lse_r); 0 for ignored rows. The pad half of a last f16/bf16 word: 0 out of
//   place, untouched in place.
//   One invocation per output unit (1 f32, or one u32 word = 2 f16/bf16 elements, which may
//   straddle two rows when V is odd). Bytes: rows·V·sizeof(dtype) read + written, 16·rows.
//   FLOPs ~8 per element. p·log p is taken as 0 where p underflows to 0. Elementwise given the
//   per-row inputs, so batch invariant by construction (tested). A bad target flags its row as in
//   the forward (its gradient is 0), and MODE_FLAG (one invocation) records its value.
//   In place (common.wgsl's xy_* sections: X read_write, no Y): the gradient overwrites the
//   logits. Safe without a stats pass or barrier: an element's gradient needs only that element
//   and per-row inputs (lse, targets, g, gE, H) from other buffers, so each invocation reads just
//   the unit it then writes (x_base = y_base). No [rows, V] temporary.
//
// GATHER (gather_probs): probs[e] = e^(logits[t, c]/T − lse[t]) for each packed element e of
//   group g's block [T_g, K_g] (token t = groupTokenOffsets[g] + e_local / K_g, column
//   c = columns[vocabOffsets[g] + e_local % K_g]); one invocation per element, its group found
//   by binary search over probsOffsets. Bytes ~ 16 per element (gathered reads). Elementwise
//   given lse: batch invariant (tested).

struct LogprobsParams {
  rows: u32, // rows in this chunk
  vocab: u32,
  row_base: u32, // global index of the chunk's first row (for the [N] arrays)
  x_base: u32, // element index of the chunk's first logit inside the X window
  y_base: u32, // element index of the chunk's first gradient inside the Y window
  segments: u32, // segments per row (from V only)
  seg_cols: u32, // columns per segment (the last may be shorter)
  mode: u32, // logprobs_rows: MODE_ROWS, MODE_SEGMENTS or MODE_MERGE
  units: u32, // Y units in this chunk (logprobs_backward)
  out_base: u32, // gather_probs: first output element of this chunk
  count: u32, // gather_probs: output elements in this chunk
  num_groups: u32, // gather_probs
  inv_t: f32, // 1 / temperature
  ignore_index: i32,
}

@group(0) @binding(0) var<uniform> P: LogprobsParams;
@group(0) @binding(3) var<storage, read> targets: array<i32>;
@group(0) @binding(4) var<storage, read_write> out_lp: array<f32>;
@group(0) @binding(5) var<storage, read_write> out_lse: array<f32>;
@group(0) @binding(6) var<storage, read_write> out_h: array<f32>;
@group(0) @binding(7) var<storage, read_write> out_sq: array<f32>;
@group(0) @binding(8) var<storage, read_write> partial: array<f32>;
@group(0) @binding(9) var<storage, read_write> flag: array<atomic<u32>, 4>;
@group(0) @binding(10) var<storage, read> lse_in: array<f32>;
@group(0) @binding(11) var<storage, read> grad_lp: array<f32>;
@group(0) @binding(12) var<storage, read> grad_h: array<f32>;
@group(0) @binding(13) var<storage, read> h_in: array<f32>;
@group(0) @binding(14) var<storage, read> probs_offsets: array<u32>;
@group(0) @binding(15) var<storage, read> group_tokens: array<i32>;
@group(0) @binding(16) var<storage, read> vocab_offsets: array<i32>;
@group(0) @binding(17) var<storage, read> columns: array<i32>;
@group(0) @binding(18) var<storage, read_write> probs: array<f32>;

override ENTROPY: bool = false;
override SUMSQ: bool = false;
override GRAD_ENTROPY: bool = false;

const PARTIAL_STRIDE: u32 = 5u; // fields of a lane state in `partial`
// logprobs_rows' schedules (P.mode), one tree: see the header.
const MODE_ROWS: u32 = 0u;
const MODE_SEGMENTS: u32 = 1u;
const MODE_MERGE: u32 = 2u;
const MODE_FLAG: u32 = 3u; // one workgroup: flag[FLAG_TARGET_VALUE] = targets[flag[FLAG_TARGET_ROW]]

// Words of `flag` (src/backends/webgpu/logprobs.ts reads them; NO_ROW = nothing raised).
const FLAG_NEG_INF_ROW: u32 = 0u;
const FLAG_TARGET_ROW: u32 = 1u;
const FLAG_TARGET_VALUE: u32 = 2u;
const NO_ROW: u32 = 0xffffffffu;

fn bad_target(t: i32) -> bool {
  return t != P.ignore_index && (t < 0 || u32(t) >= P.vocab);
}

// MODE_FLAG's work: one invocation copies the lowest bad row's target next to its index.
fn record_bad_target() {
  let r = atomicLoad(&flag[FLAG_TARGET_ROW]);
  if (r != NO_ROW) {
    atomicStore(&flag[FLAG_TARGET_VALUE], bitcast<u32>(targets[r]));
  }
}

// St, st_empty, st_push, st_scaled, st_fold, st_outputs: common.wgsl's online_state section.

fn write_all(g: u32, v: f32) {
  out_lp[g] = v;
  out_lse[g] = v;
  if (ENTROPY) {
    out_h[g] = v;
  }
  if (SUMSQ) {
    out_sq[g] = v;
  }
}

// Writes the outputs of chunk row `row` from its max and scaled sums (s, sx, sq, nan): st_outputs
// (common.wgsl), raising FLAG_NEG_INF_ROW for a row of all −Inf.
fn finish(row: u32, mx: f32, t: vec4<f32>) {
  let g = P.row_base + row;
  if (st_all_neg_inf(mx, t)) {
    atomicMin(&flag[FLAG_NEG_INF_ROW], g);
  }
  // Ignored rows and bad targets never get here (logprobs_rows); NaN stands for a missing logit.
  let tgt = targets[g];
  var xt = nan_f32();
  if (tgt >= 0 && u32(tgt) < P.vocab) {
    xt = load_x(P.x_base + row * P.vocab + u32(tgt));
  }
  let o = st_outputs(mx, t, xt);
  out_lp[g] = o.x;
  out_lse[g] = o.y;
  if (ENTROPY) {
    out_h[g] = o.z;
  }
  if (SUMSQ) {
    out_sq[g] = o.w;
  }
}

// Lane `lid`'s online state over its columns of segment `seg` of chunk row `row`, in order:
// seg·seg_cols + lid + j·WG for j = 0, 1, … while below min(V, (seg + 1)·seg_cols).
fn lane_segment(row: u32, seg: u32, lid: u32) -> St {
  var st = st_empty();
  let base = P.x_base + row * P.vocab;
  let c0 = seg * P.seg_cols;
  let c1 = min(P.vocab, c0 + P.seg_cols);
  for (var c = c0 + lid; c < c1; c = c + WG) {
    st_push(&st, load_x(base + c));
  }
  return st;
}

// `partial` holds, per (chunk row, segment), the 5 fields of WG lane states, each field's WG
// values contiguous (coalesced stores and loads).
fn partial_at(row: u32, seg: u32, field: u32, lid: u32) -> u32 {
  return ((row * P.segments + seg) * PARTIAL_STRIDE + field) * WG + lid;
}

@compute @workgroup_size(WG)
fn logprobs_rows(grid: Grid, @builtin(local_invocation_index) lid: u32) {
  let w = flat_wg(grid);
  if (P.mode == MODE_FLAG) {
    if (w == 0u && lid == 0u) {
      record_bad_target();
    }
    return;
  }
  let per_row = select(1u, P.segments, P.mode == MODE_SEGMENTS);
  if (w >= P.rows * per_row) {
    return;
  }
  let row = w / per_row;
  let g = P.row_base + row;
  if (targets[g] == P.ignore_index) {
    if (P.mode != MODE_SEGMENTS && lid == 0u) {
      write_all(g, 0.0);
    }
    return;
  }
  if (bad_target(targets[g])) {
    if (P.mode != MODE_SEGMENTS && lid == 0u) {
      atomicMin(&flag[FLAG_TARGET_ROW], g);
      write_all(g, nan_f32());
    }
    return;
  }
  if (P.mode == MODE_SEGMENTS) {
    let seg = w - row * per_row;
    let st = lane_segment(row, seg, lid);
    partial[partial_at(row, seg, 0u, lid)] = st.m;
    partial[partial_at(row, seg, 1u, lid)] = st.s;
    partial[partial_at(row, seg, 2u, lid)] = st.sx;
    partial[partial_at(row, seg, 3u, lid)] = st.sq;
    partial[partial_at(row, seg, 4u, lid)] = st.nan;
    return;
  }
  var acc = st_empty();
  for (var seg = 0u; seg < P.segments; seg = seg + 1u) {
    var st: St;
    if (P.mode == MODE_ROWS) {
      st = lane_segment(row, seg, lid);
    } else {
      st = St(
        partial[partial_at(row, seg, 0u, lid)],
        partial[partial_at(row, seg, 1u, lid)],
        partial[partial_at(row, seg, 2u, lid)],
        partial[partial_at(row, seg, 3u, lid)],
        partial[partial_at(row, seg, 4u, lid)],
      );
    }
    acc = st_fold(acc, st);
  }
  let mx = wg_max(acc.m, lid);
  let tot = wg_sum4(st_scaled(acc, mx), lid);
  if (lid == 0u) {
    finish(row, mx, tot);
  }
}

// d loss / d logits[e] for chunk element e (row-major inside the chunk).
fn grad_at(e: u32) -> f32 {
  if (e >= P.rows * P.vocab) {
    return 0.0;
  }
  let row = e / P.vocab;
  let col = e - row * P.vocab;
  let g = P.row_base + row;
  let tgt = targets[g];
  if (tgt == P.ignore_index) {
    return 0.0;
  }
  if (bad_target(tgt)) {
    atomicMin(&flag[FLAG_TARGET_ROW], g);
    return 0.0;
  }
  let lse = lse_in[g];
  let x = load_x(P.x_base + e);
  let lp = x * P.inv_t - lse;
  // p = 0 for a −Inf logit (even where 1/T underflows to 0 and −Inf·0 would be NaN), and where
  // lse = +Inf (|max|/T beyond f32), as in the float64 reference. P.inv_t is the f32 rounding of 1/T
  // here, unclamped: it also scales the gradient.
  let p = select(select(exp(lp), 0.0, is_neg_inf(x) || is_pos_inf(lse)), nan_f32(), is_nan(lse)); // a NaN row: NaN everywhere
  var d = (select(0.0, 1.0, i32(col) == tgt) - p) * grad_lp[g] * P.inv_t;
  if (GRAD_ENTROPY) {
    // p·(log p + H) → 0 where p = 0 (a −Inf logit); still multiply grad_h by that 0 so a NaN or
    // ±Inf gradient stays NaN, as in the cpu reference (IEEE: NaN·0 = NaN).
    let ent = select(0.0, p * (lp + h_in[g]), p > 0.0);
    d = d - grad_h[g] * P.inv_t * ent;
  }
  return d;
}

@compute @workgroup_size(WG)
fn logprobs_backward(grid: Grid, @builtin(local_invocation_index) lid: u32) {
  let u = flat_wg(grid) * WG + lid;
  if (P.mode == MODE_FLAG) {
    if (u == 0u) {
      record_bad_target();
    }
    return;
  }
  if (u >= P.units) {
    return;
  }
  let e = u * Y_PACK;
  let unit = P.y_base / Y_PACK + u;
  if (Y_PACK == 2u && e + 1u >= P.rows * P.vocab) {
    // The tensor's last word holds one element and padding: 0 in a fresh output, left as it was
    // in place (store_y_head).
    store_y_head(unit, grad_at(e));
    return;
  }
  var b = 0.0;
  if (Y_PACK == 2u) {
    b = grad_at(e + 1u);
  }
  store_y(unit, grad_at(e), b);
}

@compute @workgroup_size(WG)
fn gather_probs(grid: Grid, @builtin(local_invocation_index) lid: u32) {
  let i = flat_wg(grid) * WG + lid;
  if (i >= P.count) {
    return;
  }
  let e = P.out_base + i;
  // The last group g with probs_offsets[g] ≤ e (empty blocks are skipped over).
  var lo = 0u;
  var hi = P.num_groups - 1u;
  while (lo < hi) {
    let mid = (lo + hi + 1u) / 2u;
    if (probs_offsets[mid] <= e) {
      lo = mid;
    } else {
      hi = mid - 1u;
    }
  }
  let g = lo;
  let k = u32(vocab_offsets[g + 1u] - vocab_offsets[g]);
  let local = e - probs_offsets[g];
  let tl = local / k;
  let t = u32(group_tokens[g]) + tl;
  let c = u32(columns[u32(vocab_offsets[g]) + local - tl * k]);
  // A column outside [0, V) (device columns that disagree with the validated host copy; a negative
  // id wraps past V) reads nothing and gives NaN, as the cuda kernel does.
  let inside = c < P.vocab;
  let x = load_x(P.x_base + (t - P.row_base) * P.vocab + select(0u, c, inside));
  let lse = lse_in[t];
  let p = select(exp(x * P.inv_t - lse), 0.0, is_pos_inf(lse)); // lse = +Inf: p is 0 (as backward)
  probs[e] = select(nan_f32(), p, inside);
}
