/**
 * policyLoss's two layouts on webgpu (shaders/policy.wgsl): the flat layout's work split, a batch large
 * enough that the flat layout takes more than one step's tokens per workgroup by itself (T > 1024
 * steps), the test hooks' refusals, and gmpo's and vespo's per-response sums (a response's bits at any
 * chunk size and batch position). The case table (test/cases/policy.ts: "flat and warp paths",
 * "batch invariance") checks both layouts against each other and the reference on small batches.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { PolicyLossOptions } from '../../src/api/policy.js';
import { policyFlatPlan, policyTuning } from '../../src/backends/webgpu/policy.js';
import { GrpoKernelsError } from '../../src/errors.js';
import { firstBitDiff } from '../cases/check.js';
import { concat, makeData, type PolicyData, runPolicy } from '../cases/policy.js';
import { rng } from '../util/rng.js';
import { gpu, noGpu, requireAdapter } from './setup.js';

requireAdapter();

afterEach(() => {
  policyTuning.path = 'auto';
  policyTuning.chunkTokens = 0;
  policyTuning.chunkMultiple = undefined;
});

describe('webgpu policyLoss: the flat layout plan', () => {
  it('tokens per workgroup: the fewest multiple of the step that keeps ≤ 1024 workgroups', () => {
    for (const wg of [64, 256]) {
      const step = 4 * wg;
      for (const T of [0, 1, step - 1, step, step + 1, 1024 * step, 1024 * step + 1, 3_000_001, 2 ** 26]) {
        for (const R of [0, 1, 7, 5000]) {
          const p = policyFlatPlan(T, R, wg);
          expect(p.tokChunk % step, `T ${T}`).toBe(0);
          expect(p.tokChunk).toBeGreaterThan(0);
          expect(p.chunks).toBe(Math.ceil(T / p.tokChunk));
          expect(p.chunks).toBeLessThanOrEqual(1024);
          // One step less per workgroup would need more than 1024 workgroups.
          if (p.tokChunk > step) expect(Math.ceil(T / (p.tokChunk - step))).toBeGreaterThan(1024);
          if (p.chunks > 0) expect(p.chunks * p.respChunk).toBeGreaterThanOrEqual(R);
          else expect(p.respChunk).toBe(0);
        }
      }
    }
    expect(policyFlatPlan(5000, 10, 256, 2048)).toEqual({ tokChunk: 2048, chunks: 3, respChunk: 4 });
  });

  it('chunkTokens must be a positive multiple of the step (RANGE)', () => {
    for (const bad of [1000, 1.5, -1024]) {
      expect(() => policyFlatPlan(5000, 10, 256, bad)).toThrow(GrpoKernelsError);
      try {
        policyFlatPlan(5000, 10, 256, bad);
      } catch (e) {
        expect((e as GrpoKernelsError).code).toBe('RANGE');
        expect((e as GrpoKernelsError).argument).toBe('policyTuning.chunkTokens');
      }
    }
  });
});

describe.skipIf(noGpu)('webgpu policyLoss: flat and response layouts', () => {
  /** Responses of 0..50 tokens up to T ≥ minTokens, every input, a mask. */
  function big(seed: number, minTokens: number): PolicyData {
    const r = rng(seed);
    const lengths: number[] = [];
    let T = 0;
    while (T < minTokens) {
      const n = Math.floor(r() * 51);
      lengths.push(n);
      T += n;
    }
    return makeData({ seed, lengths, maskP: 0.1, ent: true, ref: true, roll: true });
  }

  it('T past 1024 steps (2 steps per workgroup): the response layout’s per-token bits, host and device scales', async () => {
    const { ctx } = gpu!;
    const d = big(7, 1024 * 4 * gpu!.backend.kit.wg + 3001);
    const options: PolicyLossOptions = {
      dualClip: 3,
      kl: { coef: 0.1 },
      entropyCoef: 0.01,
      rolloutCorrection: { mode: 'mask', lower: 0.5 },
      tokenLoss: true,
    };
    const problems: string[] = [];
    for (const deviceMask of [false, true]) {
      const how = { deviceMask };
      policyTuning.path = 'response';
      const resp = await runPolicy(ctx, d, options, how);
      policyTuning.path = 'auto'; // flat-eligible: the flat layout
      const flat = await runPolicy(ctx, d, options, how);
      for (const k of ['gradLogprobs', 'gradEntropy', 'tokenLoss']) {
        const i = firstBitDiff(flat[k].data, resp[k].data);
        if (i >= 0)
          problems.push(`device mask ${deviceMask}: ${k}[${i}] ${flat[k].data[i]} ≠ ${resp[k].data[i]}`);
      }
      for (const k of ['loss', 'stats']) {
        const a = flat[k].data;
        const b = resp[k].data;
        for (let i = 0; i < a.length; i++) {
          const tol = 1e-4 * Math.max(Math.abs(a[i]), Math.abs(b[i])) + 1e-7;
          if (!(Math.abs(a[i] - b[i]) <= tol || (Number.isNaN(a[i]) && Number.isNaN(b[i]))))
            problems.push(`device mask ${deviceMask}: ${k}[${i}] ${a[i]} (flat) vs ${b[i]} (response)`);
        }
      }
    }
    expect(problems).toEqual([]);
  }, 120_000);

  it("a forced 'flat' where a per-response quantity matters is a RANGE error naming the hook", async () => {
    const d = makeData({ seed: 3, lengths: [5, 0, 9], roll: true });
    policyTuning.path = 'flat';
    for (const options of [
      { loss: 'gspo' },
      { loss: 'gmpo' },
      { loss: 'gmpo', aggregation: 'token-mean' },
      { loss: 'vespo' },
      { loss: 'vespo', rolloutCorrection: { level: 'token' }, aggregation: 'token-sum' },
      { rolloutCorrection: { level: 'geometric' } },
      { rolloutCorrection: { level: 'token', mode: 'sequence-mask' } },
      { offPolicyMask: { threshold: 0.1 } },
      { aggregation: 'seq-mean-token-mean' },
    ] as PolicyLossOptions[]) {
      const e = await runPolicy(gpu!.ctx, d, options).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(GrpoKernelsError);
      expect((e as GrpoKernelsError).code).toBe('RANGE');
      expect((e as GrpoKernelsError).argument).toBe('policyTuning.path');
      expect(String(e)).toMatch(/the flat path needs/);
    }
  });
});

/**
 * gmpo's per-response sums (Σ Δ̂, Q_r) and vespo's ln W_r (Σ clamp(Δ, ±20) and the token weights'
 * Σ clamp(ln w, ln 1e-8, 20)) come from the response's own pass A: a response's per-token bits do not
 * depend on the chunk size or on what else is in the batch (global counts given).
 */
for (const { loss, seed, spec, options } of [
  {
    loss: 'gmpo',
    seed: 500,
    // Σλ over 300 tokens of spread 0.01 keeps the sequence weight inside [0.5, 2] (not masked to 0).
    spec: { rollSpread: 0.01 },
    options: {
      loss: 'gmpo',
      rolloutCorrection: { level: 'sequence', mode: 'mask', lower: 0.5 },
    } as PolicyLossOptions,
  },
  {
    loss: 'vespo',
    seed: 600,
    // Small spreads keep the probe's ln W_r (≈ ±1 over 300 tokens) inside its clamps and φ away from 0.
    spec: { spread: 0.05, rollSpread: 0.05 },
    options: {
      loss: 'vespo',
      vespo: { kPos: 1.5, lambdaPos: 0.5, kNeg: 4, lambdaNeg: 1 },
      rolloutCorrection: { level: 'token', mode: 'truncate', lower: 0.9, upper: 1.05 },
      aggregation: 'seq-mean-token-mean',
    } as PolicyLossOptions,
  },
]) {
  describe.skipIf(noGpu)(`webgpu policyLoss: ${loss} on the response layout`, () => {
    it('a response’s per-token bits at any chunk size and batch position, host and device mask', async () => {
      const { ctx } = gpu!;
      const data = { perResponse: false, ent: true, ref: true, roll: true, maskP: 0.1, ...spec };
      const probe = makeData({ seed, lengths: [300], ...data });
      const all: PolicyLossOptions = {
        ...options,
        kl: { coef: 0.1 },
        entropyCoef: 0.01,
        globalSequences: 50,
        tokenLoss: true,
      };
      const problems: string[] = [];
      let first: Record<string, Float32Array> | undefined;
      for (const [s, before, after] of [
        [seed + 1, 0, 0],
        [seed + 2, 3, 5],
        [seed + 3, 300, 2],
      ] as const) {
        const r = rng(s);
        const lens = (n: number) => Array.from({ length: n }, () => Math.floor(r() * 60));
        const a = makeData({ seed: s, lengths: lens(before), ...data });
        const b = makeData({ seed: s + 1000, lengths: lens(after), ...data });
        const d = concat([a, probe, b]);
        const at = a.lp.length;
        for (const chunkMultiple of [undefined, 1, 2]) {
          for (const deviceMask of [false, true]) {
            policyTuning.chunkMultiple = chunkMultiple;
            const out = await runPolicy(ctx, d, all, { deviceMask });
            const got: Record<string, Float32Array> = {};
            for (const k of ['gradLogprobs', 'gradEntropy', 'tokenLoss'])
              got[k] = (out[k].data as Float32Array).slice(at, at + probe.lp.length);
            if (first === undefined) first = got;
            else
              for (const k of Object.keys(got)) {
                const i = firstBitDiff(got[k], first[k]);
                if (i >= 0)
                  problems.push(
                    `${before} before, chunkMultiple ${chunkMultiple}, device mask ${deviceMask}: ${k}[${i}] ${got[k][i]} ≠ ${first[k][i]}`,
                  );
              }
          }
        }
      }
      expect(problems).toEqual([]);
      // Not vacuous: without KL and entropy the probe's policy gradient is not 0 where A ≠ 0.
      const alone = await runPolicy(ctx, probe, { ...all, kl: undefined, entropyCoef: 0 });
      const g = alone.gradLogprobs.data as Float32Array;
      expect(g.filter((v) => v !== 0 && Number.isFinite(v)).length).toBeGreaterThan(200);
    }, 120_000);
  });
}
