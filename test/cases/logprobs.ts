/**
 * The case tables of the logprobs family (logprobs, logprobsBackward, gatherProbs), each case with its
 * float64 brute-force reference written here (a materialised log_softmax: max, Σ exp, gather; never the
 * online pass under test), run on every backend by test/cases/runner.ts with the tolerances of
 * test/cases/tolerances.ts.
 *
 * Inputs come from fixed seeds (test/fixtures/logprobs.ts). Each backend decodes the same f16/bf16 bits
 * the reference decodes, so input rounding is never part of an error. logprobsBackward and gatherProbs
 * are given the reference's lse and entropy rounded to f32 (host arrays), and their references use
 * those same f32 values: each table measures its own op, not the forward's error again.
 *
 * Also here: the batch-invariance case (a row's forward bits alone, inside N = 7 and N = 300, at
 * several positions, every dtype), a SelfCase checked by bit equality on each backend.
 */
import { expect } from 'vitest';
import type { Context } from '../../src/context.js';
import { encodeFloats, type FloatDType } from '../../src/dtypes.js';
import type { Layout } from '../../src/layout.js';
import type { Tensor } from '../../src/tensor.js';
import {
  decodeLogits,
  type LogprobsCase,
  type LogprobsCaseOptions,
  layoutFromSizes,
  makeGatherCase,
  makeLogprobsCase,
} from '../fixtures/logprobs.js';
import { randomInts, randomNormal } from '../util/rng.js';
import { expectWithin, type Tolerance, wordsOf } from './check.js';
import {
  type BackendName,
  type Case,
  lazy,
  type Outputs,
  type RefCase,
  type SelfCase,
  type Want,
} from './runner.js';
import { TOLERANCES } from './tolerances.js';

const FLOATS: readonly FloatDType[] = ['f32', 'f16', 'bf16'];
const OUTPUTS = ['logprobs', 'lse', 'entropy', 'sumSquares'] as const;
type ForwardOutput = (typeof OUTPUTS)[number];

// ---------------------------------------------------------------- float64 references

export interface ForwardRef {
  logprobs: Float64Array;
  lse: Float64Array;
  entropy: Float64Array;
  sumSquares: Float64Array;
  /** Per row, max_j |x_j / T| over the finite logits: the magnitude the f32 outputs are formed from. */
  zmax: Float64Array;
}

/** Materialised log_softmax per row: z = x/T, max, Σ exp(z − max), log_softmax, gather. */
export function bruteForward(
  x: Float64Array,
  rows: number,
  vocab: number,
  targets: Int32Array,
  temperature: number,
  ignoreIndex: number,
): ForwardRef {
  const ref: ForwardRef = {
    logprobs: new Float64Array(rows),
    lse: new Float64Array(rows),
    entropy: new Float64Array(rows),
    sumSquares: new Float64Array(rows),
    zmax: new Float64Array(rows),
  };
  const z = new Float64Array(vocab);
  for (let i = 0; i < rows; i++) {
    if (targets[i] === ignoreIndex) continue;
    let m = Number.NEGATIVE_INFINITY;
    let zmax = 0;
    for (let j = 0; j < vocab; j++) {
      z[j] = x[i * vocab + j] / temperature;
      m = Number.isNaN(z[j]) || Number.isNaN(m) ? Number.NaN : Math.max(m, z[j]);
      if (Number.isFinite(z[j])) zmax = Math.max(zmax, Math.abs(z[j]));
    }
    let s = 0;
    for (let j = 0; j < vocab; j++) s += Math.exp(z[j] - m);
    const lse = m + Math.log(s);
    let h = 0;
    let sq = 0;
    for (let j = 0; j < vocab; j++) {
      if (z[j] === Number.NEGATIVE_INFINITY) continue; // p = 0: contributes 0
      const lp = z[j] - lse;
      const p = Math.exp(lp);
      h -= p * lp;
      sq += p * p;
    }
    ref.logprobs[i] = z[targets[i]] - lse;
    ref.lse[i] = lse;
    ref.entropy[i] = h;
    ref.sumSquares[i] = sq;
    ref.zmax[i] = zmax;
  }
  return ref;
}

/**
 * The gradient of Σ_i g_i·logprob_i + gE_i·H_i w.r.t. the logits, in f64, from the given lse and
 * entropy (the f32 values the kernel receives): (g/T)(onehot − p) − (gE/T)·p·(log p + H).
 * `scale` per element: (p·m·(|g| + |gE|·(|log p + H| + 1)) + onehot·|g|)/T with m = 1 + |z| + |lse| + |H|:
 * an f32 kernel's p = exp(z − lse) errs by ~m ulps relative, and the two terms are combined from there
 * (tolerances.ts, crtol).
 */
export function bruteBackward(
  x: Float64Array,
  rows: number,
  vocab: number,
  targets: Int32Array,
  ignoreIndex: number,
  t: number,
  lse: ArrayLike<number>,
  entropy: ArrayLike<number> | undefined,
  g: ArrayLike<number>,
  gE: ArrayLike<number> | undefined,
): { values: Float64Array; scale: Float64Array } {
  const values = new Float64Array(rows * vocab);
  const scale = new Float64Array(rows * vocab);
  for (let i = 0; i < rows; i++) {
    if (targets[i] === ignoreIndex) continue;
    const gi = g[i];
    const ge = gE ? gE[i] : 0;
    const h = entropy ? entropy[i] : 0;
    for (let j = 0; j < vocab; j++) {
      const k = i * vocab + j;
      const z = x[k] / t;
      const onehot = j === targets[i] ? 1 : 0;
      if (z === Number.NEGATIVE_INFINITY) {
        // p = 0 exactly: only the target's g/T, and a NaN upstream gradient still poisons the row;
        // in a row whose lse is NaN (a NaN or +Inf logit in it) p is NaN here as everywhere.
        values[k] = Number.isNaN(lse[i]) ? Number.NaN : (gi / t) * onehot - (gE ? (ge / t) * 0 : 0);
        continue;
      }
      const lp = z - lse[i];
      const p = Math.exp(lp);
      values[k] = (gi / t) * (onehot - p) - (gE ? (ge / t) * p * (lp + h) : 0);
      const m = 1 + Math.abs(z) + Math.abs(lse[i]) + Math.abs(h);
      scale[k] = (p * m * (Math.abs(gi) + Math.abs(ge) * (Math.abs(lp + h) + 1)) + onehot * Math.abs(gi)) / t;
    }
  }
  return { values, scale };
}

/** The forward's reference outputs with their scales (tolerances.ts, FORWARD). */
export function forwardWants(ref: ForwardRef): Record<ForwardOutput, Want> {
  return {
    logprobs: { values: ref.logprobs, scale: ref.zmax },
    lse: { values: ref.lse, scale: ref.zmax },
    entropy: { values: ref.entropy, scale: ref.zmax },
    sumSquares: { values: ref.sumSquares, scale: ref.sumSquares.map((q, i) => q * ref.zmax[i]) },
  };
}

/** gatherProbs' reference: exp(x/T − lse) at each group's V* columns, in block order, from the given lse. */
export function gatherWant(
  x: Float64Array,
  vocabSize: number,
  layout: Layout,
  vocab: { offsets: Int32Array; columns: Int32Array },
  lse: ArrayLike<number>,
  temperature: number,
): Want {
  const values: number[] = [];
  const scale: number[] = [];
  const { responseOffsets, groupOffsets } = layout;
  for (let grp = 0; grp + 1 < groupOffsets.length; grp++) {
    const cols = vocab.columns.subarray(vocab.offsets[grp], vocab.offsets[grp + 1]);
    for (let tok = responseOffsets[groupOffsets[grp]]; tok < responseOffsets[groupOffsets[grp + 1]]; tok++) {
      for (const c of cols) {
        if (c < 0 || c >= vocabSize) {
          // (a device column outside the row: NaN, never another row's logit)
          values.push(Number.NaN);
          scale.push(0);
          continue;
        }
        const z = x[tok * vocabSize + c] / temperature;
        const p = Math.exp(z - lse[tok]);
        values.push(p);
        scale.push(p * (1 + Math.abs(z) + Math.abs(lse[tok])));
      }
    }
  }
  return { values, scale };
}

/**
 * For the tests outside the tables (tuning knobs, chunking, in place, device internals): each output a
 * backend gave, against its reference, with the tables' tolerance of the op and input dtype.
 */
export function expectOutputsWithin(
  op: 'logprobs' | 'logprobsBackward' | 'gatherProbs',
  dtype: FloatDType,
  got: Record<string, ArrayLike<number>>,
  want: Partial<Record<string, Want>>,
  what: string,
): void {
  const table = TOLERANCES[op][dtype] as Record<string, Tolerance>;
  for (const [k, v] of Object.entries(got)) {
    const w = want[k];
    expect(w, `${what}: a reference for ${k}`).toBeDefined();
    expectWithin(v, w!.values, table[k], `${what} ${k}`, w!.scale);
  }
}

// ---------------------------------------------------------------- running the ops

function floatOut(data: Float32Array | Uint16Array, dtype: FloatDType) {
  return { dtype, data };
}

/** Reads every present output of a logprobs result (and disposes it). */
async function readForward(r: Record<string, Tensor | undefined>): Promise<Outputs> {
  const out: Outputs = {};
  for (const k of OUTPUTS) {
    const t = r[k];
    if (t === undefined) continue;
    out[k] = { dtype: 'f32', data: (await t.read()) as Float32Array };
    t.dispose();
  }
  return out;
}

function ignoredRows(targets: Int32Array, ignoreIndex: number): number[] {
  const rows: number[] = [];
  targets.forEach((t, i) => {
    if (t === ignoreIndex) rows.push(i);
  });
  return rows;
}

/** Every output of the listed rows is exactly 0 (an ignored row is not read). */
function expectZeroRows(got: Record<string, Float64Array>, rows: readonly number[], width = 1): void {
  for (const [k, v] of Object.entries(got)) {
    for (const r of rows) {
      const row = v.subarray(r * width, (r + 1) * width);
      expect(
        row.every((x) => x === 0),
        `${k}: ignored row ${r} is 0`,
      ).toBe(true);
    }
  }
}

// ---------------------------------------------------------------- logprobs (forward)

export interface ForwardSpec extends Omit<LogprobsCaseOptions, 'dtype'> {
  name: string;
  dtype: FloatDType;
  temperature?: number;
  /** Ask for entropy and Σp² (default true). */
  entropy?: boolean;
  sumSquares?: boolean;
  /** Rows whose target becomes ignoreIndex. */
  ignore?: readonly number[];
  /** Changes the generated logits / targets (special values). */
  edit?: (c: LogprobsCase) => void;
  /** Pass the targets as an i32 tensor rather than a host array. */
  targetsTensor?: boolean;
  skip?: Partial<Record<BackendName, string>>;
  fails?: Partial<Record<BackendName, string>>;
  check?: (got: Record<string, Float64Array>) => void;
}

function forwardCase(s: ForwardSpec): RefCase {
  const input = lazy(() => {
    const c = makeLogprobsCase({ ...s, dtype: s.dtype });
    for (const r of s.ignore ?? []) c.targets[r] = c.ignoreIndex;
    s.edit?.(c);
    return c;
  });
  const t = s.temperature ?? 1;
  const entropy = s.entropy ?? true;
  const sumSquares = s.sumSquares ?? true;
  const tol = TOLERANCES.logprobs[s.dtype];
  return {
    kind: 'reference',
    name: `${s.name} [${s.rows}, ${s.vocab}] ${s.dtype}${t !== 1 ? ` T=${t}` : ''}`,
    tol,
    skip: s.skip,
    fails: s.fails,
    async run(ctx) {
      const c = input();
      const logits = ctx.tensor(c.logits as Float32Array, [c.rows, c.vocab], c.dtype as 'f32');
      const targets = s.targetsTensor ? ctx.tensor(c.targets, [c.rows], 'i32') : c.targets;
      const r = await ctx.logprobs(logits, targets, {
        temperature: t,
        ignoreIndex: c.ignoreIndex,
        entropy,
        sumSquares,
      });
      expect(r.logprobs.shape).toEqual([c.rows]);
      expect(r.entropy === undefined, 'entropy present iff asked').toBe(!entropy);
      expect(r.sumSquares === undefined, 'sumSquares present iff asked').toBe(!sumSquares);
      const out = await readForward({ ...r });
      logits.dispose();
      if (targets !== c.targets) (targets as Tensor).dispose();
      return out;
    },
    want() {
      const c = input();
      const ref = bruteForward(decodeLogits(c.dtype, c.logits), c.rows, c.vocab, c.targets, t, c.ignoreIndex);
      const w: Partial<Record<ForwardOutput, Want>> = forwardWants(ref);
      if (!entropy) delete w.entropy;
      if (!sumSquares) delete w.sumSquares;
      return w;
    },
    check(got) {
      const c = input();
      expectZeroRows(got, ignoredRows(c.targets, c.ignoreIndex));
      s.check?.(got);
    },
  };
}

function setRow(values: Float32Array, vocab: number, row: number, fill: (j: number) => number) {
  for (let j = 0; j < vocab; j++) values[row * vocab + j] = fill(j);
}

/** A row's f32 values, re-encoded to `dtype` in place (edits are written in f32 first). */
function editIn(dtype: FloatDType, c: LogprobsCase, f: (v: Float32Array) => void): void {
  const v = Float32Array.from(decodeLogits(dtype, c.logits));
  f(v);
  c.logits = dtype === 'f32' ? v : encodeFloats(dtype, v);
}

const TEMPERATURE_EDGES = [1e-3, 0.05, 20, 1e4];

export const LOGPROBS_CASES: readonly Case[] = [
  // Shapes: V = 1 (every logprob 0), small odd V, real vocabularies (Qwen 151936), primes.
  forwardCase({ name: 'V = 1, a row ignored', seed: 1, rows: 5, vocab: 1, dtype: 'f32', ignore: [3] }),
  forwardCase({
    name: 'small V',
    seed: 2,
    rows: 9,
    vocab: 7,
    dtype: 'f32',
    temperature: 0.7,
    ignoreFraction: 0.25,
  }),
  forwardCase({
    name: 'N = 300, first and last rows ignored',
    seed: 3,
    rows: 300,
    vocab: 1000,
    dtype: 'f32',
    temperature: 1.7,
    ignore: [0, 299],
  }),
  forwardCase({
    name: 'without entropy and Σp²',
    seed: 4,
    rows: 3,
    vocab: 32003,
    dtype: 'f32',
    temperature: 0.7,
    ignore: [1],
    entropy: false,
    sumSquares: false,
  }),
  forwardCase({
    name: 'Qwen vocabulary',
    seed: 5,
    rows: 4,
    vocab: 151936,
    dtype: 'f32',
    scale: 3,
    temperature: 0.9,
    ignore: [2],
  }),
  forwardCase({
    name: 'one row, vocabulary split',
    seed: 6,
    rows: 1,
    vocab: 151936,
    dtype: 'f32',
    temperature: 0.6,
  }),
  forwardCase({ name: 'N = 1', seed: 7, rows: 1, vocab: 4099, dtype: 'f32' }),
  forwardCase({
    name: 'targets as a device tensor',
    seed: 8,
    rows: 7,
    vocab: 777,
    dtype: 'f32',
    targetsTensor: true,
  }),
  ...(['f16', 'bf16'] as const).flatMap((dtype) => [
    forwardCase({ name: 'small V', seed: 10, rows: 5, vocab: 7, dtype, ignoreFraction: 0.2 }),
    forwardCase({
      name: 'V = 1000',
      seed: 11,
      rows: 5,
      vocab: 1000,
      dtype,
      temperature: 0.6,
      ignoreFraction: 0.2,
    }),
    forwardCase({ name: 'odd V', seed: 12, rows: 6, vocab: 32003, dtype, temperature: 1.3, ignore: [4] }),
    forwardCase({ name: 'one row, vocabulary split', seed: 13, rows: 1, vocab: 151936, dtype }),
  ]),
  forwardCase({
    name: 'many rows of the Qwen vocabulary',
    seed: 14,
    rows: 37,
    vocab: 151936,
    dtype: 'f16',
    scale: 3,
    temperature: 0.7,
  }),
  forwardCase({
    name: 'odd V, many rows',
    seed: 15,
    rows: 64,
    vocab: 32003,
    dtype: 'bf16',
    scale: 3,
    temperature: 1.3,
  }),
  forwardCase({
    name: 'enough rows for one block each',
    seed: 16,
    rows: 600,
    vocab: 4099,
    dtype: 'f16',
    scale: 3,
  }),
  // N = 0: empty outputs, every dtype.
  ...FLOATS.map((dtype) => forwardCase({ name: 'zero rows', seed: 17, rows: 0, vocab: 17, dtype })),
  // Ignored rows are not read: NaN or −Inf there does not leak; a custom ignoreIndex that is a column id.
  ...FLOATS.map((dtype) =>
    forwardCase({
      name: 'ignored rows hold NaN and −Inf',
      seed: 21,
      rows: 6,
      vocab: 33,
      dtype,
      ignore: [1, 4],
      edit: (c) =>
        editIn(dtype, c, (v) => {
          setRow(v, 33, 1, () => Number.NaN);
          setRow(v, 33, 4, () => Number.NEGATIVE_INFINITY); // a RANGE error if it were read
        }),
    }),
  ),
  forwardCase({
    name: 'custom ignoreIndex (a column id)',
    seed: 22,
    rows: 5,
    vocab: 10,
    dtype: 'f32',
    ignoreIndex: 3,
    edit: (c) => c.targets.set([3, 0, 3, 9, 5]),
  }),
  ...(['f32', 'bf16'] as const).map((dtype) =>
    forwardCase({ name: 'every row ignored', seed: 23, rows: 6, vocab: 5000, dtype, ignoreFraction: 1 }),
  ),
  // Special values.
  forwardCase({
    name: 'large and very negative logits (±1e4, −1e30)',
    seed: 24,
    rows: 4,
    vocab: 257,
    dtype: 'f32',
    edit: (c) => {
      const v = c.logits as Float32Array;
      const noise = Array.from(v.subarray(0, 257));
      setRow(v, 257, 0, (j) => 1e4 + noise[j]);
      setRow(v, 257, 1, (j) => -1e4 + noise[j]);
      setRow(v, 257, 2, (j) => (j % 2 ? 1e4 : -1e4) + noise[j]);
      setRow(v, 257, 3, (j) => -1e30 * (1 + j / 257));
      c.targets.set([3, 4, 7, 100]);
    },
  }),
  forwardCase({
    name: 'logits at the ends of the f32 range (±3e38)',
    seed: 24,
    rows: 2,
    vocab: 257,
    dtype: 'f32',
    edit: (c) => {
      const v = c.logits as Float32Array;
      const noise = Array.from(v.subarray(0, 257));
      setRow(v, 257, 0, (j) => (j === 5 ? 3e38 : j === 6 ? -3e38 : noise[j]));
      setRow(v, 257, 1, (j) => (j % 3 ? -3e38 : 3e38 * (j / 257)));
      c.targets.set([5, 6]);
    },
  }),
  ...(['f32', 'bf16'] as const).map((dtype) =>
    forwardCase({
      name: 'masked vocabulary (−Inf entries) and a −Inf target',
      seed: 25,
      rows: 6,
      vocab: 1000,
      dtype,
      temperature: 0.8,
      maskFraction: 0.4,
      edit: (c) =>
        editIn(dtype, c, (v) => {
          v[2 * 1000 + 17] = Number.NEGATIVE_INFINITY;
          c.targets[2] = 17;
        }),
      check: (got) => {
        expect(got.logprobs[2]).toBe(Number.NEGATIVE_INFINITY);
        expect(Number.isFinite(got.entropy[2])).toBe(true);
      },
    }),
  ),
  forwardCase({
    name: 'NaN or +Inf in a row gives NaN in that row only; NaN among −Inf',
    seed: 26,
    rows: 6,
    vocab: 5000,
    dtype: 'f32',
    maskFraction: 0.2,
    edit: (c) => {
      const v = c.logits as Float32Array;
      v[1 * 5000 + 30] = Number.NaN;
      v[3 * 5000 + 0] = Number.NaN; // the first element, before any max exists
      v[4 * 5000 + 12] = Number.POSITIVE_INFINITY;
      setRow(v, 5000, 5, () => Number.NEGATIVE_INFINITY);
      v[5 * 5000 + 4000] = Number.NaN; // −Inf but one NaN: NaN, not a RANGE error
      c.targets.set([0, 1, 2, 3, 4, 4000]);
    },
    check: (got) => {
      for (const k of OUTPUTS)
        expect(Array.from(got[k], Number.isNaN), k).toEqual([false, true, false, true, true, true]);
    },
  }),
  ...FLOATS.map((dtype) =>
    forwardCase({
      name: 'one finite element; a flat row',
      seed: 27,
      rows: 2,
      vocab: 64,
      dtype,
      edit: (c) =>
        editIn(dtype, c, (v) => {
          setRow(v, 64, 0, (j) => (j === 9 ? 2.5 : Number.NEGATIVE_INFINITY));
          setRow(v, 64, 1, () => 0.25);
          c.targets.set([9, 1]);
        }),
      check: (got) => {
        expect([got.logprobs[0], got.entropy[0], got.sumSquares[0]]).toEqual([0, 0, 1]);
      },
    }),
  ),
  // Temperature edge values: near one-hot softmax (T = 1e-3, logits/T ~ 1e4) to flat (T = 1e4).
  ...TEMPERATURE_EDGES.flatMap((temperature, k) =>
    (['f32', 'bf16'] as const).map((dtype) =>
      forwardCase({
        name: 'temperature edge',
        seed: 30 + k,
        rows: 8,
        vocab: 1000,
        dtype,
        temperature,
        ignore: [5],
      }),
    ),
  ),
];

// ---------------------------------------------------------------- logprobsBackward

export interface BackwardSpec {
  name: string;
  seed: number;
  rows: number;
  vocab: number;
  dtype: FloatDType;
  temperature: number;
  withEntropy: boolean;
  ignore?: readonly number[];
  ignoreFraction?: number;
  maskFraction?: number;
  /** NaN logits in the ignored rows (they must not be read). Default true. */
  nanInIgnored?: boolean;
  /** Also run in place; its bits must equal the out-of-place gradient's. */
  inPlace?: boolean;
  edit?: (c: LogprobsCase, g: Float32Array, gE: Float32Array) => void;
  skip?: Partial<Record<BackendName, string>>;
  check?: (got: Record<string, Float64Array>, c: LogprobsCase, g: Float32Array) => void;
}

function backwardCase(s: BackwardSpec): RefCase {
  const input = lazy(() => {
    const c = makeLogprobsCase({
      seed: s.seed,
      rows: s.rows,
      vocab: s.vocab,
      dtype: s.dtype,
      ignoreFraction: s.ignoreFraction ?? 0.2,
      maskFraction: s.maskFraction ?? 0.1,
    });
    for (const r of s.ignore ?? []) c.targets[r] = c.ignoreIndex;
    const g = Float32Array.from(randomNormal(s.seed + 1, s.rows));
    const gE = Float32Array.from(randomNormal(s.seed + 2, s.rows));
    s.edit?.(c, g, gE);
    if (s.nanInIgnored ?? true) {
      const nan = s.dtype === 'f32' ? Number.NaN : 0x7e00;
      for (const i of ignoredRows(c.targets, c.ignoreIndex))
        c.logits.fill(nan, i * s.vocab, (i + 1) * s.vocab);
    }
    const x = decodeLogits(c.dtype, c.logits);
    const fwd = bruteForward(x, c.rows, c.vocab, c.targets, s.temperature, c.ignoreIndex);
    // What the kernel is given: the forward's outputs rounded to f32.
    return { c, x, g, gE, lse: Float32Array.from(fwd.lse), entropy: Float32Array.from(fwd.entropy) };
  });
  const tol = TOLERANCES.logprobsBackward[s.dtype];
  const outputs = s.inPlace ? ['gradLogits', 'gradLogitsInPlace'] : ['gradLogits'];
  return {
    kind: 'reference',
    name: `${s.name} [${s.rows}, ${s.vocab}] ${s.dtype} T=${s.temperature}${s.withEntropy ? ', entropy term' : ''}${s.inPlace ? ', in place' : ''}`,
    tol: Object.fromEntries(outputs.map((k) => [k, tol.gradLogits])),
    skip: s.skip,
    async run(ctx) {
      const { c, g, gE, lse, entropy } = input();
      const opts = {
        temperature: s.temperature,
        ignoreIndex: c.ignoreIndex,
        ...(s.withEntropy ? { gradEntropy: gE, entropy } : {}),
      };
      const logits = ctx.tensor(c.logits as Float32Array, [c.rows, c.vocab], c.dtype as 'f32');
      const grad = await ctx.logprobsBackward(logits, c.targets, lse, g, opts);
      expect(grad.dtype).toBe(c.dtype);
      expect(grad.shape).toEqual([c.rows, c.vocab]);
      const out: Outputs = { gradLogits: floatOut((await grad.read()) as Float32Array, c.dtype) };
      grad.dispose();
      if (s.inPlace) {
        const back = await ctx.logprobsBackward(logits, c.targets, lse, g, { ...opts, inPlace: true });
        expect(back, 'inPlace returns the logits tensor').toBe(logits);
        out.gradLogitsInPlace = floatOut((await logits.read()) as Float32Array, c.dtype);
      }
      logits.dispose();
      return out;
    },
    want() {
      const { c, x, g, gE, lse, entropy } = input();
      const ref = bruteBackward(
        x,
        c.rows,
        c.vocab,
        c.targets,
        c.ignoreIndex,
        s.temperature,
        lse,
        s.withEntropy ? entropy : undefined,
        g,
        s.withEntropy ? gE : undefined,
      );
      return Object.fromEntries(outputs.map((k) => [k, ref]));
    },
    check(got, raw) {
      const { c, g } = input();
      expectZeroRows(got, ignoredRows(c.targets, c.ignoreIndex), c.vocab);
      if (s.inPlace) {
        const a = wordsOf(raw.gradLogits.data);
        const b = wordsOf(raw.gradLogitsInPlace.data);
        let first = -1;
        for (let i = 0; i < a.length && first < 0; i++) if (a[i] !== b[i]) first = i;
        expect(first, 'in place vs out of place: first element whose bits differ').toBe(-1);
      }
      s.check?.(got, c, g);
    },
  };
}

export const BACKWARD_CASES: readonly Case[] = [
  // Small V at several temperatures, with and without the entropy term (these shapes are also
  // checked against finite differences of the f64 objective on cpu: test/logprobs.test.ts).
  backwardCase({
    name: 'small V',
    seed: 47,
    rows: 5,
    vocab: 7,
    dtype: 'f32',
    temperature: 0.7,
    withEntropy: false,
  }),
  backwardCase({
    name: 'small V',
    seed: 47,
    rows: 5,
    vocab: 7,
    dtype: 'f32',
    temperature: 0.7,
    withEntropy: true,
  }),
  backwardCase({
    name: 'small V',
    seed: 73,
    rows: 5,
    vocab: 33,
    dtype: 'f32',
    temperature: 1.9,
    withEntropy: true,
  }),
  backwardCase({
    name: 'V = 1000',
    seed: 1050,
    rows: 5,
    vocab: 1000,
    dtype: 'f32',
    temperature: 0.8,
    withEntropy: true,
  }),
  backwardCase({
    name: 'odd V',
    seed: 32053,
    rows: 5,
    vocab: 32003,
    dtype: 'f32',
    temperature: 0.8,
    withEntropy: false,
  }),
  backwardCase({
    name: 'V = 1000',
    seed: 1051,
    rows: 5,
    vocab: 1000,
    dtype: 'f16',
    temperature: 0.8,
    withEntropy: true,
  }),
  backwardCase({
    name: 'V = 1000',
    seed: 1052,
    rows: 5,
    vocab: 1000,
    dtype: 'bf16',
    temperature: 0.8,
    withEntropy: true,
  }),
  backwardCase({
    name: 'V = 4099',
    seed: 4149,
    rows: 5,
    vocab: 4099,
    dtype: 'bf16',
    temperature: 0.8,
    withEntropy: false,
  }),
  // Real vocabularies; odd V (f16/bf16 words straddle rows; rows start off 16-byte boundaries).
  ...[false, true].map((withEntropy) =>
    backwardCase({
      name: 'Qwen vocabulary, a row ignored',
      seed: 80,
      rows: 2,
      vocab: 151936,
      dtype: 'f32',
      temperature: 0.8,
      withEntropy,
      ignore: [1],
      ignoreFraction: 0,
    }),
  ),
  backwardCase({
    name: 'Qwen vocabulary',
    seed: 81,
    rows: 16,
    vocab: 151936,
    dtype: 'bf16',
    temperature: 0.9,
    withEntropy: true,
  }),
  backwardCase({
    name: 'odd V',
    seed: 82,
    rows: 33,
    vocab: 32003,
    dtype: 'f16',
    temperature: 0.9,
    withEntropy: true,
  }),
  backwardCase({
    name: 'odd V',
    seed: 83,
    rows: 7,
    vocab: 4099,
    dtype: 'f32',
    temperature: 0.9,
    withEntropy: true,
  }),
  ...(['bf16', 'f16'] as const).map((dtype) =>
    backwardCase({
      name: 'odd V',
      seed: 84,
      rows: 9,
      vocab: 1001,
      dtype,
      temperature: 1.1,
      withEntropy: true,
      ignore: [3],
    }),
  ),
  // In place: the same bits as out of place (V = 3: one u32 word in three holds two rows).
  ...FLOATS.flatMap((dtype) => [
    backwardCase({
      name: 'in place',
      seed: 71,
      rows: 6,
      vocab: 1001,
      dtype,
      temperature: 0.8,
      withEntropy: true,
      inPlace: true,
      ignore: [0, 5],
    }),
    backwardCase({
      name: 'in place, V = 3',
      seed: 72,
      rows: 7,
      vocab: 3,
      dtype,
      temperature: 1.1,
      withEntropy: true,
      inPlace: true,
      ignore: [3],
    }),
  ]),
  // Masked (−Inf) elements get 0; a −Inf target gets g/T exactly; no NaN.
  backwardCase({
    name: 'masked elements and a −Inf target',
    seed: 61,
    rows: 3,
    vocab: 16,
    dtype: 'f32',
    temperature: 2,
    withEntropy: true,
    ignoreFraction: 0,
    maskFraction: 0,
    edit: (c) => {
      const v = c.logits as Float32Array;
      c.targets.set([4, 0, 8]);
      v[4] = Number.NEGATIVE_INFINITY; // row 0's target
      v[16 + 5] = Number.NEGATIVE_INFINITY;
    },
    check: (got, _c, g) => {
      expect(got.gradLogits.every((x) => !Number.isNaN(x))).toBe(true);
      expect(got.gradLogits[4]).toBe(Math.fround(g[0] / 2));
      expect(got.gradLogits[16 + 5] === 0, 'a masked element is 0').toBe(true);
    },
  }),
  // A NaN or +Inf logit in a live row (its lse NaN) makes the row's whole gradient NaN: its −Inf
  // elements and a −Inf target included (DESIGN.md: every output of such a row is NaN).
  ...[false, true].flatMap((withEntropy) =>
    [Number.NaN, Number.POSITIVE_INFINITY].map((bad) =>
      backwardCase({
        name: `a ${bad} logit among −Inf ones (${withEntropy ? 'entropy' : 'logprobs'})`,
        seed: 71,
        rows: 3,
        vocab: 40,
        dtype: 'f32',
        temperature: 1,
        withEntropy,
        ignoreFraction: 0,
        maskFraction: 0,
        edit: (c) => {
          const v = c.logits as Float32Array;
          c.targets.set([2, 3, 4]);
          v[40 + 1] = bad;
          v[40 + 3] = Number.NEGATIVE_INFINITY; // row 1's target
          v[40 + 9] = Number.NEGATIVE_INFINITY;
          v[80 + 9] = Number.NEGATIVE_INFINITY;
        },
        check: (got) => {
          for (let i = 0; i < 3; i++) {
            const row = got.gradLogits.subarray(i * 40, (i + 1) * 40);
            if (i === 1) expect(row.every(Number.isNaN), 'row 1 all NaN').toBe(true);
            else expect(row.some(Number.isNaN), `row ${i} has no NaN`).toBe(false);
          }
        },
      }),
    ),
  ),
  // A NaN upstream gradient makes its whole row NaN, masked (−Inf) elements included.
  ...[false, true].map((withEntropy) =>
    backwardCase({
      name: `a NaN upstream gradient (${withEntropy ? 'entropy' : 'logprobs'})`,
      seed: 67,
      rows: 3,
      vocab: 1000,
      dtype: 'f32',
      temperature: 1.5,
      withEntropy,
      ignoreFraction: 0,
      maskFraction: 0,
      edit: (c, g, gE) => {
        const v = c.logits as Float32Array;
        c.targets.set([2, 3, 4]);
        v[1000 + 5] = Number.NEGATIVE_INFINITY;
        v[2000 + 7] = Number.NEGATIVE_INFINITY;
        if (withEntropy) gE[2] = Number.NaN;
        else g[1] = Number.NaN;
      },
      check: (got) => {
        const nanRow = withEntropy ? 2 : 1;
        for (let i = 0; i < 3; i++) {
          const row = got.gradLogits.subarray(i * 1000, (i + 1) * 1000);
          if (i === nanRow) expect(row.every(Number.isNaN), `row ${i} all NaN`).toBe(true);
          else expect(row.some(Number.isNaN), `row ${i} has no NaN`).toBe(false);
        }
      },
    }),
  ),
  ...FLOATS.map((dtype) =>
    backwardCase({
      name: 'zero rows',
      seed: 90,
      rows: 0,
      vocab: 9,
      dtype,
      temperature: 1,
      withEntropy: true,
    }),
  ),
  backwardCase({
    name: 'every row ignored',
    seed: 91,
    rows: 4,
    vocab: 500,
    dtype: 'bf16',
    temperature: 1,
    withEntropy: true,
    ignoreFraction: 1,
  }),
  ...TEMPERATURE_EDGES.map((temperature, k) =>
    backwardCase({
      name: 'temperature edge',
      seed: 92 + k,
      rows: 4,
      vocab: 1000,
      dtype: 'f32',
      temperature,
      withEntropy: true,
      ignore: [2],
    }),
  ),
];

// ---------------------------------------------------------------- gatherProbs

export interface GatherSpec {
  name: string;
  seed: number;
  responseLengths: readonly number[];
  groupSizes: readonly number[];
  vocab: number;
  dtype: FloatDType;
  temperature: number;
  tokenRange?: number;
  skip?: Partial<Record<BackendName, string>>;
  /** Device columns that differ from the (validated) host copy: a hand-built, inconsistent vocab. */
  deviceColumns?: (columns: Int32Array) => Int32Array;
}

function gatherCase(s: GatherSpec): RefCase {
  const input = lazy(() => {
    const g = makeGatherCase({ ...s });
    const x = decodeLogits(g.dtype, g.logits);
    const fwd = bruteForward(x, g.numTokens, g.vocabSize, g.tokens, s.temperature, -100);
    return { g, x, lse: Float32Array.from(fwd.lse) };
  });
  const T = s.responseLengths.reduce((a, b) => a + b, 0);
  return {
    kind: 'reference',
    name: `${s.name}: ${T} tokens, V = ${s.vocab}, ${s.dtype}, T=${s.temperature}`,
    tol: TOLERANCES.gatherProbs[s.dtype],
    skip: s.skip,
    async run(ctx) {
      const { g, lse } = input();
      const logits = ctx.tensor(g.logits as Float32Array, [g.numTokens, g.vocabSize], g.dtype as 'f32');
      const vocab = await ctx.restrictedVocab(g.tokens, g.layout);
      const columns = s.deviceColumns ? ctx.tensor(s.deviceColumns(vocab.host.columns)) : vocab.columns;
      const probs = await ctx.gatherProbs(logits, lse, {
        layout: g.layout,
        vocab: { ...vocab, columns },
        temperature: s.temperature,
      });
      const out: Outputs = { probs: { dtype: 'f32', data: (await probs.read()) as Float32Array } };
      for (const t of [logits, probs, vocab.offsets, vocab.columns, vocab.tokenColumn, columns]) t.dispose();
      return out;
    },
    want() {
      const { g, x, lse } = input();
      const vocab = s.deviceColumns ? { ...g.vocab, columns: s.deviceColumns(g.vocab.columns) } : g.vocab;
      return { probs: gatherWant(x, g.vocabSize, g.layout, vocab, lse, s.temperature) };
    },
  };
}

const RAGGED_LENGTHS = [3, 0, 5, 2, 0, 4, 1, 0];
const RAGGED_GROUPS = [2, 1, 3, 1, 1];

/** A random rollout's lengths: `groups` groups of `perGroup` responses of 0..8 tokens. */
function rolloutLengths(seed: number, groups: number, perGroup: number) {
  return {
    responseLengths: Array.from(randomInts(seed, groups * perGroup, 0, 9)),
    groupSizes: Array(groups).fill(perGroup),
  };
}

export const GATHER_CASES: readonly Case[] = [
  // Memory safety: device columns outside [0, V) (negative, V, 10^8) are never read; they give NaN.
  gatherCase({
    name: 'device columns outside the row',
    seed: 39,
    ...rolloutLengths(38, 2, 3),
    vocab: 300,
    dtype: 'f32',
    temperature: 1,
    deviceColumns: (c) => {
      const d = c.slice();
      for (const [i, v] of [
        [0, -7],
        [2, 300],
        [d.length - 1, 100_000_000],
      ])
        if (i < d.length) d[i] = v;
      return d;
    },
  }),
  // Ragged: empty responses, singleton groups, and a group whose responses are all empty.
  ...FLOATS.map((dtype) =>
    gatherCase({
      name: 'ragged groups',
      seed: 70,
      responseLengths: RAGGED_LENGTHS,
      groupSizes: RAGGED_GROUPS,
      vocab: 301,
      dtype,
      temperature: 0.8,
      tokenRange: 40,
    }),
  ),
  ...(['f32', 'bf16'] as const).map((dtype) =>
    gatherCase({
      name: 'odd V',
      seed: 21,
      ...rolloutLengths(21, 5, 4),
      vocab: 32003,
      dtype,
      temperature: 0.9,
      tokenRange: 50,
    }),
  ),
  gatherCase({
    name: 'Qwen vocabulary',
    seed: 22,
    ...rolloutLengths(22, 3, 3),
    vocab: 151936,
    dtype: 'bf16',
    temperature: 1,
    tokenRange: 2000,
  }),
  gatherCase({
    name: 'no tokens at all',
    seed: 23,
    responseLengths: [0, 0, 0],
    groupSizes: [2, 1],
    vocab: 50,
    dtype: 'f32',
    temperature: 1,
  }),
  ...TEMPERATURE_EDGES.map((temperature, k) =>
    gatherCase({
      name: 'temperature edge',
      seed: 24 + k,
      responseLengths: RAGGED_LENGTHS,
      groupSizes: RAGGED_GROUPS,
      vocab: 301,
      dtype: 'f32',
      temperature,
      tokenRange: 40,
    }),
  ),
];

// ---------------------------------------------------------------- batch invariance

/**
 * Batch invariance (DESIGN.md, "Numerics"): three probe rows computed alone (N = 1), then placed first,
 * in the middle and last inside N = 7 and N = 300 (at different positions in each), must keep every
 * forward output's bits (logprobs, lse, entropy, Σp²), and their gatherProbs values too (given the
 * same lse). Probe 1 has its maximum in its last column, probe 2 is −Inf over its first half. On cpu
 * this holds by construction; on webgpu N = 7 and N = 300 take different schedules (rows split over
 * workgroups, or one workgroup per row; test/webgpu/invariance.test.ts adds chunking and the backward);
 * on cuda the vocabulary's segments are fixed by V (test/cuda/ops-invariance.test.ts adds caller
 * chunking, ops-backward.test.ts the backward).
 */
function invarianceCase(dtype: FloatDType, v: number): SelfCase {
  const temperature = 0.7;
  const probes = lazy(() => {
    const x = randomNormal(v + 17, 3 * v, 3);
    x[2 * v - 1] = 14; // probe 1: maximum in the last column
    x.fill(Number.NEGATIVE_INFINITY, 2 * v, 2 * v + Math.floor(v / 2)); // probe 2: first half −Inf
    return encodeFloats(dtype, x);
  });
  const probeTargets = [5, v - 1, v - 3];
  const batches = [
    { n: 7, positions: [0, 3, 6] },
    { n: 300, positions: [299, 1, 150] }, // probe 0 last, probe 1 second, probe 2 in the middle
  ];

  /** Forward outputs' words and gathered probabilities of the probe rows, probe by probe. */
  async function probeBits(
    ctx: Context,
    x: Float32Array | Uint16Array,
    targets: Int32Array,
    positions: number[],
  ) {
    const n = targets.length;
    const logits = ctx.tensor(x as Float32Array, [n, v], dtype as 'f32');
    const r = await ctx.logprobs(logits, targets, { temperature, entropy: true, sumSquares: true });
    const out: Record<string, number[]> = {};
    for (const k of OUTPUTS) {
      const w = wordsOf((await r[k]!.read()) as Float32Array);
      out[k] = positions.map((p) => w[p]);
    }
    // gatherProbs: one token per response, one response per group, V* = 4 fixed columns.
    const layout: Layout = layoutFromSizes(Array(n).fill(1), Array(n).fill(1));
    const cols = [0, 1, Math.floor(v / 2), v - 1];
    const vocab = {
      offsets: Int32Array.from({ length: n + 1 }, (_, i) => 4 * i),
      columns: Int32Array.from({ length: 4 * n }, (_, i) => cols[i % 4]),
      tokenColumn: new Int32Array(n),
    };
    const probs = await ctx.gatherProbs(logits, r.lse, { layout, vocab, temperature });
    const pw = wordsOf((await probs.read()) as Float32Array);
    out.probs = positions.flatMap((p) => Array.from(pw.subarray(4 * p, 4 * p + 4)));
    for (const t of [logits, probs, r.logprobs, r.lse, r.entropy!, r.sumSquares!]) t.dispose();
    return out;
  }

  return {
    kind: 'self',
    name: `batch invariance: a row alone, in N = 7 and N = 300 (V = ${v}, ${dtype})`,
    async run(ctx) {
      const p = probes();
      const alone: Record<string, number[]> = {};
      for (let i = 0; i < 3; i++) {
        const bits = await probeBits(
          ctx,
          p.subarray(i * v, (i + 1) * v),
          Int32Array.of(probeTargets[i]),
          [0],
        );
        for (const [k, w] of Object.entries(bits)) alone[k] = [...(alone[k] ?? []), ...w];
      }
      const bad: string[] = [];
      for (const { n, positions } of batches) {
        const pool = encodeFloats(dtype, randomNormal(v + n, 4 * v, 3));
        const x = p instanceof Float32Array ? new Float32Array(n * v) : new Uint16Array(n * v);
        const targets = randomInts(n + v, n, 0, v);
        for (let r = 0; r < n; r++) {
          const k = positions.indexOf(r);
          (x as Float32Array).set(
            k >= 0 ? p.subarray(k * v, (k + 1) * v) : pool.subarray((r % 4) * v, ((r % 4) + 1) * v),
            r * v,
          );
          if (k >= 0) targets[r] = probeTargets[k];
        }
        targets[2] = -100; // an ignored row among them (row 2 is never a probe)
        const got = await probeBits(ctx, x, targets, positions);
        for (const k of Object.keys(alone)) {
          for (let i = 0; i < alone[k].length; i++) {
            if (alone[k][i] !== got[k][i]) {
              const per = k === 'probs' ? 4 : 1;
              bad.push(
                `N=${n} row ${positions[Math.floor(i / per)]}: ${k}[${i % per}] alone ${alone[k][i].toString(16)}, in the batch ${got[k][i].toString(16)}`,
              );
            }
          }
        }
      }
      return bad;
    },
  };
}

export const INVARIANCE_CASES: readonly Case[] = FLOATS.flatMap((dtype) => [
  invarianceCase(dtype, 32003),
  invarianceCase(dtype, 4099),
]);

export type { ForwardOutput };
