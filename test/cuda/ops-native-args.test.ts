/**
 * The native boundary refuses what the typed TypeScript interfaces rule out (native/args.h): a
 * missing required key, a key of the wrong type, an unknown (misspelt) key, an enum name it does not
 * know: each a DTYPE error naming the op and the key, never a silent default.
 */
import { describe, expect, it } from 'vitest';
import {
  loadNativeAddon,
  type NativePolicyLossArgs,
  type NativeThrReweightArgs,
  type NativeTokenHiddenRewardArgs,
  type NativeWhitenArgs,
} from '../../src/backends/cuda/native.js';
import { probeGpu } from './helpers.js';

const noGpu = (await probeGpu()).ctx === undefined;

/** An op refused with `code`: by its converter at the call (DTYPE), or by its launcher (at the wait). */
async function expectRefused(
  dev: { synchronize(): Promise<void> },
  call: () => Promise<void>,
  code: string,
  message: RegExp,
): Promise<void> {
  let e: unknown;
  try {
    await call();
    await dev.synchronize();
  } catch (err) {
    e = err;
  }
  expect((e as { code?: string }).code, String(message)).toBe(code);
  expect((e as Error).message).toMatch(message);
}

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
        vespoKPos: 2,
        vespoLambdaPos: 3,
        vespoKNeg: 3,
        vespoLambdaNeg: 2,
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
          /^policyLoss: loss: expected one of 'ppo', 'gspo', 'cispo', 'sapo', 'reinforce', 'gmpo', 'vespo', got 'grpo'$/,
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

  it("THR's plan: its keys are typed (DTYPE), and the launcher checks it against the layout (SHAPE)", async () => {
    const dev = new (loadNativeAddon().CudaDevice!)(0);
    try {
      // One group: a correct and an incorrect response of one token each; d = 1, |V*| = 1.
      const f32 = (x: number[]) => {
        const p = dev.alloc(x.length * 4);
        dev.upload(p, new Float32Array(x));
        return p;
      };
      const tokenColumn = dev.alloc(8);
      dev.upload(tokenColumn, new Int32Array([0, 0]));
      const [outThr, outTau] = [dev.alloc(8), dev.alloc(4)];
      const layout = { responseOffsets: new Int32Array([0, 1, 2]), groupOffsets: new Int32Array([0, 2]) };
      const thr: NativeTokenHiddenRewardArgs = {
        ...layout,
        correct: new Uint8Array([1, 0]),
        degenerate: new Uint8Array([0]),
        hidden: f32([1, 2]),
        hiddenDtype: 'f32',
        dim: 1,
        probs: f32([0.25, 0.5]),
        probsOffsets: new Float64Array([0, 2]),
        vocabOffsets: new Int32Array([0, 1]),
        tokenColumn,
        correctStart: new Int32Array([0, 1]),
        correctTokens: new Int32Array([0]),
        correctWeights: new Float32Array([1]),
        beta: 1,
        precision: 'f32',
        outThr,
        outTau,
      };
      await dev.tokenHiddenReward(thr);
      const host = new Float32Array(2);
      await dev.read(outThr, host);
      // s_t = g_tᵀ M h_t with M = w·g_0·h_0 = 0.75: s_0 = 0.75²·1 = 0.5625, s_1 = 0.75·0.5·2 = 0.75.
      expect(Array.from(host)).toEqual([0.5625, -0.75]);
      const cases: [Record<string, unknown>, string, RegExp][] = [
        [{ weighting: 'length' }, 'DTYPE', /^tokenHiddenReward: unknown key 'weighting'$/],
        [{ correctWeights: new Float64Array([1]) }, 'DTYPE', /correctWeights: expected a Float32Array$/],
        [{ correctStart: new Int32Array([0]) }, 'SHAPE', /correctStart must have G\+1 entries/],
        [
          { correctWeights: new Float32Array(2) },
          'SHAPE',
          /correctWeights must have one entry per correct token/,
        ],
        [{ correctStart: new Int32Array([0, 0]) }, 'SHAPE', /correctStart must run from 0 to the number/],
        [{ correctTokens: new Int32Array([2]) }, 'SHAPE', /correctTokens\[0\] = 2 is not a token of group 0/],
        [{ degenerate: new Uint8Array([1]) }, 'SHAPE', /degenerate group 0 lists correct tokens/],
      ];
      for (const [patch, code, message] of cases) {
        const call = () =>
          dev.tokenHiddenReward({ ...thr, ...patch } as unknown as NativeTokenHiddenRewardArgs);
        await expectRefused(dev, call, code, message);
      }
      const reweight: NativeThrReweightArgs = {
        ...layout,
        correct: thr.correct,
        degenerate: thr.degenerate,
        tokenAdvantages: f32([1, 1]),
        thr: f32([0.5, -0.5]),
        tau: f32([0.1]),
        mode: 'nthr',
        p: 0,
        mask: true,
        eta: new Float64Array([0.25]),
        out: outThr,
      };
      await dev.thrReweight(reweight);
      await dev.read(outThr, host);
      expect(Array.from(host)).toEqual([1, 0.25]); // the incorrect token past tau gets eta·A
      for (const [patch, code, message] of [
        [{ eta: 0.3 }, 'DTYPE', /^thrReweight: eta: expected a Float64Array$/],
        [{ eta: new Float64Array(2) }, 'SHAPE', /thrReweight: eta must have G entries/],
      ] as const) {
        const call = () => dev.thrReweight({ ...reweight, ...patch } as unknown as NativeThrReweightArgs);
        await expectRefused(dev, call, code, message);
      }
    } finally {
      dev.close();
    }
  });
});
