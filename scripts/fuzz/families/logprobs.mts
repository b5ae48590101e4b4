/**
 * Family 'logprobs': logprobs (with entropy and Σp²) on [N, V] logits of every dtype, then
 * logprobsBackward (out of place or in place, with or without gradEntropy) from js's lse and entropy.
 *
 * Inputs: N ≤ 12, V ≤ 300 (powers of two and their neighbours; in one case of 16 N ≤ 6 rows of 8000 to
 * 50000 columns, several 32 KiB chunks), temperatures from 1e-3 to 1e3, logits
 * N(0, s²) with s up to 30, rounded to integers (ties) in some cases, and in others ±Inf, NaN or ±1e4
 * elements, an all −Inf row (a RANGE error at the read), an out-of-range target (RANGE), ignored rows,
 * ignoreIndex 0, targets as a host array or a device tensor (checked by the kernel's flag).
 *
 * Tolerances: test/cases/tolerances.ts (logprobs, logprobsBackward), with the scales of
 * test/cases/logprobs.ts: bruteForward's zmax (forwardWants) and bruteBackward's scale, computed
 * from the same decoded inputs and js's f32 lse and entropy (the backward's inputs on both backends).
 * The backward is not compared where max|x|/T ≥ 2^24, which docs/DESIGN.md states is meaningless
 * on every backend (its f32 lse carries an exponent error of |lse|·2^-24).
 */
import type { Context, LogprobsResult, Tensor } from '../../../src/index.js';
import { bruteBackward, bruteForward, forwardWants } from '../../../test/cases/logprobs.js';
import { TOLERANCES } from '../../../test/cases/tolerances.js';
import { FLOAT_DTYPES, floatData } from '../gen.mjs';
import { type Family, type Keep, readValues, type Values } from '../harness.mjs';

/** Every output of a logprobs-shaped result, read back (all registered first, so none leaks). */
export async function readLogprobs(res: LogprobsResult, keep: Keep): Promise<Values> {
  for (const t of [res.logprobs, res.lse, res.entropy, res.sumSquares]) keep(t);
  const out: Values = { logprobs: await readValues(res.logprobs), lse: await readValues(res.lse) };
  if (res.entropy) out.entropy = await readValues(res.entropy);
  if (res.sumSquares) out.sumSquares = await readValues(res.sumSquares);
  return out;
}

export const logprobsFamily: Family = {
  name: 'logprobs',
  ops: 'logprobs, logprobsBackward',
  async run(r, s) {
    const dtype = r.pick(FLOAT_DTYPES);
    // One case in 16 has long rows: several of the kernels' 32 KiB column chunks (8192 f32 or 16384
    // f16/bf16 columns), a short last one, and the split forward's merge.
    const big = r.bool(1 / 16);
    const N = big ? r.int(1, 6) : r.pick([0, 1, 2, 3, r.int(0, 12), r.int(0, 12)]);
    const V = big
      ? r.pick([8192, 16384, 16385, r.int(8000, 50000)])
      : r.pick([1, 2, 3, 5, 7, 31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 256, 257, r.int(1, 300)]);
    const T = r.bool(0.02) ? 2 ** -126 : r.pick([1, 1, 0.7, 1.3, 1e-3, 1e-2, 0.05, 50, 1e3]);
    const ignoreIndex = r.pick([-100, -100, -1, 0]);
    const sd = r.pick([1, 3, 10, 30]);
    const x = r.normals(N * V, sd);
    const mode = r.u();
    if (mode < 0.1) for (let i = 0; i < x.length; i++) x[i] = Math.round(x[i] / sd);
    else if (mode < 0.2 && x.length > 0)
      for (let k = 0; k < 3; k++)
        x[r.int(0, x.length - 1)] = r.pick([Infinity, -Infinity, -Infinity, Number.NaN, 1e4, -1e4]);
    if (N > 0 && r.bool(0.03)) {
      const row = r.int(0, N - 1);
      x.fill(-Infinity, row * V, row * V + V);
    }
    const logits = floatData(dtype, x);
    const targets = Int32Array.from({ length: N }, () => (r.bool(0.15) ? ignoreIndex : r.int(0, V - 1)));
    if (N > 0 && r.bool(0.03)) targets[r.int(0, N - 1)] = r.pick([V, -2]);
    const onDevice = r.bool(0.3);
    const entropy = r.bool(0.6);
    const sumSquares = r.bool(0.5);
    const desc = `${dtype} N=${N} V=${V} T=${T} sd=${sd} ignoreIndex=${ignoreIndex} entropy=${entropy} sumSquares=${sumSquares} deviceTargets=${onDevice}`;

    const upload = (ctx: Context, keep: Keep) => ({
      L: keep(ctx.tensor(logits.bits, [N, V], dtype)),
      t: onDevice ? keep(ctx.tensor(targets)) : targets,
    });
    const fwd = await s.compare({
      op: 'logprobs',
      desc,
      async run(ctx, keep) {
        const { L, t } = upload(ctx, keep);
        return readLogprobs(
          await ctx.logprobs(L, t, { temperature: T, ignoreIndex, entropy, sumSquares }),
          keep,
        );
      },
      expect() {
        const w = forwardWants(bruteForward(logits.values, N, V, targets, T, ignoreIndex));
        const tol = TOLERANCES.logprobs[dtype];
        return {
          logprobs: { tol: tol.logprobs, scale: w.logprobs.scale },
          lse: { tol: tol.lse, scale: w.lse.scale },
          entropy: { tol: tol.entropy, scale: w.entropy.scale },
          sumSquares: { tol: tol.sumSquares, scale: w.sumSquares.scale },
        };
      },
    });
    // docs/DESIGN.md (logprobs family): the backward takes lse in f32, so p = e^{z − lse} is exact to
    // f32 while max|x|/T ≪ 2^24 and meaningless on every backend far beyond (T = 2^-126): not compared.
    let zmax = 0;
    for (const v of logits.values) if (Number.isFinite(v)) zmax = Math.max(zmax, Math.abs(v / T));
    if (fwd === undefined || N === 0 || zmax >= 2 ** 24 || !r.bool(0.7)) return;

    // The backward, from js's lse and entropy (host f32 arrays: the same inputs on both backends).
    const lse = Float32Array.from(fwd.lse);
    const H = fwd.entropy ? Float32Array.from(fwd.entropy) : undefined;
    const g = Float32Array.from(r.normals(N, r.pick([1, 1, 10])));
    const gE = H && r.bool(0.5) ? Float32Array.from(r.normals(N)) : undefined;
    const inPlace = r.bool(0.4);
    await s.compare({
      op: 'logprobsBackward',
      desc: `${desc} inPlace=${inPlace} gradEntropy=${gE !== undefined}`,
      async run(ctx, keep) {
        const { L, t } = upload(ctx, keep);
        const grad: Tensor = await ctx.logprobsBackward(L, t, lse, g, {
          temperature: T,
          ignoreIndex,
          inPlace,
          ...(gE ? { gradEntropy: gE, entropy: H } : {}),
        });
        return { gradLogits: await readValues(keep(grad)) };
      },
      expect() {
        const b = bruteBackward(logits.values, N, V, targets, ignoreIndex, T, lse, gE && H, g, gE);
        const tol = TOLERANCES.logprobsBackward[dtype];
        return { gradLogits: { tol: inPlace ? tol.gradLogitsInPlace : tol.gradLogits, scale: b.scale } };
      },
    });
  },
};
