/**
 * The logprobs family on the js backend (the float64 reference): logprobs (forward, one online pass per row),
 * logprobsBackward (gradient w.r.t. the logits) and gatherProbs (softmax at chosen columns).
 *
 * Conventions shared by the three kernels:
 * - z = x / T is computed in f64 by one division per element (never x · (1/T)), the same
 *   expression in every kernel, so forward, backward and gather see the same z bits.
 * - f16/bf16 logits are decoded exactly to f32 through a 65536-entry table (every f16 and bf16
 *   value is an f32 value), one row at a time into a [V] scratch, so the hot loops read a
 *   Float32Array whatever the dtype. No [N, V] temporary exists anywhere.
 * - Sums run left to right over the vocabulary (j = 0 … V−1) in f64; results round once to f32
 *   (or to the logits' dtype for the gradient) at the store.
 */
import { type FloatDType, f16ToF32, f32ToBf16, f32ToF16 } from '../../dtypes.js';
import { allNegInfRow, badTarget } from '../../errors.js';
import type { Tensor } from '../../tensor.js';
import type { GatherProbsArgs, LogprobsArgs, LogprobsBackwardArgs, LogprobsResult } from '../backend.js';
import { hostData, jsOutput, jsTensor } from './storage.js';

// ---------------------------------------------------------------- decoding

let f16Table: Float32Array | undefined;
let bf16Table: Float32Array | undefined;

/** bits → f32 value for every 16-bit pattern of `dtype` (built once, 256 KiB). */
function halfTable(dtype: 'f16' | 'bf16'): Float32Array {
  if (dtype === 'f16') {
    if (f16Table === undefined) {
      f16Table = new Float32Array(65536);
      for (let b = 0; b < 65536; b++) f16Table[b] = f16ToF32(b);
    }
    return f16Table;
  }
  if (bf16Table === undefined) {
    // bf16 is the top half of an f32: shifting the bits up is the exact decode.
    bf16Table = new Float32Array(65536);
    const bits = new Uint32Array(bf16Table.buffer);
    for (let b = 0; b < 65536; b++) bits[b] = b << 16;
  }
  return bf16Table;
}

/**
 * Gives the logits of one row as a Float32Array and its offset in it: the tensor's own array for
 * f32 (no copy), or the row decoded into `scratch` (offset 0) for f16/bf16.
 */
class RowSource {
  readonly #f32: Float32Array | undefined;
  readonly #bits: Uint16Array | undefined;
  readonly #table: Float32Array | undefined;
  readonly #scratch: Float32Array | undefined;
  readonly #vocab: number;
  /** The array holding the current row, and where the row starts in it. */
  data: Float32Array;
  offset = 0;

  constructor(logits: Tensor<FloatDType>, vocab: number) {
    this.#vocab = vocab;
    if (logits.dtype === 'f32') {
      this.#f32 = hostData(logits as Tensor<'f32'>);
      this.data = this.#f32;
    } else {
      this.#bits = hostData(logits as Tensor<'f16' | 'bf16'>);
      this.#table = halfTable(logits.dtype);
      this.#scratch = new Float32Array(vocab);
      this.data = this.#scratch;
    }
  }

  /** Points `data`/`offset` at row i. */
  load(i: number): void {
    const v = this.#vocab;
    if (this.#f32 !== undefined) {
      this.offset = i * v;
      return;
    }
    const bits = this.#bits!;
    const table = this.#table!;
    const out = this.#scratch!;
    const base = i * v;
    for (let j = 0; j < v; j++) out[j] = table[bits[base + j]];
  }
}

/** Reads one element of a float tensor's host array as a number (exact). */
function elementReader(logits: Tensor<FloatDType>): (index: number) => number {
  if (logits.dtype === 'f32') {
    const d = hostData(logits as Tensor<'f32'>);
    return (k) => d[k];
  }
  const d = hostData(logits as Tensor<'f16' | 'bf16'>);
  const table = halfTable(logits.dtype);
  return (k) => table[d[k]];
}

// ---------------------------------------------------------------- forward

/**
 * logprobs: per row i with target t_i ≠ ignoreIndex, z = logits[i, :] / T and
 *   lse_i       = log Σ_j e^{z_j}
 *   logprob_i   = z_{t_i} − lse_i
 *   entropy_i   = −Σ_j p_j log p_j,  p = softmax(z)
 *   sumSquares_i = Σ_j p_j²
 * Ignored rows are not read and give 0 in every output.
 *
 * Owns: all rows, one after the other; each row is read once, left to right.
 * Shapes: logits [N, V] f32|f16|bf16, targets i32 [N] → f32 [N] each (entropy, sumSquares only
 * when asked for).
 * Cost: N·V logits read (4 or 2 bytes each) + 4N target bytes, 4N bytes per output written;
 * per element one division (none when T = 1), one exp and 2 other flops, or 8 with entropy or
 * sumSquares; a rescale (one more exp) each time the running max grows (O(log V) times per row
 * for exchangeable inputs). Two loops: onlinePass keeps S0, S1, S2; onlinePassLse, used when
 * neither entropy nor sumSquares is asked for, keeps S0 only and gives the same m and S0 bits.
 *
 * Online state per row, relative to the running max m over the elements seen so far:
 *   S0 = Σ e^{z−m},  S1 = Σ e^{z−m}·(z−m),  S2 = Σ e^{2(z−m)}.
 * When a new element z' > m arrives, with d = m − z' < 0 and r = e^d, every old term
 * e^{z−m} becomes e^{z−m}·r and every old (z−m) becomes (z−m) + d, so
 *   S0 ← r·S0 + 1,  S1 ← r·(S1 + d·S0) + 0,  S2 ← r²·S2 + 1  (the +1 is the new element).
 * At the end, with p_j = e^{z_j−m}/S0 and log p_j = (z_j − m) − log S0:
 *   lse = m + log S0,  entropy = log S0 − S1/S0,  sumSquares = S2 / S0².
 * S1 ≤ 0 and d·S0 ≤ 0, so neither the update nor the entropy formula cancels.
 *
 * Numerical notes:
 * - −Inf elements (a masked vocabulary) are skipped: they contribute 0 to every sum (e^{−∞}·(−∞)
 *   would be NaN if evaluated).
 * - r = 0 (first finite element, or a jump beyond ~745) sets S1 to 0 directly: the old terms
 *   vanish and d·S0 may be −∞·0.
 * - NaN anywhere in a row → NaN in every output of the row. +Inf anywhere → NaN in every
 *   output of the row (softmax is ∞/∞), including lse, as a materialised log_softmax gives.
 * - A row with no element above −Inf (and no NaN) has no softmax: GrpoKernelsError RANGE
 *   naming `logits` and the row.
 * - z = x/T is exact to f64 rounding; an f32 logit divided by a tiny T may overflow f64 to ±Inf,
 *   which is then treated as an infinite logit.
 */
/**
 * Every target is ignoreIndex or in [0, V), checked before any output is written (the GPU kernels
 * check the same with a flag; the API checks host targets itself).
 */
function checkTargets(targets: Int32Array, rows: number, vocab: number, ignoreIndex: number): void {
  for (let i = 0; i < rows; i++) {
    const t = targets[i];
    if (t !== ignoreIndex && (t < 0 || t >= vocab)) badTarget(i, t, vocab, ignoreIndex);
  }
}

export function jsLogprobs(a: LogprobsArgs): LogprobsResult {
  const { rows, vocab, temperature: T, ignoreIndex } = a;
  const targets = hostData(a.targets);
  checkTargets(targets, rows, vocab, ignoreIndex);
  const lpOut = jsOutput('f32', rows);
  const lseOut = jsOutput('f32', rows);
  const entOut = a.entropy ? jsOutput('f32', rows) : undefined;
  const sqOut = a.sumSquares ? jsOutput('f32', rows) : undefined;
  const src = new RowSource(a.logits, vocab);
  const moments = a.entropy || a.sumSquares;
  const st = new Float64Array(5);

  for (let i = 0; i < rows; i++) {
    const t = targets[i];
    if (t === ignoreIndex) {
      lpOut[i] = 0;
      lseOut[i] = 0;
      if (entOut) entOut[i] = 0;
      if (sqOut) sqOut[i] = 0;
      continue;
    }
    src.load(i);
    const x = src.data;
    const base = src.offset;
    if (moments) onlinePass(x, base, vocab, T, st);
    else onlinePassLse(x, base, vocab, T, st);
    const m = st[0];
    const s0 = st[1];
    const s1 = st[2];
    const s2 = st[3];
    const sawNaN = st[4] !== 0;
    if (sawNaN || m === Number.POSITIVE_INFINITY) {
      lpOut[i] = Number.NaN;
      lseOut[i] = Number.NaN;
      if (entOut) entOut[i] = Number.NaN;
      if (sqOut) sqOut[i] = Number.NaN;
      continue;
    }
    if (m === Number.NEGATIVE_INFINITY) allNegInfRow(i);
    const logS0 = Math.log(s0);
    const lse = m + logS0;
    // (z_t − m) − log S0, not z_t − lse: no cancellation when |m| dwarfs log S0 (tiny T).
    lpOut[i] = x[base + t] / T - m - logS0;
    lseOut[i] = lse;
    if (entOut) entOut[i] = logS0 - s1 / s0;
    if (sqOut) sqOut[i] = s2 / (s0 * s0);
  }

  const result: LogprobsResult = {
    logprobs: jsTensor(lpOut, [rows], 'f32'),
    lse: jsTensor(lseOut, [rows], 'f32'),
  };
  if (entOut) result.entropy = jsTensor(entOut, [rows], 'f32');
  if (sqOut) result.sumSquares = jsTensor(sqOut, [rows], 'f32');
  return result;
}

/**
 * The online pass over one row of logits x[base .. base+V), z = x/T, left to right. Writes
 * st = [m, S0, S1, S2, sawNaN (0|1)] (see jsLogprobs for the update and its notes). The LM head's
 * reference (lmhead.ts) runs it on its f64 logit blocks.
 */
export function onlinePass(
  x: Float32Array | Float64Array,
  base: number,
  vocab: number,
  T: number,
  st: Float64Array,
): void {
  let m = Number.NEGATIVE_INFINITY;
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let sawNaN = 0;
  for (let j = 0; j < vocab; j++) {
    // x/1 is x: skipping the division when T = 1 changes no bit.
    const z = T === 1 ? x[base + j] : x[base + j] / T;
    if (z > m) {
      // New running max: rescale the sums accumulated against the old one.
      const d = m - z;
      const r = Math.exp(d);
      s1 = r === 0 ? 0 : r * (s1 + d * s0);
      s0 = r * s0 + 1;
      s2 = r * r * s2 + 1;
      m = z;
    } else if (z > Number.NEGATIVE_INFINITY) {
      const d = z - m;
      const e = Math.exp(d);
      s0 += e;
      s1 += e * d;
      s2 += e * e;
    } else if (Number.isNaN(z)) {
      sawNaN = 1;
    }
  }
  st[0] = m;
  st[1] = s0;
  st[2] = s1;
  st[3] = s2;
  st[4] = sawNaN;
}

/** onlinePass without S1 and S2 (same m and S0, bit for bit), when neither entropy nor Σp² is asked. */
function onlinePassLse(x: Float32Array, base: number, vocab: number, T: number, st: Float64Array): void {
  let m = Number.NEGATIVE_INFINITY;
  let s0 = 0;
  let sawNaN = 0;
  for (let j = 0; j < vocab; j++) {
    const z = T === 1 ? x[base + j] : x[base + j] / T;
    if (z > m) {
      s0 = Math.exp(m - z) * s0 + 1;
      m = z;
    } else if (z > Number.NEGATIVE_INFINITY) {
      s0 += Math.exp(z - m);
    } else if (Number.isNaN(z)) {
      sawNaN = 1;
    }
  }
  st[0] = m;
  st[1] = s0;
  st[2] = 0;
  st[3] = 0;
  st[4] = sawNaN;
}

// ---------------------------------------------------------------- backward

/**
 * logprobsBackward: for each row i with target t_i ≠ ignoreIndex, z = logits[i, :] / T,
 * log p_j = z_j − lse_i, p_j = e^{log p_j}, g = gradLogprobs_i, gE = gradEntropy_i (0 when absent),
 * H = entropy_i:
 *   gradLogits[i, j] = (g/T)·([j = t_i] − p_j) − (gE/T)·p_j·(log p_j + H)
 * (d logprob_t/dz_j = [j = t] − p_j; dH/dz_j = −p_j (log p_j + H); dz/dx = 1/T). Ignored rows
 * are not read and get 0 everywhere.
 *
 * Owns: all rows; each row of logits is read once and each gradient element written once.
 * Shapes: logits [N, V] f32|f16|bf16, targets i32 [N], lse/gradLogprobs/gradEntropy/entropy
 * f32 [N] → gradLogits [N, V] in the logits' dtype.
 * Cost: N·V logits read + N·V gradient elements written (2 or 4 bytes each); per element one
 * division, one exp and about 8 flops.
 *
 * Numerical notes:
 * - lse and H are the forward's f32 outputs, used as given (as a GPU backward does); p therefore
 *   carries the f32 rounding of lse (relative error ≈ |lse|·2⁻²⁴).
 * - An element with z = −Inf has p = 0 and contributes 0 (p·log p would be 0·−∞ = NaN); the
 *   one-hot term still applies when the target itself is −Inf. p underflowing to 0 for finite z
 *   gives 0 naturally.
 * - Computed in f64; stored once: f32 by the Float32Array store, f16/bf16 through f32ToF16 /
 *   f32ToBf16 (f64 → f32 → half, round to nearest even each time: the conversion a GPU kernel
 *   computing in f32 performs).
 */
export function jsLogprobsBackward(a: LogprobsBackwardArgs): Tensor<FloatDType> {
  const { rows, vocab, temperature: T, ignoreIndex } = a;
  const dtype = a.logits.dtype;
  const targets = hostData(a.targets);
  checkTargets(targets, rows, vocab, ignoreIndex);
  const lse = hostData(a.lse);
  const gLp = hostData(a.gradLogprobs);
  const gEnt = a.gradEntropy ? hostData(a.gradEntropy) : undefined;
  const ent = gEnt && a.entropy ? hostData(a.entropy) : undefined;
  const withEntropy = gEnt !== undefined && ent !== undefined;
  const src = new RowSource(a.logits, vocab);
  // In place: row i is read whole (into `row`, through RowSource) before it is stored.
  const out = a.inPlace ? hostData(a.logits) : jsOutput(dtype, rows * vocab);
  const row = new Float64Array(vocab);

  for (let i = 0; i < rows; i++) {
    const t = targets[i];
    const base = i * vocab;
    if (t === ignoreIndex) {
      out.fill(0, base, base + vocab);
      continue;
    }
    src.load(i);
    const x = src.data;
    const xb = src.offset;
    const l = lse[i];
    const a1 = gLp[i] / T;
    const b1 = gEnt ? gEnt[i] / T : 0;
    const h = ent ? ent[i] : 0;
    for (let j = 0; j < vocab; j++) {
      const z = x[xb + j] / T;
      if (z === Number.NEGATIVE_INFINITY) {
        // p = 0 exactly; p·(log p + H) → 0 in the limit. Multiplying the upstream gradients by 0
        // (rather than writing 0) keeps a NaN or ±Inf gradient NaN, as IEEE and PyTorch do. In a
        // row whose lse is NaN (a NaN or +Inf logit in it) p is NaN like every other element.
        row[j] = -(withEntropy ? a1 + b1 : a1) * (Number.isNaN(l) ? Number.NaN : 0);
        continue;
      }
      const logp = z - l;
      const p = Math.exp(logp);
      row[j] = withEntropy ? -p * (a1 + b1 * (logp + h)) : -a1 * p;
    }
    row[t] += a1;
    store(dtype, out, base, row);
  }
  return a.inPlace ? a.logits : jsTensor(out, [rows, vocab], dtype);
}

/** Rounds a row of f64 gradients into the output array at `base`. */
function store(dtype: FloatDType, out: Float32Array | Uint16Array, base: number, row: Float64Array): void {
  const n = row.length;
  if (dtype === 'f32') {
    (out as Float32Array).set(row, base);
    return;
  }
  const enc = dtype === 'f16' ? f32ToF16 : f32ToBf16;
  for (let j = 0; j < n; j++) out[base + j] = enc(row[j]);
}

// ---------------------------------------------------------------- gatherProbs

/**
 * gatherProbs: for each group g with tokens t ∈ [t0_g, t1_g) and restricted vocabulary
 * V*_g = columns[offsets[g] .. offsets[g+1]) of size K_g:
 *   probs[probsOffsets[g] + (t − t0_g)·K_g + k] = exp(logits[t, V*_g[k]] / T − lse[t])
 * (softmax at the chosen columns, not renormalised).
 *
 * Owns: every group, every (token, column) pair of its block, written row-major.
 * Shapes: logits [Ttotal, V] f32|f16|bf16, lse f32 [Ttotal], vocab.columns i32 [ΣK_g] →
 * f32 [Σ_g T_g·K_g].
 * Cost: Σ_g T_g·K_g gathered logits (random reads within a row) + as many f32 writes; one
 * division and one exp each.
 *
 * Numerical notes: lse is the forward's f32 output, used as given. −Inf logits give 0; NaN gives
 * NaN.
 */
export function jsGatherProbs(a: GatherProbsArgs): Tensor<'f32'> {
  const { layout, vocabSize: v, temperature: T, probsOffsets } = a;
  const offsets = a.vocab.hostOffsets;
  const columns = hostData(a.vocab.columns);
  const lse = hostData(a.lse);
  const read = elementReader(a.logits);
  const total = probsOffsets[layout.numGroups];
  const out = jsOutput('f32', total);

  for (let g = 0; g < layout.numGroups; g++) {
    const t0 = layout.groupTokenOffsets[g];
    const t1 = layout.groupTokenOffsets[g + 1];
    const c0 = offsets[g];
    const k = offsets[g + 1] - c0;
    let o = probsOffsets[g];
    for (let t = t0; t < t1; t++) {
      const rowBase = t * v;
      const l = lse[t];
      for (let c = 0; c < k; c++) {
        // A column outside [0, V) (device columns that disagree with the validated host copy): NaN,
        // never another row's logit (as every backend).
        const col = columns[c0 + c];
        out[o++] = col >= 0 && col < v ? Math.exp(read(rowBase + col) / T - l) : Number.NaN;
      }
    }
  }
  return jsTensor(out, [total], 'f32');
}
