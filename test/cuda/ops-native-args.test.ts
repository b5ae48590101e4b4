/**
 * The native boundary refuses what the typed TypeScript interfaces rule out (native/args.h): a
 * missing required key, a key of the wrong type, an unknown (misspelt) key, an enum name it does not
 * know: each a DTYPE error naming the op and the key, never a silent default.
 */
import { describe, expect, it } from 'vitest';
import {
  loadNativeAddon,
  type NativePolicyLossArgs,
  type NativeWhitenArgs,
} from '../../src/backends/cuda/native.js';
import { probeGpu } from './helpers.js';

const noGpu = (await probeGpu()).ctx === undefined;

describe.skipIf(noGpu)('native op arguments are checked key by key', () => {
  it('missing, mistyped, unknown keys and unknown enum names are DTYPE errors naming the key', async () => {
    const dev = new (loadNativeAddon().CudaDevice!)(0);
    try {
      const n = 4;
      const values = dev.alloc(n * 4);
      const out = dev.alloc(n * 4);
      dev.upload(values, new Float32Array([1, 2, 3, 4]));
      const ok: NativeWhitenArgs = {
        values,
        n,
        maskEps: 0,
        variance: 'sample',
        varianceEps: 'add',
        keepMean: false,
        out,
      };
      await dev.whiten(ok);
      const bad = (patch: Record<string, unknown>) => () =>
        dev.whiten({ ...ok, ...patch } as unknown as NativeWhitenArgs);
      const cases: [Record<string, unknown>, RegExp][] = [
        [{ n: undefined }, /^whiten: missing key 'n'$/],
        [{ n: '4' }, /^whiten: n: expected a number$/],
        [{ n: 4.5 }, /^whiten: n: expected an integer$/],
        [{ values: 5 }, /^whiten: values: expected a bigint device pointer$/],
        [{ keepMean: 0 }, /^whiten: keepMean: expected a boolean$/],
        [{ variance: 'bessel' }, /^whiten: variance: expected one of 'population', 'sample', got 'bessel'$/],
        [{ maskEps: 0, makEps: 1e-8 }, /^whiten: unknown key 'makEps'$/],
      ];
      for (const [patch, message] of cases) {
        let e: unknown;
        try {
          bad(patch)();
        } catch (err) {
          e = err;
        }
        expect(e, JSON.stringify(patch)).toBeInstanceOf(Error);
        expect((e as { code?: string }).code).toBe('DTYPE');
        expect((e as Error).message).toMatch(message);
      }
      const host = new Float32Array(n);
      await dev.read(out, host);
      expect(host[0]).toBeLessThan(0); // the valid call above ran
    } finally {
      dev.close();
    }
  });

  it('policyLoss: the KL and rollout keys come as groups; a lone one is an unknown key', async () => {
    const dev = new (loadNativeAddon().CudaDevice!)(0);
    try {
      const T = 4;
      const buf = () => dev.alloc(T * 4);
      const [lp, old, adv, loss, grad, stats] = [buf(), buf(), buf(), dev.alloc(4), buf(), dev.alloc(13 * 4)];
      for (const p of [lp, old, adv]) dev.upload(p, new Float32Array([-1, -2, -0.5, -1]));
      const ok: NativePolicyLossArgs = {
        logprobs: lp,
        oldLogprobs: old,
        advantages: adv,
        responseOffsets: new Int32Array([0, 1, 4]),
        loss: 'ppo',
        clipLow: 0.2,
        clipHigh: 0.2,
        dualClip: Number.POSITIVE_INFINITY,
        logRatioClamp: 20,
        gspoLogClamp: 10,
        delta: Number.POSITIVE_INFINITY,
        cispoCap: false,
        sapoTauPos: 1,
        sapoTauNeg: 1.05,
        entropyCoef: 0,
        entropyAggregation: 'loss',
        aggregation: 'token-mean',
        seqTokenDivisor: 'eps',
        normBySequences: true,
        scaleFactor: 3,
        ranks: 1,
        tokens: 4,
        outLoss: loss,
        outGradLogprobs: grad,
        outStats: stats,
      };
      await dev.policyLoss(ok);
      const cases: [Record<string, unknown>, RegExp][] = [
        [{ klCoef: 0.1 }, /^policyLoss: unknown key 'klCoef'$/],
        [{ rolloutMode: 'mask' }, /^policyLoss: unknown key 'rolloutMode'$/],
        [{ klEstimator: 'k3' }, /^policyLoss: missing key 'refLogprobs'$/],
        [
          { loss: 'grpo' },
          /^policyLoss: loss: expected one of 'ppo', 'gspo', 'cispo', 'sapo', 'reinforce', got 'grpo'$/,
        ],
        [{ aggregation: undefined }, /^policyLoss: missing key 'aggregation'$/],
      ];
      for (const [patch, message] of cases) {
        let e: unknown;
        try {
          await dev.policyLoss({ ...ok, ...patch } as unknown as NativePolicyLossArgs);
        } catch (err) {
          e = err;
        }
        expect((e as { code?: string }).code, JSON.stringify(patch)).toBe('DTYPE');
        expect((e as Error).message).toMatch(message);
      }
      const host = new Float32Array(1);
      await dev.read(loss, host);
      expect(Number.isFinite(host[0])).toBe(true);
    } finally {
      dev.close();
    }
  });
});
