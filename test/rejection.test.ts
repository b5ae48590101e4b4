/**
 * rolloutRejection's API: typed errors for bad input (src/api/validate.ts's rule: a wrong type is DTYPE,
 * a value out of range RANGE; lengths that disagree SHAPE, offsets LAYOUT), verl's option strings read
 * as verl's _parse_rollout_rs_thresholds reads them, readRejectionStats, and the mask as policyLoss's
 * (verl's modified response_mask: the rejected tokens leave the counts). The numbers themselves are the
 * case table's (test/cases/rejection.ts).
 */
import { describe, expect, it } from 'vitest';
import type { RolloutRejectionInputs, RolloutRejectionOptions } from '../src/api/rejection.js';
import { resolveRejectionCriteria } from '../src/api/rejection.js';
import { REJECTION_CRITERION_STATS, REJECTION_STATS } from '../src/backends/backend.js';
import { createContext, GrpoKernelsError, readPolicyStats, readRejectionStats } from '../src/index.js';
import { makeData } from './cases/policy.js';

const ctx = await createContext({ backend: 'js' });
const d = makeData({ seed: 11, lengths: [3, 0, 5, 9], maskP: 0.2, roll: true });
const inputs: RolloutRejectionInputs = {
  logprobs: d.old,
  rolloutLogprobs: d.roll!,
  layout: { responseOffsets: d.offsets },
  mask: d.mask,
};
const k3: RolloutRejectionOptions = { criteria: [{ statistic: 'k3', level: 'token', upper: 0.05 }] };

async function error(inp: unknown, options: unknown): Promise<GrpoKernelsError> {
  try {
    await ctx.rolloutRejection(inp as RolloutRejectionInputs, options as RolloutRejectionOptions);
  } catch (e) {
    expect(e).toBeInstanceOf(GrpoKernelsError);
    return e as GrpoKernelsError;
  }
  throw new Error('expected an error');
}

describe('rolloutRejection: typed errors before any kernel runs', () => {
  const crit = (c: object) => ({ criteria: [c] });
  const cases: [string, unknown, unknown, string, RegExp][] = [
    ['inputs not an object', 5, k3, 'DTYPE', /^inputs: /],
    ['an unknown input', { ...inputs, oldLogprobs: d.old }, k3, 'DTYPE', /^inputs\.oldLogprobs: unknown/],
    ['no options', inputs, undefined, 'DTYPE', /^options: /],
    ['an unknown option', inputs, { ...k3, level: 'token' }, 'DTYPE', /^options\.level: unknown option/],
    ['criteria not an array', inputs, { criteria: { statistic: 'k3' } }, 'DTYPE', /^criteria: /],
    ['no criterion', inputs, { criteria: [] }, 'RANGE', /^criteria: expected 1 to 11 criteria, got 0/],
    [
      'an unknown statistic',
      inputs,
      crit({ statistic: 'k4', level: 'token', upper: 1 }),
      'RANGE',
      /^criteria\[0\]\.statistic: /,
    ],
    [
      'an unknown level',
      inputs,
      crit({ statistic: 'k2', level: 'seq_sum', upper: 1 }),
      'RANGE',
      /^criteria\[0\]\.level: /,
    ],
    [
      'seq-max with k1',
      inputs,
      crit({ statistic: 'k1', level: 'seq-max', upper: 2 }),
      'RANGE',
      /no seq_max_k1/,
    ],
    [
      'upper 0',
      inputs,
      crit({ statistic: 'k2', level: 'token', upper: 0 }),
      'RANGE',
      /^criteria\[0\]\.upper: /,
    ],
    [
      'upper NaN',
      inputs,
      crit({ statistic: 'k2', level: 'token', upper: Number.NaN }),
      'RANGE',
      /^criteria\[0\]\.upper: /,
    ],
    [
      'upper a string',
      inputs,
      crit({ statistic: 'k2', level: 'token', upper: '1' }),
      'DTYPE',
      /^criteria\[0\]\.upper: /,
    ],
    ['no upper', inputs, crit({ statistic: 'k2', level: 'token' }), 'DTYPE', /^criteria\[0\]\.upper: /],
    [
      'lower with k3',
      inputs,
      crit({ statistic: 'k3', level: 'token', lower: 0.1, upper: 1 }),
      'RANGE',
      /^criteria\[0\]\.lower: only k1/,
    ],
    [
      'k1 lower above upper',
      inputs,
      crit({ statistic: 'k1', level: 'token', lower: 2, upper: 1.5 }),
      'RANGE',
      /^criteria\[0\]\.lower: expected lower ≤ upper/,
    ],
    [
      'k1 upper below 1 (lower 1/U above it)',
      inputs,
      crit({ statistic: 'k1', level: 'token', upper: 0.5 }),
      'RANGE',
      /the default 1\/upper/,
    ],
    [
      'a misspelt key',
      inputs,
      crit({ statistic: 'k2', level: 'token', uper: 1 }),
      'DTYPE',
      /^criteria\[0\]\.uper: unknown option/,
    ],
    [
      'a criterion twice',
      inputs,
      {
        criteria: [
          { statistic: 'k2', level: 'token', upper: 1 },
          { statistic: 'k2', level: 'token', upper: 2 },
        ],
      },
      'RANGE',
      /^criteria\[1\]: \(k2, token\) given twice/,
    ],
    [
      'an unknown verl option',
      inputs,
      { criteria: 'token_k4', thresholds: 1 },
      'RANGE',
      /^criteria: unknown option "token_k4"/,
    ],
    [
      'verl seq_max_k1',
      inputs,
      { criteria: 'seq_max_k1', thresholds: 1 },
      'RANGE',
      /^criteria: unknown option/,
    ],
    ['a verl string without thresholds', inputs, { criteria: 'token_k2' }, 'DTYPE', /^thresholds: required/],
    [
      'thresholds with objects',
      inputs,
      { ...k3, thresholds: 2 },
      'RANGE',
      /^thresholds: only a string criteria/,
    ],
    [
      'two thresholds for three options',
      inputs,
      { criteria: 'token_k1,token_k2,seq_max_k3', thresholds: '2,1' },
      'RANGE',
      /^thresholds: expected one threshold for all options or 3/,
    ],
    ["'_' with a k2 option", inputs, { criteria: 'token_k2', thresholds: '0.1_1' }, 'RANGE', /without '_'/],
    [
      'a negative threshold',
      inputs,
      { criteria: 'token_k2', thresholds: '-1' },
      'RANGE',
      /^thresholds: expected a number > 0/,
    ],
    [
      'a threshold that is no number',
      inputs,
      { criteria: 'token_k2', thresholds: '1e' },
      'RANGE',
      /^thresholds: /,
    ],
    ['thresholds an array', inputs, { criteria: 'token_k2', thresholds: [1] }, 'DTYPE', /^thresholds: /],
    [
      'logprobs of the wrong dtype',
      { ...inputs, logprobs: Float64Array.from(d.old) },
      k3,
      'DTYPE',
      /^logprobs: /,
    ],
    [
      'lengths that disagree',
      { ...inputs, rolloutLogprobs: d.roll!.subarray(1) },
      k3,
      'SHAPE',
      /^rolloutLogprobs: /,
    ],
    [
      'a mask of the wrong dtype',
      { ...inputs, mask: new Float32Array(d.old.length) },
      k3,
      'DTYPE',
      /^mask: /,
    ],
    [
      'offsets that do not end at T',
      { ...inputs, layout: { responseOffsets: new Int32Array([0, 3]) } },
      k3,
      'LAYOUT',
      /^layout\.responseOffsets: /,
    ],
    ['no layout', { ...inputs, layout: undefined }, k3, 'LAYOUT', /^layout: /],
  ];
  it.each(cases)('%s', async (_, inp, options, code, message) => {
    const e = await error(inp, options);
    expect(e.code).toBe(code);
    expect(e.message).toMatch(message);
  });
});

describe("verl's option strings", () => {
  it('read as verl reads them: a repeated option once, one threshold for all, k1 lower 1/U by default', () => {
    expect(resolveRejectionCriteria(' token_k1, seq_max_k3 ,token_k1,', '1.25')).toEqual([
      {
        statistic: 'k1',
        level: 'token',
        lower: Math.fround(Math.log(1 / 1.25)),
        upper: Math.fround(Math.log(1.25)),
      },
      { statistic: 'k3', level: 'seq-max', lower: Number.NEGATIVE_INFINITY, upper: Math.fround(1.25) },
    ]);
    expect(resolveRejectionCriteria('seq_sum_k1,seq_mean_k2', '0.5_3,2e-3')).toEqual([
      {
        statistic: 'k1',
        level: 'seq-sum',
        lower: Math.fround(Math.log(0.5)),
        upper: Math.fround(Math.log(3)),
      },
      { statistic: 'k2', level: 'seq-mean', lower: Number.NEGATIVE_INFINITY, upper: Math.fround(2e-3) },
    ]);
    expect(resolveRejectionCriteria('token_k2', 0.02)).toEqual(
      resolveRejectionCriteria([{ statistic: 'k2', level: 'token', upper: 0.02 }], undefined),
    );
  });

  it('give the same mask and stats as the same criteria as objects', async () => {
    const a = await ctx.rolloutRejection(inputs, {
      criteria: 'token_k1,seq_mean_k3',
      thresholds: '0.8_1.3,0.01',
    });
    const b = await ctx.rolloutRejection(inputs, {
      criteria: [
        { statistic: 'k1', level: 'token', lower: 0.8, upper: 1.3 },
        { statistic: 'k3', level: 'seq-mean', upper: 0.01 },
      ],
    });
    expect(await a.mask.read()).toEqual(await b.mask.read());
    expect(await a.stats.read()).toEqual(await b.stats.read());
  });
});

describe('readRejectionStats', () => {
  it('names the overall entries and each criterion’s, in order', async () => {
    const r = await ctx.rolloutRejection(inputs, {
      criteria: [
        { statistic: 'k2', level: 'token', upper: 0.02 },
        { statistic: 'k1', level: 'seq-sum', lower: 0.5, upper: 2 },
      ],
    });
    const s = await readRejectionStats(r.stats);
    expect(Object.keys(s).sort()).toEqual([...REJECTION_STATS, 'criteria'].sort());
    expect(s.criteria.length).toBe(2);
    for (const c of s.criteria) expect(Object.keys(c)).toEqual([...REJECTION_CRITERION_STATS]);
    expect(s.criteria[0].min).toBeLessThanOrEqual(s.criteria[0].max);
    expect(s.criteria[1].fractionLow).toBeGreaterThanOrEqual(0);
  });

  it('refuses a tensor that is not a stats tensor', async () => {
    const t = ctx.tensor(new Float32Array(5));
    await expect(readRejectionStats(t)).rejects.toThrow(/^stats: expected shape \[2 \+ 7·criteria\]/);
  });
});

describe("the mask is policyLoss's (verl's modified response_mask)", () => {
  it('the rejected tokens leave the loss and its counts', async () => {
    const r = await ctx.rolloutRejection(inputs, {
      criteria: [{ statistic: 'k2', level: 'token', upper: 0.05 }],
    });
    const mask = (await r.mask.read()) as Uint8Array;
    const kept = mask.reduce((a, m) => a + m, 0);
    const valid = d.mask!.reduce((a, m) => a + (m !== 0 ? 1 : 0), 0);
    expect(kept).toBeGreaterThan(0);
    expect(kept).toBeLessThan(valid);
    const loss = await ctx.policyLoss({
      logprobs: d.lp,
      oldLogprobs: d.old,
      advantages: d.adv,
      layout: { responseOffsets: d.offsets },
      mask: r.mask,
    });
    expect((await readPolicyStats(loss.stats)).tokens).toBe(kept);
    const grad = await loss.gradLogprobs.read();
    for (let t = 0; t < mask.length; t++) if (mask[t] === 0) expect(grad[t]).toBe(0);
  });
});
