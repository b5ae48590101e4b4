// grpo-kernels: rolloutRejection on WebGPU (verl's rollout rejection sampling, `rollout_rs`).
// Concatenated after common.wgsl's base and k3 sections (src/backends/webgpu/shaders.ts); host side:
// src/backends/webgpu/rejection.ts. Reference and the definitions: src/backends/js/rejection.ts (this
// file computes them in f32).
//   Per valid token (m_t ≠ 0; a masked token's log-probs are never loaded): λ = clamp(ℓ − ℓᵛ, ±20) in
//   f32 (a NaN stays NaN), k1 = −λ, k2 = λ²/2, k3 = e^λ − 1 − λ (common.wgsl's k3_of: its series near 0,
//   no cancellation).
//   Per response r (n_r valid tokens) and criterion c (statistic k, level, [lo, hi], f32): token level,
//   a token passes iff lo ≤ k_t ≤ hi; seq-sum S_r = Σ k_t, seq-mean S_r = Σ k_t / n_r, seq-max S_r =
//   max k_t (a NaN wins), over the valid tokens, and a response that fails (S_r outside, or NaN)
//   rejects all its valid tokens. mask_t = 1 iff m_t ≠ 0 and no criterion rejects t.
//   stats (REJECTION_STATS, then REJECTION_CRITERION_STATS per criterion): any_tok / N_tok, any_seq / R
//   (valid tokens rejected by some criterion; responses with one); per c: Σ s / N_tok (a response's
//   n_r·S_r at the sequence levels), max s, min s (a NaN wins; −Inf / +Inf when empty), #(s > hi) and
//   #(s < lo) over N_tok (token) or N_seq (nonempty responses), rejected valid tokens / N_tok, responses
//   c rejects a token of / N_seq. A zero denominator gives NaN explicitly (WGSL leaves 0/0 open).
//
// WORK SPLIT. The host splits the responses by length, from its offsets: SHORT (≤ small_max tokens,
//   64) and LONG (more). One dispatch of rejection_main over num_parts workgroups, then rejection_reduce.
//   - A short chunk (workgroups [0, num_short)): the responses [b·SC, min((b+1)·SC, R)) (SC =
//     `short_chunk`, a multiple of WG so that ≤ 1024 chunks), invocation i taking the chunk's responses
//     i, i + WG, ... and, of those, the short ones: each alone, its tokens in index order (pass A), then
//     its mask words in order (pass B).
//   - A long chunk (the workgroups after): `long_chunk` consecutive entries of the host's list of long
//     responses (≤ 1024 chunks), one response after another, each by the whole workgroup: pass A,
//     invocation i taking tokens s0 + i, s0 + i + WG, ...; then one fixed radix-16 tree over the WG
//     invocations (tree0); pass B, invocation i taking the mask words w0 + i, w0 + i + WG, ...
//   Pass A: n_r, Σ k1, Σ k2, Σ k3, max k1..k3, and which token-level criteria reject a valid token.
//   Pass B: per valid token, every token-level criterion (the statistics' sums, max, min, counts) and
//   the response's sequence-level verdicts: its mask byte. So a response's bits depend on its own
//   tokens only: short, one fixed serial order; long, an order and a tree fixed by its length and WG;
//   which of the two, by its length. Never on R, its position or the chunking (batch invariant).
//   Mask words: 4 tokens per u32 word (u8 [T] on webgpu); a word inside one response is stored whole,
//   a word shared with a neighbour (or the padding past T) is OR-ed in with atomicOr after the host
//   cleared the output (clearBuffer): every word written, the same bits in any order.
//   Stats: each invocation accumulates its tokens and (short: its responses; long: invocation 0 its
//   chunk's responses) in processing order into its record (4 + 7·C words); at the chunk's end one
//   tree per 12 words of it (7 at C = 11, 3 barriers each) gives the chunk's partial record, parts[b].
//   rejection_reduce: one workgroup, invocation w folding word w of every record in index order, then
//   the stats. No float atomics: the same bits on every run (the stats' order of summation depends on
//   the chunking, which R and the lengths alone set; the mask's does not).
// Shapes: roff i32 [R + 1]; lp, lv f32 [T]; mask_in u8 [T] as u32 words (has_mask); plan u32: 4 words
//   per criterion (statistic, level, lower and upper as f32 bits: −Infinity is representable), then the
//   long responses' indices [num_long]; out_mask u8 [T] as atomic u32 words; parts u32
//   [num_parts · (4 + 7·C)]; stats f32 [2 + 7·C].
// Bytes per token: pass A reads ℓ, ℓᵛ (8) and the mask byte; pass B the same again (a short response's
//   from cache, where there is one) and writes the mask byte (after the clear's byte): ~20 bytes per
//   token, 4 per response for its offsets (8 for a long one, through the list). FLOPs per valid token
//   and pass: λ, k1, k2 (~5) and k3 (~16 FMA near 0, else an exp; computed whichever criteria are
//   given), ~3 per token-level criterion. Eight storage buffers (WebGPU's default limit); 12.3 KB of
//   workgroup memory at WG = 256.
// Numerics: f32. WGSL's clamp, min and max may drop a NaN and a compiler may assume there is none, so
//   NaN is tested by its bits (common.wgsl's is_nan, max_nan, min_nan); comparisons of a NaN are
//   guarded the same way. Sums: short responses serial (≤ 64 terms), long ones ⌈n/WG⌉ terms per
//   invocation then a 2-round tree.

struct RejectionParams {
  num_responses: u32, // R
  num_criteria: u32, // C, 1..MAX_CRITERIA
  has_mask: u32,
  small_max: u32, // a response of ≤ small_max tokens is short (one invocation), longer is long (a workgroup)
  short_chunk: u32, // responses per short chunk (a multiple of WG)
  num_short: u32, // short chunks: workgroups [0, num_short)
  long_chunk: u32, // long responses per long chunk
  num_long: u32, // long responses (their indices at plan[4·C ..])
  num_parts: u32, // partial records: num_short + ⌈num_long / long_chunk⌉
}

// REJECTION_STATISTICS and REJECTION_LEVELS (src/backends/backend.ts): each list's positions.
const STAT_K1: u32 = 0u;
const STAT_K2: u32 = 1u;
const STAT_K3: u32 = 2u;
const LEVEL_TOKEN: u32 = 0u;
const LEVEL_SEQ_SUM: u32 = 1u;
const LEVEL_SEQ_MEAN: u32 = 2u;
const LEVEL_SEQ_MAX: u32 = 3u;
const MAX_CRITERIA: u32 = 11u; // REJECTION_MAX_CRITERIA
// verl's SAFETY_BOUND on λ.
const LOG_CLAMP: f32 = 20.0;
// A partial record: the head (n_tok, n_seq, any_tok, any_seq), then per criterion (Σ s, max s, min s as
// f32 bits; #s > hi, #s < lo, rejected valid tokens, rejected responses).
const HEAD_WORDS: u32 = 4u;
const CRIT_WORDS: u32 = 7u;
const HEAD_STATS: u32 = 2u; // REJECTION_STATS.length
const POS_INF_BITS: u32 = 0x7f800000u;
// How a word folds: an f32 sum, a NaN-propagating max or min (f32 bits), a u32 count, a bit set.
const KIND_SUM: u32 = 0u;
const KIND_MAX: u32 = 1u;
const KIND_MIN: u32 = 2u;
const KIND_COUNT: u32 = 3u;
const KIND_OR: u32 = 4u;
// The tree's slot: 12 words per invocation; what they hold (the kinds of their words).
const SLOT_WORDS: u32 = 12u;
const TREE_RESPONSE: u32 = 0u; // a long response's pass-A totals (Resp, 8 words)
const TREE_RECORD: u32 = 1u; // 12 words of a partial record, from word `base`

@group(0) @binding(0) var<uniform> P: RejectionParams;
@group(0) @binding(1) var<storage, read> roff: array<i32>;
@group(0) @binding(2) var<storage, read> lp: array<f32>;
@group(0) @binding(3) var<storage, read> lv: array<f32>;
@group(0) @binding(4) var<storage, read> mask_in: array<u32>;
@group(0) @binding(5) var<storage, read> plan: array<u32>;
@group(0) @binding(6) var<storage, read_write> out_mask: array<atomic<u32>>;
@group(0) @binding(7) var<storage, read_write> parts: array<u32>;
@group(0) @binding(8) var<storage, read_write> stats: array<f32>;

// The tree's slots (12 KB at WG = 256) and the reduce's folded record.
var<workgroup> wtree: array<array<u32, SLOT_WORDS>, WG>;
var<workgroup> wred: array<u32, 81>; // HEAD_WORDS + CRIT_WORDS·MAX_CRITERIA

struct Crit {
  stat: u32,
  level: u32,
  lo: f32,
  hi: f32,
}

// The criteria, and the invocation's running statistics (in the order it meets its tokens and
// responses): per criterion (Σ s, max s, min s) and (#s > hi, #s < lo, rejected tokens, rejected
// responses); the head (n_tok, n_seq, any_tok, any_seq).
var<private> crit: array<Crit, MAX_CRITERIA>;
var<private> acc_f: array<vec3<f32>, MAX_CRITERIA>;
var<private> acc_u: array<vec4<u32>, MAX_CRITERIA>;
var<private> acc_h: vec4<u32>;
// The token-level criteria (bit c), and the sequence-level ones: per-token loops visit only theirs.
var<private> tok_bits: u32;
var<private> seq_bits: u32;

fn pos_inf() -> f32 {
  var bits = POS_INF_BITS; // through a var: a constant expression may not be ±Inf
  return bitcast<f32>(bits);
}

fn start() {
  tok_bits = 0u;
  for (var c = 0u; c < P.num_criteria; c = c + 1u) {
    let o = 4u * c;
    crit[c] = Crit(plan[o], plan[o + 1u], bitcast<f32>(plan[o + 2u]), bitcast<f32>(plan[o + 3u]));
    acc_f[c] = vec3<f32>(0.0, neg_inf(), pos_inf());
    acc_u[c] = vec4<u32>(0u);
    tok_bits = tok_bits | select(0u, 1u << c, crit[c].level == LEVEL_TOKEN);
  }
  seq_bits = ((1u << P.num_criteria) - 1u) & ~tok_bits;
  acc_h = vec4<u32>(0u);
}

// ---------------------------------------------------------------- one token
fn valid(t: u32) -> bool {
  if (P.has_mask == 0u) {
    return true;
  }
  return ((mask_in[t >> 2u] >> ((t & 3u) * 8u)) & 0xffu) != 0u;
}

// (k1, k2, k3) of a valid token.
fn k_of(t: u32) -> vec3<f32> {
  let d = lp[t] - lv[t];
  let l = select(clamp(d, -LOG_CLAMP, LOG_CLAMP), d, is_nan(d));
  return vec3<f32>(-l, 0.5 * l * l, k3_of(l).x);
}

// lo ≤ s ≤ hi, false for a NaN s (lo may be −Infinity).
fn passes(s: f32, q: Crit) -> bool {
  return !is_nan(s) && s >= q.lo && s <= q.hi;
}

// The invocation's running statistics of criterion c with one more value s, standing for n tokens.
fn count_value(c: u32, s: f32, n: u32) {
  let q = crit[c];
  let a = acc_f[c];
  acc_f[c] = vec3<f32>(a.x + f32(n) * s, max_nan(a.y, s), min_nan(a.z, s));
  let ok = !is_nan(s);
  acc_u[c] = acc_u[c] + vec4<u32>(select(0u, 1u, ok && s > q.hi), select(0u, 1u, ok && s < q.lo), 0u, 0u);
}

// Pass A: the token-level criteria that reject this token (bit c).
fn token_fails(k: vec3<f32>) -> u32 {
  var bits = 0u;
  for (var todo = tok_bits; todo != 0u; todo = todo & (todo - 1u)) {
    let c = firstTrailingBit(todo);
    let q = crit[c];
    if (!passes(k[q.stat], q)) {
      bits = bits | (1u << c);
    }
  }
  return bits;
}

// Pass B: whether a valid token is kept, counting it in every token-level criterion's statistics and
// in any_tok. seq_fail: the response's failed sequence-level criteria (bits).
fn token_keep(k: vec3<f32>, seq_fail: u32) -> bool {
  var keep = seq_fail == 0u;
  for (var todo = tok_bits; todo != 0u; todo = todo & (todo - 1u)) {
    let c = firstTrailingBit(todo);
    let q = crit[c];
    let s = k[q.stat];
    // (One token: s itself, not 1.0·s, which a driver may fuse with the sum.)
    let a = acc_f[c];
    acc_f[c] = vec3<f32>(a.x + s, max_nan(a.y, s), min_nan(a.z, s));
    let ok = !is_nan(s);
    var u = acc_u[c] + vec4<u32>(select(0u, 1u, ok && s > q.hi), select(0u, 1u, ok && s < q.lo), 0u, 0u);
    if (!passes(s, q)) {
      keep = false;
      u.z = u.z + 1u;
    }
    acc_u[c] = u;
  }
  if (!keep) {
    acc_h.z = acc_h.z + 1u;
  }
  return keep;
}

// ---------------------------------------------------------------- one response
// Pass A's totals of a response: Σ k (xyz) and n_r (w, as bits); max k (xyz) and the token-level
// criteria that reject one of its valid tokens (w). One layout for the tree's slots.
struct Resp {
  sums: vec3<f32>,
  maxs: vec3<f32>,
  n: u32,
  tok_fail: u32,
}

fn resp_empty() -> Resp {
  let m = neg_inf();
  return Resp(vec3<f32>(0.0), vec3<f32>(m, m, m), 0u, 0u);
}

fn max3(a: vec3<f32>, b: vec3<f32>) -> vec3<f32> {
  return vec3<f32>(max_nan(a.x, b.x), max_nan(a.y, b.y), max_nan(a.z, b.z));
}

fn resp_push(r: Resp, t: u32) -> Resp {
  if (!valid(t)) {
    return r;
  }
  let k = k_of(t);
  return Resp(r.sums + k, max3(r.maxs, k), r.n + 1u, r.tok_fail | token_fails(k));
}

// S_r of a sequence-level criterion (n_r > 0).
fn seq_value(q: Crit, r: Resp) -> f32 {
  switch q.level {
    case LEVEL_SEQ_SUM: {
      return r.sums[q.stat];
    }
    case LEVEL_SEQ_MEAN: {
      return r.sums[q.stat] / f32(r.n);
    }
    default: { // LEVEL_SEQ_MAX
      return r.maxs[q.stat];
    }
  }
}

// The sequence-level criteria the response fails (bits); none without a valid token.
fn seq_fails(r: Resp) -> u32 {
  var bits = 0u;
  if (r.n == 0u) {
    return bits;
  }
  for (var todo = seq_bits; todo != 0u; todo = todo & (todo - 1u)) {
    let c = firstTrailingBit(todo);
    let q = crit[c];
    if (!passes(seq_value(q, r), q)) {
      bits = bits | (1u << c);
    }
  }
  return bits;
}

// A response's share of the statistics (by one invocation: its own, or invocation 0 for a long one).
fn count_response(r: Resp, seq_fail: u32) {
  acc_h.x = acc_h.x + r.n;
  acc_h.y = acc_h.y + select(0u, 1u, r.n > 0u);
  acc_h.w = acc_h.w + select(0u, 1u, (seq_fail | r.tok_fail) != 0u);
  for (var c = 0u; c < P.num_criteria; c = c + 1u) {
    let q = crit[c];
    let bit = 1u << c;
    if (q.level == LEVEL_TOKEN) {
      acc_u[c].w = acc_u[c].w + select(0u, 1u, (r.tok_fail & bit) != 0u);
    } else if (r.n > 0u) {
      count_value(c, seq_value(q, r), r.n);
      if ((seq_fail & bit) != 0u) {
        acc_u[c].z = acc_u[c].z + r.n;
        acc_u[c].w = acc_u[c].w + 1u;
      }
    }
  }
}

// Pass B over mask word w of the response [s0, s1): its tokens' bytes (1 = kept).
fn word_bits(w: u32, s0: u32, s1: u32, seq_fail: u32) -> u32 {
  let t0 = max(4u * w, s0);
  let t1 = min(4u * w + 4u, s1);
  var mw = 0xffffffffu;
  if (P.has_mask == 1u) {
    mw = mask_in[w];
  }
  var bits = 0u;
  for (var t = t0; t < t1; t = t + 1u) {
    let sh = (t & 3u) * 8u;
    if (((mw >> sh) & 0xffu) != 0u && token_keep(k_of(t), seq_fail)) {
      bits = bits | (1u << sh);
    }
  }
  return bits;
}

// A word inside the response is stored whole; one shared with a neighbour (or the padding past T)
// ORs its bytes into the cleared output.
fn put_word(w: u32, s0: u32, s1: u32, bits: u32) {
  if (4u * w >= s0 && 4u * w + 4u <= s1) {
    atomicStore(&out_mask[w], bits);
  } else if (bits != 0u) {
    atomicOr(&out_mask[w], bits);
  }
}

// A short response, by one invocation: pass A in token order, then pass B in word order.
fn short_response(s0: u32, s1: u32) {
  var r = resp_empty();
  for (var t = s0; t < s1; t = t + 1u) {
    r = resp_push(r, t);
  }
  let sf = seq_fails(r);
  count_response(r, sf);
  if (s1 > s0) {
    let w1 = ((s1 - 1u) >> 2u) + 1u;
    for (var w = s0 >> 2u; w < w1; w = w + 1u) {
      put_word(w, s0, s1, word_bits(w, s0, s1, sf));
    }
  }
}

// ---------------------------------------------------------------- the workgroup tree (fixed order)
// Word w of a partial record: its kind (the head's words are counts; a criterion's are Σ, max, min and
// four counts), its empty value, and how two fold.
fn word_kind(w: u32) -> u32 {
  if (w < HEAD_WORDS) {
    return KIND_COUNT;
  }
  return min((w - HEAD_WORDS) % CRIT_WORDS, KIND_COUNT);
}

fn word_empty(kind: u32) -> u32 {
  if (kind == KIND_MAX) {
    return NEG_INF_BITS;
  }
  if (kind == KIND_MIN) {
    return POS_INF_BITS;
  }
  return 0u;
}

fn word_fold(x: u32, y: u32, kind: u32) -> u32 {
  switch kind {
    case KIND_SUM: {
      return bitcast<u32>(bitcast<f32>(x) + bitcast<f32>(y));
    }
    case KIND_MAX: {
      return bitcast<u32>(max_nan(bitcast<f32>(x), bitcast<f32>(y)));
    }
    case KIND_MIN: {
      return bitcast<u32>(min_nan(bitcast<f32>(x), bitcast<f32>(y)));
    }
    case KIND_OR: {
      return x | y;
    }
    default: { // KIND_COUNT
      return x + y;
    }
  }
}

// The kind of a slot's word k: a Resp (Σ k1..k3, n, max k1..k3, token-level failures), or record word
// base + k.
fn slot_kind(mode: u32, base: u32, k: u32) -> u32 {
  if (mode == TREE_RECORD) {
    return word_kind(base + k);
  }
  if (k < 3u) {
    return KIND_SUM;
  }
  if (k == 3u) {
    return KIND_COUNT;
  }
  return select(KIND_OR, KIND_MAX, k < 7u);
}

// Radix-16 over the WG slots: in round k, slot i (a multiple of 16^k) folds the slots i + 16^(k−1)·j,
// j = 1..15, in j order (WG = 256: two rounds), as policy.wgsl's trees (few barriers: each is a
// suspension point of lavapipe's compute coroutines, ~24 µs a workgroup there). Folds the first n
// words of each slot. The total is invocation 0's result (and slot 0's once a barrier follows: tree
// does that for every invocation). Called from workgroup-uniform control flow; the first barrier keeps
// a previous call's readers ahead of this call's writers.
fn tree0(v: array<u32, SLOT_WORDS>, n: u32, mode: u32, base: u32, lid: u32) -> array<u32, SLOT_WORDS> {
  workgroupBarrier();
  wtree[lid] = v;
  var acc = v;
  for (var stride = 1u; stride < WG; stride = stride * 16u) {
    workgroupBarrier();
    let span = stride * 16u;
    if (lid % span == 0u) {
      let end = min(lid + span, WG);
      for (var j = lid + stride; j < end; j = j + stride) {
        let o = wtree[j];
        for (var k = 0u; k < n; k = k + 1u) {
          acc[k] = word_fold(acc[k], o[k], slot_kind(mode, base, k));
        }
      }
      wtree[lid] = acc;
    }
  }
  return acc;
}

// A long response's pass-A totals, on every invocation.
fn tree_resp(r: Resp, lid: u32) -> Resp {
  var v: array<u32, SLOT_WORDS>;
  let s = bitcast<vec3<u32>>(r.sums);
  let m = bitcast<vec3<u32>>(r.maxs);
  v[0] = s.x;
  v[1] = s.y;
  v[2] = s.z;
  v[3] = r.n;
  v[4] = m.x;
  v[5] = m.y;
  v[6] = m.z;
  v[7] = r.tok_fail;
  _ = tree0(v, 8u, TREE_RESPONSE, 0u, lid);
  workgroupBarrier();
  let t = wtree[0];
  return Resp(
    bitcast<vec3<f32>>(vec3<u32>(t[0], t[1], t[2])),
    bitcast<vec3<f32>>(vec3<u32>(t[4], t[5], t[6])),
    t[3],
    t[7],
  );
}

// Word w of the invocation's record (HEAD_WORDS + CRIT_WORDS·C words).
fn rec_word(w: u32) -> u32 {
  if (w < HEAD_WORDS) {
    return acc_h[w];
  }
  let c = (w - HEAD_WORDS) / CRIT_WORDS;
  let j = (w - HEAD_WORDS) % CRIT_WORDS;
  if (j < 3u) {
    return bitcast<u32>(acc_f[c][j]);
  }
  return acc_u[c][j - 3u];
}

// The chunk's partial record: the invocations' records through one tree per 12 words.
fn write_record(b: u32, lid: u32) {
  let words = HEAD_WORDS + CRIT_WORDS * P.num_criteria;
  for (var base = 0u; base < words; base = base + SLOT_WORDS) {
    let n = min(SLOT_WORDS, words - base);
    var v: array<u32, SLOT_WORDS>;
    for (var k = 0u; k < n; k = k + 1u) {
      v[k] = rec_word(base + k);
    }
    let t = tree0(v, n, TREE_RECORD, base, lid);
    if (lid == 0u) {
      for (var k = 0u; k < n; k = k + 1u) {
        parts[b * words + base + k] = t[k];
      }
    }
  }
}

// A long chunk: its long responses one after another, each by the whole workgroup.
fn long_chunk(j: u32, lid: u32) {
  let i0 = j * P.long_chunk;
  let i1 = min(i0 + P.long_chunk, P.num_long);
  for (var i = i0; i < i1; i = i + 1u) {
    let r = plan[4u * P.num_criteria + i];
    let s0 = u32(roff[r]);
    let s1 = u32(roff[r + 1u]); // s1 > s0 + small_max
    var a = resp_empty();
    for (var t = s0 + lid; t < s1; t = t + WG) {
      a = resp_push(a, t);
    }
    let tot = tree_resp(a, lid);
    let sf = seq_fails(tot);
    if (lid == 0u) {
      count_response(tot, sf);
    }
    let w1 = ((s1 - 1u) >> 2u) + 1u;
    for (var w = (s0 >> 2u) + lid; w < w1; w = w + WG) {
      put_word(w, s0, s1, word_bits(w, s0, s1, sf));
    }
  }
}

@compute @workgroup_size(WG)
fn rejection_main(grid: Grid, @builtin(local_invocation_index) lid: u32) {
  let b = flat_wg(grid);
  if (b >= P.num_parts) {
    return;
  }
  start();
  if (b < P.num_short) {
    let r0 = b * P.short_chunk;
    let r1 = min(r0 + P.short_chunk, P.num_responses);
    for (var r = r0 + lid; r < r1; r = r + WG) {
      let s0 = u32(roff[r]);
      let s1 = u32(roff[r + 1u]);
      if (s1 - s0 <= P.small_max) {
        short_response(s0, s1);
      }
    }
  } else {
    long_chunk(b - P.num_short, lid);
  }
  write_record(b, lid);
}

// ---------------------------------------------------------------- the reduce
// x / n as f32, NaN for n = 0 (WGSL leaves 0/0 to the implementation).
fn ratio(x: f32, n: u32) -> f32 {
  return select(x / f32(n), nan_f32(), n == 0u);
}

// One workgroup: invocation w folds word w of the records 0, 1, ... in order, then the stats.
@compute @workgroup_size(WG)
fn rejection_reduce(@builtin(local_invocation_index) lid: u32) {
  let words = HEAD_WORDS + CRIT_WORDS * P.num_criteria;
  for (var w = lid; w < words; w = w + WG) {
    let kind = word_kind(w);
    var x = word_empty(kind);
    for (var b = 0u; b < P.num_parts; b = b + 1u) {
      x = word_fold(x, parts[b * words + w], kind);
    }
    wred[w] = x;
  }
  workgroupBarrier();
  let n_tok = wred[0];
  let n_seq = wred[1];
  for (var i = lid; i < HEAD_STATS + CRIT_WORDS * P.num_criteria; i = i + WG) {
    if (i == 0u) {
      stats[0] = ratio(f32(wred[2]), n_tok);
      continue;
    }
    if (i == 1u) {
      stats[1] = ratio(f32(wred[3]), P.num_responses);
      continue;
    }
    let c = (i - HEAD_STATS) / CRIT_WORDS;
    let j = (i - HEAD_STATS) % CRIT_WORDS;
    let v = wred[HEAD_WORDS + CRIT_WORDS * c + j];
    let by = select(n_seq, n_tok, plan[4u * c + 1u] == LEVEL_TOKEN);
    var s: f32;
    switch j {
      case 0u: { // mean over the valid tokens
        s = ratio(bitcast<f32>(v), n_tok);
      }
      case 1u, 2u: { // max, min
        s = bitcast<f32>(v);
      }
      case 3u, 4u: { // fractionHigh, fractionLow
        s = ratio(f32(v), by);
      }
      case 5u: { // maskedFraction
        s = ratio(f32(v), n_tok);
      }
      default: { // seqMaskedFraction
        s = ratio(f32(v), n_seq);
      }
    }
    stats[i] = s;
  }
}
