/**
 * Every op of the native cpu backend against the float64 reference (the js backend), on both code
 * paths (AVX2 + FMA + F16C, and the portable kernels), per element (atol + rtol·|want| + crtol·scale):
 *
 *   logprobs, lse   2e-6·max(1, |want|) + 4u·max|x/T| of the row (the f32 rounding of x·(1/T))
 *   entropy         the same
 *   Σp²             4e-6 relative + 4u·Σp²·max|x/T|
 *   backward        one ulp of the output dtype + 4u of the terms' scale (as the GPU backends)
 *   gatherProbs     one f32 ulp (it computes in f64)
 *   advantages      one f32 ulp + 1e-6 of the group's largest |advantage|; mean, std 1e-6 relative
 *   whiten          one f32 ulp + 1e-6
 *   THR, tau        1e-5 of the group's largest |THR| (bound of the issue; f32 products)
 *   thrReweight     one f32 ulp
 * The header of each kernel (native/cpu/*.cc) derives these bounds. Outputs are poisoned first, so an
 * element a kernel never writes shows. Shapes cover V = 1, 7, 257 and 151936 (misaligned rows, tails
 * of every length), f16/bf16 edge values (subnormals, the largest finite values, ±Inf, NaN), masked
 * (−Inf) vocabularies, ignored rows, ties, and temperatures 1 and 0.7.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { setOutputPoison } from '../../src/debug.js';
import { createContext, type FloatDType, GrpoKernelsError } from '../../src/index.js';
import { expectSameBits } from '../cases/check.js';
import { makeAdvantagesCase, raggedGroupSizes, readAdvantages } from '../fixtures/advantages.js';
import { decodeLogits, makeLogprobsCase } from '../fixtures/logprobs.js';
import {
  makeReweightCase,
  makeThrCase,
  REWEIGHT_VARIANTS,
  randomGroups,
  runThr,
  thrGroupErrors,
} from '../fixtures/thr.js';
import { POISON_F32 } from '../util/compare.js';
import { randomNormal } from '../util/rng.js';
import { expectWithin, openBothPaths, U } from './helpers.js';

const paths = await openBothPaths();
const js = await createContext({ backend: 'js' });
afterAll(() => {
  js.dispose();
  for (const p of paths) p.ctx?.dispose();
});

/** Max |x/T| per row of decoded logits (finite values only). */
function rowZmax(x: Float64Array, rows: number, vocab: number, T: number): Float64Array {
  const out = new Float64Array(rows);
  for (let i = 0; i < rows; i++) {
    let m = 0;
    for (let j = 0; j < vocab; j++) {
      const v = Math.abs(x[i * vocab + j] / T);
      if (Number.isFinite(v)) m = Math.max(m, v);
    }
    out[i] = m;
  }
  return out;
}

/** f16/bf16 edge values and special rows, appended to a case's logits (as bits for f16/bf16). */
function edgeRows(dtype: FloatDType, vocab: number): { values: Float32Array; targets: number[] } {
  const big = dtype === 'f16' ? 65504 : dtype === 'bf16' ? 3.3895313892515355e38 : 3.4028234663852886e38;
  const tiny = dtype === 'f16' ? 2 ** -24 : dtype === 'bf16' ? 2 ** -133 : 2 ** -149;
  const rows: number[][] = [];
  const targets: number[] = [];
  const row = (f: (j: number) => number, t: number) => {
    rows.push(Array.from({ length: vocab }, (_, j) => f(j)));
    targets.push(t);
  };
  // Subnormals and zeros of both signs: a near-uniform softmax.
  row((j) => (j % 3 === 0 ? tiny : j % 3 === 1 ? -tiny : j % 2 ? 0 : -0), vocab - 1);
  // The largest finite value once, the rest −big: the argmax holds all the mass.
  row((j) => (j === vocab >> 1 ? big : -big), vocab >> 1);
  // Ties at the max, the rest masked (−Inf), target on a tie.
  row((j) => (j % 4 === 0 ? 3 : Number.NEGATIVE_INFINITY), 0);
  // Every value below zero or −0, −0 the max, −Inf among them (bf16's pass 1 takes the min of its bits
  // as int16 where no value has the sign bit clear), then every value negative.
  row((j) => (j % 5 === 0 ? -0 : j % 5 === 1 ? Number.NEGATIVE_INFINITY : -0.25 * (1 + (j % 7))), 0);
  row((j) => -0.5 - 0.125 * (j % 13), vocab - 1);
  if (vocab >= 2) {
    // NaN in the row: every output NaN. +Inf in the row: every output NaN.
    row((j) => (j === 1 ? Number.NaN : j * 0.01), 0);
    row((j) => (j === vocab - 1 ? Number.POSITIVE_INFINITY : -j * 0.01), 0);
  }
  return { values: Float32Array.from(rows.flat()), targets };
}

function encode(dtype: FloatDType, v: Float32Array): Float32Array | Uint16Array {
  if (dtype === 'f32') return v;
  const out = new Uint16Array(v.length);
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (let i = 0; i < v.length; i++) {
    f[0] = v[i];
    const x = u[0];
    if (dtype === 'bf16') {
      out[i] = Number.isNaN(v[i]) ? 0x7fc0 : (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
    } else {
      // Values used here are exact in f16 (or ±Inf/NaN/0/±2^-24).
      const a = Math.abs(v[i]);
      const s = v[i] < 0 || Object.is(v[i], -0) ? 0x8000 : 0;
      if (Number.isNaN(v[i])) out[i] = 0x7e00;
      else if (a === Number.POSITIVE_INFINITY) out[i] = s | 0x7c00;
      else if (a === 0) out[i] = s;
      else if (a < 2 ** -14) out[i] = s | Math.round(a / 2 ** -24);
      else {
        const e = Math.floor(Math.log2(a));
        const m = Math.round((a / 2 ** e - 1) * 1024);
        out[i] = s | ((e + 15) << 10) | m;
      }
    }
  }
  return out;
}

interface LpCase {
  name: string;
  dtype: FloatDType;
  rows: number;
  vocab: number;
  logits: Float32Array | Uint16Array;
  targets: Int32Array;
}

function logprobsCases(): LpCase[] {
  const out: LpCase[] = [];
  for (const dtype of ['f32', 'f16', 'bf16'] as const) {
    for (const [vocab, rows] of [
      [1, 5],
      [7, 9],
      [257, 13],
      [151936, 4],
    ] as const) {
      const c = makeLogprobsCase({
        seed: vocab + rows,
        rows,
        vocab,
        dtype: 'f32',
        scale: 3,
        ignoreFraction: 0.2,
        maskFraction: vocab > 2 ? 0.1 : 0,
      });
      const edge = edgeRows(dtype, vocab);
      const values = new Float32Array(c.logits.length + edge.values.length);
      values.set(c.logits as Float32Array);
      values.set(edge.values, c.logits.length);
      const targets = Int32Array.from([...c.targets, ...edge.targets]);
      out.push({
        name: `${dtype} [${targets.length}, ${vocab}]`,
        dtype,
        rows: targets.length,
        vocab,
        logits: encode(dtype, values),
        targets,
      });
    }
  }
  return out;
}
const LP_CASES = logprobsCases();

for (const p of paths) {
  describe.skipIf(p.ctx === undefined)(
    `native cpu, ${p.path} kernels${p.reason ? ` (skipped: ${p.reason})` : ''}`,
    () => {
      describe('logprobs family', () => {
        it('forward: the exponential at its worst, coherently over a row (V = 151936)', async () => {
          // The forward's 2^t (simd.h, exp2_neg5) errs most, −3.7u and +2.2u, near the fractional parts
          // f = 0.2129 and −0.4375 of t = (x − max)·log2(e)/T: rows whose every t sits there add those
          // errors up with one sign (logprobs.cc's header bounds lse, entropy and Σp² for this).
          const ctx = p.ctx!;
          const V = 151936;
          const rows = [0.2129, -0.4375].map((f) =>
            Float32Array.from({ length: V }, (_, j) => (j === 0 ? 0 : (-1 - (j % 40) + f) * Math.LN2)),
          );
          const x = new Float32Array(2 * V);
          x.set(rows[0]);
          x.set(rows[1], V);
          const targets = Int32Array.from([0, 12345]);
          const opts = { entropy: true, sumSquares: true };
          const r = await ctx.logprobs(ctx.tensor(x, [2, V]), targets, opts);
          const w = await js.logprobs(js.tensor(x, [2, V]), targets, opts);
          const tol = { atol: 2e-6, rtol: 2e-6, crtol: 4 * U };
          const zmax = rowZmax(Float64Array.from(x), 2, V, 1);
          for (const k of ['logprobs', 'lse', 'entropy'] as const)
            expectWithin(await r[k]!.read(), await w[k]!.read(), tol, k, zmax);
          const ws = await w.sumSquares!.read();
          expectWithin(
            await r.sumSquares!.read(),
            ws,
            { atol: 1e-12, rtol: 4e-6, crtol: 4 * U },
            'sumSquares',
            Float64Array.from(zmax, (z, i) => z * Math.abs(ws[i])),
          );
        });

        it('forward, bf16: a NaN with its sign bit set makes its row NaN, wherever it sits', async () => {
          // bf16's pass 1 reads the bits as int16 (logprobs.cc), where a negative NaN sorts between −Inf
          // and −0: rows with positive values, with negative ones only, with −Inf only; a row without.
          const ctx = p.ctx!;
          const V = 9000; // three segments
          const f = new Float32Array(1);
          const u = new Uint32Array(f.buffer);
          const bf = (v: number) => {
            f[0] = v;
            return u[0] >>> 16; // the values below are exact in bf16
          };
          const rows: number[][] = [
            Array.from({ length: V }, (_, j) => bf((j % 9) * 0.5 - 2)),
            Array.from({ length: V }, (_, j) => bf(-1 - (j % 17) * 0.25)),
            Array.from({ length: V }, () => bf(Number.NEGATIVE_INFINITY)),
            Array.from({ length: V }, (_, j) => bf(-1 - (j % 17) * 0.25)),
          ];
          rows[0][5000] = 0xffc1;
          rows[1][8999] = 0xff81;
          rows[2][100] = 0xffff;
          const x = Uint16Array.from(rows.flat());
          const targets = Int32Array.from([1, 2, 3, 4]);
          const opts = { entropy: true, sumSquares: true };
          const r = await ctx.logprobs(ctx.tensor(x, [4, V], 'bf16'), targets, opts);
          const w = await js.logprobs(js.tensor(x, [4, V], 'bf16'), targets, opts);
          for (const k of ['logprobs', 'lse', 'entropy', 'sumSquares'] as const) {
            const got = await r[k]!.read();
            expect(Array.from(got, Number.isNaN), k).toEqual([true, true, true, false]);
            expectWithin(got.subarray(3), (await w[k]!.read()).subarray(3), { atol: 2e-6, rtol: 4e-6 }, k);
          }
        });

        for (const c of LP_CASES) {
          for (const T of [1, 0.7]) {
            it(`forward ${c.name}, T = ${T}: logprobs, lse, entropy, Σp² against float64`, async () => {
              const ctx = p.ctx!;
              const opts = { temperature: T, entropy: true, sumSquares: true };
              setOutputPoison(POISON_F32);
              let got: Record<string, Float32Array>;
              try {
                const r = await ctx.logprobs(
                  ctx.tensor(c.logits as Float32Array, [c.rows, c.vocab], c.dtype as 'f32'),
                  c.targets,
                  opts,
                );
                got = {
                  logprobs: await r.logprobs.read(),
                  lse: await r.lse.read(),
                  entropy: await r.entropy!.read(),
                  sumSquares: await r.sumSquares!.read(),
                };
                // Without the statistics: the same logprobs and lse, bit for bit.
                const plain = await ctx.logprobs(
                  ctx.tensor(c.logits as Float32Array, [c.rows, c.vocab], c.dtype as 'f32'),
                  c.targets,
                  { temperature: T },
                );
                expectSameBits(await plain.logprobs.read(), got.logprobs);
                expectSameBits(await plain.lse.read(), got.lse);
              } finally {
                setOutputPoison(undefined);
              }
              const w = await js.logprobs(
                js.tensor(c.logits as Float32Array, [c.rows, c.vocab], c.dtype as 'f32'),
                c.targets,
                opts,
              );
              const want = {
                logprobs: await w.logprobs.read(),
                lse: await w.lse.read(),
                entropy: await w.entropy!.read(),
                sumSquares: await w.sumSquares!.read(),
              };
              const zmax = rowZmax(decodeLogits(c.dtype, c.logits), c.rows, c.vocab, T);
              const tol = { atol: 2e-6, rtol: 2e-6, crtol: 4 * U };
              expectWithin(got.logprobs, want.logprobs, tol, 'logprobs', zmax);
              expectWithin(got.lse, want.lse, tol, 'lse', zmax);
              expectWithin(got.entropy, want.entropy, tol, 'entropy', zmax);
              const sqScale = Float64Array.from(zmax, (z, i) => z * Math.abs(want.sumSquares[i]));
              expectWithin(
                got.sumSquares,
                want.sumSquares,
                { atol: 1e-12, rtol: 4e-6, crtol: 4 * U },
                'sumSquares',
                sqScale,
              );
            });
          }

          it(`backward ${c.name}: out of place, in place (same bits), with gradEntropy`, async () => {
            const ctx = p.ctx!;
            const T = 0.7;
            // Rows whose max|x/T| reaches 2^24 (the largest-finite edge row) are skipped: the backward takes
            // lse in f32, so p is meaningless there on every backend (docs/DESIGN.md, "Temperature");
            // so are the NaN and +Inf rows (the last two).
            const zm = rowZmax(decodeLogits(c.dtype, c.logits), c.rows, c.vocab, T);
            const finite = c.targets.map((t, i) =>
              t === -100 || i >= c.rows - 2 || zm[i] >= 2 ** 24 ? -100 : t,
            );
            const fw = await js.logprobs(
              js.tensor(c.logits as Float32Array, [c.rows, c.vocab], c.dtype as 'f32'),
              finite,
              { temperature: T, entropy: true },
            );
            const lse = await fw.lse.read();
            const ent = await fw.entropy!.read();
            const g = Float32Array.from(randomNormal(7, c.rows));
            const gE = Float32Array.from(randomNormal(8, c.rows, 0.5));
            for (const withEntropy of [false, true]) {
              const opts = withEntropy
                ? { temperature: T, gradEntropy: gE, entropy: ent }
                : { temperature: T };
              setOutputPoison(POISON_F32);
              let got: Float32Array | Uint16Array;
              let inPlace: Float32Array | Uint16Array;
              try {
                const x = ctx.tensor(c.logits as Float32Array, [c.rows, c.vocab], c.dtype as 'f32');
                got = await (await ctx.logprobsBackward(x, finite, lse, g, opts)).read();
                const y = await ctx.logprobsBackward(x, finite, lse, g, { ...opts, inPlace: true });
                expect(y).toBe(x);
                inPlace = await y.read();
              } finally {
                setOutputPoison(undefined);
              }
              expectSameBits(inPlace, got, 'in place = out of place');
              const want = await (
                await js.logprobsBackward(
                  js.tensor(c.logits as Float32Array, [c.rows, c.vocab], c.dtype as 'f32'),
                  finite,
                  lse,
                  g,
                  opts,
                )
              ).read();
              const x64 = decodeLogits(c.dtype, c.logits);
              const scale = new Float64Array(c.rows * c.vocab);
              for (let i = 0; i < c.rows; i++) {
                const gi = Math.abs(g[i]);
                const ge = withEntropy ? Math.abs(gE[i]) : 0;
                for (let j = 0; j < c.vocab; j++) {
                  const z = x64[i * c.vocab + j] / T;
                  const logp = z - lse[i];
                  const pr = Math.exp(logp);
                  const m = 1 + Math.abs(z) + Math.abs(lse[i]) + Math.abs(ent[i]);
                  const s = pr * m * (gi + ge * (Math.abs(logp + ent[i]) + 1)) + (j === finite[i] ? gi : 0);
                  scale[i * c.vocab + j] = Number.isFinite(s) ? s / T : 0;
                }
              }
              const tol = {
                atol: c.dtype === 'f16' ? 2 ** -24 : 1e-30,
                rtol: c.dtype === 'f32' ? 2 * U : c.dtype === 'f16' ? 2 ** -10 : 2 ** -7,
                crtol: 4 * U,
              };
              const dec = (a: Float32Array | Uint16Array) =>
                c.dtype === 'f32' ? a : decodeLogits(c.dtype, a);
              expectWithin(
                dec(got),
                dec(want),
                tol,
                `gradLogits${withEntropy ? ' (gradEntropy)' : ''}`,
                scale,
              );
            }
          });
        }

        it('gatherProbs: f32, f16, bf16 against float64', async () => {
          const ctx = p.ctx!;
          for (const dtype of ['f32', 'f16', 'bf16'] as const) {
            const c = makeThrCase({ seed: 3, groups: randomGroups(3, 5, 5, 9), dim: 4, vocabSize: 1001 });
            const lc = makeLogprobsCase({ seed: 4, rows: c.numTokens, vocab: 1001, dtype });
            // The reference's lse for both (gatherProbs takes lse as given).
            const x64 = js.tensor(lc.logits as Float32Array, [c.numTokens, 1001], dtype as 'f32');
            const lse = await (await js.logprobs(x64, c.tokens, { temperature: 0.7 })).lse.read();
            const run = async (k: typeof ctx) => {
              const x = k.tensor(lc.logits as Float32Array, [c.numTokens, 1001], dtype as 'f32');
              const vocab = await k.restrictedVocab(c.tokens, c.layout);
              const pr = await k.gatherProbs(x, lse, { layout: c.layout, vocab, temperature: 0.7 });
              return pr.read();
            };
            const got = await run(ctx);
            const want = await run(js);
            expectWithin(got, want, { atol: 1e-37, rtol: 4 * U, crtol: 0 }, `probs ${dtype}`);
          }
        });

        it('a bad target in a Tensor rejects the op with the RANGE error of the host check', async () => {
          const ctx = p.ctx!;
          const x = ctx.tensor(Float32Array.from(randomNormal(1, 4 * 9)), [4, 9]);
          const t = ctx.tensor(new Int32Array([1, -100, 9, 12]));
          const e = await ctx.logprobs(x, t).catch((err: unknown) => err);
          expect(e).toBeInstanceOf(GrpoKernelsError);
          expect(e).toMatchObject({ code: 'RANGE', argument: 'targets' });
          expect((e as Error).message).toBe(
            'targets: expected values in [0, 9) or ignoreIndex (-100), got targets[2] = 9',
          );
          const e2 = await ctx
            .logprobsBackward(x, t, new Float32Array(4), new Float32Array(4))
            .catch((err: unknown) => err);
          expect(e2).toMatchObject({ code: 'RANGE', argument: 'targets' });
          // The context stays usable.
          const ok = await ctx.logprobs(x, new Int32Array([0, 1, 2, 3]));
          expect((await ok.lse.read()).every(Number.isFinite)).toBe(true);
        });

        it('a row of all −Inf is a RANGE error naming the lowest such row', async () => {
          const ctx = p.ctx!;
          const v = Float32Array.from(randomNormal(2, 5 * 300));
          for (const r of [1, 3]) v.fill(Number.NEGATIVE_INFINITY, r * 300, (r + 1) * 300);
          const e = await ctx
            .logprobs(ctx.tensor(v, [5, 300]), ctx.tensor(new Int32Array([0, 1, 2, 3, 4])))
            .catch((err: unknown) => err);
          expect(e).toMatchObject({ code: 'RANGE', argument: 'logits' });
          expect((e as Error).message).toMatch(/^logits: row 1 has every element −Inf/);
        });
      });

      describe('advantages family', () => {
        const estimators = [
          'grpo',
          'dr_grpo',
          'rloo',
          'opo',
          'grpo_passk',
          'gpg',
          'reinforce_pp_baseline',
        ] as const;
        for (const rewards of ['continuous', 'binary', 'offset'] as const) {
          for (const preset of [undefined, 'verl', 'trl', 'openrlhf'] as const) {
            it(`every estimator, ${rewards} rewards, preset ${preset ?? 'none'}, ragged groups`, async () => {
              const ctx = p.ctx!;
              const sizes = [...raggedGroupSizes(11, 400, 12), 1, 0, 2, 70001];
              const c = makeAdvantagesCase({
                seed: 12,
                groupSizes: sizes,
                rewards,
                zeroVarianceFraction: 0.1,
              });
              for (const estimator of estimators) {
                if (estimator === 'grpo_passk' && c.spec.groupSizes.some((n) => n < 2)) continue;
                for (const scale of estimator === 'grpo'
                  ? (['group', 'batch', 'none'] as const)
                  : ([undefined] as const)) {
                  const opts = {
                    groupOffsets: c.groupOffsets,
                    responseOffsets: c.responseOffsets,
                    estimator,
                    ...(preset ? { preset } : {}),
                    ...(scale ? { scale } : {}),
                  };
                  setOutputPoison(POISON_F32);
                  let got: Awaited<ReturnType<typeof readAdvantages>>;
                  try {
                    got = await readAdvantages(ctx, c.rewards, opts);
                  } finally {
                    setOutputPoison(undefined);
                  }
                  const want = await readAdvantages(js, c.rewards, opts);
                  const what = `${estimator}${scale ? `/${scale}` : ''}`;
                  // Scale of an advantage: its group's largest |advantage| (the tensor's for per-token).
                  const adv = new Float64Array(want.adv.length);
                  if (estimator === 'reinforce_pp_baseline')
                    adv.fill(want.adv.reduce((m, v) => Math.max(m, Math.abs(v)), 0));
                  else
                    for (let g = 0; g < c.numGroups; g++) {
                      let m = 0;
                      for (let i = c.groupOffsets[g]; i < c.groupOffsets[g + 1]; i++)
                        m = Math.max(m, Math.abs(want.adv[i]));
                      for (let i = c.groupOffsets[g]; i < c.groupOffsets[g + 1]; i++) adv[i] = m;
                    }
                  expectWithin(
                    got.adv,
                    want.adv,
                    { atol: 0, rtol: 2 * U, crtol: 1e-6 },
                    `${what} advantages`,
                    adv,
                  );
                  expectWithin(got.mean, want.mean, { atol: 0, rtol: 1e-6 }, `${what} mean`);
                  expectWithin(got.std, want.std, { atol: 0, rtol: 1e-6 }, `${what} std`);
                  expect(Array.from(got.deg), `${what} degenerate`).toEqual(Array.from(want.deg));
                }
              }
            });
          }
        }

        it('whiten (mask, maskEps, sample/population, add/clamp, keepMean) and expandToTokens', async () => {
          const ctx = p.ctx!;
          const n = 200003;
          const x = Float32Array.from(randomNormal(21, n, 3, 1e6));
          const mask = Uint8Array.from(randomNormal(22, n), (v) => (v > -0.5 ? 1 : 0));
          for (const preset of [undefined, 'verl', 'trl', 'openrlhf'] as const) {
            for (const m of [undefined, mask]) {
              for (const keepMean of [false, true]) {
                const opts = { ...(m ? { mask: m } : {}), ...(preset ? { preset } : {}), keepMean };
                const got = await (await ctx.whiten(x, opts)).read();
                const want = await (await js.whiten(x, opts)).read();
                expectWithin(
                  got,
                  want,
                  { atol: 1e-6, rtol: 2 * U },
                  `whiten ${preset ?? 'none'}${m ? ' masked' : ''}${keepMean ? ' keepMean' : ''}`,
                );
              }
            }
          }
          const c = makeAdvantagesCase({ seed: 23, groupSizes: raggedGroupSizes(24, 5000, 9) });
          const got = await (await ctx.expandToTokens(c.rewards, c.responseOffsets)).read();
          const want = await (await js.expandToTokens(c.rewards, c.responseOffsets)).read();
          expectSameBits(got, want);
        });

        it('expandToTokens: lengths around the staging buffer (1024 tokens) and the 8-store path (32), across items', async () => {
          const ctx = p.ctx!;
          // 9000 responses (3 items of 4096) whose lengths cycle through the kernel's cases: empty, under
          // a vector, at and past 32, and past the 1024-token staging chunk; values NaN and −0 included.
          const lengths = [0, 1, 3, 4, 5, 31, 32, 33, 64, 1023, 1024, 1025, 2500, 7, 0, 2];
          const R = 9000;
          const ro = new Int32Array(R + 1);
          for (let i = 0; i < R; i++) ro[i + 1] = ro[i] + lengths[(i * 7) % lengths.length];
          const values = Float32Array.from(randomNormal(25, R));
          values[5] = Number.NaN;
          values[6] = -0;
          for (const offset of [0, 1]) {
            // offset 1: the output's stream alignment falls elsewhere (a response of 1 token first).
            const r = offset ? Float32Array.from([9, ...values]) : values;
            const o = offset ? Int32Array.from([0, ...Array.from(ro, (t) => t + 1)]) : ro;
            const got = await (await ctx.expandToTokens(r, o)).read();
            const want = await (await js.expandToTokens(r, o)).read();
            expectSameBits(got, want);
          }
        });

        it('whiten: blocks with no valid element, NaN and ±Inf outside the mask, a tail under 8', async () => {
          const ctx = p.ctx!;
          const n = 3 * 8192 + 5;
          const x = Float32Array.from(randomNormal(26, n, 2, 7));
          const mask = Uint8Array.from(randomNormal(27, n), (v) => (v > 0 ? 1 : 0));
          mask.fill(0, 8192, 2 * 8192); // the second block: nothing valid
          for (const i of [3, 8195, 9000, n - 2]) {
            x[i] = i % 2 ? Number.NaN : Number.POSITIVE_INFINITY;
            mask[i] = 0;
          }
          for (const preset of [undefined, 'verl'] as const) {
            const opts = { mask, ...(preset ? { preset } : {}) };
            const got = await (await ctx.whiten(x, opts)).read();
            const want = await (await js.whiten(x, opts)).read();
            expectWithin(got, want, { atol: 1e-6, rtol: 2 * U }, `whiten ${preset ?? 'none'}`);
          }
        });
      });

      describe('THR family', () => {
        for (const dtype of ['f32', 'f16', 'bf16'] as const) {
          it(`tokenHiddenReward ${dtype}: ragged groups, degenerate groups, one large group, within 1e-5 of max|THR_g|`, async () => {
            const ctx = p.ctx!;
            const groups = [
              ...randomGroups(31, 12, 6, 40),
              [{ length: 5, correct: true }],
              [],
              // Large enough to take the pool's parallel path (≥ 2^22 multiply-adds).
              Array.from({ length: 8 }, (_, i) => ({ length: 150 + i, correct: i % 2 === 0 })),
            ];
            for (const dim of [1, 37, 257]) {
              const c = makeThrCase({ seed: 32 + dim, groups, dim, vocabSize: 5000, dtype });
              for (const weighting of ['length', 'none'] as const) {
                setOutputPoison(POISON_F32);
                let got: { thr: Float32Array; tau: Float32Array };
                try {
                  got = await runThr(ctx, c, { weighting, beta: 0.9 });
                } finally {
                  setOutputPoison(undefined);
                }
                const want = await runThr(js, c, { weighting, beta: 0.9 });
                const r = thrGroupErrors(
                  c,
                  got.thr,
                  got.tau,
                  { thr: Float64Array.from(want.thr), tau: Float64Array.from(want.tau) },
                  1e-5,
                );
                expect(r.bad, `d = ${dim}, ${weighting}: worst ${r.worst.toExponential(2)}`).toEqual([]);
              }
            }
          });
        }

        it('thrReweight: every mode, against float64', async () => {
          const ctx = p.ctx!;
          const rc = makeReweightCase({ nanInputs: true });
          for (const v of REWEIGHT_VARIANTS) {
            const args = {
              tokenAdvantages: rc.A,
              thr: rc.thr,
              tau: rc.tau,
              layout: rc.c.layout,
              correct: rc.c.correct,
              ...v,
            };
            const got = await (await ctx.thrReweight(args)).read();
            const want = await (await js.thrReweight(args)).read();
            expectWithin(
              got,
              want,
              { atol: 0, rtol: 2 * U },
              `${v.mode} p=${v.p} mask=${v.mask} eta=${v.eta}`,
            );
          }
        });
      });
    },
  );
}
