/**
 * The cpu reference's logprobs family beyond the case tables: the numerical cases (every shape, dtype,
 * temperature, special value, ignored row, in place, gatherProbs) run on every backend from
 * test/cases/logprobs.ts (test/logprobs.cases.test.ts here, test/cuda/ops-cases.test.ts on cuda).
 * Here: the backward against central finite differences of the f64 objective (it checks the formula
 * the tables' reference uses), bit-level properties of the cpu kernels, untouched inputs, and errors.
 *
 * Tolerance of the finite-difference check: 1e-6 relative to the largest element. The backward uses
 * the forward's f32 lse and entropy (relative error ≈ |lse|·2⁻²⁴ ≈ 2e-7 here); the differences
 * themselves are accurate to ≈ 1e-10 (h = 1e-5).
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

const FD_RTOL = 1e-6;

const ctx: Context = await createContext({ backend: 'js' });

beforeEach(() => setOutputPoison(POISON_F32));
afterEach(() => setOutputPoison(undefined));

// ---------------------------------------------------------------- the f64 objective (finite differences)

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

function setRow(values: Float32Array, vocab: number, row: number, fill: (j: number) => number) {
  for (let j = 0; j < vocab; j++) values[row * vocab + j] = fill(j);
}

// ---------------------------------------------------------------- forward

describe('logprobs forward: errors, determinism, inputs', () => {
  it('a row of all −Inf logits is a RANGE error naming logits and the row', async () => {
    const c = makeLogprobsCase({ seed: 25, rows: 4, vocab: 20 });
    setRow(c.logits as Float32Array, 20, 2, () => Number.NEGATIVE_INFINITY);
    await expectFail(ctx.logprobs(upload(c), c.targets), 'RANGE', 'logits', /row 2/);
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

describe('logprobsBackward: finite differences, errors, inputs', () => {
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

describe('gatherProbs: errors', () => {
  // Ragged: empty responses, singleton groups, and a group whose responses are all empty.
  const responseLengths = [3, 0, 5, 2, 0, 4, 1, 0];
  const groupSizes = [2, 1, 3, 1, 1];

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
