/**
 * Family 'thr': the token-hidden-reward chain on one ragged batch: restrictedVocab, gatherProbs,
 * tokenHiddenReward (and the same in two calls, thrAggregate + thrScore), thrReweight. Each op gets
 * js's outputs of the op before as host arrays, so that both backends see the same inputs.
 *
 * Inputs: ≤ 4 groups of ≤ 6 responses of ≤ 10 tokens (≤ 64 tokens; empty responses, singletons, no
 * groups at all), V ≤ 300 with token ids often drawn from a few (repeats: small V*), logits of every
 * dtype with s up to 30 (confident tokens, q_y → 1, where THR's one-hot part cancels) and sometimes
 * −Inf columns, hidden states of every dtype with d ≤ 96, correct flags (all 0 or all 1: degenerate
 * groups), both weightings, several betas, precision 'f32' or 'tf32', every reweighting mode. One case
 * in 16 is large: ≤ 2 groups of responses up to 90 tokens (≤ 360), V 60 to 500, d 65 to 260 (several
 * partial tiles of the cuda and webgpu kernels).
 *
 * Tolerances: test/cases/tolerances.ts (restrictedVocab exact; gatherProbs with gatherWant's scale
 * from test/cases/logprobs.ts; tokenHiddenReward relative to its group's largest |THR*|, as
 * test/cases/thr.ts's groupScales, plus the sum with every term
 * made positive (thrMagnitudes); thrReweight). Precision 'tf32' on cuda has no table entry: its bound
 * is the one TokenHiddenRewardOptions.precision documents (src/api/thr.ts), 3e-3 of the group's
 * largest |THR*| + 4·2⁻¹¹ of that sum, the same form as the table's 'f32' entry. cpu and webgpu
 * ignore `precision` (f64 and f32 sums), so the table holds them always.
 */
import { probsOffsets } from '../../../src/api/vocab.js';
import type { Context, RestrictedVocab, ThrPrecision, ThrResult, Weighting } from '../../../src/index.js';
import { resolveLayout } from '../../../src/layout.js';
import { bruteForward, gatherWant } from '../../../test/cases/logprobs.js';
import { groupScales } from '../../../test/cases/thr.js';
import { TOLERANCES } from '../../../test/cases/tolerances.js';
import { thrMagnitudes } from '../../../test/fixtures/thr.js';
import { FLOAT_DTYPES, floatData, offsetsText, raggedLayout } from '../gen.mjs';
import { type Expect, type Family, type Keep, readValues, type Tolerance, type Values } from '../harness.mjs';

/** TokenHiddenRewardOptions.precision's bound for 'tf32' (src/api/thr.ts): group max and Σ|terms|. */
const TF32_BOUND: Tolerance = { ...TOLERANCES.tokenHiddenReward.f32.thr, crtol: 3e-3, stol: 2 ** -9 };

function keepVocab(v: RestrictedVocab, keep: Keep): RestrictedVocab {
  keep(v.offsets);
  keep(v.columns);
  keep(v.tokenColumn);
  return v;
}

async function readThr(res: ThrResult, keep: Keep): Promise<Values> {
  keep(res.thr);
  keep(res.tau);
  return { thr: await readValues(res.thr), tau: await readValues(res.tau) };
}

export const thrFamily: Family = {
  name: 'thr',
  ops: 'restrictedVocab, gatherProbs, tokenHiddenReward, thrAggregate+thrScore, thrReweight',
  async run(r, s) {
    // One case in 16 is large: groups of hundreds of tokens, |V*| and d past the kernels' 64- and
    // 128-wide tiles (partial tiles, several of them, their fixed-order folds).
    const big = r.bool(1 / 16);
    const lay = big
      ? raggedLayout(r, { maxGroups: 2, maxGroupSize: 6, maxLength: 90, maxTokens: 360, minGroups: 1 })
      : raggedLayout(r, { maxGroups: 4, maxGroupSize: 6, maxLength: 10, maxTokens: 64 });
    const layout = { groupOffsets: lay.groupOffsets, responseOffsets: lay.responseOffsets };
    const Tt = lay.tokens;
    const V = big ? r.int(60, 500) : r.pick([1, 2, 3, r.int(1, 20), r.int(1, 300), r.int(1, 300)]);
    const few = r.pick([0, 1, 4, V - 1, V - 1]);
    const tokens = Int32Array.from({ length: Tt }, () => r.int(0, Math.min(V - 1, few)));
    const base = `G=${lay.groups} R=${lay.responses} T=${Tt} V=${V} go=${offsetsText(lay.groupOffsets)} ro=${offsetsText(lay.responseOffsets)}`;

    const vocab = await s.compare({
      op: 'restrictedVocab',
      desc: base,
      async run(ctx, keep) {
        const v = keepVocab(await ctx.restrictedVocab(tokens, layout), keep);
        return {
          offsets: await readValues(v.offsets),
          columns: await readValues(v.columns),
          tokenColumn: await readValues(v.tokenColumn),
        };
      },
      expect() {
        const t = TOLERANCES.restrictedVocab.i32;
        return {
          offsets: { tol: t.offsets },
          columns: { tol: t.columns },
          tokenColumn: { tol: t.tokenColumn },
        };
      },
    });
    if (vocab === undefined) return;
    const host = { offsets: Int32Array.from(vocab.offsets), columns: Int32Array.from(vocab.columns) };
    // Each context's own V* (what a caller passes), built again for every op that takes it.
    const ownVocab = async (ctx: Context, keep: Keep) =>
      keepVocab(await ctx.restrictedVocab(tokens, layout), keep);

    // gatherProbs, given the f64 lse of the decoded logits rounded to f32 (both backends get it).
    const dtype = r.pick(FLOAT_DTYPES);
    const temperature = r.pick([1, 1, 0.7, 1.5, 0.05]);
    const sd = r.pick([1, 3, 10, 30]);
    const x = r.normals(Tt * V, sd);
    if (r.bool(0.2)) for (let i = 0; i < x.length; i++) if (r.bool(0.05)) x[i] = -Infinity;
    const logits = floatData(dtype, x);
    const lse = Float32Array.from(
      bruteForward(logits.values, Tt, V, new Int32Array(Tt), temperature, -100).lse,
    );
    const gdesc = `${base} ${dtype} temperature=${temperature} sd=${sd}`;
    const gathered = await s.compare({
      op: 'gatherProbs',
      desc: gdesc,
      async run(ctx, keep) {
        const L = keep(ctx.tensor(logits.bits, [Tt, V], dtype));
        const p = await ctx.gatherProbs(L, lse, { layout, vocab: await ownVocab(ctx, keep), temperature });
        return { probs: await readValues(keep(p)) };
      },
      expect() {
        const w = gatherWant(logits.values, V, layout, host, lse, temperature);
        return { probs: { tol: TOLERANCES.gatherProbs[dtype].probs, scale: w.scale } };
      },
    });
    if (gathered === undefined) return;

    // tokenHiddenReward on js's probabilities.
    const probs = Float32Array.from(gathered.probs);
    const hdtype = r.pick(FLOAT_DTYPES);
    const d = big ? r.pick([127, 129, 200, r.int(65, 260)]) : r.pick([1, 2, 3, 7, 16, 33, 64, r.int(1, 96)]);
    const hidden = floatData(hdtype, r.normals(Tt * d));
    const correct = Uint8Array.from({ length: lay.responses }, () => (r.bool() ? 1 : 0));
    if (r.bool(0.2)) correct.fill(r.int(0, 1));
    const weighting = r.pick<Weighting>(['length', 'none']);
    const beta = r.pick([1, 1, 0.5, 0, 2]);
    const precision = r.pick<ThrPrecision>(['f32', 'f32', 'tf32']);
    const tdesc = `${gdesc} hidden=${hdtype} d=${d} weighting=${weighting} beta=${beta} precision=${precision} correct=${offsetsText(correct)}`;
    const tol =
      precision === 'tf32' && s.backend.backend === 'cuda'
        ? TF32_BOUND
        : TOLERANCES.tokenHiddenReward[hdtype].thr;
    // The sums' magnitudes need only the inputs: once for both THR calls below.
    const terms = thrMagnitudes(
      {
        layout,
        correct,
        dim: d,
        hidden64: hidden.values,
        probs,
        probsOffsets: probsOffsets(resolveLayout(layout, Tt), host.offsets),
        vocabOffsets: host.offsets,
        tokenColumn: Int32Array.from(vocab.tokenColumn),
      },
      weighting,
      beta,
    );
    const thrExpect = (js: Values): Record<string, Expect> => {
      const { perToken, perGroup } = groupScales(layout, js.thr);
      return {
        thr: { tol, scale: perToken, terms: terms.perToken },
        tau: { tol, scale: perGroup, terms: terms.perGroup },
      };
    };
    const H = (ctx: Context, keep: Keep) => keep(ctx.tensor(hidden.bits, [Tt, d], hdtype));
    const thr = await s.compare({
      op: 'tokenHiddenReward',
      desc: tdesc,
      async run(ctx, keep) {
        const res = await ctx.tokenHiddenReward({
          hidden: H(ctx, keep),
          probs,
          vocab: await ownVocab(ctx, keep),
          layout,
          correct,
          weighting,
          beta,
          precision,
        });
        return readThr(res, keep);
      },
      expect: thrExpect,
    });
    if (thr === undefined) return;
    if (r.bool(0.4))
      await s.compare({
        op: 'thrAggregate+thrScore',
        desc: tdesc,
        async run(ctx, keep) {
          const common = {
            hidden: H(ctx, keep),
            probs,
            vocab: await ownVocab(ctx, keep),
            layout,
            correct,
            precision,
          };
          const aggregate = keep(await ctx.thrAggregate({ ...common, weighting }));
          return readThr(await ctx.thrScore({ ...common, aggregate, beta }), keep);
        },
        expect: thrExpect,
      });

    // thrReweight on js's THR and tau.
    const tokenAdvantages = Float32Array.from(r.normals(Tt));
    const thrIn = Float32Array.from(thr.thr);
    const tau = Float32Array.from(thr.tau);
    const mode = r.pick(['thr', 'thr', 'thr-only', 'nthr'] as const);
    const p = mode === 'thr' ? r.pick([0, 0.1, -0.1, 0.5, -0.5, 1, -1]) : undefined;
    const mask = mode !== 'nthr' && r.bool() ? r.bool() : undefined;
    const eta = mode === 'nthr' && r.bool() ? r.pick<number | 'auto'>([0, 0.3, 1, 'auto']) : undefined;
    await s.compare({
      op: 'thrReweight',
      desc: `${base} correct=${offsetsText(correct)} mode=${mode} p=${p} mask=${mask} eta=${eta}`,
      async run(ctx, keep) {
        const out = await ctx.thrReweight({
          tokenAdvantages,
          thr: thrIn,
          tau,
          layout,
          correct,
          mode,
          ...(p !== undefined ? { p } : {}),
          ...(mask !== undefined ? { mask } : {}),
          ...(eta !== undefined ? { eta } : {}),
        });
        return { values: await readValues(keep(out)) };
      },
      expect: () => ({ values: { tol: TOLERANCES.thrReweight.f32.values } }),
    });
  },
};
