// grpo-kernels: WGSL shared by every kernel family.
//
// WGSL has no #include: src/backends/webgpu/shaders.ts CONCATENATES, in order, the `enable`
// lines a variant needs, the `base` section below, the sections the variant names, and the
// family's file (e.g. logprobs.wgsl). Each `//! section <name>` line starts a block that runs
// to the next marker. Conventions every family follows:
//   - @binding(0) is the family's uniform struct;
//   - @binding(1) is the float input matrix X, read through `load_x(i) -> f32` (element i of
//     the bound window), whatever its dtype (sections x_*);
//   - @binding(2) is the float output matrix Y, written through `store_y(unit, a, b)` one unit
//     at a time: a unit is Y_PACK elements (1 for f32; 2 for f16/bf16, one u32 word; `b` is the
//     second element, ignored for f32), or `store_y_head(unit, a)` for a tensor's last word
//     when it holds one element and 16 bits of padding (sections y_*);
//   - in place (sections xy_*, instead of x_* + y_*): X at @binding(1) is read_write, there is
//     no Y, and store_y / store_y_head write X's units (Y's element i is X's element i);
//   - kernels with two float input matrices of one dtype and no Y (lmhead.wgsl: hidden states and
//     the LM head's weight) read the second through `load_w(i)` at @binding(2), and an optional
//     vector of the same dtype (a bias) through `load_b(i)` at @binding(3) (sections w_*);
//   - the online softmax state over raw logits (St, st_push, st_fold) and a row's logprobs
//     outputs from it (st_outputs: section online_state);
//   - the register-blocked 64 × 64 GEMM tile (tile_step over workgroup memory sa, sb: section
//     tile_gemm);
//   - workgroup reductions `wg_max(v, lid)` and `wg_sum4(v, lid)` over WG invocations, every
//     invocation gets the result (sections reduce_tree / reduce_subgroup), all called from
//     workgroup-uniform control flow.
//   - k3_of(y): (e^y − 1 − y, e^y − 1) without cancellation near 0 (section k3: policy.wgsl's KL
//     estimator k3 and vespo, rejection.wgsl's statistic k3).

//! section base
// Workgroup size, set by the host from the device limits (a power of two).
override WG: u32 = 256u;

const NEG_INF_BITS: u32 = 0xff800000u;

// Where a workgroup sits in a dispatch spread over x and y (GpuRuntime.grid): an entry point's
// parameter (grid: Grid), whose flat workgroup index flat_wg gives.
struct Grid {
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
}
fn flat_wg(g: Grid) -> u32 {
  return g.wid.y * g.nwg.x + g.wid.x;
}

// Bit tests: immune to fast-math assumptions about NaN and infinity.
fn is_nan(x: f32) -> bool {
  return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}
fn is_pos_inf(x: f32) -> bool {
  return bitcast<u32>(x) == 0x7f800000u;
}
fn is_neg_inf(x: f32) -> bool {
  return bitcast<u32>(x) == NEG_INF_BITS;
}
// Through a `var`: a constant expression may not evaluate to ±Inf or NaN in WGSL.
fn neg_inf() -> f32 {
  var bits = NEG_INF_BITS;
  return bitcast<f32>(bits);
}
fn nan_f32() -> f32 {
  var bits = 0x7fc00000u;
  return bitcast<f32>(bits);
}
// min / max that keep a NaN (the js reference's Math.min / Math.max; WGSL's leave NaN open).
fn min_nan(a: f32, b: f32) -> f32 {
  return select(min(a, b), nan_f32(), is_nan(a) || is_nan(b));
}
fn max_nan(a: f32, b: f32) -> f32 {
  return select(max(a, b), nan_f32(), is_nan(a) || is_nan(b));
}

// f32 -> bf16 bits, round to nearest even; NaN stays NaN (quiet bit set, sign kept), as the
// cpu backend's f32ToBf16.
fn f32_to_bf16(v: f32) -> u32 {
  let x = bitcast<u32>(v);
  if ((x & 0x7fffffffu) > 0x7f800000u) {
    return ((x >> 16u) | 0x40u) & 0xffffu;
  }
  return ((x + 0x7fffu + ((x >> 16u) & 1u)) >> 16u) & 0xffffu;
}

// f32 -> f16 bits, round to nearest even, overflow to ±Inf, NaN to 0x7e00 (as the cpu backend's
// f32ToF16). Done with integer ops because pack2x16float is indeterminate out of f16 range.
fn f32_to_f16(v: f32) -> u32 {
  let x = bitcast<u32>(v);
  let sign = (x >> 16u) & 0x8000u;
  let a = x & 0x7fffffffu;
  if (a > 0x7f800000u) {
    return 0x7e00u;
  }
  if (a >= 0x477ff000u) {
    return sign | 0x7c00u; // ≥ 65520 rounds to Inf
  }
  if (a >= 0x38800000u) {
    // Normal f16: round the mantissa at bit 13, rebias the exponent 127 -> 15.
    let r = a + 0x0fffu + ((a >> 13u) & 1u);
    return sign | ((r >> 13u) - (112u << 10u));
  }
  let e = a >> 23u;
  if (e < 102u) {
    return sign; // below 2^-25: rounds to zero
  }
  // Subnormal f16: units of 2^-24.
  let m = (a & 0x7fffffu) | 0x800000u;
  let shift = 126u - e;
  let q = m >> shift;
  let rem = m & ((1u << shift) - 1u);
  let half = 1u << (shift - 1u);
  var r = q;
  if (rem > half || (rem == half && (q & 1u) == 1u)) {
    r = r + 1u;
  }
  return sign | r;
}

//! section x_f32
@group(0) @binding(1) var<storage, read> X: array<f32>;
fn load_x(i: u32) -> f32 {
  return X[i];
}

//! section x_bf16
// bf16 pairs in u32 words: element i is the low half of word i/2 when i is even.
@group(0) @binding(1) var<storage, read> X: array<u32>;
fn load_x(i: u32) -> f32 {
  let w = X[i >> 1u];
  return bitcast<f32>(select(w << 16u, w & 0xffff0000u, (i & 1u) == 1u));
}

//! section x_f16
// f16 pairs in u32 words, unpacked (no shader-f16 needed; exact).
@group(0) @binding(1) var<storage, read> X: array<u32>;
fn load_x(i: u32) -> f32 {
  return unpack2x16float(X[i >> 1u])[i & 1u];
}

//! section x_f16_native
// Needs `enable f16;` (shaders.ts adds it) and the device feature shader-f16.
@group(0) @binding(1) var<storage, read> X: array<f16>;
fn load_x(i: u32) -> f32 {
  return f32(X[i]);
}

//! section w_f32
// A second float input matrix W at @binding(2) and a vector B at @binding(3), in X's dtype.
@group(0) @binding(2) var<storage, read> W: array<f32>;
@group(0) @binding(3) var<storage, read> B: array<f32>;
fn load_w(i: u32) -> f32 {
  return W[i];
}
fn load_b(i: u32) -> f32 {
  return B[i];
}

//! section w_bf16
@group(0) @binding(2) var<storage, read> W: array<u32>;
@group(0) @binding(3) var<storage, read> B: array<u32>;
fn load_w(i: u32) -> f32 {
  let w = W[i >> 1u];
  return bitcast<f32>(select(w << 16u, w & 0xffff0000u, (i & 1u) == 1u));
}
fn load_b(i: u32) -> f32 {
  let w = B[i >> 1u];
  return bitcast<f32>(select(w << 16u, w & 0xffff0000u, (i & 1u) == 1u));
}

//! section w_f16
@group(0) @binding(2) var<storage, read> W: array<u32>;
@group(0) @binding(3) var<storage, read> B: array<u32>;
fn load_w(i: u32) -> f32 {
  return unpack2x16float(W[i >> 1u])[i & 1u];
}
fn load_b(i: u32) -> f32 {
  return unpack2x16float(B[i >> 1u])[i & 1u];
}

//! section y_f32
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
const Y_PACK: u32 = 1u;
fn store_y(unit: u32, a: f32, b: f32) {
  Y[unit] = a;
}
fn store_y_head(unit: u32, a: f32) {
  Y[unit] = a;
}

//! section y_bf16
@group(0) @binding(2) var<storage, read_write> Y: array<u32>;
const Y_PACK: u32 = 2u;
fn store_y(unit: u32, a: f32, b: f32) {
  Y[unit] = f32_to_bf16(a) | (f32_to_bf16(b) << 16u);
}
// A fresh output's padding half is written 0.
fn store_y_head(unit: u32, a: f32) {
  Y[unit] = f32_to_bf16(a);
}

//! section y_f16
@group(0) @binding(2) var<storage, read_write> Y: array<u32>;
const Y_PACK: u32 = 2u;
fn store_y(unit: u32, a: f32, b: f32) {
  Y[unit] = f32_to_f16(a) | (f32_to_f16(b) << 16u);
}
fn store_y_head(unit: u32, a: f32) {
  Y[unit] = f32_to_f16(a);
}

//! section xy_f32
// In place: the result overwrites X (read_write; no Y binding). Safe only when each invocation
// reads nothing but the units it writes (logprobs_backward: one unit per invocation).
@group(0) @binding(1) var<storage, read_write> X: array<f32>;
const Y_PACK: u32 = 1u;
fn load_x(i: u32) -> f32 {
  return X[i];
}
fn store_y(unit: u32, a: f32, b: f32) {
  X[unit] = a;
}
fn store_y_head(unit: u32, a: f32) {
  X[unit] = a;
}

//! section xy_bf16
// In place over bf16 pairs in u32 words: an invocation owns whole words (two elements, which it
// reads before writing the word).
@group(0) @binding(1) var<storage, read_write> X: array<u32>;
const Y_PACK: u32 = 2u;
fn load_x(i: u32) -> f32 {
  let w = X[i >> 1u];
  return bitcast<f32>(select(w << 16u, w & 0xffff0000u, (i & 1u) == 1u));
}
fn store_y(unit: u32, a: f32, b: f32) {
  X[unit] = f32_to_bf16(a) | (f32_to_bf16(b) << 16u);
}
// The tensor's last word past its last element is not ours (a caller's buffer may use it): keep it.
fn store_y_head(unit: u32, a: f32) {
  X[unit] = (X[unit] & 0xffff0000u) | f32_to_bf16(a);
}

//! section xy_f16
// In place over f16 pairs in u32 words, also where shader-f16 exists: a whole-word u32 store keeps
// the exact bits of f32_to_f16 (as y_f16 writes them), where an f16 store might not keep a NaN's.
@group(0) @binding(1) var<storage, read_write> X: array<u32>;
const Y_PACK: u32 = 2u;
fn load_x(i: u32) -> f32 {
  return unpack2x16float(X[i >> 1u])[i & 1u];
}
fn store_y(unit: u32, a: f32, b: f32) {
  X[unit] = f32_to_f16(a) | (f32_to_f16(b) << 16u);
}
fn store_y_head(unit: u32, a: f32) {
  X[unit] = (X[unit] & 0xffff0000u) | f32_to_f16(a);
}

//! section reduce_tree
// Workgroup-memory tree reductions (no subgroups): log2(WG) barrier steps, fixed order.
var<workgroup> red: array<vec4<f32>, WG>;

fn wg_max(v: f32, lid: u32) -> f32 {
  workgroupBarrier();
  red[lid] = vec4<f32>(v, 0.0, 0.0, 0.0);
  for (var k = WG >> 1u; k > 0u; k = k >> 1u) {
    workgroupBarrier();
    if (lid < k) {
      red[lid].x = max(red[lid].x, red[lid + k].x);
    }
  }
  workgroupBarrier();
  return red[0].x;
}

fn wg_sum4(v: vec4<f32>, lid: u32) -> vec4<f32> {
  workgroupBarrier();
  red[lid] = v;
  for (var k = WG >> 1u; k > 0u; k = k >> 1u) {
    workgroupBarrier();
    if (lid < k) {
      red[lid] = red[lid] + red[lid + k];
    }
  }
  workgroupBarrier();
  return red[0];
}

//! section reduce_subgroup
// Subgroup reductions, then one partial per subgroup through workgroup memory, reduced again by
// every subgroup in a fixed order (so each invocation gets the result without a broadcast).
// Lane and size come from subgroupExclusiveAdd(1) / subgroupAdd(1) (no builtins, so entry
// points are the same in both variants). Assumes subgroups hold consecutive local indices
// (lid / size is the subgroup's index), as Vulkan, Metal and D3D12 compute dispatches do.
var<workgroup> red: array<vec4<f32>, WG>;

fn wg_max(v: f32, lid: u32) -> f32 {
  let size = subgroupAdd(1u);
  let lane = subgroupExclusiveAdd(1u);
  let r = subgroupMax(v);
  workgroupBarrier();
  if (lane == 0u) {
    red[lid / size].x = r;
  }
  workgroupBarrier();
  var acc = neg_inf();
  for (var j = lane; j < WG / size; j = j + size) {
    acc = max(acc, red[j].x);
  }
  return subgroupMax(acc);
}

fn wg_sum4(v: vec4<f32>, lid: u32) -> vec4<f32> {
  let size = subgroupAdd(1u);
  let lane = subgroupExclusiveAdd(1u);
  let r = subgroupAdd(v);
  workgroupBarrier();
  if (lane == 0u) {
    red[lid / size] = r;
  }
  workgroupBarrier();
  var acc = vec4<f32>(0.0);
  for (var j = lane; j < WG / size; j = j + size) {
    acc = acc + red[j];
  }
  return subgroupAdd(acc);
}

//! section online_state
// The online softmax state over RAW logits, shared by logprobs.wgsl and lmhead.wgsl. The family's
// uniform struct P must have `inv_t: f32` (1/T).
// Online softmax state of a slice of a row, over RAW logits: m is the raw max; s, sx, sq are
// Σ e^d, Σ e^d·d, Σ e^{2d} with d = (x − m)/T (one rounding, and no overflow of x/T: with T near
// 2^-126 a finite logit times 1/T may exceed f32, while x − m ≤ 0 scaled stays ≤ 0). s = 0 iff
// nothing above −Inf was seen.
struct St {
  m: f32,
  s: f32,
  sx: f32,
  sq: f32,
  nan: f32,
}

fn st_empty() -> St {
  return St(neg_inf(), 0.0, 0.0, 0.0, 0.0);
}

fn st_push(st: ptr<function, St>, y: f32) {
  if (is_nan(y)) {
    (*st).nan = (*st).nan + 1.0;
    return;
  }
  if (y > (*st).m) {
    let d = ((*st).m - y) * P.inv_t;
    let a = exp(d);
    if (a == 0.0) {
      // First element, or the max jumped so far (e.g. to +Inf) that the old sums vanish;
      // also keeps 0·(−Inf) out of sx.
      (*st).s = 1.0;
      (*st).sx = 0.0;
      (*st).sq = 1.0;
    } else {
      (*st).sx = a * ((*st).sx + d * (*st).s);
      (*st).s = (*st).s * a + 1.0;
      (*st).sq = (*st).sq * a * a + 1.0;
    }
    (*st).m = y;
  } else if (!is_neg_inf(y)) {
    let d = (y - (*st).m) * P.inv_t;
    let e = exp(d);
    (*st).s = (*st).s + e;
    (*st).sx = (*st).sx + select(0.0, e * d, e > 0.0);
    (*st).sq = (*st).sq + e * e;
  }
}

// (s, sx, sq, nan) of a state re-expressed relative to the common max `mx` ≥ st.m.
fn st_scaled(st: St, mx: f32) -> vec4<f32> {
  if (st.s == 0.0) {
    return vec4<f32>(0.0, 0.0, 0.0, st.nan);
  }
  if (st.m == mx) {
    return vec4<f32>(st.s, st.sx, st.sq, st.nan);
  }
  let d = (st.m - mx) * P.inv_t;
  let a = exp(d);
  if (a == 0.0) {
    return vec4<f32>(0.0, 0.0, 0.0, st.nan);
  }
  return vec4<f32>(a * st.s, a * (st.sx + d * st.s), a * a * st.sq, st.nan);
}

// The state of `acc`'s columns and then `b`'s: both re-expressed relative to the larger max.
// Not associative in floating point: callers fold segments strictly in order from st_empty().
fn st_fold(acc: St, b: St) -> St {
  let mx = max(acc.m, b.m);
  let t = st_scaled(acc, mx) + st_scaled(b, mx);
  return St(mx, t.x, t.y, t.z, t.w);
}

// True when a row's folded state (raw max mx; t = (s, sx, sq, nan) relative to it) saw nothing but
// −Inf: the caller raises its FLAG_NEG_INF_ROW (docs/DESIGN.md, "Errors from the device").
fn st_all_neg_inf(mx: f32, t: vec4<f32>) -> bool {
  return is_neg_inf(mx) && !(t.w > 0.0 || is_nan(t.x));
}

// A row's logprobs outputs, vec4(logprob, lse, entropy, sumSquares), from its folded state (raw max
// mx; t = (s, sx, sq, nan)) and its target's raw logit xt. A NaN logit (nan > 0, or a NaN sum from a
// merged state) or a +Inf one (softmax is Inf/Inf) gives NaN in every output, as the js reference
// and a materialised log_softmax do; a row of all −Inf gives lse −Inf and NaN elsewhere.
fn st_outputs(mx: f32, t: vec4<f32>, xt: f32) -> vec4<f32> {
  if (t.w > 0.0 || is_pos_inf(mx) || is_nan(t.x)) {
    return vec4<f32>(nan_f32());
  }
  if (is_neg_inf(mx)) {
    return vec4<f32>(nan_f32(), neg_inf(), nan_f32(), nan_f32());
  }
  let ls = log(t.x);
  // lse = mx/T + log s rounds to ±Inf only when the true value exceeds f32 (mx is the raw max);
  // logprob = (x_t − max)/T − log s, not x_t/T − lse: no cancellation when |max|/T dwarfs log s.
  return vec4<f32>((xt - mx) * P.inv_t - ls, mx * P.inv_t + ls, ls - t.y / t.x, t.z / (t.x * t.x));
}

//! section tile_gemm
// The register-blocked 64 × 64 GEMM tile of thr.wgsl (thr_m, thr_score) and lmhead.wgsl (the logits,
// gradHidden and gradWeight tiles). A workgroup of TWG = 256 invocations (WebGPU's guaranteed
// minimum) owns a TB × TB output tile as a 16 × 16 grid of invocations, each holding a 4 × 4 block in
// registers, strided: lane (ty, tx) = (lid / 16, lid % 16) owns rows ty + 16·i and columns tx + 16·j
// (i, j = 0..3; acc[i][j]), so 16 consecutive lanes load, and store, 16 consecutive elements of a
// row in every instruction. The reduction runs in k-steps of KS = 16: each step stages a 16 × 64
// slice of each operand in workgroup memory, k-major, as vec4 (component c = row or column lq + 16·c)
// over the tile's rows (sa) and columns (sb); one step is then 16 × (one vec4 read of sa, one of sb,
// 16 multiply-adds) per invocation. Staged k-rows are padded to TSTRIDE = 17 vec4 so transposing
// stores spread over the banks. Out-of-range rows, columns and k are staged as 0 (partial tiles) by
// the caller. Workgroup memory: 2 · 16 · 17 · 16 B = 8704 B (≤ 16 KiB, WebGPU's default); sa and sb
// (272 slots ≥ WG) are also free for other exchanges between barriers.
const TB: u32 = 64u; // output tile edge
const LANES: u32 = 16u; // invocations along each tile edge (TB / 4)
const KS: u32 = 16u; // k-step: reduction elements staged per pair of barriers
const TSTRIDE: u32 = 17u; // vec4 per staged k-row: TB / 4 + 1 of padding
const TWG: u32 = 256u;

var<workgroup> sa: array<vec4<f32>, 272>; // [KS][TSTRIDE]
var<workgroup> sb: array<vec4<f32>, 272>;

// One k-step: stages this invocation's vec4 of each operand at sa[ia] and sb[ib], then adds the
// step's KS terms, in k order, to each element of its 4 × 4 block. Call from uniform control flow.
fn tile_step(acc: mat4x4<f32>, ia: u32, a: vec4<f32>, ib: u32, b: vec4<f32>, lid: u32) -> mat4x4<f32> {
  workgroupBarrier();
  sa[ia] = a;
  sb[ib] = b;
  workgroupBarrier();
  let ty = lid / LANES;
  let tx = lid % LANES;
  var r = acc;
  for (var kk = 0u; kk < KS; kk = kk + 1u) {
    let x = sa[kk * TSTRIDE + ty];
    let y = sb[kk * TSTRIDE + tx];
    r[0] = r[0] + x.x * y;
    r[1] = r[1] + x.y * y;
    r[2] = r[2] + x.z * y;
    r[3] = r[3] + x.w * y;
  }
  return r;
}

//! section response_of
// The response that owns packed token t: the last r with roff[r] ≤ t, so empty responses before
// it are skipped. The family file declares `roff: array<i32>` (the response offsets [R + 1]).
fn response_of(t: u32, num_responses: u32) -> u32 {
  var a = 0u;
  var b = num_responses - 1u;
  while (a < b) {
    let m = (a + b + 1u) >> 1u;
    if (u32(roff[m]) <= t) {
      a = m;
    } else {
      b = m - 1u;
    }
  }
  return a;
}

//! section k3
// KL's k3 and rolloutRejection's k3 statistic (policy.wgsl, rejection.wgsl).
// (e^y − y − 1, e^y − 1) without cancellation near y = 0: for −1 < y < 2 from the Taylor series
// y²·Σ_{k≤12} y^k/(k+2)! (Horner; truncation below u/8 there), e^y − 1 = y + that; beyond, from e^y
// (e^y − 1 − y ≥ 0.36 there, so exp's error is a few ulp of it). NaN stays NaN on either side. The
// same series as native/cuda/policy.cu and native/cpu/policy.cc.
fn k3_of(y: f32) -> vec2<f32> {
  if (y > -1.0 && y < 2.0) {
    var p = 1.14707456e-11; // 1/14!
    p = fma(p, y, 1.60590438e-10); // 1/13!
    p = fma(p, y, 2.08767570e-9); // 1/12!
    p = fma(p, y, 2.50521084e-8); // 1/11!
    p = fma(p, y, 2.75573192e-7); // 1/10!
    p = fma(p, y, 2.75573192e-6); // 1/9!
    p = fma(p, y, 2.48015873e-5); // 1/8!
    p = fma(p, y, 1.98412698e-4); // 1/7!
    p = fma(p, y, 1.38888889e-3); // 1/6!
    p = fma(p, y, 8.33333333e-3); // 1/5!
    p = fma(p, y, 4.16666667e-2); // 1/4!
    p = fma(p, y, 1.66666667e-1); // 1/3!
    p = fma(p, y, 0.5); // 1/2!
    let v = y * y * p;
    return vec2<f32>(v, y + v);
  }
  let em1 = exp(y) - 1.0;
  return vec2<f32>(em1 - y, em1);
}
