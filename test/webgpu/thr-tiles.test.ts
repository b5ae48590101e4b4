/**
 * webgpu tokenHiddenReward's register-blocked tiles (shaders/thr.wgsl: thr_m and thr_score own
 * 64 × 64 output tiles, 4 × 4 per invocation, k-steps of 16; thr_score's workgroups take
 * 128-column slices of V*, folded in order by thr_fold) against float64 brute force (the pairwise
 * double sum of docs/THR.md item 3: bruteThr in test/fixtures/thr.ts), on shapes that leave partial
 * tiles everywhere: d = 1, 13, 16, 63, 64, 65, 70, 200; |V*_g| = 63, 64, 65, 129 and random ones
 * above 64 and 128 (several slices); T_g = 64, 65, above 128; several groups per call (a
 * degenerate one among them), f32, bf16 and f16 hidden states, both weightings. Also: a group's
 * bits do not depend on the groups batched with it, its position, or the chunking (batch
 * invariance of the tiling).
 *
 * Tolerance (per token t of group g, as test/cuda/ops-thr-precision.test.ts): |THR_t − THR*_t| /
 * max_{u∈g} |THR*_u|, THR* the f64 value; tau_g to the same scale. The scale is the group's largest
 * |THR*| because s_t cancels (terms of either sign over the correct tokens), so a token near zero
 * carries the absolute error of the sum. The bound is STYLE.md's rule for reduced precision: at
 * most twice the error of the same matrix form computed in f32 in this file (f32Thr: g = 1 − q
 * rounded, M summed over correct tokens in order, U over d in order, s over V* in order, each
 * operation rounded to f32), plus 2^-24 so that a case whose f32 reference happens to be nearly
 * exact is not held to zero. The kernel sums M and U in the same order (it may fuse multiply-adds)
 * and s in lane-blocked partial sums, so it is no worse than that reference. Measured on lavapipe:
 * 2.1e-7..4.9e-7 of max|THR_g| per case (the f32 reference: 2.2e-7..5.6e-7; the kernel's error
 * over the reference's between 0.53 and 0.97), under test/webgpu/thr.test.ts's THR_RTOL of 5e-6.
 * A kernel that drops the last partial k-step of U measures 6e-2..1 here.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Weighting } from '../../src/backends/backend.js';
import { thrTuning } from '../../src/backends/webgpu/thr.js';
import { setOutputPoison } from '../../src/debug.js';
import { expectSameBits } from '../cases/check.js';
import {
  bruteThr,
  buildTileCase,
  DEGENERATE_GROUPS,
  degenerate,
  largestGroupBytes,
  makeThrCase,
  type ResponseSpec,
  randomGroups,
  runThr,
  spliceCase,
  type ThrCase,
  type ThrTileCase,
  uniformGroup,
} from '../fixtures/thr.js';
import { expectNoPoison, POISON_F32 } from '../util/compare.js';
import { gpu, noGpu, requireAdapter, resetTuning } from './setup.js';

requireAdapter();

/** Slack added to twice the f32 reference's error (see the header). */
const FLOOR = 2 ** -24;

/**
 * The matrix form in f32, every operation rounded (Math.fround), sums in index order: the
 * reference "computed in the kernel's own precision". THR signed, tau as docs/THR.md items 4–5.
 */
function f32Thr(c: ThrCase, weighting: Weighting): { thr: Float64Array; tau: Float64Array } {
  const f = Math.fround;
  const { responseOffsets: ro, groupOffsets: go } = c.layout;
  const d = c.dim;
  const H = c.hidden64; // f32, f16 and bf16 values are all exact in f32
  const thr = new Float64Array(c.numTokens);
  const tau = new Float64Array(c.numGroups).fill(Number.NaN);
  for (let g = 0; g < c.numGroups; g++) {
    if (degenerate(c.layout, c.correct, g)) continue;
    const t0 = ro[go[g]];
    const K = c.vocabOffsets[g + 1] - c.vocabOffsets[g];
    const gErr = (t: number, v: number) =>
      f((v === c.tokenColumn[t] ? 1 : 0) - c.probs[c.probsOffsets[g] + (t - t0) * K + v]);
    const M = new Float64Array(K * d);
    for (let r = go[g]; r < go[g + 1]; r++) {
      if (!c.correct[r]) continue;
      const w = f(weighting === 'length' ? 1 / (ro[r + 1] - ro[r]) : 1);
      for (let u = ro[r]; u < ro[r + 1]; u++) {
        for (let v = 0; v < K; v++) {
          const gv = gErr(u, v);
          for (let k = 0; k < d; k++) M[v * d + k] = f(M[v * d + k] + f(gv * f(w * H[u * d + k])));
        }
      }
    }
    let best = Number.POSITIVE_INFINITY;
    for (let r = go[g]; r < go[g + 1]; r++) {
      let sum = 0;
      for (let t = ro[r]; t < ro[r + 1]; t++) {
        let s = 0;
        for (let v = 0; v < K; v++) {
          let u = 0;
          for (let k = 0; k < d; k++) u = f(u + f(H[t * d + k] * M[v * d + k]));
          s = f(s + f(gErr(t, v) * u));
        }
        thr[t] = c.correct[r] ? s : -s;
        sum = f(sum + s);
      }
      if (c.correct[r] && ro[r + 1] > ro[r]) best = Math.min(best, f(sum / (ro[r + 1] - ro[r])));
    }
    tau[g] = best;
  }
  return { thr, tau };
}

/**
 * Worst error of THR and tau over the groups, each relative to its group's max |THR*| (see the
 * header); non-finite values must match in class (tau of a degenerate group is NaN on both sides).
 */
function worstError(c: ThrCase, got: ArrayLike<number>[], ref: ReturnType<typeof bruteThr>) {
  const [thr, tau] = got;
  const { responseOffsets: ro, groupOffsets: go } = c.layout;
  let worst = 0;
  let where = '';
  const bad: string[] = [];
  const note = (what: string, a: number, b: number, scale: number) => {
    if (!Number.isFinite(a) || !Number.isFinite(b)) {
      if (!Object.is(a, b) && !(Number.isNaN(a) && Number.isNaN(b)) && bad.length < 5)
        bad.push(`${what}: got ${a}, expected ${b} (class mismatch)`);
      return;
    }
    const e = scale > 0 ? Math.abs(a - b) / scale : Math.abs(a - b);
    if (e > worst) {
      worst = e;
      where = `${what} (got ${a}, expected ${b})`;
    }
  };
  for (let g = 0; g < c.numGroups; g++) {
    let scale = 0;
    for (let t = ro[go[g]]; t < ro[go[g + 1]]; t++) scale = Math.max(scale, Math.abs(ref.thr[t]));
    for (let t = ro[go[g]]; t < ro[go[g + 1]]; t++) note(`thr[${t}] (group ${g})`, thr[t], ref.thr[t], scale);
    note(`tau[${g}]`, tau[g], ref.tau[g], scale);
  }
  return { worst, where, bad };
}

const randomBig = (seed: number) => randomGroups(seed, 3, 8, 40); // T_g up to 320, |V*_g| > 64
const CASES: ThrTileCase[] = [
  {
    name: 'd = 1, T_g = 120 and 65, random |V*| > 64',
    dim: 1,
    dtype: 'f32',
    weighting: 'length',
    groups: [uniformGroup(6, 20, 3), ...randomBig(101), DEGENERATE_GROUPS[1], uniformGroup(5, 13, 2)],
    vocabSize: 300,
  },
  {
    name: 'd = 13 bf16, random groups up to 320 tokens',
    dim: 13,
    dtype: 'bf16',
    weighting: 'none',
    groups: [...randomBig(102), uniformGroup(8, 40, 4)],
    vocabSize: 400,
  },
  {
    name: 'd = 200, peaked probabilities, shared hidden component',
    dim: 200,
    dtype: 'f32',
    weighting: 'length',
    groups: [uniformGroup(6, 25, 2), ...randomGroups(103, 2, 6, 30), DEGENERATE_GROUPS[2]],
    vocabSize: 250,
    llmLike: true,
  },
  {
    name: 'd = 200 f16, weighting none',
    dim: 200,
    dtype: 'f16',
    weighting: 'none',
    groups: [...randomGroups(104, 2, 8, 30), uniformGroup(3, 23, 1)],
    vocabSize: 250,
  },
  {
    name: 'd = 70, one group of 8 × 40 tokens (T_g = 320)',
    dim: 70,
    dtype: 'f32',
    weighting: 'length',
    groups: [uniformGroup(8, 40, 4)],
    vocabSize: 500,
    llmLike: true,
  },
  // Tile edges exactly, and one past / one short: |V*| fixed per group, T_g = 64 or 65 (130).
  {
    name: '|V*| 63, d 64, T_g 64',
    dim: 64,
    dtype: 'f32',
    weighting: 'length',
    groups: [uniformGroup(4, 16, 2), uniformGroup(2, 32, 1)],
    vocabSize: 300,
    exactVocab: 63,
  },
  {
    name: '|V*| 64, d 65, T_g 64',
    dim: 65,
    dtype: 'f32',
    weighting: 'none',
    groups: [uniformGroup(4, 16, 2), uniformGroup(8, 8, 3)],
    vocabSize: 300,
    exactVocab: 64,
  },
  {
    name: '|V*| 65, d 63, T_g 65',
    dim: 63,
    dtype: 'bf16',
    weighting: 'length',
    groups: [uniformGroup(5, 13, 2), uniformGroup(5, 13, 4)],
    vocabSize: 300,
    exactVocab: 65,
  },
  {
    name: '|V*| 129, d 16, T_g 130',
    dim: 16,
    dtype: 'f32',
    weighting: 'length',
    groups: [uniformGroup(10, 13, 4), uniformGroup(2, 65, 1)],
    vocabSize: 300,
    exactVocab: 129,
  },
];

describe.skipIf(noGpu)('webgpu THR register-blocked tiles vs float64 brute force', () => {
  beforeEach(() => {
    resetTuning(gpu!.backend);
    thrTuning.maxChunkBytes = undefined;
    setOutputPoison(POISON_F32);
  });
  afterEach(() => setOutputPoison(undefined));

  CASES.forEach((tc, i) => {
    it(`${tc.name} (${tc.dtype}, weighting ${tc.weighting}): within 2 × the f32 matrix form's error`, async () => {
      const c = buildTileCase(tc, 500 + i);
      const K = Array.from(c.vocabOffsets.subarray(1), (x, g) => x - c.vocabOffsets[g]);
      const T = Array.from(c.layout.groupOffsets.subarray(1), (r, g) => {
        const ro = c.layout.responseOffsets;
        return ro[r] - ro[c.layout.groupOffsets[g]];
      });
      expect(Math.max(...K), 'some group has a partial or second V* tile').toBeGreaterThan(62);
      expect(Math.max(...T), 'some group has 64 tokens or more').toBeGreaterThanOrEqual(64);
      const got = await runThr(gpu!.ctx, c, { weighting: tc.weighting });
      expectNoPoison(got.thr, 'thr');
      expectNoPoison(got.tau, 'tau');
      const ref = bruteThr(c, tc.weighting);
      const own = f32Thr(c, tc.weighting);
      const e = worstError(c, [got.thr, got.tau], ref);
      const e32 = worstError(c, [own.thr, own.tau], ref);
      expect(e.bad, 'class mismatches').toEqual([]);
      expect(e32.bad, 'class mismatches of the f32 reference').toEqual([]);
      const bound = 2 * e32.worst + FLOOR;
      expect(
        e.worst,
        `worst ${e.worst.toExponential(2)} of max|THR_g| at ${e.where}; f32 matrix form ${e32.worst.toExponential(2)}`,
      ).toBeLessThanOrEqual(bound);
    });
  });
});

describe.skipIf(noGpu)('webgpu THR tiles are batch invariant', () => {
  beforeEach(() => {
    resetTuning(gpu!.backend);
    thrTuning.maxChunkBytes = undefined;
  });

  it('a group gives the same bits alone, among other groups at any position, and chunked', async () => {
    // The probe: 130 tokens, |V*| 129 (three token blocks and three V* tiles, partial), d = 70.
    const probe = uniformGroup(10, 13, 4);
    const others = [...randomGroups(601, 3, 8, 30), DEGENERATE_GROUPS[0], uniformGroup(5, 13, 2)];
    const layouts: ResponseSpec[][][] = [
      [probe],
      [others[0], probe, others[1]],
      [...others, probe],
      [probe, ...others.slice().reverse()],
    ];
    // Every layout holds the probe's data identically: the probe's rows are built from its own
    // case, the others' from theirs, spliced together.
    const probeCase = makeThrCase({ seed: 600, groups: [probe], dim: 70, vocabSize: 300, exactVocab: 129 });
    const alone = await runThr(gpu!.ctx, probeCase);
    for (const [li, groups] of layouts.entries()) {
      const at = groups.indexOf(probe);
      const c = spliceCase(probeCase, makeThrCase({ seed: 610 + li, groups, dim: 70, vocabSize: 300 }), at);
      for (const cap of [undefined, 'small'] as const) {
        thrTuning.maxChunkBytes = cap === 'small' ? largestGroupBytes(c) : undefined;
        const got = await runThr(gpu!.ctx, c);
        if (cap === 'small' && groups.length > 1)
          expect(thrTuning.lastChunks, 'several chunks').toBeGreaterThan(1);
        const ro = c.layout.responseOffsets;
        const t0 = ro[c.layout.groupOffsets[at]];
        const what = `layout ${li}, probe at group ${at}, ${cap === 'small' ? `${thrTuning.lastChunks} chunks` : 'one chunk'}`;
        expectSameBits(got.thr.subarray(t0, t0 + probeCase.numTokens), alone.thr, `${what}: thr`);
        expectSameBits(got.tau.subarray(at, at + 1), alone.tau, `${what}: tau`);
      }
    }
  });
});
