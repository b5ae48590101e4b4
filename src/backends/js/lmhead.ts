/**
 * The LM-head family on the js backend (the float64 reference): linearLogprobs and its backward
 * (log-probs straight from hidden states and the head's weight), and the vocabulary-sharded online
 * states (logprobStates, linearLogprobStates, mergeLogprobStates).
 *
 * Math, per row n with target y ≠ ignoreIndex (h = hidden[n], W = weight, b = bias or 0):
 *   x_v = h · W_v + b_v (raw logit), z_v = x_v / T
 *   lse = log Σ_v e^{z_v},  logprob = z_y − lse,  entropy = −Σ p log p,  sumSquares = Σ p²
 * Backward, with p_v = e^{z_v − lse} (lse the forward's f32 output, as logprobsBackward takes it):
 *   G[n, v] = (g_n/T)(1[v = y] − p_v) − (gE_n/T)·p_v·(log p_v + H_n)
 *   gradHidden[n] = Σ_v G[n, v] W_v,  gradWeight[v] = Σ_n G[n, v] h_n,  gradBias[v] = Σ_n G[n, v]
 * Ignored rows give 0 in every output and contribute nothing to gradWeight and gradBias.
 *
 * Memory (the point of the op): the [N, V] logits never exist. The forward computes ROWS rows at a
 * time ([ROWS, V] f64 scratch, each weight row decoded once per block); the backward's gradHidden
 * pass does the same, and its gradWeight pass takes VROWS rows of the weight at a time ([VROWS, d]
 * f64 accumulators) over every hidden row, recomputing those logits. Scratch: see jsLmheadScratchBytes.
 *
 * Numerics: inputs decode exactly to f64 (f16/bf16 through a table); every sum in f64, left to right
 * (d ascending for a logit, v ascending for a row's softmax sums and gradHidden, n ascending for
 * gradWeight and gradBias); outputs rounded to f32 once. Gradients in the input dtype (gradDtype
 * 'input') are those f32 values rounded to f16/bf16 (src/dtypes.ts's encoders, nearest even) at the
 * same store: no other buffer, and the same bits as rounding the f32 gradients afterwards. Row n's outputs depend on row n alone, and
 * gradWeight on nothing but the rows in order. The online softmax follows src/backends/js/logprobs.ts
 * (raw-logit max; z_t − m − log S0 for the log-prob), so a linear op's outputs equal logprobs' on the
 * f64 logits. States are rounded to f32 (they are a public exchange format); merging takes them in f64.
 */
import {
  bf16ToF32,
  type FloatDType,
  f16ToF32,
  f32ToBf16,
  f32ToF16,
  type HostArrayMap,
} from '../../dtypes.js';
import { allNegInfRow, badTarget } from '../../errors.js';
import type { Tensor } from '../../tensor.js';
import type {
  LinearLogprobStatesArgs,
  LinearLogprobsArgs,
  LinearLogprobsBackwardArgs,
  LinearLogprobsGrads,
  LogprobStates,
  LogprobStatesArgs,
  LogprobsResult,
  MergeLogprobStatesArgs,
} from '../backend.js';
import { onlinePass } from './logprobs.js';
import { hostData, jsOutput, jsTensor } from './storage.js';

/** Hidden rows per block of the forward and of the backward's gradHidden pass. */
const ROWS = 8;
/** Weight rows per block of the backward's gradWeight pass. */
const VROWS = 16;

/** Bytes of scratch the js backend allocates for one call (the structural memory bound, tested). */
export function jsLmheadScratchBytes(
  rows: number,
  vocab: number,
  dim: number,
): {
  forward: number;
  backward: number;
} {
  const rb = Math.min(ROWS, Math.max(1, rows));
  // logits block + decoded hidden block + one decoded weight row (+ per-row outputs' f64 state)
  const forward = 8 * (rb * vocab + rb * dim + dim);
  // gradHidden pass: the forward's scratch + [ROWS, d] accumulators; gradWeight pass: [VROWS, d]
  // accumulators, VROWS decoded weight rows, one hidden row, VROWS logits.
  const backward = Math.max(forward + 8 * rb * dim, 8 * (VROWS * dim * 2 + dim + 2 * VROWS));
  return { forward, backward };
}

// ---------------------------------------------------------------- decoding
const tables: { f16?: Float64Array; bf16?: Float64Array } = {};
function decodeTable(dtype: 'f16' | 'bf16'): Float64Array {
  let t = tables[dtype];
  if (t === undefined) {
    t = new Float64Array(65536);
    const dec = dtype === 'f16' ? f16ToF32 : bf16ToF32;
    for (let b = 0; b < 65536; b++) t[b] = dec(b);
    tables[dtype] = t;
  }
  return t;
}

/** Copies row `row` of a [*, n] float tensor into `out` (f64, exact). */
type RowReader = (row: number, out: Float64Array) => void;
function rowReader(t: Tensor<FloatDType>, n: number): RowReader {
  if (t.dtype === 'f32') {
    const src = hostData(t as Tensor<'f32'>);
    return (row, out) => {
      const o = row * n;
      for (let k = 0; k < n; k++) out[k] = src[o + k];
    };
  }
  const src = hostData(t as Tensor<'f16' | 'bf16'>);
  const table = decodeTable(t.dtype);
  return (row, out) => {
    const o = row * n;
    for (let k = 0; k < n; k++) out[k] = table[src[o + k]];
  };
}

/** Element reader of a [n] float tensor (f64, exact); 0 when absent. */
function vectorReader(t: Tensor<FloatDType> | undefined): (i: number) => number {
  if (t === undefined) return () => 0;
  if (t.dtype === 'f32') {
    const src = hostData(t as Tensor<'f32'>);
    return (i) => src[i];
  }
  const src = hostData(t as Tensor<'f16' | 'bf16'>);
  const table = decodeTable(t.dtype);
  return (i) => table[src[i]];
}

// ---------------------------------------------------------------- logits blocks
/**
 * Raw logits of hidden rows [r0, r0 + nr) against every weight row: out[i·V + v] = h_{r0+i} · W_v
 * + b_v, each dot product in f64, d ascending. Each weight row is decoded once per block.
 */
class LogitBlocks {
  readonly #hidden: RowReader;
  readonly #weight: RowReader;
  readonly #bias: (i: number) => number;
  readonly #dim: number;
  readonly #vocab: number;
  readonly h: Float64Array;
  readonly #w: Float64Array;
  readonly out: Float64Array;

  constructor(a: Pick<LinearLogprobsArgs, 'hidden' | 'weight' | 'bias' | 'rows' | 'dim' | 'vocab'>) {
    this.#dim = a.dim;
    this.#vocab = a.vocab;
    this.#hidden = rowReader(a.hidden, a.dim);
    this.#weight = rowReader(a.weight, a.dim);
    this.#bias = vectorReader(a.bias);
    const rb = Math.min(ROWS, Math.max(1, a.rows));
    this.h = new Float64Array(rb * a.dim);
    this.#w = new Float64Array(a.dim);
    this.out = new Float64Array(rb * a.vocab);
  }

  /** Fills out[0 .. nr·V) for rows r0 .. r0 + nr − 1 (nr ≤ ROWS); skip[i] rows are left as they are. */
  compute(r0: number, nr: number, skip: (row: number) => boolean): void {
    const d = this.#dim;
    const V = this.#vocab;
    const h = this.h;
    const w = this.#w;
    const out = this.out;
    let live = 0;
    for (let i = 0; i < nr; i++) {
      if (skip(r0 + i)) continue;
      this.#hidden(r0 + i, h.subarray(i * d, (i + 1) * d));
      live++;
    }
    if (live === 0) return;
    for (let v = 0; v < V; v++) {
      this.#weight(v, w);
      const bv = this.#bias(v);
      for (let i = 0; i < nr; i++) {
        if (skip(r0 + i)) continue;
        const o = i * d;
        let s = 0;
        for (let k = 0; k < d; k++) s += h[o + k] * w[k];
        out[i * V + v] = s + bv;
      }
    }
  }
}

interface RowOutputs {
  lp: Float32Array;
  lse: Float32Array;
  h?: Float32Array;
  sq?: Float32Array;
}

function writeRow(o: RowOutputs, i: number, lp: number, lse: number, h: number, sq: number): void {
  o.lp[i] = lp;
  o.lse[i] = lse;
  if (o.h) o.h[i] = h;
  if (o.sq) o.sq[i] = sq;
}

/**
 * Finishes row i from its state (m = max z, S0, S1, S2, sawNaN) and its target's z: the formulas of
 * jsLogprobs. Throws RANGE for a row of all −Inf.
 */
function finishRow(o: RowOutputs, i: number, st: ArrayLike<number>, zt: number): void {
  const m = st[0];
  const s0 = st[1];
  if (st[4] !== 0 || m === Number.POSITIVE_INFINITY || Number.isNaN(s0)) {
    writeRow(o, i, Number.NaN, Number.NaN, Number.NaN, Number.NaN);
    return;
  }
  if (m === Number.NEGATIVE_INFINITY) allNegInfRow(i);
  const logS0 = Math.log(s0);
  writeRow(o, i, zt - m - logS0, m + logS0, logS0 - st[2] / s0, st[3] / (s0 * s0));
}

function outputs(rows: number, entropy: boolean, sumSquares: boolean): RowOutputs {
  return {
    lp: jsOutput('f32', rows),
    lse: jsOutput('f32', rows),
    h: entropy ? jsOutput('f32', rows) : undefined,
    sq: sumSquares ? jsOutput('f32', rows) : undefined,
  };
}

function result(o: RowOutputs, rows: number): LogprobsResult {
  const r: LogprobsResult = {
    logprobs: jsTensor(o.lp, [rows], 'f32'),
    lse: jsTensor(o.lse, [rows], 'f32'),
  };
  if (o.h) r.entropy = jsTensor(o.h, [rows], 'f32');
  if (o.sq) r.sumSquares = jsTensor(o.sq, [rows], 'f32');
  return r;
}

function checkTargets(targets: Int32Array, rows: number, vocab: number, ignoreIndex: number): void {
  for (let i = 0; i < rows; i++) {
    const t = targets[i];
    if (t !== ignoreIndex && (t < 0 || t >= vocab)) badTarget(i, t, vocab, ignoreIndex);
  }
}

// ---------------------------------------------------------------- forward
/**
 * linearLogprobs: the logprobs outputs of hidden · weightᵀ + bias.
 * Owns: all rows, in blocks of ROWS; per block one sweep over the weight (V·d elements decoded),
 * then per row the online pass over its f64 logits (v ascending).
 * Cost: 2·N·V·d FLOPs (the logits) + the online pass's per-logit work; reads the weight
 * ceil(N/ROWS) times and each hidden row once; writes 4N bytes per output.
 */
export function jsLinearLogprobs(a: LinearLogprobsArgs): LogprobsResult {
  const { rows, vocab: V, temperature: T, ignoreIndex } = a;
  const targets = hostData(a.targets);
  checkTargets(targets, rows, V, ignoreIndex);
  const o = outputs(rows, a.entropy, a.sumSquares);
  const blocks = new LogitBlocks(a);
  const st = new Float64Array(5);
  const ignored = (r: number) => targets[r] === ignoreIndex;
  for (let r0 = 0; r0 < rows; r0 += ROWS) {
    const nr = Math.min(ROWS, rows - r0);
    blocks.compute(r0, nr, ignored);
    for (let i = 0; i < nr; i++) {
      const r = r0 + i;
      if (ignored(r)) {
        writeRow(o, r, 0, 0, 0, 0);
        continue;
      }
      onlinePass(blocks.out, i * V, V, T, st);
      const x = blocks.out[i * V + targets[r]];
      finishRow(o, r, st, T === 1 ? x : x / T);
    }
  }
  return result(o, rows);
}

// ---------------------------------------------------------------- backward
/** Writes an f64 gradient element into an output of `dtype`: rounded to f32, then to f16/bf16. */
type GradStore = (out: HostArrayMap[FloatDType], i: number, x: number) => void;
function gradStore(dtype: FloatDType): GradStore {
  if (dtype === 'f32') {
    return (out, i, x) => {
      out[i] = x;
    };
  }
  const enc = dtype === 'bf16' ? f32ToBf16 : f32ToF16; // each rounds to f32 first
  return (out, i, x) => {
    out[i] = enc(x);
  };
}

/**
 * linearLogprobsBackward: gradHidden, gradWeight (and gradBias), f32 or (gradDtype) the input dtype.
 * Owns: pass 1 (gradHidden) rows in blocks of ROWS: the block's logits as in the forward, G in place,
 * then gradHidden[n] = Σ_v G[n, v] W_v (v ascending, f64). Pass 2 (gradWeight, gradBias) weight rows in
 * blocks of VROWS: for every hidden row n (ascending) its logits against those weight rows, G, and
 * gradWeight[v] += G[n, v]·h_n, gradBias[v] += G[n, v] (f64 accumulators of the block).
 * Cost: the logits twice (4·N·V·d FLOPs) + 2·N·V·d for each gradient.
 */
export function jsLinearLogprobsBackward(a: LinearLogprobsBackwardArgs): LinearLogprobsGrads<FloatDType> {
  const { rows, dim: d, vocab: V, temperature: T, ignoreIndex, vocabStart, gradDtype } = a;
  const put = gradStore(gradDtype);
  const targets = hostData(a.targets);
  checkTargets(targets, rows, a.targetLimit, ignoreIndex);
  const lse = hostData(a.lse);
  const gLp = hostData(a.gradLogprobs);
  const gEnt = a.gradEntropy ? hostData(a.gradEntropy) : undefined;
  const ent = gEnt && a.entropy ? hostData(a.entropy) : undefined;
  const withEntropy = gEnt !== undefined && ent !== undefined;
  const ignored = (r: number) => targets[r] === ignoreIndex;

  /** G for row r at raw logit x and column v (the formula of jsLogprobsBackward). */
  const gradAt = (r: number, v: number, x: number): number => {
    const a1 = gLp[r] / T;
    const b1 = gEnt ? gEnt[r] / T : 0;
    const z = x / T;
    let out: number;
    if (z === Number.NEGATIVE_INFINITY) {
      out = -(withEntropy ? a1 + b1 : a1) * 0;
    } else {
      const logp = z - lse[r];
      const p = Math.exp(logp);
      out = withEntropy ? -p * (a1 + b1 * (logp + ent![r])) : -a1 * p;
    }
    return v + vocabStart === targets[r] ? out + a1 : out;
  };

  // Pass 1: gradHidden.
  const gradHidden = jsOutput(gradDtype, rows * d);
  const blocks = new LogitBlocks(a);
  const wRow = new Float64Array(d);
  const readW = rowReader(a.weight, d);
  const acc = new Float64Array(Math.min(ROWS, Math.max(1, rows)) * d);
  for (let r0 = 0; r0 < rows; r0 += ROWS) {
    const nr = Math.min(ROWS, rows - r0);
    blocks.compute(r0, nr, ignored);
    const x = blocks.out;
    for (let i = 0; i < nr; i++) {
      if (ignored(r0 + i)) continue;
      for (let v = 0; v < V; v++) x[i * V + v] = gradAt(r0 + i, v, x[i * V + v]);
    }
    acc.fill(0);
    for (let v = 0; v < V; v++) {
      readW(v, wRow);
      for (let i = 0; i < nr; i++) {
        if (ignored(r0 + i)) continue;
        const g = x[i * V + v];
        const o = i * d;
        for (let k = 0; k < d; k++) acc[o + k] += g * wRow[k];
      }
    }
    for (let i = 0; i < nr; i++) {
      const o = (r0 + i) * d;
      for (let k = 0; k < d; k++) put(gradHidden, o + k, ignored(r0 + i) ? 0 : acc[i * d + k]);
    }
  }

  // Pass 2: gradWeight (and gradBias), VROWS weight rows at a time over every hidden row.
  const gradWeight = jsOutput(gradDtype, V * d);
  const gradBias = a.bias ? jsOutput(gradDtype, V) : undefined;
  const readH = rowReader(a.hidden, d);
  const bias = vectorReader(a.bias);
  const w = new Float64Array(VROWS * d);
  const accW = new Float64Array(VROWS * d);
  const accB = new Float64Array(VROWS);
  const h = new Float64Array(d);
  for (let v0 = 0; v0 < V; v0 += VROWS) {
    const nv = Math.min(VROWS, V - v0);
    for (let j = 0; j < nv; j++) readW(v0 + j, w.subarray(j * d, (j + 1) * d));
    accW.fill(0);
    accB.fill(0);
    for (let r = 0; r < rows; r++) {
      if (ignored(r)) continue;
      readH(r, h);
      for (let j = 0; j < nv; j++) {
        const o = j * d;
        let s = 0;
        for (let k = 0; k < d; k++) s += h[k] * w[o + k];
        const g = gradAt(r, v0 + j, s + bias(v0 + j));
        accB[j] += g;
        for (let k = 0; k < d; k++) accW[o + k] += g * h[k];
      }
    }
    for (let i = 0; i < nv * d; i++) put(gradWeight, v0 * d + i, accW[i]);
    if (gradBias) for (let j = 0; j < nv; j++) put(gradBias, v0 + j, accB[j]);
  }

  const out: LinearLogprobsGrads<FloatDType> = {
    gradHidden: jsTensor(gradHidden, [rows, d], gradDtype),
    gradWeight: jsTensor(gradWeight, [V, d], gradDtype),
  };
  if (gradBias) out.gradBias = jsTensor(gradBias, [V], gradDtype);
  return out;
}

// ---------------------------------------------------------------- sharded states
interface StateArrays {
  max: Float32Array;
  sumExp: Float32Array;
  sumExpDelta?: Float32Array;
  sumExpSq?: Float32Array;
  targetLogit: Float32Array;
}

function stateArrays(rows: number, entropy: boolean, sumSquares: boolean): StateArrays {
  return {
    max: jsOutput('f32', rows),
    sumExp: jsOutput('f32', rows),
    sumExpDelta: entropy ? jsOutput('f32', rows) : undefined,
    sumExpSq: sumSquares ? jsOutput('f32', rows) : undefined,
    targetLogit: jsOutput('f32', rows),
  };
}

/**
 * Row i's state over x[base .. base + V) (raw logits, f64), each logit rounded to f32 first (as the
 * other backends hold them): max = the largest (NaN skipped), and the sums taken in f64 against it,
 * d = (x − max)/T, so the state is consistent in the f32 form it is stored in, and its max term is
 * e^0 = 1 at any temperature (against an f64 logit an f32 max would be off by up to 2^-24·|max|,
 * which a tiny T turns into an overflow); the sums round to f32 once. A NaN logit makes the sums
 * NaN; a +Inf max gives NaN sums (Inf − Inf), which merging turns into NaN outputs.
 */
function storeState(
  o: StateArrays,
  i: number,
  x: ArrayLike<number>,
  base: number,
  V: number,
  T: number,
  xt: number,
): void {
  let m = Number.NEGATIVE_INFINITY;
  let nan = false;
  for (let j = 0; j < V; j++) {
    const v = Math.fround(x[base + j]);
    if (v > m) m = v;
    else if (Number.isNaN(v)) nan = true;
  }
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  if (m !== Number.NEGATIVE_INFINITY) {
    for (let j = 0; j < V; j++) {
      const v = Math.fround(x[base + j]);
      if (!(v > Number.NEGATIVE_INFINITY)) continue; // −Inf adds 0; NaN is flagged above
      const d = (v - m) / T;
      const e = Math.exp(d);
      s0 += e;
      s1 += e * d;
      s2 += e * e;
    }
  }
  o.max[i] = m;
  o.sumExp[i] = nan ? Number.NaN : s0;
  if (o.sumExpDelta) o.sumExpDelta[i] = nan ? Number.NaN : s1;
  if (o.sumExpSq) o.sumExpSq[i] = nan ? Number.NaN : s2;
  o.targetLogit[i] = xt;
}

function storeZero(o: StateArrays, i: number): void {
  o.max[i] = 0;
  o.sumExp[i] = 0;
  if (o.sumExpDelta) o.sumExpDelta[i] = 0;
  if (o.sumExpSq) o.sumExpSq[i] = 0;
  o.targetLogit[i] = 0;
}

function statesResult(
  o: StateArrays,
  rows: number,
  a: { vocabStart: number; vocab: number; temperature: number; ignoreIndex: number },
): LogprobStates {
  const t = (x: Float32Array) => jsTensor(x, [rows], 'f32');
  const s: LogprobStates = {
    max: t(o.max),
    sumExp: t(o.sumExp),
    targetLogit: t(o.targetLogit),
    vocabStart: a.vocabStart,
    vocabEnd: a.vocabStart + a.vocab,
    temperature: a.temperature,
    ignoreIndex: a.ignoreIndex,
  };
  if (o.sumExpDelta) s.sumExpDelta = t(o.sumExpDelta);
  if (o.sumExpSq) s.sumExpSq = t(o.sumExpSq);
  return s;
}

/** logprobStates over a shard of materialised logits [rows, vocab] (columns vocabStart + j). */
export function jsLogprobStates(a: LogprobStatesArgs): LogprobStates {
  const { rows, vocab: V, vocabStart: v0, temperature: T, ignoreIndex } = a;
  const targets = hostData(a.targets);
  const o = stateArrays(rows, a.entropy, a.sumSquares);
  const read = rowReader(a.logits, V);
  const x = new Float64Array(V);
  for (let i = 0; i < rows; i++) {
    const t = targets[i];
    if (t === ignoreIndex) {
      storeZero(o, i);
      continue;
    }
    read(i, x);
    storeState(o, i, x, 0, V, T, t >= v0 && t < v0 + V ? x[t - v0] : 0);
  }
  return statesResult(o, rows, a);
}

/** linearLogprobStates over a shard of the head (weight rows = vocabulary [vocabStart, +vocab)). */
export function jsLinearLogprobStates(a: LinearLogprobStatesArgs): LogprobStates {
  const { rows, vocab: V, vocabStart: v0, temperature: T, ignoreIndex } = a;
  const targets = hostData(a.targets);
  const o = stateArrays(rows, a.entropy, a.sumSquares);
  const blocks = new LogitBlocks(a);
  const ignored = (r: number) => targets[r] === ignoreIndex;
  for (let r0 = 0; r0 < rows; r0 += ROWS) {
    const nr = Math.min(ROWS, rows - r0);
    blocks.compute(r0, nr, ignored);
    for (let i = 0; i < nr; i++) {
      const r = r0 + i;
      if (ignored(r)) {
        storeZero(o, r);
        continue;
      }
      const t = targets[r];
      storeState(o, r, blocks.out, i * V, V, T, t >= v0 && t < v0 + V ? blocks.out[i * V + t - v0] : 0);
    }
  }
  return statesResult(o, rows, a);
}

/**
 * mergeLogprobStates: the outputs of logprobs over the union of the shards. Per row, in f64, with
 * M = max over the shards of max (shards whose max is −Inf contribute their sums unscaled: zeros,
 * or NaN) and, for each shard in order, dm = (max − M)/T, c = e^{dm}:
 *   S += c·sumExp,  Sd += c·(sumExpDelta + dm·sumExp),  Sq += c²·sumExpSq
 * then lse = M/T + log S, logprob = (x_y − M)/T − log S, entropy = log S − Sd/S, Σp² = Sq/S², with
 * x_y the targetLogit of the shard holding y. NaN or +Inf anywhere in a row: NaN outputs; every
 * shard's max −Inf: RANGE (logits, the row).
 */
export function jsMergeLogprobStates(a: MergeLogprobStatesArgs): LogprobsResult {
  const { rows, vocab: V, temperature: T, ignoreIndex, states } = a;
  const targets = hostData(a.targets);
  checkTargets(targets, rows, V, ignoreIndex);
  const o = outputs(rows, a.entropy, a.sumSquares);
  const arr = states.map((s) => ({
    max: hostData(s.max),
    s: hostData(s.sumExp),
    sd: s.sumExpDelta ? hostData(s.sumExpDelta) : undefined,
    sq: s.sumExpSq ? hostData(s.sumExpSq) : undefined,
    xt: hostData(s.targetLogit),
    v0: s.vocabStart,
    v1: s.vocabEnd,
  }));
  for (let i = 0; i < rows; i++) {
    const y = targets[i];
    if (y === ignoreIndex) {
      writeRow(o, i, 0, 0, 0, 0);
      continue;
    }
    let M = Number.NEGATIVE_INFINITY;
    let nan = false;
    for (const s of arr) {
      const m = s.max[i];
      if (Number.isNaN(m)) nan = true;
      else if (m > M) M = m;
    }
    let S = 0;
    let Sd = 0;
    let Sq = 0;
    let xt = 0;
    for (const s of arr) {
      const m = s.max[i];
      const s0 = s.s[i];
      const sd = s.sd ? s.sd[i] : 0;
      const sq = s.sq ? s.sq[i] : 0;
      if (y >= s.v0 && y < s.v1) xt = s.xt[i];
      if (m === Number.NEGATIVE_INFINITY || M === Number.POSITIVE_INFINITY) {
        S += s0;
        Sd += sd;
        Sq += sq;
        continue;
      }
      const dm = (m - M) / T;
      const c = Math.exp(dm);
      S += c * s0;
      Sd += c * sd + (c > 0 ? c * dm * s0 : 0);
      Sq += c * c * sq;
    }
    if (nan || Number.isNaN(S) || M === Number.POSITIVE_INFINITY) {
      writeRow(o, i, Number.NaN, Number.NaN, Number.NaN, Number.NaN);
      continue;
    }
    if (M === Number.NEGATIVE_INFINITY) allNegInfRow(i);
    const logS = Math.log(S);
    // (x_y − M)/T − log S: no cancellation against a huge lse (tiny T).
    writeRow(o, i, (xt - M) / T - logS, M / T + logS, logS - Sd / S, Sq / (S * S));
  }
  return result(o, rows);
}
