/**
 * The native cpu backend's advantages family (native/cpu/advantages.cc) beyond the shared case tables,
 * which test/advantages*.cases.test.ts run on the default (AVX2) kernels and this file on the portable
 * ones. Determinism: batches of groups of one size run four groups per vector, others group by group,
 * and both compute one definition, so a group's bits depend on its members alone: alone, in a uniform
 * batch (at the start, in the middle, in a last block of fewer than four), in a ragged batch; on 1, 2
 * and 8 threads; under both NaN policies; with outputs large enough for the non-temporal stores; and
 * the AVX2 and portable builds agree bit for bit.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { loadNativeAddon } from '../../src/backends/addon.js';
import type { HostArray } from '../../src/dtypes.js';
import type { AdvantagesOptions, Context } from '../../src/index.js';
import { firstDecrease } from '../../src/layout.js';
import { ADVANTAGES_CASES, EXPAND_CASES, WHITEN_CASES } from '../cases/advantages.js';
import { ADVANTAGES_NAN_CASES } from '../cases/advantages-nan.js';
import { expectSameBits } from '../cases/check.js';
import { runCaseTable } from '../cases/runner.js';
import { raggedGroupSizes, readAdvantages } from '../fixtures/advantages.js';
import { rng } from '../util/rng.js';
import { bits, type NativeCpu, openNativeCpu } from './helpers.js';

const THREADS = [1, 2, 8] as const;
const opened: Record<'avx2' | 'portable', NativeCpu[]> = { avx2: [], portable: [] };
for (const path of ['avx2', 'portable'] as const)
  for (const t of THREADS) opened[path].push(await openNativeCpu(path, t));
afterAll(() => {
  for (const list of Object.values(opened)) for (const o of list) o.ctx?.dispose();
});

/** Rewards: continuous around an offset, with exact ties, ±0 and (when `nan`) NaN holes. */
function rewardsOf(seed: number, n: number, nan = 0): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => {
    const u = r();
    if (u < nan) return Number.NaN;
    if (u < nan + 0.05) return 0.5;
    if (u < nan + 0.07) return -0;
    return 3 + 2 * r();
  });
}
function offsetsOf(sizes: readonly number[]): Int32Array {
  const go = new Int32Array(sizes.length + 1);
  sizes.forEach((s, g) => {
    go[g + 1] = go[g] + s;
  });
  return go;
}

/** Every output of one group g of a batch, as bits. */
async function groupBits(
  ctx: Context,
  rewards: Float32Array,
  go: Int32Array,
  g: number,
  options: AdvantagesOptions,
): Promise<number[]> {
  const o = await readAdvantages(ctx, rewards, { ...options, groupOffsets: go });
  return [
    ...bits(o.adv.subarray(go[g], go[g + 1])),
    ...bits(o.mean.subarray(g, g + 1)),
    ...bits(o.std.subarray(g, g + 1)),
    o.deg[g],
  ];
}

/** Estimators and scales whose group results depend on the group alone (not gpg's α, not scale 'batch'). */
const LOCAL: AdvantagesOptions[] = [
  { estimator: 'grpo' },
  { estimator: 'grpo', scale: 'none', std: 'population' },
  { estimator: 'dr_grpo' },
  { estimator: 'rloo' },
];

for (const path of ['avx2', 'portable'] as const) {
  const list = opened[path];
  const reason = list.find((o) => o.reason)?.reason;
  describe.skipIf(reason !== undefined)(
    `native cpu advantages, ${path} kernels${reason ? ` (skipped: ${reason})` : ''}`,
    () => {
      it('a group alone, in a uniform batch (several positions) and in a ragged batch: the same bits', async () => {
        const ctx = list[1].ctx!;
        for (const n of [2, 3, 5, 8, 12, 64, 65]) {
          for (const nanRewards of ['propagate', 'unscorable'] as const) {
            // The probe has no NaN (so it takes the lanes under 'unscorable' too); its neighbours do.
            const probe = rewardsOf(100 + n, n);
            if (n === 8) {
              probe.fill(0); // zero variance, with a −0 among the +0s: every advantage +0
              probe[3] = -0;
            }
            const others = rewardsOf(200 + n, 300 * n, nanRewards === 'unscorable' ? 0.1 : 0);
            for (const opts of LOCAL) {
              const options = { ...opts, nanRewards };
              const alone = await groupBits(ctx, probe, offsetsOf([n]), 0, options);
              // Uniform: 300 groups of n (three batches of 128 and a last block of fewer than four).
              for (const at of [0, 129, 299]) {
                const r = others.slice();
                r.set(probe, at * n);
                const go = offsetsOf(new Array(300).fill(n));
                expect(
                  await groupBits(ctx, r, go, at, options),
                  `n ${n} ${nanRewards} uniform at ${at}`,
                ).toEqual(alone);
              }
              // Ragged: the probe among groups of 1..16.
              const sizes = raggedGroupSizes(300 + n, 400, 16);
              const at = 7;
              const r = new Float32Array(400 + n);
              r.set(others.subarray(0, offsetsOf(sizes)[at]));
              r.set(probe, offsetsOf(sizes)[at]);
              r.set(others.subarray(offsetsOf(sizes)[at], 400), offsetsOf(sizes)[at] + n);
              const go = offsetsOf([...sizes.slice(0, at), n, ...sizes.slice(at)]);
              expect(await groupBits(ctx, r, go, at, options), `n ${n} ${nanRewards} ragged`).toEqual(alone);
            }
          }
        }
      });

      it("'unscorable': a group with NaN members gives the bits of the group without them", async () => {
        const ctx = list[1].ctx!;
        for (const n of [4, 8, 11]) {
          const probe = rewardsOf(400 + n, n);
          probe[1] = Number.NaN;
          probe[n - 1] = Number.NaN;
          const compact = probe.filter((x) => !Number.isNaN(x));
          for (const opts of LOCAL) {
            const want = await readAdvantages(ctx, compact, { ...opts, groupOffsets: offsetsOf([n - 2]) });
            const got = await readAdvantages(ctx, probe, {
              ...opts,
              groupOffsets: offsetsOf([n]),
              nanRewards: 'unscorable',
            });
            expectSameBits(
              got.adv.filter((_, i) => i !== 1 && i !== n - 1),
              want.adv,
              `n ${n}`,
            );
            expect([got.adv[1], got.adv[n - 1]]).toEqual([0, 0]);
            expect([...bits(got.mean), ...bits(got.std), got.deg[0]]).toEqual([
              ...bits(want.mean),
              ...bits(want.std),
              want.deg[0],
            ]);
          }
        }
      });

      it('threads: uniform batches (the lanes, non-temporal stores from 1M outputs), both NaN policies, whiten, expandToTokens', async () => {
        const R = (1 << 20) + 8 * 3;
        const plain = rewardsOf(500, R);
        const holes = rewardsOf(501, R, 0.05);
        const ro = new Int32Array(R + 1);
        for (let i = 0; i < R; i++) ro[i + 1] = ro[i] + (i % 5);
        const mask = Uint8Array.from(plain, (_, i) => (i % 7 === 3 ? 0 : 1));
        const results: HostArray[][] = [];
        for (const o of list) {
          const ctx = o.ctx!;
          const out: HostArray[] = [];
          for (const [rewards, nanRewards] of [
            [plain, 'propagate'],
            [holes, 'unscorable'],
          ] as const) {
            for (const options of [
              { estimator: 'grpo', scale: 'batch' },
              { estimator: 'rloo' },
              { estimator: 'gpg' },
            ] as AdvantagesOptions[]) {
              const a = await readAdvantages(ctx, rewards, { ...options, groupSize: 8, nanRewards });
              out.push(a.adv, a.mean, a.std, a.deg);
            }
          }
          out.push(
            await (await ctx.whiten(plain)).read(),
            await (await ctx.whiten(ctx.tensor(plain), { mask })).read(),
            await (await ctx.expandToTokens(plain, ro)).read(),
          );
          results.push(out);
        }
        for (let k = 1; k < results.length; k++) {
          expect(results[k].length).toBe(results[0].length);
          for (const [i, r] of results[k].entries())
            expectSameBits(r, results[0][i], `output ${i}, ${THREADS[k]} threads vs ${THREADS[0]}`);
        }
      });
    },
  );
}

describe.skipIf(opened.avx2[1].ctx === undefined || opened.portable[1].ctx === undefined)(
  'native cpu advantages: the AVX2 and the portable kernels give the same bits',
  () => {
    it('every estimator, both NaN policies, uniform and ragged groups; whiten; expandToTokens', async () => {
      const sizes = raggedGroupSizes(600, 5000, 12);
      const go = offsetsOf(sizes);
      const R = go[sizes.length];
      const ro = new Int32Array(R + 1);
      for (let i = 0; i < R; i++) ro[i + 1] = ro[i] + (i % 9);
      const run = async (ctx: Context) => {
        const out: HostArray[] = [];
        for (const nanRewards of ['propagate', 'unscorable'] as const) {
          const rewards = rewardsOf(601, R, nanRewards === 'unscorable' ? 0.1 : 0);
          for (const estimator of [
            'grpo',
            'dr_grpo',
            'rloo',
            'opo',
            'gpg',
            'reinforce_pp_baseline',
          ] as const) {
            for (const layout of [{ groupOffsets: go }, { groupSize: 5 }]) {
              if ('groupSize' in layout && R % 5 !== 0) continue;
              const a = await readAdvantages(ctx, rewards, {
                ...layout,
                responseOffsets: ro,
                estimator,
                nanRewards,
              });
              out.push(a.adv, a.mean, a.std, a.deg);
            }
          }
        }
        const x = rewardsOf(602, 70001);
        out.push(
          await (await ctx.whiten(x)).read(),
          await (await ctx.expandToTokens(x.subarray(0, R), ro)).read(),
        );
        return out;
      };
      const a = await run(opened.avx2[1].ctx!);
      const b = await run(opened.portable[1].ctx!);
      expect(a.length).toBe(b.length);
      for (const [i, r] of a.entries()) expectSameBits(r, b[i], `output ${i}, avx2 vs portable`);
    });
  },
);

describe.skipIf(opened.avx2[1].ctx === undefined && opened.portable[1].ctx === undefined)(
  "native cpu: the API's offsets check through the addon's scan",
  () => {
    it('cpuFirstDecrease finds what the JavaScript loop finds, at every position of its steps', () => {
      const scan = loadNativeAddon('cpu').cpuFirstDecrease!;
      for (const n of [0, 1, 2, 5, 16, 17, 33, 64, 100]) {
        const o = Int32Array.from({ length: n }, (_, k) => 3 * k);
        expect(scan(o), `n ${n}, none`).toBe(-1);
        for (let i = 1; i < n; i++) {
          const d = o.slice();
          d[i] = d[i - 1] - 1;
          if (i + 5 < n) d[i + 5] = -7; // a later decrease too
          expect(scan(d), `n ${n}, at ${i}`).toBe(firstDecrease(d));
          const shared = new Int32Array(new SharedArrayBuffer(4 * n));
          shared.set(d);
          expect(scan(shared), `n ${n}, at ${i}, shared memory`).toBe(i);
        }
      }
      expect(() => scan(new Uint32Array(4) as never)).toThrow(/expected an Int32Array/);
    });

    it("cpuOffsetCounts gives policyLoss's counts (nonempty ranges, the longest) as a float64 loop does", () => {
      const counts = loadNativeAddon('cpu').cpuOffsetCounts!;
      let seed = 17;
      const next = () => {
        seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
        return seed / 2 ** 32;
      };
      for (const n of [0, 1, 2, 3, 9, 33, 1000, 4097]) {
        // Lengths 0..6, a third of them empty; one long range somewhere.
        const o = new Int32Array(n);
        for (let i = 1; i < n; i++) o[i] = o[i - 1] + (next() < 0.33 ? 0 : 1 + Math.floor(next() * 6));
        if (n > 4) for (let i = n >> 1; i < n; i++) o[i] += 1000;
        let nonempty = 0;
        let longest = 0;
        for (let i = 1; i < n; i++) {
          if (o[i] > o[i - 1]) nonempty++;
          longest = Math.max(longest, o[i] - o[i - 1]);
        }
        expect(counts(o), `n ${n}`).toEqual([nonempty, longest]);
      }
      expect(() => counts(new Float32Array(4) as never)).toThrow(/expected an Int32Array/);
    });

    it('bad offsets are still LAYOUT errors naming the argument, before any kernel runs', async () => {
      const ctx = (opened.avx2[1].ctx ?? opened.portable[1].ctx)!;
      const ro = Int32Array.from({ length: 101 }, (_, k) => 2 * k);
      ro[61] = 5;
      await expect(ctx.expandToTokens(new Float32Array(100), ro)).rejects.toMatchObject({
        code: 'LAYOUT',
        argument: 'responseOffsets',
        message: 'responseOffsets: expected non-decreasing offsets, but [60] = 120 > [61] = 5',
      });
      const go = Int32Array.from({ length: 21 }, (_, k) => 5 * k);
      go[17] = 3;
      await expect(ctx.advantages(new Float32Array(100), { groupOffsets: go })).rejects.toMatchObject({
        code: 'LAYOUT',
        argument: 'groupOffsets',
      });
    });
  },
);

// The shared case tables on the portable kernels (test/advantages*.cases.test.ts run the default ones).
const portable = opened.portable[1];
const portableBackend = [{ name: 'cpu' as const, ctx: portable.ctx, reason: portable.reason }];
runCaseTable('advantages (portable kernels)', ADVANTAGES_CASES, portableBackend);
runCaseTable('expandToTokens (portable kernels)', EXPAND_CASES, portableBackend);
runCaseTable('whiten (portable kernels)', WHITEN_CASES, portableBackend);
runCaseTable('advantages, NaN rewards (portable kernels)', ADVANTAGES_NAN_CASES, portableBackend);
