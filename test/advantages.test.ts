/**
 * The advantages family of the cpu reference beyond the case tables: the numerical cases (every
 * estimator, preset, convention and grouping, the offset rewards, NaN and ±Inf, parity with verl, TRL
 * and OpenRLHF, expandToTokens, whiten) run on every backend from test/cases/advantages.ts
 * (test/advantages.cases.test.ts here, test/cuda/ops-cases.test.ts on cuda). Here: the control that
 * shows the offset cases have teeth, determinism, untouched inputs, and the typed errors.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import {
  type AdvantagesOptions,
  type Context,
  createContext,
  ESTIMATORS,
  GrpoKernelsError,
} from '../src/index.js';
import {
  type AdvantagesCase,
  type AdvantagesOut,
  makeAdvantagesCase,
  raggedGroupSizes,
  readAdvantages,
} from './fixtures/advantages.js';

let ctx: Context;
beforeAll(async () => {
  ctx = await createContext({ backend: 'js' });
});

/** ctx.advantages on the cpu context, read back. */
const run = (rewards: Float32Array, options: AdvantagesOptions): Promise<AdvantagesOut> =>
  readAdvantages(ctx, rewards, options);

// ------------------------------------------------------------------ float64 helpers
function sum(xs: readonly number[]): number {
  let s = 0;
  for (const x of xs) s += x;
  return s;
}
function meanOf(xs: readonly number[]): number {
  return sum(xs) / xs.length;
}
/** Two-pass standard deviation with divisor n − ddof. */
function stdOf(xs: readonly number[], ddof: number): number {
  const m = meanOf(xs);
  return Math.sqrt(sum(xs.map((x) => (x - m) ** 2)) / (xs.length - ddof));
}

function layoutOptions(c: AdvantagesCase, fixed?: number): AdvantagesOptions {
  return fixed === undefined
    ? { groupOffsets: c.groupOffsets, responseOffsets: c.responseOffsets }
    : { groupSize: fixed, responseOffsets: c.responseOffsets };
}

describe('advantages: numerics', () => {
  // The offset-rewards cases themselves run on every backend from test/cases/advantages.ts. This is
  // the control that shows those cases have teeth: on the same data the one-pass formula fails.
  it('1e6 + small noise: E[r²] − E[r]² is visibly wrong (in f64, hopeless in f32), so the offset cases test two-pass variance', async () => {
    const c = makeAdvantagesCase({ seed: 21, groupSizes: new Array(64).fill(16), rewards: 'offset' });
    let worst = 0;
    for (let g = 0; g < 64; g++) {
      const xs = Array.from(c.rewards.subarray(16 * g, 16 * g + 16));
      const m = meanOf(xs);
      const naiveVar = ((sum(xs.map((x) => x * x)) / 16 - m * m) * 16) / 15;
      const trueStd = stdOf(xs, 1);
      worst = Math.max(worst, Math.abs(Math.sqrt(Math.max(naiveVar, 0)) - trueStd) / trueStd);
    }
    expect(worst).toBeGreaterThan(1e-4);
    // In f32 arithmetic (as a GPU would run it) the one-pass formula is hopeless: r² ≈ 1e12 has an
    // f32 spacing of 65536, while var ≈ 0.06.
    const f = Math.fround;
    const xs = Array.from(c.rewards.subarray(0, 16));
    let s1 = 0;
    let s2 = 0;
    for (const x of xs) {
      s1 = f(s1 + x);
      s2 = f(s2 + f(x * x));
    }
    const m32 = f(s1 / 16);
    const naive32 = f(f(s2 / 16) - f(m32 * m32));
    const trueVar = stdOf(xs, 0) ** 2;
    expect(Math.abs(naive32 - trueVar) / trueVar).toBeGreaterThan(10);
  });

  it('is deterministic: the same inputs give the same bits', async () => {
    const c = makeAdvantagesCase({ seed: 31, groupSizes: raggedGroupSizes(31, 5000) });
    for (const estimator of ESTIMATORS.filter((e) => e !== 'grpo_passk')) {
      const a = await run(c.rewards, { ...layoutOptions(c), estimator });
      const b = await run(c.rewards, { ...layoutOptions(c), estimator });
      expect(Buffer.from(a.adv.buffer).equals(Buffer.from(b.adv.buffer))).toBe(true);
    }
  });
});

// ------------------------------------------------------------------ inputs, errors
describe('advantages family: inputs untouched', () => {
  it('never modifies its inputs (host arrays and tensors)', async () => {
    const c = makeAdvantagesCase({ seed: 93, groupSizes: [4, 1, 3, 3] });
    const copies = [c.rewards.slice(), c.groupOffsets.slice(), c.responseOffsets.slice()];
    const t = ctx.tensor(c.rewards.slice(), [c.numResponses], 'f32');
    for (const estimator of ESTIMATORS.filter((e) => e !== 'grpo_passk')) {
      await run(c.rewards, { ...layoutOptions(c), estimator, preset: 'verl' });
      const o = await ctx.advantages(t, { ...layoutOptions(c), estimator });
      o.advantages.dispose();
    }
    await ctx.expandToTokens(t, c.responseOffsets);
    const mask = new Uint8Array(c.numResponses).fill(1);
    await ctx.whiten(t, { mask, preset: 'verl' });
    expect([c.rewards, c.groupOffsets, c.responseOffsets]).toEqual(copies);
    expect(await t.read()).toEqual(copies[0]);
    expect(Array.from(mask).every((m) => m === 1)).toBe(true);
  });
});

describe('advantages family: typed errors', () => {
  const expectError = async (p: () => Promise<unknown>, code: string, argument: string) => {
    let err: unknown;
    try {
      await p();
    } catch (e) {
      err = e;
    }
    expect(err, `expected ${code} on ${argument}`).toBeInstanceOf(GrpoKernelsError);
    const ge = err as GrpoKernelsError;
    expect([ge.code, ge.argument]).toEqual([code, argument]);
    expect(ge.message.startsWith(argument)).toBe(true);
  };
  const r4 = new Float32Array([1, 0, 1, 0]);
  const go = new Int32Array([0, 2, 4]);
  const ro = new Int32Array([0, 1, 2, 3, 4]);

  it('rewards: dtype, shape, disposed', async () => {
    await expectError(() => ctx.advantages(new Int32Array(4) as never, { groupSize: 2 }), 'DTYPE', 'rewards');
    await expectError(() => ctx.advantages(3 as never, { groupSize: 2 }), 'DTYPE', 'rewards');
    await expectError(
      () => ctx.advantages(ctx.tensor(new Float32Array(4), [2, 2], 'f32'), { groupSize: 2 }),
      'SHAPE',
      'rewards',
    );
    const d = ctx.tensor(r4.slice(), [4], 'f32');
    d.dispose();
    await expectError(() => ctx.advantages(d, { groupSize: 2 }), 'SHAPE', 'rewards');
    await expectError(() => ctx.advantages(r4, null as never), 'DTYPE', 'options');
  });

  it('layout: groupOffsets / groupSize / responseOffsets', async () => {
    await expectError(() => ctx.advantages(r4, {}), 'LAYOUT', 'groupOffsets');
    await expectError(() => ctx.advantages(r4, { groupOffsets: go, groupSize: 2 }), 'LAYOUT', 'groupOffsets');
    await expectError(
      () => ctx.advantages(r4, { groupOffsets: new Int32Array([1, 4]) }),
      'LAYOUT',
      'groupOffsets',
    );
    await expectError(
      () => ctx.advantages(r4, { groupOffsets: new Int32Array([0, 3, 2, 4]) }),
      'LAYOUT',
      'groupOffsets',
    );
    // A group with more responses than exist.
    await expectError(
      () => ctx.advantages(r4, { groupOffsets: new Int32Array([0, 2, 5]) }),
      'LAYOUT',
      'groupOffsets',
    );
    await expectError(
      () => ctx.advantages(r4, { groupOffsets: new Int32Array([0, 2]) }),
      'LAYOUT',
      'groupOffsets',
    );
    await expectError(
      () => ctx.advantages(r4, { groupOffsets: new Float32Array([0, 4]) as never }),
      'DTYPE',
      'groupOffsets',
    );
    await expectError(() => ctx.advantages(r4, { groupSize: 0 }), 'RANGE', 'groupSize');
    await expectError(() => ctx.advantages(r4, { groupSize: 1.5 }), 'RANGE', 'groupSize');
    await expectError(() => ctx.advantages(r4, { groupSize: 3 }), 'LAYOUT', 'groupSize');
    await expectError(() => ctx.advantages(r4, { groupSize: 8 }), 'LAYOUT', 'groupSize');
    for (const estimator of ['opo', 'reinforce_pp_baseline'] as const)
      await expectError(
        () => ctx.advantages(r4, { groupOffsets: go, estimator }),
        'LAYOUT',
        'responseOffsets',
      );
    await expectError(
      () =>
        ctx.advantages(r4, {
          groupOffsets: go,
          estimator: 'opo',
          responseOffsets: new Int32Array([0, 1, 2, 3]),
        }),
      'LAYOUT',
      'responseOffsets',
    );
    await expectError(
      () => ctx.advantages(r4, { groupOffsets: go, responseOffsets: new Int32Array([0, 2, 1, 3, 4]) }),
      'LAYOUT',
      'responseOffsets',
    );
    await expectError(
      () => ctx.advantages(r4, { groupOffsets: new Int32Array([0, 1, 4]), estimator: 'grpo_passk' }),
      'LAYOUT',
      'groupOffsets',
    );
    await expectError(
      () => ctx.advantages(r4, { groupSize: 1, estimator: 'grpo_passk' }),
      'LAYOUT',
      'groupSize',
    );
  });

  it('ranges and enums', async () => {
    for (const eps of [-1e-6, Number.NaN, Number.POSITIVE_INFINITY])
      await expectError(() => ctx.advantages(r4, { groupOffsets: go, eps: eps as never }), 'RANGE', 'eps');
    // One rule for every option: a wrong type is DTYPE (naming the type), not RANGE.
    for (const eps of ['1e-6', null])
      await expectError(() => ctx.advantages(r4, { groupOffsets: go, eps: eps as never }), 'DTYPE', 'eps');
    const enums: [keyof AdvantagesOptions, string][] = [
      ['estimator', 'ppo'],
      ['preset', 'openrlhf2'],
      ['std', 'biased'],
      ['scale', 'token'],
      ['singleton', 'drop'],
    ];
    for (const [key, bad] of enums)
      await expectError(() => ctx.advantages(r4, { groupOffsets: go, [key]: bad }), 'RANGE', key);
    // The ok path of the same inputs, so the errors above are the options' fault.
    await expect(ctx.advantages(r4, { groupOffsets: go, responseOffsets: ro })).resolves.toBeDefined();
  });

  it('expandToTokens and whiten arguments', async () => {
    await expectError(() => ctx.expandToTokens(new Int32Array(4) as never, ro), 'DTYPE', 'values');
    await expectError(() => ctx.expandToTokens(r4, new Int32Array([0, 1, 2])), 'LAYOUT', 'responseOffsets');
    await expectError(() => ctx.expandToTokens(r4, [0, 1, 2, 3, 4] as never), 'DTYPE', 'responseOffsets');
    await expectError(
      () => ctx.expandToTokens(r4, new Int32Array([0, 1, 2, 1, 4])),
      'LAYOUT',
      'responseOffsets',
    );
    await expectError(() => ctx.whiten(r4, { mask: new Uint8Array(3) }), 'SHAPE', 'mask');
    await expectError(() => ctx.whiten(r4, { mask: new Float32Array(4) as never }), 'DTYPE', 'mask');
    await expectError(() => ctx.whiten(r4, { preset: 'deepspeed' as never }), 'RANGE', 'preset');
    await expectError(() => ctx.whiten(r4, { keepMean: 1 as never }), 'DTYPE', 'keepMean');
    await expectError(() => ctx.whiten(new Uint8Array(4) as never), 'DTYPE', 'values');
    await expectError(() => ctx.whiten(r4, 'verl' as never), 'DTYPE', 'options');
    const v2 = ctx.tensor(new Float32Array(6), [2, 3], 'f32');
    await expectError(() => ctx.whiten(v2, { mask: new Uint8Array(6) }), 'SHAPE', 'mask');
  });
});
