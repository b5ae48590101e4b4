/**
 * policyLoss's case table (test/cases/policy.ts) on the cuda backend: a GPU, or the CPU emulator in
 * the vitest project "cuda-emu". cpu and webgpu run the same table in test/policy.cases.test.ts.
 * Below it, gmpo's layout checks on the warp path (native/cuda/policy.cu; gmpo never takes the flat
 * path): a response's bits whatever the batch and the chunking, long responses included.
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
