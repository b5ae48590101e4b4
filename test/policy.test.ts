/**
 * policyLoss's API: typed errors for bad input (src/api/validate.ts's rule: a wrong type is DTYPE, a
 * value out of range RANGE, only undefined takes a default; lengths that disagree are SHAPE, offsets
 * LAYOUT), readPolicyStats, and on webgpu that the op queues without a wait, Tensor mask included.
 * The numbers themselves are the case table's (test/cases/policy.ts).
 */
import { describe, expect, it } from 'vitest';
import type { PolicyLossInputs, PolicyLossOptions } from '../src/api/policy.js';
import { POLICY_STATS } from '../src/backends/backend.js';
import { createContext, GrpoKernelsError, readPolicyStats } from '../src/index.js';
import { makeData } from './cases/policy.js';
import { gpu, noGpu } from './webgpu/setup.js';

const ctx = await createContext({ backend: 'js' });
const d = makeData({ seed: 7, lengths: [3, 0, 5], maskP: 0.2, ent: true, ref: true, roll: true });
const inputs: PolicyLossInputs = {
  logprobs: d.lp,
  oldLogprobs: d.old,
  advantages: d.adv,
  layout: { responseOffsets: d.offsets },
};

async function error(inp: unknown, options?: unknown): Promise<GrpoKernelsError> {
  try {
    await ctx.policyLoss(inp as PolicyLossInputs, options as PolicyLossOptions);
  } catch (e) {
    expect(e).toBeInstanceOf(GrpoKernelsError);
    return e as GrpoKernelsError;
  }
  throw new Error('expected an error');
}

describe('policyLoss: typed errors before any kernel runs', () => {
  const cases: [string, unknown, unknown, string, RegExp][] = [
    ['inputs not an object', 5, undefined, 'DTYPE', /^inputs: /],
    ['an unknown input', { ...inputs, logprob: d.lp }, undefined, 'DTYPE', /^inputs\.logprob: unknown/],
    ['an unknown option', inputs, { clipp: 0.2 }, 'DTYPE', /^options\.clipp: unknown option/],
    ['options not an object', inputs, 'ppo', 'DTYPE', /^options: /],
    [
      'logprobs of the wrong dtype',
      { ...inputs, logprobs: Float64Array.from(d.lp) },
      undefined,
      'DTYPE',
      /^logprobs: /,
    ],
    [
      'lengths that disagree',
      { ...inputs, oldLogprobs: d.old.subarray(1) },
      undefined,
      'SHAPE',
      /^oldLogprobs: /,
    ],
    [
      'offsets that do not end at T',
      { ...inputs, layout: { responseOffsets: new Int32Array([0, 3]) } },
      undefined,
      'LAYOUT',
      /^layout\.responseOffsets: /,
    ],
    [
      'offsets that decrease',
      { ...inputs, layout: { responseOffsets: new Int32Array([0, 5, 3, 8]) } },
      undefined,
      'LAYOUT',
      /non-decreasing/,
    ],
    [
      'groupOffsets that disagree',
      { ...inputs, layout: { responseOffsets: d.offsets, groupOffsets: new Int32Array([0, 2]) } },
      undefined,
      'LAYOUT',
      /groupOffsets/,
    ],
    ['no layout', { ...inputs, layout: undefined }, undefined, 'LAYOUT', /^layout: /],
    ['a mask of the wrong dtype', { ...inputs, mask: new Float32Array(8) }, undefined, 'DTYPE', /^mask: /],
    ['an unknown loss', inputs, { loss: 'grpo' }, 'RANGE', /^loss: expected one of 'ppo'/],
    ['an unknown preset', inputs, { preset: 'deepspeed' }, 'RANGE', /^preset: /],
    ['clipLow 0', inputs, { clipLow: 0 }, 'RANGE', /^clipLow: expected a finite number in \(0, ∞\), got 0/],
    ['clipLow negative', inputs, { clipLow: -0.2 }, 'RANGE', /^clipLow: /],
    ['clipHigh NaN', inputs, { clipHigh: Number.NaN }, 'RANGE', /^clipHigh: .*got NaN/],
    ['clipHigh a string', inputs, { clipHigh: '0.2' }, 'DTYPE', /^clipHigh: expected a number/],
    ['dualClip 1', inputs, { dualClip: 1 }, 'RANGE', /^dualClip: /],
    ['dualClip "on"', inputs, { dualClip: 'on' }, 'RANGE', /^dualClip: expected a number or 'off'/],
    [
      'dualClip with gspo',
      inputs,
      { loss: 'gspo', dualClip: 3 },
      'RANGE',
      /^dualClip: loss 'gspo' does not use it/,
    ],
    [
      'clipLow with reinforce',
      inputs,
      { loss: 'reinforce', clipLow: 0.2 },
      'RANGE',
      /^clipLow: loss 'reinforce'/,
    ],
    ['sapoTau with ppo', inputs, { sapoTau: { pos: 1 } }, 'RANGE', /^sapoTau: /],
    ['sapoTau.neg 0', inputs, { loss: 'sapo', sapoTau: { neg: 0 } }, 'RANGE', /^sapoTau\.neg: /],
    ['vespo with ppo', inputs, { vespo: { kPos: 1 } }, 'RANGE', /^vespo: loss 'ppo' does not use it/],
    ['vespo.lambdaNeg 0', inputs, { loss: 'vespo', vespo: { lambdaNeg: 0 } }, 'RANGE', /^vespo\.lambdaNeg: /],
    ['vespo.kPos Infinity', inputs, { loss: 'vespo', vespo: { kPos: Infinity } }, 'RANGE', /^vespo\.kPos: /],
    [
      'vespo with a misspelt key',
      inputs,
      { loss: 'vespo', vespo: { kpos: 1 } },
      'DTYPE',
      /^vespo\.kpos: unknown option/,
    ],
    ['clipLow with vespo', inputs, { loss: 'vespo', clipLow: 0.2 }, 'RANGE', /^clipLow: loss 'vespo'/],
    [
      'vespo with sequence-level rollout correction',
      { ...inputs, rolloutLogprobs: d.roll },
      { loss: 'vespo', rolloutCorrection: { level: 'sequence' } },
      'RANGE',
      /^rolloutCorrection\.level: loss 'vespo' folds token-level weights/,
    ],
    [
      "vespo under preset 'trl' (whose rollout level defaults to 'sequence')",
      { ...inputs, rolloutLogprobs: d.roll },
      { loss: 'vespo', preset: 'trl', rolloutCorrection: {} },
      'RANGE',
      /^rolloutCorrection\.level: .*the preset default/,
    ],
    [
      'vespo with normalised rollout weights',
      { ...inputs, rolloutLogprobs: d.roll },
      { loss: 'vespo', rolloutCorrection: { normalize: true } },
      'RANGE',
      /^rolloutCorrection\.normalize: loss 'vespo'/,
    ],
    ['logRatioClamp with gmpo', inputs, { loss: 'gmpo', logRatioClamp: 20 }, 'RANGE', /^logRatioClamp: /],
    ['dualClip with gmpo', inputs, { loss: 'gmpo', dualClip: 3 }, 'RANGE', /^dualClip: /],
    ['logRatioClamp with gspo', inputs, { loss: 'gspo', logRatioClamp: 20 }, 'RANGE', /^logRatioClamp: /],
    ['delta 0', inputs, { delta: 0 }, 'RANGE', /^delta: /],
    [
      'kl.coef NaN',
      { ...inputs, refLogprobs: d.ref },
      { kl: { coef: Number.NaN } },
      'RANGE',
      /^kl\.coef: .*got NaN/,
    ],
    [
      'kl.coef missing',
      { ...inputs, refLogprobs: d.ref },
      { kl: {} },
      'DTYPE',
      /^kl\.coef: expected a number, got undefined/,
    ],
    ['kl.coef negative', { ...inputs, refLogprobs: d.ref }, { kl: { coef: -1 } }, 'RANGE', /^kl\.coef: /],
    [
      'an unknown kl key',
      { ...inputs, refLogprobs: d.ref },
      { kl: { coef: 1, beta: 1 } },
      'DTYPE',
      /^kl\.beta: unknown/,
    ],
    [
      'an unknown estimator',
      { ...inputs, refLogprobs: d.ref },
      { kl: { coef: 1, estimator: 'k4' } },
      'RANGE',
      /^kl\.estimator: /,
    ],
    [
      'kl without refLogprobs',
      inputs,
      { kl: { coef: 0.1 } },
      'DTYPE',
      /^refLogprobs: required by options\.kl/,
    ],
    [
      'refLogprobs without kl',
      { ...inputs, refLogprobs: d.ref },
      undefined,
      'RANGE',
      /^refLogprobs: given without options\.kl/,
    ],
    [
      'entropyCoef NaN',
      { ...inputs, entropy: d.ent },
      { entropyCoef: Number.NaN },
      'RANGE',
      /^entropyCoef: /,
    ],
    [
      'entropyCoef without entropy',
      inputs,
      { entropyCoef: 0.1 },
      'DTYPE',
      /^entropy: required by options\.entropyCoef/,
    ],
    [
      'rollout without rolloutLogprobs',
      inputs,
      { rolloutCorrection: {} },
      'DTYPE',
      /^rolloutLogprobs: required/,
    ],
    [
      'rolloutLogprobs without rollout',
      { ...inputs, rolloutLogprobs: d.roll },
      undefined,
      'RANGE',
      /^rolloutLogprobs: given without/,
    ],
    [
      'rollout lower ≥ upper',
      { ...inputs, rolloutLogprobs: d.roll },
      { rolloutCorrection: { lower: 2, upper: 2 } },
      'RANGE',
      /^rolloutCorrection\.lower: expected a value below upper/,
    ],
    [
      'rollout upper 0',
      { ...inputs, rolloutLogprobs: d.roll },
      { rolloutCorrection: { upper: 0 } },
      'RANGE',
      /^rolloutCorrection\.upper: /,
    ],
    [
      'an unknown rollout mode',
      { ...inputs, rolloutLogprobs: d.roll },
      { rolloutCorrection: { mode: 'clip' } },
      'RANGE',
      /^rolloutCorrection\.mode: /,
    ],
    [
      'rollout normalize a number',
      { ...inputs, rolloutLogprobs: d.roll },
      { rolloutCorrection: { normalize: 1 } },
      'DTYPE',
      /^rolloutCorrection\.normalize: expected a boolean/,
    ],
    [
      'sequence-mask at sequence level',
      { ...inputs, rolloutLogprobs: d.roll },
      { rolloutCorrection: { mode: 'sequence-mask', level: 'sequence' } },
      'RANGE',
      /^rolloutCorrection\.level: mode 'sequence-mask' applies token weights/,
    ],
    [
      'sequence-mask under preset trl (its default level is sequence)',
      { ...inputs, rolloutLogprobs: d.roll },
      { preset: 'trl', rolloutCorrection: { mode: 'sequence-mask' } },
      'RANGE',
      /^rolloutCorrection\.level: .*got "sequence" \(the preset default\)/,
    ],
    [
      'kl.biasCorrection with gspo',
      { ...inputs, refLogprobs: d.ref },
      { loss: 'gspo', kl: { coef: 0.1, biasCorrection: true } },
      'RANGE',
      /^kl\.biasCorrection: multiplies the KL by a token's ratio, which loss 'gspo' does not have/,
    ],
    [
      'kl.biasCorrection with gmpo',
      { ...inputs, refLogprobs: d.ref },
      { loss: 'gmpo', kl: { coef: 0.1, biasCorrection: true } },
      'RANGE',
      /^kl\.biasCorrection: .*'gmpo'/,
    ],
    [
      'kl.biasCorrection a number',
      { ...inputs, refLogprobs: d.ref },
      { kl: { coef: 0.1, biasCorrection: 1 } },
      'DTYPE',
      /^kl\.biasCorrection: expected a boolean/,
    ],
    [
      'offPolicyMask a number',
      inputs,
      { offPolicyMask: 0.5 },
      'DTYPE',
      /^offPolicyMask: expected an options object/,
    ],
    [
      'offPolicyMask without a threshold',
      inputs,
      { offPolicyMask: {} },
      'DTYPE',
      /^offPolicyMask\.threshold: expected a number, got undefined/,
    ],
    [
      'offPolicyMask threshold NaN',
      inputs,
      { offPolicyMask: { threshold: Number.NaN } },
      'RANGE',
      /^offPolicyMask\.threshold: .*got NaN/,
    ],
    [
      'offPolicyMask threshold past f32',
      inputs,
      { offPolicyMask: { threshold: 1e39 } },
      'RANGE',
      /^offPolicyMask\.threshold: /,
    ],
    [
      'an unknown offPolicyMask key',
      inputs,
      { offPolicyMask: { threshold: 0.5, delta: 1 } },
      'DTYPE',
      /^offPolicyMask\.delta: unknown/,
    ],
    ['an unknown aggregation', inputs, { aggregation: 'seq-sum' }, 'RANGE', /^aggregation: /],
    ['scaleFactor with token-mean', inputs, { scaleFactor: 10 }, 'RANGE', /^scaleFactor: only aggregation/],
    [
      'scaleFactor 0',
      inputs,
      { aggregation: 'seq-mean-token-sum-norm', scaleFactor: 0 },
      'RANGE',
      /^scaleFactor: /,
    ],
    [
      'seq-mean-token-sum-norm without a scale factor under trl',
      inputs,
      { preset: 'trl', aggregation: 'seq-mean-token-sum-norm' },
      'RANGE',
      /^scaleFactor: required by aggregation 'seq-mean-token-sum-norm' under preset 'trl'/,
    ],
    ['globalTokens 0', inputs, { globalTokens: 0 }, 'RANGE', /^globalTokens: /],
    [
      'globalSequences 2.5',
      inputs,
      { globalSequences: 2.5 },
      'RANGE',
      /^globalSequences: expected an integer/,
    ],
    ['ranks null', inputs, { ranks: null }, 'DTYPE', /^ranks: expected a number, got null/],
    ['tokenLoss a string', inputs, { tokenLoss: 'yes' }, 'DTYPE', /^tokenLoss: expected a boolean/],
  ];
  for (const [name, inp, options, code, message] of cases) {
    it(name, async () => {
      const e = await error(inp, options);
      expect(e.code, e.message).toBe(code);
      expect(e.message).toMatch(message);
    });
  }

  it('rolloutLogprobs may come with offPolicyMask alone (the sampler log-probs of its κ)', async () => {
    const r = await ctx.policyLoss(
      { ...inputs, rolloutLogprobs: d.roll },
      { offPolicyMask: { threshold: 0.1 } },
    );
    expect(Number.isFinite((await r.loss.read())[0])).toBe(true);
  });
  it('seq-mean-token-sum-norm has a default scale factor without a preset (the longest response)', async () => {
    const r = await ctx.policyLoss(inputs, { aggregation: 'seq-mean-token-sum-norm' });
    expect(Number.isFinite((await r.loss.read())[0])).toBe(true);
  });
});

describe('readPolicyStats', () => {
  it('names every entry of the stats tensor, NaN for what was not computed', async () => {
    const r = await ctx.policyLoss({ ...inputs, mask: d.mask }, { loss: 'ppo' });
    const s = await readPolicyStats(r.stats);
    expect(Object.keys(s)).toEqual([...POLICY_STATS]);
    expect(s.tokens).toBe(Array.from(d.mask!).filter((m) => m !== 0).length);
    expect(s.sequences).toBeLessThanOrEqual(2);
    expect(Number.isNaN(s.klMean)).toBe(true);
    expect(Number.isNaN(s.rolloutEss)).toBe(true);
    expect(s.ratioMin).toBeLessThanOrEqual(s.ratioMax);
  });
});

describe.skipIf(noGpu)('webgpu: policyLoss queues without a wait', () => {
  it('host and device scales, a Tensor mask: no host wait until read()', async () => {
    const { ctx: g, backend } = gpu!;
    const big = makeData({
      seed: 8,
      lengths: Array.from({ length: 300 }, (_, i) => i % 17),
      maskP: 0.1,
      ent: true,
      roll: true,
    });
    const t = (a: Float32Array) => g.tensor(a);
    const mask = g.tensor(big.mask!);
    await g.synchronize();
    const before = backend.kit.rt.waits;
    const results = [];
    for (const options of [
      {},
      { rolloutCorrection: { normalize: true } },
      { aggregation: 'seq-mean-token-mean' },
    ] as PolicyLossOptions[]) {
      results.push(
        await g.policyLoss(
          {
            logprobs: t(big.lp),
            oldLogprobs: t(big.old),
            advantages: t(big.adv),
            entropy: t(big.ent!),
            rolloutLogprobs: options.rolloutCorrection ? t(big.roll!) : undefined,
            mask,
            layout: { responseOffsets: big.offsets },
          },
          { ...options, entropyCoef: 0.01 },
        ),
      );
    }
    expect(backend.kit.rt.waits - before, 'host waits while queueing').toBe(0);
    for (const r of results) expect(Number.isFinite((await r.loss.read())[0])).toBe(true);
  });
});
