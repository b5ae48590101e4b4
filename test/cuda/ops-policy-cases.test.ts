/**
 * policyLoss's case table (test/cases/policy.ts) on the cuda backend: a GPU, or the CPU emulator in
 * the vitest project "cuda-emu". cpu and webgpu run the same table in test/policy.cases.test.ts.
 * Below it, the layout checks of what needs a response's own sums on the warp path (native/cuda/policy.cu;
 * none takes the flat path): gmpo, vespo, the off-policy mask and rollout mode sequence-mask, a
 * response's bits whatever the batch and the chunking, long responses included.
 */
import type { PolicyLossOptions } from '../../src/api/policy.js';
import { policyTuning } from '../../src/backends/cuda/policy.js';
import type { Context } from '../../src/context.js';
import { firstBitDiff } from '../cases/check.js';
import { concat, makeData, POLICY_CASES, type PolicyData, runPolicy } from '../cases/policy.js';
import { type Case, type Outputs, openBackends, runCaseTable } from '../cases/runner.js';

const backends = await openBackends(['cuda']);

runCaseTable('policyLoss', POLICY_CASES, backends);

const PER_TOKEN = ['gradLogprobs', 'gradEntropy', 'tokenLoss'] as const;

/**
 * A batch for the layout checks: per-token advantages of both signs (and zeros), Δ = ℓ − ℓ° and the
 * rollout log-weights spread by `spread` (vespo's small for long responses, so that ln W_r stays inside
 * its clamps and φ moves).
 */
function layoutData(seed: number, lengths: number[], spread?: number): PolicyData {
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

function perTokenDiffs(a: Outputs, b: Outputs, what: string, at = 0): string[] {
  const problems: string[] = [];
  for (const k of PER_TOKEN) {
    const x = (a[k].data as Float32Array).subarray(at, at + b[k].data.length);
    const i = firstBitDiff(x, b[k].data);
    if (i >= 0) problems.push(`${what}: ${k}[${i}] ${x[i]} ≠ ${b[k].data[i]}`);
  }
  return problems;
}

interface LayoutSpec {
  /** What is checked (a loss, or an option of ppo's). */
  loss: string;
  seed: number;
  /** The probe's spread and the fillers' (layoutData). */
  spread?: [number, number];
  /** The batch-position check: host scales, no normalisation (the response's outputs are its own). */
  position: PolicyLossOptions;
  /** The chunking check: counts on the device (exact, so the scales keep their bits). */
  chunks: PolicyLossOptions;
  /** More problems found on the probe alone (vespo: φ is neither 0 nor +Inf on either sign of A). */
  probe?: (ctx: Context, probe: PolicyData, position: PolicyLossOptions) => Promise<string[]>;
}

/** The warp path's checks (a response's sums are its warp's alone). */
function layoutCases({ loss, seed, spread, position, chunks, probe: probeCheck }: LayoutSpec): Case[] {
  const [sp, sf] = spread ?? [undefined, undefined];
  return [
    {
      kind: 'self',
      name: `${loss}: a response (2500 tokens, several lane strides) gets the same bits at any position in any batch`,
      run: async (ctx) => {
        const options: PolicyLossOptions = {
          ...position,
          kl: { coef: 0.1 },
          entropyCoef: 0.01,
          tokenLoss: true,
        };
        const probe = layoutData(seed, [2500], sp);
        const alone = await runPolicy(ctx, probe, options);
        const problems = probeCheck ? await probeCheck(ctx, probe, position) : [];
        for (const [s, before, after] of [
          [seed + 1, 3, 0],
          [seed + 2, 0, 17],
          [seed + 3, 200, 40],
        ] as const) {
          const a = layoutData(
            s,
            Array.from({ length: before }, (_, i) => (i * 37) % 61),
            sf,
          );
          const b = layoutData(
            s + 1000,
            Array.from({ length: after }, (_, i) => (i * 53) % 67),
            sf,
          );
          const out = await runPolicy(ctx, concat([a, probe, b]), options);
          problems.push(...perTokenDiffs(out, alone, `${before} responses before`, a.lp.length));
        }
        return problems;
      },
    },
    {
      kind: 'self',
      name: `${loss}: responses per block and a forced warp path change no per-token bit; a forced flat path is refused`,
      run: async (ctx) => {
        const d = layoutData(
          seed + 10,
          [0, 1, 300, 3000, 5, 0, 37, 1, 64, 33, 31, 32, 33, 2, 1800, 7, 9, 11, 0, 4],
          sp === undefined ? undefined : sf / 6,
        );
        const options: PolicyLossOptions = {
          ...chunks,
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
          problems.push(`${loss} on the forced flat path was not refused`);
        } catch (e) {
          if (!/the flat path needs a loss other than gspo, gmpo and vespo/.test(String(e)))
            problems.push(`${loss} on the forced flat path: ${e}`);
        } finally {
          policyTuning.path = 'auto';
        }
        return problems;
      },
    },
  ];
}

runCaseTable(
  'policyLoss per-response layouts',
  [
    ...layoutCases({
      loss: 'gmpo',
      seed: 500,
      position: { loss: 'gmpo', rolloutCorrection: { level: 'sequence' }, globalSequences: 50 },
      chunks: { loss: 'gmpo', rolloutCorrection: { level: 'token', mode: 'mask', lower: 0.5, upper: 1.8 } },
    }),
    ...layoutCases({
      loss: 'vespo',
      seed: 600,
      spread: [0.004, 0.3],
      // Token-level weights folded into W_r; mask mode: a masked weight enters ln W_r as ln 1e-8.
      position: {
        loss: 'vespo',
        vespo: { kPos: 1.5, lambdaPos: 0.7, kNeg: 3, lambdaNeg: 2 },
        rolloutCorrection: { level: 'token', lower: 0.9, upper: 1.1 },
        globalTokens: 9000,
      },
      chunks: { loss: 'vespo', rolloutCorrection: { level: 'token', mode: 'mask', lower: 0.9, upper: 1.1 } },
      // The policy term alone: −G·φ·A with φ > 0 on either sign of A, so the bits compared carry W_r's.
      probe: async (ctx, probe, policy) => {
        const bare = (await runPolicy(ctx, probe, policy)).gradLogprobs.data;
        const problems: string[] = [];
        for (const sign of [1, -1]) {
          const t = probe.adv.findIndex((A, i) => A * sign > 0 && probe.mask![i] !== 0);
          if (!(t >= 0 && bare[t] !== 0 && Number.isFinite(bare[t])))
            problems.push(`no finite, nonzero policy gradient for sign ${sign} (φ = 0?)`);
        }
        return problems;
      },
    }),
    // TRL's off-policy mask: κ_r from the response's own pass A; δ = −1 drops the policy term of every
    // token with A < 0 (κ_r ≈ 0 here), so the bits compared carry the keep factor.
    ...layoutCases({
      loss: 'off-policy mask',
      seed: 700,
      position: { offPolicyMask: { threshold: -1 }, globalTokens: 9000 },
      chunks: { offPolicyMask: { threshold: 0.01 }, rolloutCorrection: { level: 'token' } },
    }),
    // OpenRLHF's seq-mask-tis: the response's geometric-mean filter from its own Σλ.
    ...layoutCases({
      loss: 'sequence-mask',
      seed: 800,
      spread: [0.004, 0.3],
      position: { rolloutCorrection: { mode: 'sequence-mask', lower: 0.9, upper: 1.1 }, globalTokens: 9000 },
      chunks: { loss: 'gmpo', rolloutCorrection: { mode: 'sequence-mask', lower: 0.95, upper: 1.05 } },
    }),
  ],
  backends,
);
