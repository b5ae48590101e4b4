/**
 * The cpu reference's logprobs family (logprobs, logprobsBackward, gatherProbs) against float64
 * brute force written here: a materialised log_softmax (max, then Σ exp, then gather), never the
 * online pass under test.
 *
 * Tolerances. The reference decodes the same input bits as the kernel (f16/bf16 decode exactly to
 * f64), so for every input dtype the only differences are the kernel's final rounding of its f64
 * result and f64 rounding in two summation orders (≈ V·2⁻⁵³, far below an f32 ulp):
 * - forward outputs (f32): max relative error over the tensor ≤ 2⁻²³ (one f32 ulp of the largest
 *   element; rounding alone gives ≤ 2⁻²⁴). Same bound for f32, f16 and bf16 logits.
 * - gradLogits, against the analytic formula evaluated with the same f32 lse and entropy:
 *   per element ≤ one ulp of the output dtype (f32 2⁻²³, f16 2⁻¹⁰, bf16 2⁻⁷, relative; f16
 *   subnormals: 2⁻²⁴ absolute), since two f64 values a few f64 ulps apart may round to
 *   neighbouring outputs.
 * - gradLogits against central finite differences of the f64 objective: 1e-6 relative to the
 *   largest element. The backward uses the forward's f32 lse and entropy (relative error
 *   ≈ |lse|·2⁻²⁴ ≈ 2e-7 here); the differences themselves are accurate to ≈ 1e-10 (h = 1e-5).
 * - gatherProbs (f32): per element ≤ 2⁻²³ relative against exp(x/T − lse) with the same f32 lse;
 *   1e-6 relative to the largest element against the f64 softmax (the f32 lse again, ≈ |lse|·2⁻²⁴).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Context } from '../src/context.js';
import type { FloatDType } from '../src/dtypes.js';
import {
  createContext,
  type ErrorCode,
  GrpoKernelsError,
  setOutputPoison,
  type Tensor,
} from '../src/index.js';
import {
  decodeLogits,
  type LogprobsCase,
  layoutFromSizes,
  makeGatherCase,
  makeLogprobsCase,
} from './fixtures/logprobs.js';
import { expectClose, expectNoPoison, POISON_F32 } from './util/compare.js';

const FORWARD_RTOL = 2 ** -23;
const FD_RTOL = 1e-6;
const GATHER_VS_F64_RTOL = 1e-6;
const ULP: Record<FloatDType, { rel: number; abs: number }> = {
  f32: { rel: 2 ** -23, abs: 0 },
  f16: { rel: 2 ** -10, abs: 2 ** -24 },
  bf16: { rel: 2 ** -7, abs: 0 },
};

const ctx: Context = await createContext({ backend: 'js' });

beforeEach(() => setOutputPoison(POISON_F32));
afterEach(() => setOutputPoison(undefined));

// ---------------------------------------------------------------- brute force (float64)

interface Reference {
  logprobs: Float64Array;
  lse: Float64Array;
  entropy: Float64Array;
  sumSquares: Float64Array;
}

/** Materialised log_softmax per row: max, then Σ exp, then log_softmax, then gather. */
function bruteForward(
  x: Float64Array,
  rows: number,
  vocab: number,
  targets: Int32Array,
  temperature: number,
  ignoreIndex: number,
): Reference {
  const ref: Reference = {
    logprobs: new Float64Array(rows),
    lse: new Float64Array(rows),
    entropy: new Float64Array(rows),
    sumSquares: new Float64Array(rows),
  };
  for (let i = 0; i < rows; i++) {
    if (targets[i] === ignoreIndex) continue;
    const z = new Float64Array(vocab);
    for (let j = 0; j < vocab; j++) z[j] = x[i * vocab + j] / temperature;
    let m = Number.NEGATIVE_INFINITY;
    for (let j = 0; j < vocab; j++) m = Math.max(m, z[j]); // NaN propagates
    let s = 0;
    for (let j = 0; j < vocab; j++) s += Math.exp(z[j] - m);
    const lse = m + Math.log(s);
    const logSoftmax = z.map((v) => v - lse);
    let h = 0;
    let sq = 0;
    for (let j = 0; j < vocab; j++) {
      if (z[j] === Number.NEGATIVE_INFINITY) continue; // p = 0: contributes 0
      const p = Math.exp(logSoftmax[j]);
      h -= p * logSoftmax[j];
      sq += p * p;
    }
    ref.logprobs[i] = logSoftmax[targets[i]];
    ref.lse[i] = lse;
    ref.entropy[i] = h;
    ref.sumSquares[i] = sq;
  }
  return ref;
}

/** Row objective Σ g·logprob + gE·H of one row of z-values, in f64. */
function rowObjective(x: Float64Array, target: number, t: number, g: number, gE: number): number {
  const z = Array.from(x, (v) => v / t);
  const m = Math.max(...z);
  const lse = m + Math.log(z.reduce((s, v) => s + Math.exp(v - m), 0));
  let h = 0;
  for (const v of z) if (v !== Number.NEGATIVE_INFINITY) h -= Math.exp(v - lse) * (v - lse);
  return g * (z[target] - lse) + gE * h;
}

// ---------------------------------------------------------------- helpers

function i32(values: Int32Array): Tensor<'i32'> {
  return ctx.tensor(values, [values.length], 'i32');
}

function upload(c: LogprobsCase): Tensor<FloatDType> {
  return ctx.tensor(c.logits, [c.rows, c.vocab], c.dtype);
}

async function runForward(c: LogprobsCase, temperature = 1) {
  const logits = upload(c);
  const out = await ctx.logprobs(logits, c.targets, {
    temperature,
    ignoreIndex: c.ignoreIndex,
    entropy: true,
    sumSquares: true,
  });
  const got = {
    logprobs: await out.logprobs.read(),
    lse: await out.lse.read(),
    entropy: await out.entropy!.read(),
    sumSquares: await out.sumSquares!.read(),
  };
  for (const [k, v] of Object.entries(got)) expectNoPoison(v, k);
  return got;
}

async function checkForward(c: LogprobsCase, temperature = 1): Promise<void> {
  const got = await runForward(c, temperature);
  const ref = bruteForward(
    decodeLogits(c.dtype, c.logits),
    c.rows,
    c.vocab,
    c.targets,
    temperature,
    c.ignoreIndex,
  );
  for (const k of ['logprobs', 'lse', 'entropy', 'sumSquares'] as const) {
    expectClose(got[k], ref[k], { rtol: FORWARD_RTOL, what: `${k} (${c.dtype}, V=${c.vocab})` });
  }
}

async function expectFail(p: Promise<unknown>, code: ErrorCode, argument: string, text?: RegExp) {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e, `expected a ${code} error on ${argument}`).toBeInstanceOf(GrpoKernelsError);
  const err = e as GrpoKernelsError;
  expect(err.code, err.message).toBe(code);
  expect(err.argument, err.message).toBe(argument);
  if (text) expect(err.message).toMatch(text);
}

/** Per-element comparison within one ulp of the output dtype (see the header). */
function expectWithinUlp(actual: Float64Array, expected: Float64Array, dtype: FloatDType, what: string) {
  const { rel, abs } = ULP[dtype];
  const bad: string[] = [];
  for (let k = 0; k < expected.length && bad.length < 5; k++) {
    const a = actual[k];
    const b = expected[k];
    const ok = Number.isNaN(b) ? Number.isNaN(a) : Math.abs(a - b) <= rel * Math.abs(b) + abs || a === b;
    if (!ok) bad.push(`[${k}] got ${a}, expected ${b}`);
  }
  expect(bad, `${what}: elements beyond one ${dtype} ulp`).toEqual([]);
}

function setRow(values: Float32Array, vocab: number, row: number, fill: (j: number) => number) {
  for (let j = 0; j < vocab; j++) values[row * vocab + j] = fill(j);
}

// ---------------------------------------------------------------- forward

describe('logprobs forward vs brute force', () => {
  it.each([
    [1, 5, 1],
    [7, 9, 1],
    [7, 9, 0.7],
    [1000, 6, 1.3],
    [32003, 4, 1],
  ])('V = %i, N = %i, temperature %f (f32, some rows ignored)', async (vocab, rows, t) => {
    await checkForward(makeLogprobsCase({ seed: vocab + rows, rows, vocab, ignoreFraction: 0.25 }), t);
  });

  it('V = 151936 (Qwen vocabulary), 3 rows', async () => {
    await checkForward(makeLogprobsCase({ seed: 11, rows: 3, vocab: 151936, scale: 3 }), 0.9);
  });

  it('N = 1', async () => {
    await checkForward(makeLogprobsCase({ seed: 12, rows: 1, vocab: 4099 }), 1);
  });

  it('N = 0 gives empty outputs', async () => {
    const out = await ctx.logprobs(ctx.tensor(new Float32Array(0), [0, 17], 'f32'), new Int32Array(0), {
      entropy: true,
    });
    expect(out.logprobs.shape).toEqual([0]);
    expect((await out.entropy!.read()).length).toBe(0);
  });

  it.each(['f16', 'bf16'] as const)('%s logits decode exactly (same tolerance as f32)', async (dtype) => {
    for (const [vocab, rows, t] of [
      [7, 5, 1],
      [1000, 5, 0.6],
      [32003, 3, 1.7],
    ]) {
      await checkForward(makeLogprobsCase({ seed: vocab, rows, vocab, dtype, ignoreFraction: 0.2 }), t);
    }
  });

  it('ignored rows give 0 everywhere and are not read (NaN there does not leak)', async () => {
    const c = makeLogprobsCase({ seed: 21, rows: 6, vocab: 33 });
    const values = c.logits as Float32Array;
    c.targets[1] = c.ignoreIndex;
    c.targets[4] = c.ignoreIndex;
    setRow(values, 33, 1, () => Number.NaN);
    setRow(values, 33, 4, () => Number.NEGATIVE_INFINITY); // would be a RANGE error if read
    const got = await runForward(c);
    for (const k of ['logprobs', 'lse', 'entropy', 'sumSquares'] as const) {
      expect(got[k][1], k).toBe(0);
      expect(got[k][4], k).toBe(0);
      expect(
        got[k].every((v) => !Number.isNaN(v)),
        `${k} has no NaN`,
      ).toBe(true);
    }
    await checkForward(c);
  });

  it('a custom ignoreIndex (a valid column id) masks rows too', async () => {
    const c = makeLogprobsCase({ seed: 22, rows: 5, vocab: 10, ignoreIndex: 3 });
    c.targets.set([3, 0, 3, 9, 5]);
    const got = await runForward(c);
    expect(got.lse[0]).toBe(0);
    expect(got.lse[2]).toBe(0);
    await checkForward(c);
  });

  it('large and very negative logits (±1e4, ±3e38, −1e30) stay exact', async () => {
    const vocab = 257;
    const c = makeLogprobsCase({ seed: 23, rows: 6, vocab });
    const v = c.logits as Float32Array;
    const noise = Array.from(v.subarray(0, vocab));
    setRow(v, vocab, 0, (j) => 1e4 + noise[j]);
    setRow(v, vocab, 1, (j) => -1e4 + noise[j]);
    setRow(v, vocab, 2, (j) => (j % 2 ? 1e4 : -1e4) + noise[j]);
    setRow(v, vocab, 3, (j) => (j === 5 ? 3e38 : j === 6 ? -3e38 : noise[j]));
    setRow(v, vocab, 4, (j) => (j % 3 ? -3e38 : 3e38 * (j / vocab)));
    setRow(v, vocab, 5, (j) => -1e30 * (1 + j / vocab));
    c.targets.set([3, 4, 7, 5, 6, 100]);
    await checkForward(c);
  });

  it('−Inf entries (masked vocabulary) contribute 0; a −Inf target gives −Inf', async () => {
    const c = makeLogprobsCase({ seed: 24, rows: 6, vocab: 1000, maskFraction: 0.4 });
    await checkForward(c, 0.8);
    const v = c.logits as Float32Array;
    v[2 * 1000 + 17] = Number.NEGATIVE_INFINITY;
    c.targets[2] = 17;
    const got = await runForward(c);
    expect(got.logprobs[2]).toBe(Number.NEGATIVE_INFINITY);
    expect(Number.isFinite(got.entropy[2])).toBe(true);
    await checkForward(c, 0.8);
  });

  it('a row of all −Inf logits is a RANGE error naming logits and the row', async () => {
    const c = makeLogprobsCase({ seed: 25, rows: 4, vocab: 20 });
    setRow(c.logits as Float32Array, 20, 2, () => Number.NEGATIVE_INFINITY);
    await expectFail(ctx.logprobs(upload(c), c.targets), 'RANGE', 'logits', /row 2/);
  });

  it('NaN in a row gives NaN in every output of that row only; so does +Inf', async () => {
    const c = makeLogprobsCase({ seed: 26, rows: 5, vocab: 50, maskFraction: 0.2 });
    const v = c.logits as Float32Array;
    v[1 * 50 + 30] = Number.NaN;
    v[3 * 50 + 0] = Number.NaN; // first element, before any max exists
    v[4 * 50 + 12] = Number.POSITIVE_INFINITY;
    const got = await runForward(c);
    for (const k of ['logprobs', 'lse', 'entropy', 'sumSquares'] as const) {
      expect(Array.from(got[k], Number.isNaN), k).toEqual([false, true, false, true, true]);
    }
    await checkForward(c); // the brute force gives NaN in the same places
  });

  it('entropy and sumSquares edge values: one finite element, and a flat row', async () => {
    const vocab = 64;
    const c = makeLogprobsCase({ seed: 27, rows: 2, vocab });
    setRow(c.logits as Float32Array, vocab, 0, (j) => (j === 9 ? 2.5 : Number.NEGATIVE_INFINITY));
    setRow(c.logits as Float32Array, vocab, 1, () => 0.25);
    c.targets.set([9, 1]);
    const got = await runForward(c);
    expect([got.logprobs[0], got.entropy[0], got.sumSquares[0]]).toEqual([0, 0, 1]);
    expect(got.entropy[1]).toBeCloseTo(Math.log(vocab), 6);
    expect(got.sumSquares[1]).toBeCloseTo(1 / vocab, 9);
    await checkForward(c);
  });

  it('is deterministic, takes targets as a Tensor or an Int32Array, omits unasked outputs', async () => {
    const c = makeLogprobsCase({ seed: 28, rows: 7, vocab: 777 });
    const logits = upload(c);
    const a = await ctx.logprobs(logits, c.targets);
    const b = await ctx.logprobs(logits, i32(c.targets));
    expect(a.entropy).toBeUndefined();
    expect(a.sumSquares).toBeUndefined();
    expect(await a.logprobs.read()).toEqual(await b.logprobs.read());
    expect(await a.lse.read()).toEqual(await b.lse.read());
    // Asking for entropy takes the full-moment loop; lse and logprobs keep the same bits.
    for (const temperature of [1, 0.3]) {
      const lean = await ctx.logprobs(logits, c.targets, { temperature });
      const full = await ctx.logprobs(logits, c.targets, { temperature, entropy: true, sumSquares: true });
      expect(await full.lse.read()).toEqual(await lean.lse.read());
      expect(await full.logprobs.read()).toEqual(await lean.logprobs.read());
    }
  });

  it('does not modify its inputs', async () => {
    const c = makeLogprobsCase({ seed: 29, rows: 4, vocab: 99, dtype: 'bf16' });
    const logits = upload(c);
    const targets = i32(c.targets);
    const before = [await logits.read(), await targets.read()];
    const hostTargets = c.targets.slice();
    await ctx.logprobs(logits, targets, { entropy: true, sumSquares: true, temperature: 0.5 });
    await ctx.logprobs(logits, c.targets, { entropy: true });
    expect([await logits.read(), await targets.read()]).toEqual(before);
    expect(c.targets).toEqual(hostTargets);
  });
});

// ---------------------------------------------------------------- backward

interface BackwardCase {
  c: LogprobsCase;
  temperature: number;
  gradLogprobs: Float32Array;
  gradEntropy?: Float32Array;
}

function makeBackwardCase(
  seed: number,
  rows: number,
  vocab: number,
  dtype: FloatDType,
  temperature: number,
  withEntropy: boolean,
): BackwardCase {
  const c = makeLogprobsCase({ seed, rows, vocab, dtype, ignoreFraction: 0.2, maskFraction: 0.1 });
  c.targets[1] = c.ignoreIndex; // at least one ignored row in every case
  const g = makeLogprobsCase({ seed: seed + 1, rows: 2, vocab: rows, scale: 1 }).logits as Float32Array;
  return {
    c,
    temperature,
    gradLogprobs: g.slice(0, rows),
    gradEntropy: withEntropy ? g.slice(rows) : undefined,
  };
}

/** Runs forward then backward; returns the gradient decoded to f64 and the forward's f32 outputs. */
async function runBackward(b: BackwardCase) {
  const { c, temperature } = b;
  const logits = upload(c);
  const fwd = await ctx.logprobs(logits, c.targets, {
    temperature,
    ignoreIndex: c.ignoreIndex,
    entropy: true,
  });
  const grad = await ctx.logprobsBackward(logits, c.targets, fwd.lse, b.gradLogprobs, {
    temperature,
    ignoreIndex: c.ignoreIndex,
    gradEntropy: b.gradEntropy,
    entropy: b.gradEntropy ? fwd.entropy : undefined,
  });
  expect(grad.dtype).toBe(c.dtype);
  expect(grad.shape).toEqual([c.rows, c.vocab]);
  const bits = await grad.read();
  if (c.dtype === 'f32') expectNoPoison(bits as Float32Array, 'gradLogits');
  else expect((bits as Uint16Array).includes(0x7e01), 'gradLogits: poison bits remain').toBe(false);
  return {
    grad: decodeLogits(c.dtype, bits as Float32Array | Uint16Array),
    lse: await fwd.lse.read(),
    entropy: await fwd.entropy!.read(),
  };
}

/** The analytic gradient in f64 from the same f32 lse and entropy the kernel receives. */
function bruteBackward(b: BackwardCase, lse: Float32Array, entropy: Float32Array): Float64Array {
  const { c, temperature: t } = b;
  const x = decodeLogits(c.dtype, c.logits);
  const out = new Float64Array(c.rows * c.vocab);
  for (let i = 0; i < c.rows; i++) {
    if (c.targets[i] === c.ignoreIndex) continue;
    const g = b.gradLogprobs[i];
    const gE = b.gradEntropy ? b.gradEntropy[i] : 0;
    for (let j = 0; j < c.vocab; j++) {
      const z = x[i * c.vocab + j] / t;
      const onehot = j === c.targets[i] ? 1 : 0;
      if (z === Number.NEGATIVE_INFINITY) {
        out[i * c.vocab + j] = (g / t) * onehot;
        continue;
      }
      const logp = z - lse[i];
      const p = Math.exp(logp);
      const entropyTerm = b.gradEntropy ? (gE / t) * p * (logp + entropy[i]) : 0;
      out[i * c.vocab + j] = (g / t) * (onehot - p) - entropyTerm;
    }
  }
  return out;
}

describe('logprobsBackward', () => {
  it.each([
    [7, 0.7, false],
    [7, 0.7, true],
    [33, 1, true],
    [33, 1.9, true],
  ])(
    'matches central finite differences of the f64 objective (V = %i, T = %f, entropy %s)',
    async (vocab, t, withEntropy) => {
      const b = makeBackwardCase(40 + vocab, 5, vocab, 'f32', t, withEntropy);
      const { grad } = await runBackward(b);
      const { c } = b;
      const x = decodeLogits('f32', c.logits);
      const fd = new Float64Array(c.rows * vocab);
      const h = 1e-5;
      for (let i = 0; i < c.rows; i++) {
        if (c.targets[i] === c.ignoreIndex) continue;
        const row = x.slice(i * vocab, (i + 1) * vocab);
        const g = b.gradLogprobs[i];
        const gE = b.gradEntropy ? b.gradEntropy[i] : 0;
        for (let j = 0; j < vocab; j++) {
          if (row[j] === Number.NEGATIVE_INFINITY) continue; // stays masked: derivative 0
          const keep = row[j];
          row[j] = keep + h;
          const up = rowObjective(row, c.targets[i], t, g, gE);
          row[j] = keep - h;
          const down = rowObjective(row, c.targets[i], t, g, gE);
          row[j] = keep;
          fd[i * vocab + j] = (up - down) / (2 * h);
        }
      }
      expectClose(grad, fd, { rtol: FD_RTOL, what: 'gradLogits vs finite differences' });
    },
  );

  it.each([
    ['f32', 1000, true],
    ['f32', 32003, false],
    ['f16', 1000, true],
    ['bf16', 1000, true],
    ['bf16', 4099, false],
  ] as const)(
    '%s, V = %i, entropy %s: within one output ulp of the analytic formula',
    async (dtype, vocab, withEntropy) => {
      const b = makeBackwardCase(50 + vocab, 5, vocab, dtype, 0.8, withEntropy);
      // Ignored rows are not read: NaN there must not reach the gradient.
      const nan = dtype === 'f32' ? Number.NaN : 0x7e00;
      const ignored = Array.from(b.c.targets, (t, i) => (t === b.c.ignoreIndex ? i : -1)).filter(
        (i) => i >= 0,
      );
      expect(ignored.length, 'the case has ignored rows').toBeGreaterThan(0);
      for (const i of ignored) b.c.logits.fill(nan, i * vocab, (i + 1) * vocab);
      const { grad, lse, entropy } = await runBackward(b);
      expectWithinUlp(grad, bruteBackward(b, lse, entropy), dtype, `gradLogits ${dtype}`);
      for (let i = 0; i < b.c.rows; i++) {
        if (b.c.targets[i] !== b.c.ignoreIndex) continue;
        expect(
          grad.subarray(i * vocab, (i + 1) * vocab).every((v) => v === 0),
          `ignored row ${i} is 0`,
        ).toBe(true);
      }
    },
  );

  it('masked (−Inf) elements get 0, a −Inf target gets g/T, and no NaN appears', async () => {
    const b = makeBackwardCase(61, 3, 16, 'f32', 2, true);
    const v = b.c.logits as Float32Array;
    b.c.targets.set([4, 0, 8]);
    v[4] = Number.NEGATIVE_INFINITY; // row 0's target
    v[16 + 5] = Number.NEGATIVE_INFINITY;
    const { grad, lse, entropy } = await runBackward(b);
    expect(grad.every((g) => !Number.isNaN(g))).toBe(true);
    expect(grad[4]).toBe(Math.fround(b.gradLogprobs[0] / 2));
    expect(grad[16 + 5]).toBe(0);
    expectWithinUlp(grad, bruteBackward(b, lse, entropy), 'f32', 'gradLogits');
  });

  it('a NaN upstream gradient makes its whole row NaN, masked (−Inf) elements included', async () => {
    for (const withEntropy of [false, true]) {
      const b = makeBackwardCase(67, 3, 16, 'f32', 1.5, withEntropy);
      const v = b.c.logits as Float32Array;
      b.c.targets.set([2, 3, 4]);
      v[16 + 5] = Number.NEGATIVE_INFINITY; // a masked element of row 1
      v[32 + 7] = Number.NEGATIVE_INFINITY; // and of row 2
      if (withEntropy) b.gradEntropy![2] = Number.NaN;
      else b.gradLogprobs[1] = Number.NaN;
      const nanRow = withEntropy ? 2 : 1;
      const { grad } = await runBackward(b);
      for (let i = 0; i < 3; i++) {
        const row = grad.subarray(i * 16, (i + 1) * 16);
        if (i === nanRow) expect(row.every(Number.isNaN), `row ${i} all NaN`).toBe(true);
        else expect(row.some(Number.isNaN), `row ${i} has no NaN`).toBe(false);
      }
    }
  });

  it.each(['f32', 'f16', 'bf16'] as const)(
    'inPlace (%s): overwrites the logits with the same bits as out of place, and returns them',
    async (dtype) => {
      const b = makeBackwardCase(71, 6, 1001, dtype, 0.8, true);
      const x = upload(b.c);
      const fwd = await ctx.logprobs(x, b.c.targets, {
        temperature: 0.8,
        ignoreIndex: b.c.ignoreIndex,
        entropy: true,
      });
      const opts = {
        temperature: 0.8,
        ignoreIndex: b.c.ignoreIndex,
        gradEntropy: b.gradEntropy,
        entropy: fwd.entropy,
      };
      const ref = await (await ctx.logprobsBackward(x, b.c.targets, fwd.lse, b.gradLogprobs, opts)).read();
      const out = await ctx.logprobsBackward(x, b.c.targets, fwd.lse, b.gradLogprobs, {
        ...opts,
        inPlace: true,
      });
      expect(out).toBe(x);
      expect(Array.from(await x.read())).toEqual(Array.from(ref));
    },
  );

  it('gradEntropy without entropy is an error; inputs are not modified', async () => {
    const b = makeBackwardCase(62, 4, 30, 'f16', 1, true);
    const logits = upload(b.c);
    const fwd = await ctx.logprobs(logits, b.c.targets, { entropy: true });
    await expectFail(
      ctx.logprobsBackward(logits, b.c.targets, fwd.lse, b.gradLogprobs, { gradEntropy: b.gradEntropy }),
      'DTYPE',
      'entropy',
    );
    const before = [await logits.read(), await fwd.lse.read(), await fwd.entropy!.read()];
    const hostGrad = b.gradLogprobs.slice();
    await ctx.logprobsBackward(logits, b.c.targets, fwd.lse, b.gradLogprobs, {
      gradEntropy: b.gradEntropy,
      entropy: fwd.entropy,
    });
    expect([await logits.read(), await fwd.lse.read(), await fwd.entropy!.read()]).toEqual(before);
    expect(b.gradLogprobs).toEqual(hostGrad);
  });
});

// ---------------------------------------------------------------- gatherProbs

describe('gatherProbs', () => {
  // Ragged: empty responses, singleton groups, and a group whose responses are all empty.
  const responseLengths = [3, 0, 5, 2, 0, 4, 1, 0];
  const groupSizes = [2, 1, 3, 1, 1];

  it.each(['f32', 'bf16', 'f16'] as const)(
    '%s: packed [T_g, K_g] blocks of exp(x/T − lse)',
    async (dtype) => {
      const t = 0.8;
      const g = makeGatherCase({ seed: 70, responseLengths, groupSizes, vocab: 301, dtype, tokenRange: 40 });
      const v = g.vocabSize;
      const logits = ctx.tensor(g.logits, [g.numTokens, v], dtype);
      const fwd = await ctx.logprobs(logits, g.tokens, { temperature: t });
      const vocab = {
        offsets: i32(g.vocab.offsets),
        columns: i32(g.vocab.columns),
        tokenColumn: i32(g.vocab.tokenColumn),
        host: g.vocab,
      };
      const out = await ctx.gatherProbs(logits, fwd.lse, { layout: g.layout, vocab, temperature: t });
      const probs = await out.read();
      expectNoPoison(probs, 'probs');

      // Brute force: walk the groups, their tokens, their V* columns, in block order.
      const x = decodeLogits(dtype, g.logits);
      const lse = await fwd.lse.read();
      const logprobs = await fwd.logprobs.read();
      const expected: number[] = [];
      const exact: number[] = [];
      const own: number[] = [];
      const ownExpected: number[] = [];
      const { responseOffsets, groupOffsets } = g.layout;
      for (let grp = 0; grp + 1 < groupOffsets.length; grp++) {
        const cols = g.vocab.columns.subarray(g.vocab.offsets[grp], g.vocab.offsets[grp + 1]);
        const t0 = responseOffsets[groupOffsets[grp]];
        const t1 = responseOffsets[groupOffsets[grp + 1]];
        for (let tok = t0; tok < t1; tok++) {
          const z = Array.from(x.subarray(tok * v, (tok + 1) * v), (value) => value / t);
          const m = Math.max(...z);
          const fullLse = m + Math.log(z.reduce((s, value) => s + Math.exp(value - m), 0));
          // A token's own column holds its probability, exp(logprob).
          own.push(probs[expected.length + g.vocab.tokenColumn[tok]]);
          ownExpected.push(Math.exp(logprobs[tok]));
          for (const c of cols) {
            expected.push(Math.exp(z[c] - lse[tok]));
            exact.push(Math.exp(z[c] - fullLse));
          }
        }
      }
      expect(out.shape).toEqual([expected.length]);
      expectWithinUlp(Float64Array.from(probs), Float64Array.from(expected), 'f32', 'probs');
      expectClose(probs, exact, { rtol: GATHER_VS_F64_RTOL, what: 'probs vs f64 softmax' });
      expectClose(own, ownExpected, { rtol: GATHER_VS_F64_RTOL, what: 'probs at own token vs exp(logprob)' });
    },
  );

  it('errors: LAYOUT (offsets length, offsets vs columns, layout vs rows), RANGE (columns), DTYPE (vocab)', async () => {
    const g = makeGatherCase({ seed: 71, responseLengths, groupSizes, vocab: 50 });
    const logits = ctx.tensor(g.logits as Float32Array, [g.numTokens, 50], 'f32');
    const { lse } = await ctx.logprobs(logits, g.tokens);
    const { offsets, columns, tokenColumn } = g.vocab;
    const layout = g.layout;
    await expectFail(
      ctx.gatherProbs(logits, lse, {
        layout,
        vocab: { offsets: offsets.subarray(1), columns, tokenColumn } as never,
      }),
      'LAYOUT',
      'vocab.offsets',
      /expected 6 offsets/,
    );
    await expectFail(
      ctx.gatherProbs(logits, lse, {
        layout,
        vocab: { offsets, columns: columns.subarray(1), tokenColumn } as never,
      }),
      'LAYOUT',
      'vocab.offsets',
    );
    const badColumns = columns.slice();
    badColumns[2] = 50;
    await expectFail(
      ctx.gatherProbs(logits, lse, { layout, vocab: { offsets, columns: badColumns, tokenColumn } as never }),
      'RANGE',
      'vocab.columns',
      /columns\[2\] = 50/,
    );
    await expectFail(
      ctx.gatherProbs(logits, lse, {
        layout: layoutFromSizes([3, 0, 5, 2, 0, 4, 2, 0], groupSizes),
        vocab: { offsets, columns, tokenColumn } as never,
      }),
      'LAYOUT',
      'layout.responseOffsets',
    );
    await expectFail(ctx.gatherProbs(logits, lse, { layout } as never), 'DTYPE', 'vocab');
    await expectFail(
      ctx.gatherProbs(logits, lse.shape[0] > 0 ? new Float32Array(3) : lse, {
        layout,
        vocab: g.vocab as never,
      }),
      'SHAPE',
      'lse',
    );
    expect(g.vocab.columns).toEqual(columns);
  });
});

// ---------------------------------------------------------------- validation

describe('validation', () => {
  const c = makeLogprobsCase({ seed: 90, rows: 3, vocab: 8 });
  const logits = () => upload(c);

  it('SHAPE: logits rank, plain logits, empty vocabulary, targets/lse/gradLogprobs lengths, disposed', async () => {
    await expectFail(
      ctx.logprobs(ctx.tensor(new Float32Array(8)) as never, new Int32Array(1)),
      'SHAPE',
      'logits',
    );
    await expectFail(ctx.logprobs(new Float32Array(24) as never, c.targets), 'SHAPE', 'logits');
    await expectFail(
      ctx.logprobs(ctx.tensor(new Float32Array(0), [3, 0], 'f32'), c.targets),
      'SHAPE',
      'logits',
    );
    await expectFail(ctx.logprobs(logits(), new Int32Array(2)), 'SHAPE', 'targets', /\[3\]/);
    await expectFail(
      ctx.logprobsBackward(logits(), c.targets, new Float32Array(4), new Float32Array(3)),
      'SHAPE',
      'lse',
    );
    await expectFail(
      ctx.logprobsBackward(logits(), c.targets, new Float32Array(3), new Float32Array(2)),
      'SHAPE',
      'gradLogprobs',
    );
    const dead = logits();
    dead.dispose();
    await expectFail(ctx.logprobs(dead, c.targets), 'SHAPE', 'logits');
  });

  it('DTYPE: logits dtype, targets/lse types, option types, options object', async () => {
    await expectFail(
      ctx.logprobs(ctx.tensor(new Int32Array(24), [3, 8]) as never, c.targets),
      'DTYPE',
      'logits',
    );
    await expectFail(ctx.logprobs(logits(), new Float32Array(3) as never), 'DTYPE', 'targets');
    await expectFail(ctx.logprobs(logits(), [0, 1, 2] as never), 'DTYPE', 'targets');
    await expectFail(
      ctx.logprobs(logits(), c.targets, { temperature: '1' as never }),
      'DTYPE',
      'temperature',
    );
    await expectFail(
      ctx.logprobs(logits(), c.targets, { ignoreIndex: null as never }),
      'DTYPE',
      'ignoreIndex',
    );
    await expectFail(ctx.logprobs(logits(), c.targets, { entropy: 1 as never }), 'DTYPE', 'entropy');
    await expectFail(
      ctx.logprobs(logits(), c.targets, { sumSquares: 'yes' as never }),
      'DTYPE',
      'sumSquares',
    );
    await expectFail(ctx.logprobs(logits(), c.targets, 5 as never), 'DTYPE', 'options');
    await expectFail(
      ctx.logprobsBackward(logits(), c.targets, new Int32Array(3) as never, new Float32Array(3)),
      'DTYPE',
      'lse',
    );
    await expectFail(
      ctx.logprobsBackward(logits(), c.targets, new Float32Array(3), new Float32Array(3), {
        gradEntropy: new Float32Array(3),
        entropy: new Uint8Array(3) as never,
      }),
      'DTYPE',
      'entropy',
    );
  });

  it('RANGE: temperature, ignoreIndex, targets outside [0, V)', async () => {
    for (const t of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
      await expectFail(ctx.logprobs(logits(), c.targets, { temperature: t }), 'RANGE', 'temperature');
      await expectFail(
        ctx.logprobsBackward(logits(), c.targets, new Float32Array(3), new Float32Array(3), {
          temperature: t,
        }),
        'RANGE',
        'temperature',
      );
    }
    await expectFail(ctx.logprobs(logits(), c.targets, { ignoreIndex: 1.5 }), 'RANGE', 'ignoreIndex');
    await expectFail(
      ctx.logprobs(logits(), Int32Array.from([0, 8, 1])),
      'RANGE',
      'targets',
      /targets\[1\] = 8/,
    );
    await expectFail(
      ctx.logprobs(logits(), i32(Int32Array.from([0, 1, -1]))),
      'RANGE',
      'targets',
      /targets\[2\] = -1/,
    );
    await expectFail(
      ctx.logprobsBackward(
        logits(),
        Int32Array.from([-100, 1, -5]),
        new Float32Array(3),
        new Float32Array(3),
      ),
      'RANGE',
      'targets',
    );
    // ignoreIndex itself is fine even though it is outside [0, V).
    await expect(ctx.logprobs(logits(), Int32Array.from([-100, 7, 0]))).resolves.toBeDefined();
  });
});
