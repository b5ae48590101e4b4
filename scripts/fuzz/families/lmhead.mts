/**
 * Family 'lmhead': the fused LM head. linearLogprobs; the same outputs from 2 or 3 vocabulary shards
 * merged (linearLogprobStates on head shards, or logprobStates on shards of the materialised logits,
 * then mergeLogprobStates, in shard order or reversed); linearLogprobsBackward with gradDtype 'f32'
 * or 'input', with or without bias and gradEntropy.
 *
 * Inputs: N ≤ 12 rows (some ignored), d ≤ 96, V ≤ 300 (in one case of 16: N 65 to 200, d 97 to 200,
 * V 257 to 520, several tiles and k-steps), hidden ~ N(0, 1) and weight ~ N(0, s²/d) of
 * every dtype (logits of spread s = 1 or 3), a bias ~ N(0, 1), temperatures 0.05 to 2.
 *
 * Tolerances: test/cases/tolerances.ts (linearLogprobs, which also holds the merged shards;
 * linearLogprobsBackward, and linearLogprobsBackwardInput for gradDtype 'input'), with the scales of
 * test/lmhead/reference.ts: forward zmax + Â (Â = max_v (Σ_k |h w| + |b|)/T; Σp²·that for sumSquares),
 * gradients ρ·S1 + u·(1 + zmax + |lse| + Â)·S2 (backwardRef). The logit shards take zmax alone, as
 * test/cases/lmhead.ts's logitShardCase (their logits are inputs: no dot product to err).
 * gradDtype 'input': js runs with 'f32' (its f64 sums rounded once to f32: the exact gradient to u),
 * the reference the table's 'input' entry is stated against; js's own 'input' result is rounded to
 * the dtype too, and two roundings of nearby values may be a whole ulp (2ρ) apart. An f32 value past
 * the dtype's largest finite number counts as ±Inf there (what rounding it gives).
 */
import type { Context, FloatDType, LogprobStates, Tensor } from '../../../src/index.js';
import { TOLERANCES } from '../../../test/cases/tolerances.js';
import { backwardRef, forwardRef, type HeadInputs, logits } from '../../../test/lmhead/reference.js';
import { FLOAT_DTYPES, floatData } from '../gen.mjs';
import { type Family, type Keep, readValues } from '../harness.mjs';
import { readLogprobs } from './logprobs.mjs';

/** Rounding of a finite value at or past the midpoint above the dtype's largest finite one: ±Inf. */
const OVERFLOW: Record<FloatDType, number> = {
  f32: Number.POSITIVE_INFINITY,
  f16: 65520,
  bf16: 3.3961775e38,
};

function keepStates(st: LogprobStates, keep: Keep): LogprobStates {
  for (const t of [st.max, st.sumExp, st.sumExpDelta, st.sumExpSq, st.targetLogit]) keep(t);
  return st;
}

export const lmheadFamily: Family = {
  name: 'lmhead',
  ops: 'linearLogprobs, linearLogprobStates/logprobStates+mergeLogprobStates, linearLogprobsBackward',
  async run(r, s) {
    const dtype = r.pick(FLOAT_DTYPES);
    // One case in 16 is large: rows, d and V past the GEMMs' 64- and 128-wide tiles and k-steps.
    const big = r.bool(1 / 16);
    const N = big ? r.int(65, 200) : r.int(0, 12);
    const d = big ? r.pick([128, 136, r.int(97, 200)]) : r.pick([1, 2, 3, 8, 17, 64, 96, r.int(1, 96)]);
    const V = big ? r.int(257, 520) : r.pick([1, 2, 5, 33, 64, 257, r.int(1, 300), r.int(1, 300)]);
    const T = r.pick([1, 1, 0.7, 2, 0.05]);
    const spread = r.pick([1, 3]);
    const hidden = floatData(dtype, r.normals(N * d));
    const weight = floatData(dtype, r.normals(V * d, spread / Math.sqrt(d)));
    const bias = r.bool(0.35) ? floatData(dtype, r.normals(V)) : undefined;
    const targets = Int32Array.from({ length: N }, () => (r.bool(0.15) ? -100 : r.int(0, V - 1)));
    const entropy = r.bool(0.6);
    const sumSquares = r.bool(0.4);
    const desc = `${dtype} N=${N} d=${d} V=${V} T=${T} spread=${spread} bias=${bias !== undefined} entropy=${entropy} sumSquares=${sumSquares}`;
    const x: HeadInputs = {
      N,
      d,
      V,
      dtype,
      hidden: hidden.bits,
      weight: weight.bits,
      bias: bias?.bits,
      targets,
      h: hidden.values,
      w: weight.values,
      b: bias?.values,
    };
    const { X, Amax } = logits(x);
    const ref = forwardRef(X, Amax, targets, N, V, T);
    const fwdTol = TOLERANCES.linearLogprobs[dtype];
    const forwardExpect = (scale: Float64Array, sqScale: Float64Array) => () => ({
      logprobs: { tol: fwdTol.logprobs, scale },
      lse: { tol: fwdTol.lse, scale },
      entropy: { tol: fwdTol.entropy, scale },
      sumSquares: { tol: fwdTol.sumSquares, scale: sqScale },
    });
    const upload = (ctx: Context, keep: Keep, v0 = 0, v1 = V) => ({
      H: keep(ctx.tensor(hidden.bits, [N, d], dtype)),
      W: keep(ctx.tensor(weight.bits.slice(v0 * d, v1 * d), [v1 - v0, d], dtype)),
      B: bias ? keep(ctx.tensor(bias.bits.slice(v0, v1), [v1 - v0], dtype)) : undefined,
    });
    const opts = { temperature: T, entropy, sumSquares };

    const fwd = await s.compare({
      op: 'linearLogprobs',
      desc,
      async run(ctx, keep) {
        const { H, W, B } = upload(ctx, keep);
        return readLogprobs(await ctx.linearLogprobs(H, W, targets, { ...opts, bias: B }), keep);
      },
      expect: forwardExpect(ref.scale, ref.sqScale),
    });

    if (V >= 2 && r.bool(0.6)) {
      const parts = r.int(2, Math.min(3, V));
      const cuts = [0];
      while (cuts.length < parts) {
        const c = r.int(1, V - 1);
        if (!cuts.includes(c)) cuts.push(c);
      }
      cuts.sort((a, b) => a - b).push(V);
      const reversed = r.bool(0.05); // out of order: a LAYOUT error on every backend
      const heads = r.bool(0.6);
      const order = (xs: LogprobStates[]) => (reversed ? xs.reverse() : xs);
      const sdesc = `${desc} cuts=[${cuts.join(',')}]${reversed ? ' reversed' : ''}`;
      if (heads) {
        await s.compare({
          op: 'linearLogprobStates+merge',
          desc: sdesc,
          async run(ctx, keep) {
            const states: LogprobStates[] = [];
            for (let i = 0; i + 1 < cuts.length; i++) {
              const { H, W, B } = upload(ctx, keep, cuts[i], cuts[i + 1]);
              const st = await ctx.linearLogprobStates(H, W, targets, {
                ...opts,
                bias: B,
                vocabStart: cuts[i],
              });
              states.push(keepStates(st, keep));
            }
            return readLogprobs(
              await ctx.mergeLogprobStates(order(states), targets, { entropy, sumSquares }),
              keep,
            );
          },
          expect: forwardExpect(ref.scale, ref.sqScale),
        });
      } else {
        // The f64 logits rounded to the dtype are the input; the reference of those exact values.
        const lg = floatData(dtype, X);
        const lref = forwardRef(lg.values, new Float64Array(N), targets, N, V, T);
        await s.compare({
          op: 'logprobStates+merge',
          desc: sdesc,
          async run(ctx, keep) {
            const states: LogprobStates[] = [];
            for (let i = 0; i + 1 < cuts.length; i++) {
              const [v0, v1] = [cuts[i], cuts[i + 1]];
              const shard =
                dtype === 'f32' ? new Float32Array(N * (v1 - v0)) : new Uint16Array(N * (v1 - v0));
              for (let n = 0; n < N; n++) shard.set(lg.bits.subarray(n * V + v0, n * V + v1), n * (v1 - v0));
              const t = keep(ctx.tensor(shard, [N, v1 - v0], dtype));
              states.push(keepStates(await ctx.logprobStates(t, targets, { ...opts, vocabStart: v0 }), keep));
            }
            return readLogprobs(
              await ctx.mergeLogprobStates(order(states), targets, { entropy, sumSquares }),
              keep,
            );
          },
          expect: forwardExpect(lref.scale, lref.sqScale),
        });
      }
    }
    if (fwd === undefined || N === 0) return;

    // The backward, from js's lse and entropy.
    const lse = Float32Array.from(fwd.lse);
    const H = fwd.entropy ? Float32Array.from(fwd.entropy) : undefined;
    const g = Float32Array.from(r.normals(N));
    const gE = H && r.bool(0.5) ? Float32Array.from(r.normals(N)) : undefined;
    const gradDtype = r.pick(['f32', 'input'] as const);
    const bref = backwardRef(x, X, ref, g, gE, T);
    const tol = (
      gradDtype === 'input' ? TOLERANCES.linearLogprobsBackwardInput : TOLERANCES.linearLogprobsBackward
    )[dtype];
    await s.compare({
      op: 'linearLogprobsBackward',
      desc: `${desc} gradDtype=${gradDtype} gradEntropy=${gE !== undefined}`,
      async run(ctx, keep) {
        const { H: Ht, W, B } = upload(ctx, keep);
        const isJs = ctx === s.js;
        const res = await ctx.linearLogprobsBackward(Ht, W, targets, lse, g, {
          temperature: T,
          bias: B,
          gradDtype: isJs ? 'f32' : gradDtype,
          ...(gE ? { gradEntropy: gE, entropy: H } : {}),
        });
        const grads: [string, Tensor | undefined][] = [
          ['gradHidden', res.gradHidden],
          ['gradWeight', res.gradWeight],
          ['gradBias', res.gradBias],
        ];
        for (const [, t] of grads) keep(t);
        const out: Record<string, Float64Array> = {};
        for (const [k, t] of grads) {
          if (t === undefined) continue;
          const v = await readValues(t);
          const max = gradDtype === 'input' ? OVERFLOW[dtype] : Number.POSITIVE_INFINITY;
          out[k] = isJs ? v.map((e) => (Math.abs(e) >= max ? Math.sign(e) * Infinity : e)) : v;
        }
        return out;
      },
      expect: () => ({
        gradHidden: { tol: tol.gradHidden, scale: bref.hiddenScale },
        gradWeight: { tol: tol.gradWeight, scale: bref.weightScale },
        gradBias: { tol: tol.gradBias, scale: bref.biasScale },
      }),
    });
  },
};
