/**
 * policyLoss's case table (test/cases/policy.ts) on the cuda backend: a GPU, or the CPU emulator in
 * the vitest project "cuda-emu". cpu and webgpu run the same table in test/policy.cases.test.ts.
 * Below it, gmpo's and vespo's layout checks on the warp path (native/cuda/policy.cu; neither takes the
 * flat path): a response's bits whatever the batch and the chunking, long responses included.
 */
import type { PolicyLossOptions } from '../../src/api/policy.js';
import { policyTuning } from '../../src/backends/cuda/policy.js';
import { firstBitDiff } from '../cases/check.js';
import { concat, makeData, POLICY_CASES, type PolicyData, runPolicy } from '../cases/policy.js';
import { type Case, type Outputs, openBackends, runCaseTable } from '../cases/runner.js';

const backends = await openBackends(['cuda']);

runCaseTable('policyLoss', POLICY_CASES, backends);

const PER_TOKEN = ['gradLogprobs', 'gradEntropy', 'tokenLoss'] as const;

/** A gmpo batch: per-token advantages of both signs (and zeros), lengths from 0 to a few thousand. */
function gmpoData(seed: number, lengths: number[]): PolicyData {
  const d = makeData({ seed, lengths, perResponse: false, ent: true, ref: true, roll: true, maskP: 0.15 });
  for (let t = 0; t < d.adv.length; t += 7) d.adv[t] = 0;
  return d;
}

function perTokenDiffs(a: Outputs, b: Outputs, what: string, at = 0): string[] {
  const problems: string[] = [];
  for (const k of PER_TOKEN) {
    const x = (a[k].data as Float32Array).subarray(at, at + b[k].data.length);
    const i = firstBitDiff(x, b[k].data);
    if (i >= 0) problems.push(`${what}: ${k}[${i}] ${x[i]} ≠ ${b[k].data[i]}`);
  }
  return problems;
}

const GMPO_CASES: Case[] = [
  {
    kind: 'self',
    name: 'gmpo: a response (2500 tokens, several lane strides) gets the same bits at any position in any batch',
    run: async (ctx) => {
      // Host scales (globalSequences) and no normalisation: the response's outputs are its own.
      const options: PolicyLossOptions = {
        loss: 'gmpo',
        rolloutCorrection: { level: 'sequence' },
        kl: { coef: 0.1 },
        entropyCoef: 0.01,
        tokenLoss: true,
        globalSequences: 50,
      };
      const probe = gmpoData(500, [2500]);
      const alone = await runPolicy(ctx, probe, options);
      const problems: string[] = [];
      for (const [seed, before, after] of [
        [501, 3, 0],
        [502, 0, 17],
        [503, 200, 40],
      ] as const) {
        const a = gmpoData(
          seed,
          Array.from({ length: before }, (_, i) => (i * 37) % 61),
        );
        const b = gmpoData(
          seed + 1000,
          Array.from({ length: after }, (_, i) => (i * 53) % 67),
        );
        const out = await runPolicy(ctx, concat([a, probe, b]), options);
        problems.push(...perTokenDiffs(out, alone, `${before} responses before`, a.lp.length));
      }
      return problems;
    },
  },
  {
    kind: 'self',
    name: 'gmpo: responses per block and a forced warp path change no per-token bit (device scales)',
    run: async (ctx) => {
      // Counts on the device (a device mask): exact, so the scales keep their bits across the chunkings.
      const d = gmpoData(510, [0, 1, 300, 3000, 5, 0, 37, 1, 64, 33, 31, 32, 33, 2, 1800, 7, 9, 11, 0, 4]);
      const options: PolicyLossOptions = {
        loss: 'gmpo',
        rolloutCorrection: { level: 'token', mode: 'mask', lower: 0.5, upper: 1.8 },
        kl: { coef: 0.1 },
        entropyCoef: 0.01,
        tokenLoss: true,
      };
      const how = { deviceMask: true };
      const base = await runPolicy(ctx, d, options, how);
      const problems: string[] = [];
      for (const [what, set] of [
        ['chunkResponses 8', () => (policyTuning.chunkResponses = 8)],
        ['chunkResponses 16', () => (policyTuning.chunkResponses = 16)],
        ['path warp', () => (policyTuning.path = 'warp')],
      ] as const) {
        set();
        try {
          problems.push(...perTokenDiffs(await runPolicy(ctx, d, options, how), base, what));
        } finally {
          policyTuning.chunkResponses = 0;
          policyTuning.path = 'auto';
        }
      }
      return problems;
    },
  },
];

runCaseTable('policyLoss gmpo layouts', GMPO_CASES, backends);

/**
 * A vespo batch: per-token advantages of both signs (and zeros), Δ = ℓ − ℓ° and the rollout log-weights
 * spread by `spread` (small for long responses, so that ln W_r stays inside its clamps and φ moves).
 */
function vespoData(seed: number, lengths: number[], spread: number): PolicyData {
  const d = makeData({
    seed,
    lengths,
    perResponse: false,
    ent: true,
    ref: true,
    roll: true,
    maskP: 0.15,
    spread,
    rollSpread: spread,
  });
  for (let t = 0; t < d.adv.length; t += 7) d.adv[t] = 0;
  return d;
}

const VESPO_CASES: Case[] = [
  {
    kind: 'self',
    name: 'vespo: a response (2500 tokens, several lane strides) gets the same bits at any position in any batch',
    run: async (ctx) => {
      // Host scales (globalTokens) and token-level weights folded into W_r.
      const policy: PolicyLossOptions = {
        loss: 'vespo',
        vespo: { kPos: 1.5, lambdaPos: 0.7, kNeg: 3, lambdaNeg: 2 },
        rolloutCorrection: { level: 'token', lower: 0.9, upper: 1.1 },
        tokenLoss: true,
        globalTokens: 9000,
      };
      const options: PolicyLossOptions = { ...policy, kl: { coef: 0.1 }, entropyCoef: 0.01 };
      const probe = vespoData(600, [2500], 0.004);
      const alone = await runPolicy(ctx, probe, options);
      const problems: string[] = [];
      // The policy term alone: −G·φ·A with φ > 0 on either sign of A, so the bits below carry W_r's.
      const bare = (await runPolicy(ctx, probe, policy)).gradLogprobs.data;
      for (const sign of [1, -1]) {
        const t = probe.adv.findIndex((A, i) => A * sign > 0 && probe.mask![i] !== 0);
        if (!(t >= 0 && bare[t] !== 0 && Number.isFinite(bare[t])))
          problems.push(`no finite, nonzero policy gradient for sign ${sign} (φ = 0?)`);
      }
      for (const [seed, before, after] of [
        [601, 3, 0],
        [602, 0, 17],
        [603, 200, 40],
      ] as const) {
        const a = vespoData(
          seed,
          Array.from({ length: before }, (_, i) => (i * 37) % 61),
          0.3,
        );
        const b = vespoData(
          seed + 1000,
          Array.from({ length: after }, (_, i) => (i * 53) % 67),
          0.3,
        );
        const out = await runPolicy(ctx, concat([a, probe, b]), options);
        problems.push(...perTokenDiffs(out, alone, `${before} responses before`, a.lp.length));
      }
      return problems;
    },
  },
  {
    kind: 'self',
    name: 'vespo: responses per block and a forced warp path change no per-token bit; a forced flat path is refused',
    run: async (ctx) => {
      // Counts on the device (a device mask): exact, so the scales keep their bits across the chunkings.
      // Mask mode: a masked weight enters ln W_r as ln 1e-8.
      const d = vespoData(
        610,
        [0, 1, 300, 3000, 5, 0, 37, 1, 64, 33, 31, 32, 33, 2, 1800, 7, 9, 11, 0, 4],
        0.05,
      );
      const options: PolicyLossOptions = {
        loss: 'vespo',
        rolloutCorrection: { level: 'token', mode: 'mask', lower: 0.9, upper: 1.1 },
        kl: { coef: 0.1 },
        entropyCoef: 0.01,
        tokenLoss: true,
      };
      const how = { deviceMask: true };
      const base = await runPolicy(ctx, d, options, how);
      const problems: string[] = [];
      for (const [what, set] of [
        ['chunkResponses 8', () => (policyTuning.chunkResponses = 8)],
        ['chunkResponses 16', () => (policyTuning.chunkResponses = 16)],
        ['path warp', () => (policyTuning.path = 'warp')],
      ] as const) {
        set();
        try {
          problems.push(...perTokenDiffs(await runPolicy(ctx, d, options, how), base, what));
        } finally {
          policyTuning.chunkResponses = 0;
          policyTuning.path = 'auto';
        }
      }
      policyTuning.path = 'flat';
      try {
        await runPolicy(ctx, d, options, how);
        problems.push('vespo on the forced flat path was not refused');
      } catch (e) {
        if (!/the flat path needs a loss other than gspo, gmpo and vespo/.test(String(e)))
          problems.push(`vespo on the forced flat path: ${e}`);
      } finally {
        policyTuning.path = 'auto';
      }
      return problems;
    },
  },
];

runCaseTable('policyLoss vespo layouts', VESPO_CASES, backends);
