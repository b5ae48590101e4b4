/**
 * policyLoss on the native cpu backend (native/cpu/policy.cc), beyond the shared case table
 * (test/policy.cases.test.ts runs it on the default kernels): the case table on the portable kernels;
 * on each path, the same bits with 1, 2 and 8 threads (8 > the cores here, through
 * cpuTuning.maxThreads) for every loss, KL estimator, rollout level and mode, with a device mask (the
 * counting pass) and normalised weights, for gmpo with per-token advantages of both signs and zeros,
 * and for vespo with those, its W_r at both clamps and φ past f32 (0); a response's token outputs bitwise the same alone and at any position of other batches,
 * across the kernel's blocks of responses (every loss, estimator and rollout level); masked tokens
 * never read (NaN and ±Inf there change no bit); and the kernel's exponential within 2 ulp of e^x over
 * [−20, 20].
 */
import { afterAll, describe, expect, it } from 'vitest';
import type { HostArray } from '../../src/dtypes.js';
import type { PolicyLossOptions } from '../../src/index.js';
import { expectSameBits } from '../cases/check.js';
import { concat, makeData, POLICY_CASES, type PolicyData, runPolicy } from '../cases/policy.js';
import { type Outputs, runCaseTable } from '../cases/runner.js';
import { rng } from '../util/rng.js';
import { bits, type NativeCpu, openNativeCpu } from './helpers.js';

const THREADS = [1, 2, 8] as const;
const PATHS = ['avx2', 'portable'] as const;
const opened: Record<string, NativeCpu[]> = {};
for (const path of PATHS) {
  opened[path] = [];
  for (const t of THREADS) opened[path].push(await openNativeCpu(path, t));
}
afterAll(() => {
  for (const list of Object.values(opened)) for (const o of list) o.ctx?.dispose();
});

// The case table on the path test/policy.cases.test.ts does not take (it opens the default, AVX2 here).
const portable = opened.portable[1];
if (portable.ctx)
  runCaseTable('policyLoss, portable kernels', POLICY_CASES, [{ name: 'cpu', ctx: portable.ctx }]);

/** Every choice the kernel instantiates or selects, each at least once. */
const CONFIGS: readonly PolicyLossOptions[] = [
  {
    loss: 'ppo',
    dualClip: 3,
    kl: { coef: 0.1 },
    entropyCoef: 0.01,
    rolloutCorrection: { level: 'token', normalize: true },
    tokenLoss: true,
  },
  {
    loss: 'gspo',
    delta: 1.2,
    kl: { estimator: 'k2', coef: 0.2, straightThrough: true },
    rolloutCorrection: { level: 'geometric', mode: 'mask', upper: 1.3 },
    tokenLoss: true,
  },
  {
    loss: 'cispo',
    kl: { estimator: 'abs', coef: 0.1 },
    rolloutCorrection: { level: 'token', mode: 'mask', lower: 0.6, upper: 1.6 },
    aggregation: 'seq-mean-token-sum',
    entropyCoef: 0.03,
    tokenLoss: true,
  },
  {
    loss: 'sapo',
    kl: { estimator: 'k1', coef: 0.1 },
    rolloutCorrection: { level: 'sequence', normalize: true },
    entropyCoef: 0.02,
  },
  {
    loss: 'reinforce',
    kl: { estimator: 'k3', coef: 0.05 },
    aggregation: 'seq-mean-token-sum-norm',
    tokenLoss: true,
  },
  { preset: 'trl', loss: 'cispo', clipHigh: 4, kl: { coef: 0.04 }, rolloutCorrection: {}, entropyCoef: 0.01 },
  { preset: 'openrlhf', kl: { estimator: 'k2', coef: 0.1 }, rolloutCorrection: {}, tokenLoss: true },
  {
    loss: 'gmpo',
    kl: { coef: 0.1 },
    entropyCoef: 0.01,
    rolloutCorrection: { level: 'token', normalize: true },
    tokenLoss: true,
  },
  {
    loss: 'gmpo',
    clipLow: 0.4,
    kl: { estimator: 'k1', coef: 0.1, straightThrough: true },
    rolloutCorrection: { level: 'geometric', mode: 'mask', lower: 0.8, upper: 1.3 },
    aggregation: 'token-mean',
    tokenLoss: true,
  },
  // vespo: token-level weights only, never normalised (the API's rule); they fold into W_r.
  {
    loss: 'vespo',
    kl: { coef: 0.1 },
    entropyCoef: 0.01,
    rolloutCorrection: { level: 'token', mode: 'mask', lower: 0.6, upper: 1.6 },
    tokenLoss: true,
  },
  {
    loss: 'vespo',
    vespo: { kPos: 6, lambdaPos: 1e-9, kNeg: 0.5, lambdaNeg: 0.1 },
    kl: { estimator: 'k2', coef: 0.1 },
    rolloutCorrection: { level: 'token', upper: 1.3 },
    aggregation: 'seq-mean-token-mean',
    tokenLoss: true,
  },
  { loss: 'vespo', aggregation: 'token-sum', entropyCoef: 0.02 },
];

/** Every output's data, by name. */
function allBits(o: Outputs): Record<string, HostArray> {
  const out: Record<string, HostArray> = {};
  for (const k of Object.keys(o).sort()) out[k] = o[k].data;
  return out;
}

/** The same outputs with the same bits (a word loop per output: see expectSameBits). */
function expectSameOutputs(got: Record<string, HostArray>, want: Record<string, HostArray>, what: string) {
  expect(Object.keys(got), `${what}: outputs`).toEqual(Object.keys(want));
  for (const k of Object.keys(want)) expectSameBits(got[k], want[k], `${what}: ${k}`);
}

/** 2000 ragged responses (63 of the kernel's blocks of 32) with a mask, and one of 5000 tokens. */
function bigData(seed: number): PolicyData {
  const r = rng(seed);
  const lengths = Array.from({ length: 2000 }, () => Math.floor(r() * 61));
  lengths[700] = 5000;
  return makeData({ seed: seed + 1, lengths, maskP: 0.1, ent: true, ref: true, roll: true, rollSpread: 0.2 });
}

for (const path of PATHS) {
  const list = opened[path];
  const reason = list.find((o) => o.reason)?.reason;
  describe.skipIf(reason !== undefined)(
    `native cpu policyLoss, ${path} kernels${reason ? ` (skipped: ${reason})` : ''}`,
    () => {
      it('threads: 1, 2 and 8 give the same bits for every output (host and device masks)', async () => {
        const d = bigData(500);
        for (const options of CONFIGS) {
          for (const deviceMask of [false, true]) {
            const first = allBits(await runPolicy(list[0].ctx!, d, options, { deviceMask }));
            for (let k = 1; k < list.length; k++) {
              const got = allBits(await runPolicy(list[k].ctx!, d, options, { deviceMask }));
              expectSameOutputs(
                got,
                first,
                `${JSON.stringify(options)}, device mask ${deviceMask}: ${THREADS[k]} threads vs 1`,
              );
            }
          }
        }
      });

      it('gmpo, per-token advantages of both signs and zeros: 1, 2 and 8 threads give the same bits', async () => {
        // gmpo's per-response sums ΣΔ̂ and Q_r = Σ w·A (pass A) with A's sign changing within responses.
        const d = makeData({
          seed: 540,
          lengths: Array.from({ length: 1200 }, (_, i) => (i === 77 ? 3000 : (i * 37) % 53)),
          maskP: 0.1,
          perResponse: false,
          ent: true,
          ref: true,
          roll: true,
          spread: 0.5,
        });
        for (let t = 0; t < d.adv.length; t += 5) d.adv[t] = 0;
        for (const options of CONFIGS.filter((o) => o.loss === 'gmpo')) {
          for (const level of ['token', 'sequence'] as const) {
            const o = { ...options, rolloutCorrection: { ...options.rolloutCorrection, level } };
            const first = allBits(await runPolicy(list[0].ctx!, d, o));
            for (let k = 1; k < list.length; k++)
              expectSameOutputs(
                allBits(await runPolicy(list[k].ctx!, d, o)),
                first,
                `${JSON.stringify(o)}: ${THREADS[k]} threads`,
              );
          }
        }
      });

      it('vespo, per-token advantages of both signs and zeros, W_r at both clamps: 1, 2 and 8 threads give the same bits', async () => {
        // vespo's ln W_r = clamp(Σ clamp(Δ, ±20) + Σ clamp(ln w, ln 1e-8, 20), ln 1e-8, 20) in pass A (the
        // token weights' logs with pass B's bits), φ_± per response; responses of 0, 1, 300 and 3000
        // tokens, some pushed past ln W's clamps (and, with k = 6, φ past f32: 0).
        const lengths = Array.from({ length: 1200 }, (_, i) =>
          i === 77 ? 3000 : i === 78 ? 300 : i === 79 ? 1 : i === 80 ? 0 : (i * 37) % 53,
        );
        const d = makeData({
          seed: 550,
          lengths,
          maskP: 0.1,
          perResponse: false,
          ent: true,
          ref: true,
          roll: true,
          spread: 0.05,
        });
        for (let t = 0; t < d.adv.length; t += 5) d.adv[t] = 0;
        for (let r = 0; r < lengths.length; r++) {
          const shift = [0, 1, 0, -1, 0.02][r % 5] * (r % 3 === 0 ? 30 : 0.5); // Σ Δ ±30·n: clamped
          for (let t = d.offsets[r]; t < d.offsets[r + 1]; t++) d.old[t] -= shift;
        }
        for (const vespo of [undefined, { kPos: 6, lambdaPos: 1e-9, kNeg: 3, lambdaNeg: 2 }])
          for (const rolloutCorrection of [
            undefined,
            { level: 'token', upper: 1.3 } as const,
            { level: 'token', mode: 'mask', lower: 0.6, upper: 1.6 } as const,
          ]) {
            const o: PolicyLossOptions = {
              loss: 'vespo',
              ...(vespo && { vespo }),
              ...(rolloutCorrection && { rolloutCorrection }),
              kl: { coef: 0.1 },
              entropyCoef: 0.01,
              tokenLoss: true,
            };
            for (const deviceMask of [false, true]) {
              const first = allBits(await runPolicy(list[0].ctx!, d, o, { deviceMask }));
              for (let k = 1; k < list.length; k++)
                expectSameOutputs(
                  allBits(await runPolicy(list[k].ctx!, d, o, { deviceMask })),
                  first,
                  `${JSON.stringify(o)}, device mask ${deviceMask}: ${THREADS[k]} threads`,
                );
            }
          }
      });

      it('batch invariance: a response alone and at any position of other batches, across blocks', async () => {
        const ctx = list[1].ctx!;
        const spec = { ent: true, ref: true, roll: true, maskP: 0.1, rollSpread: 0.2 };
        const probe = makeData({ seed: 510, lengths: [301], ...spec });
        for (const base of CONFIGS) {
          if (base.preset === 'trl') continue; // dr_grpo's K has no default under trl; the others cover it
          // Host scales (global counts, a fixed K) and no normalisation: nothing batch-wide.
          const { rolloutCorrection: rc, ...rest } = base;
          const options: PolicyLossOptions = {
            ...rest,
            ...(rc && { rolloutCorrection: { ...rc, normalize: false } }),
            globalTokens: 5000,
            globalSequences: 90,
            ...(base.aggregation === 'seq-mean-token-sum-norm' && { scaleFactor: 64 }),
          };
          let first: Record<string, number[]> | undefined;
          for (const [seed, before, after] of [
            [511, 0, 0],
            [512, 255, 3],
            [513, 256, 0],
            [514, 300, 700],
            [515, 1, 255],
          ] as const) {
            const r = rng(seed);
            const a = makeData({
              seed,
              lengths: Array.from({ length: before }, () => Math.floor(r() * 40)),
              ...spec,
            });
            const b = makeData({
              seed: seed + 1000,
              lengths: Array.from({ length: after }, () => Math.floor(r() * 40)),
              ...spec,
            });
            const out = await runPolicy(ctx, concat([a, probe, b]), options);
            const at = a.lp.length;
            const mine: Record<string, number[]> = {};
            for (const k of ['gradLogprobs', 'gradEntropy', 'tokenLoss'])
              if (out[k]) mine[k] = bits((out[k].data as Float32Array).slice(at, at + probe.lp.length));
            if (first === undefined) first = mine;
            else
              expect(mine, `${JSON.stringify(options)}: ${before} responses before, ${after} after`).toEqual(
                first,
              );
          }
        }
      });

      it('masked tokens are never read: NaN and ±Inf there change no bit', async () => {
        const ctx = list[1].ctx!;
        const d = bigData(520);
        const poisoned: PolicyData = {
          ...d,
          lp: d.lp.slice(),
          old: d.old.slice(),
          adv: d.adv.slice(),
          ref: d.ref!.slice(),
          roll: d.roll!.slice(),
          ent: d.ent!.slice(),
        };
        const bad = [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY];
        let i = 0;
        for (let t = 0; t < d.lp.length; t++) {
          if (d.mask![t] !== 0) continue;
          for (const x of [
            poisoned.lp,
            poisoned.old,
            poisoned.adv,
            poisoned.ref!,
            poisoned.roll!,
            poisoned.ent!,
          ])
            x[t] = bad[i++ % 3];
        }
        for (const options of CONFIGS) {
          const want = allBits(await runPolicy(ctx, d, options));
          expectSameOutputs(allBits(await runPolicy(ctx, poisoned, options)), want, JSON.stringify(options));
        }
      });

      it('the exponential: ratios e^Δ within 2 ulp of the exact value over [−20, 20]', async () => {
        // ℓ° = 0 and A = −1 with an unbounded clip band: tokenLoss = L = −A·ρ = ρ = e^ℓ, one per token.
        const n = 1 << 17;
        const r = rng(530);
        const lp = Float32Array.from({ length: n }, () => (r() * 2 - 1) * 20);
        lp[0] = -20;
        lp[1] = 20;
        lp[2] = 0;
        const d: PolicyData = {
          offsets: new Int32Array([0, n]),
          lp,
          old: new Float32Array(n),
          adv: new Float32Array(n).fill(-1),
        };
        const out = await runPolicy(list[1].ctx!, d, { clipLow: 1 - 1e-10, clipHigh: 1e30, tokenLoss: true });
        const got = out.tokenLoss.data as Float32Array;
        let worst = 0;
        let at = 0;
        for (let i = 0; i < n; i++) {
          const exact = Math.exp(lp[i]);
          const ulp = 2 ** (Math.floor(Math.log2(exact)) - 23);
          const e = Math.abs(got[i] - exact) / ulp;
          if (e > worst) {
            worst = e;
            at = i;
          }
        }
        expect(worst, `worst at e^${lp[at]}: ${got[at]} vs ${Math.exp(lp[at])}`).toBeLessThanOrEqual(2);
        // ratioMin and ratioMax are two of these ratios.
        const stats = out.stats.data as Float32Array;
        let lo = Number.POSITIVE_INFINITY;
        let hi = Number.NEGATIVE_INFINITY;
        for (const g of got) {
          lo = Math.min(lo, g);
          hi = Math.max(hi, g);
        }
        expect([stats[5], stats[7]]).toEqual([lo, hi]);
      });
    },
  );
}
