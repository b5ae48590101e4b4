/**
 * Benchmark cases of the THR family (src/backends/js/thr.ts, shaders/thr.wgsl, native/cuda/thr.cu):
 * restrictedVocab, tokenHiddenReward, thrReweight.
 *
 * tokenHiddenReward's work is counted in multiply-adds per group: M_g takes |V*|·d·T⁺ of them and
 * U = H·Mᵀ with its epilogue |V*|·d·T (docs/THR.md's cost 2·|V*|·d·(T⁺ + T) is the FLOP count of
 * these). In the reference tier it runs beside the pairwise double sum of docs/THR.md item 3 on one
 * group, written out twice: as the obvious code (one accumulator per dot product, latency-bound) and
 * with 4-accumulator dots (the instruction-level parallelism the matrix form's register blocking
 * has), so the table separates the algorithmic gain from the implementation's. Per group the pairwise
 * sum takes T·T⁺·(|V*| + d) multiply-adds: at T = 4096, T⁺ = 2048, |V*| = 2000, d = 256 that is
 * 1.89e10 against the matrix form's 3.15e9, a predicted ratio of 6.0 that grows linearly with the
 * response length. Above 4096 tokens the pairwise sum is timed on an evenly spaced subsample of rows,
 * scaled by T / rows (every row costs the same), plus its O(T·|V*|) setup timed once.
 */
import {
  type BenchCase,
  lcg,
  maxRelDiff,
  type Peer,
  randomF32,
  uniformLayout,
  zipfishTokens,
} from './case.js';

export function restrictedVocabCase(
  groups: number,
  responses: number,
  tokens: number,
  vocab: number,
): BenchCase {
  const T = groups * responses * tokens;
  return {
    op: 'restrictedVocab',
    sizes: { G: groups, n: responses, L: tokens, V: vocab },
    dtype: 'f32',
    hostBytes: T * 12,
    deviceBytes: T * 12,
    largestTensorBytes: T * 4,
    async setup(ctx) {
      const layout = uniformLayout(groups, responses, tokens);
      const toks = ctx.tensor(zipfishTokens(T, 11, vocab), [T], 'i32');
      return {
        async run() {
          const v = await ctx.restrictedVocab(toks, layout);
          return [v.offsets, v.columns, v.tokenColumn];
        },
        dispose() {
          toks.dispose();
        },
        bytes: T * 8,
        work: { amount: T / 1e6, unit: 'Mtok/s' },
      };
    },
  };
}

/** Token ids of each group: exactly `distinct` different ids (the first `distinct` tokens cover them). */
function distinctTokens(groups: number, perGroup: number, distinct: number, vocab: number, seed: number) {
  if (distinct > perGroup || distinct > vocab)
    throw new Error(`thr: ${distinct} distinct ids need as many tokens`);
  const rand = lcg(seed);
  const out = new Int32Array(groups * perGroup);
  const stride = Math.floor(vocab / distinct);
  for (let g = 0; g < groups; g++) {
    for (let i = 0; i < perGroup; i++) {
      const k = i < distinct ? i : (rand() * distinct) | 0;
      out[g * perGroup + i] = k * stride;
    }
  }
  return out;
}

// ------------------------------------------------------------------ peers (reference tier)

function dot(x: Float64Array, ox: number, y: Float64Array, oy: number, n: number): number {
  let acc = 0;
  for (let i = 0; i < n; i++) acc += x[ox + i] * y[oy + i];
  return acc;
}

function dot4(x: Float64Array, ox: number, y: Float64Array, oy: number, n: number): number {
  let a0 = 0;
  let a1 = 0;
  let a2 = 0;
  let a3 = 0;
  let i = 0;
  for (; i + 3 < n; i += 4) {
    a0 += x[ox + i] * y[oy + i];
    a1 += x[ox + i + 1] * y[oy + i + 1];
    a2 += x[ox + i + 2] * y[oy + i + 2];
    a3 += x[ox + i + 3] * y[oy + i + 3];
  }
  for (; i < n; i++) a0 += x[ox + i] * y[oy + i];
  return a0 + a1 + (a2 + a3);
}

interface ThrHost {
  responses: number;
  tokens: number;
  dim: number;
  correct: Uint8Array;
  /** [T, d] in f64. */
  hidden: Float64Array;
  /** [T, K], packed as gatherProbs gives them. */
  probs: Float32Array;
  tokenColumn: Int32Array;
  K: number;
}

/**
 * The pairwise double sum of one group over rows `rows` (all of them when undefined), in f64:
 * s_t = Σ_{u∈P} w_u ⟨g_u, g_t⟩⟨h_u, h_t⟩ with dense prediction errors g_t = e(col(y_t)) − q_t.
 */
function pairwise(c: ThrHost, rows: Int32Array | undefined, unrolled: boolean) {
  const start = performance.now();
  const { K, dim: d, hidden: H } = c;
  const T = c.responses * c.tokens;
  const Gm = new Float64Array(T * K);
  for (let t = 0; t < T; t++) {
    for (let v = 0; v < K; v++) Gm[t * K + v] = -c.probs[t * K + v];
    Gm[t * K + c.tokenColumn[t]] += 1;
  }
  const anchors: number[] = [];
  for (let r = 0; r < c.responses; r++)
    if (c.correct[r]) for (let j = 0; j < c.tokens; j++) anchors.push(r * c.tokens + j);
  const w = 1 / c.tokens; // weighting 'length': 1 / |y_r|
  const which = rows ?? Int32Array.from({ length: T }, (_, t) => t);
  const mid = performance.now();
  const s = new Float64Array(which.length);
  for (let i = 0; i < which.length; i++) {
    const t = which[i];
    let acc = 0;
    for (const u of anchors) {
      const gg = unrolled ? dot4(Gm, u * K, Gm, t * K, K) : dot(Gm, u * K, Gm, t * K, K);
      const hh = unrolled ? dot4(H, u * d, H, t * d, d) : dot(H, u * d, H, t * d, d);
      acc += w * gg * hh;
    }
    // THR is +s on correct responses, −s on incorrect ones.
    s[i] = c.correct[Math.floor(t / c.tokens)] ? acc : -acc;
  }
  return { s, rows: which, setupMs: mid - start, rowsMs: performance.now() - mid };
}

/** Above this many tokens the pairwise sum is timed on a subsample of rows and scaled. */
const FULL_PAIRWISE_UP_TO = 4096;
const SAMPLED_ROWS = 256;

function thrPeers(c: ThrHost): Peer[] {
  const T = c.responses * c.tokens;
  const full = T <= FULL_PAIRWISE_UP_TO;
  const sample = full
    ? undefined
    : Int32Array.from({ length: SAMPLED_ROWS }, (_, i) => Math.floor(((i + 0.5) * T) / SAMPLED_ROWS));
  const scaled = full ? '' : ` (${SAMPLED_ROWS} of ${T} rows timed, scaled ×${T / SAMPLED_ROWS})`;
  return [false, true].map((unrolled): Peer => {
    let last: ReturnType<typeof pairwise> | undefined;
    return {
      name: unrolled ? 'pairwise 4-acc' : 'pairwise',
      description: `the pairwise double sum of docs/THR.md item 3, f64${unrolled ? ', 4-accumulator dots' : ''}${scaled}`,
      run() {
        last = pairwise(c, sample, unrolled);
      },
      // The O(T·|V*|) setup is timed once and not scaled; the rows scale by T / rows.
      extrapolatedMs: full ? undefined : () => last!.setupMs + (last!.rowsMs * T) / SAMPLED_ROWS,
      async agree(outputs) {
        return maxRelDiff(last!.s, await outputs[0].read(), last!.rows);
      },
      plan: { warmup: 0, reps: full ? 1 : 3 },
    };
  });
}

// ------------------------------------------------------------------ the cases

export interface ThrCaseOptions {
  /** Exactly this many distinct token ids per group (default: ids skewed toward small ones). */
  distinct?: number;
  /** Time the pairwise peers beside the op (reference tier; one group). */
  peers?: boolean;
}

/** THR at hidden size d: groups of `responses` responses of `tokens` tokens, half of them correct. */
export function thrCase(
  groups: number,
  responses: number,
  tokens: number,
  d: number,
  vocab: number,
  opts: ThrCaseOptions = {},
): BenchCase {
  const T = groups * responses * tokens;
  if (opts.peers && groups !== 1) throw new Error('thr: the pairwise peers take one group');
  const probsPerToken = opts.distinct ?? 1024;
  return {
    op: 'tokenHiddenReward',
    sizes: { G: groups, n: responses, L: tokens, d },
    dtype: 'f32',
    hostBytes: T * d * 4 * 2 + T * 4 * probsPerToken * (opts.peers ? 3 : 1),
    deviceBytes: T * d * 4 + T * 4 * probsPerToken,
    largestTensorBytes: Math.max(T * d * 4, T * 4 * probsPerToken),
    async setup(ctx) {
      const layout = uniformLayout(groups, responses, tokens);
      const ids =
        opts.distinct === undefined
          ? zipfishTokens(T, 12, vocab)
          : distinctTokens(groups, responses * tokens, opts.distinct, vocab, 12);
      const vocabT = await ctx.restrictedVocab(ids, layout);
      const off = vocabT.host.offsets;
      let probCount = 0;
      let macs = 0;
      let hiddenReads = 0;
      const tPlus = Math.ceil(responses / 2) * tokens;
      for (let g = 0; g < groups; g++) {
        const k = off[g + 1] - off[g];
        probCount += k * responses * tokens;
        macs += k * d * (tPlus + responses * tokens);
        hiddenReads += (tPlus + responses * tokens) * d;
      }
      const probsHost = randomF32(probCount, 13, 1e-3).map(Math.abs);
      const hiddenHost = randomF32(T * d, 14);
      const probs = ctx.tensor(probsHost, [probCount], 'f32');
      const hidden = ctx.tensor(hiddenHost, [T, d], 'f32');
      const correct = new Uint8Array(groups * responses);
      for (let r = 0; r < correct.length; r++) correct[r] = r % responses < Math.ceil(responses / 2) ? 1 : 0;
      return {
        async run() {
          const r = await ctx.tokenHiddenReward({ hidden, probs, vocab: vocabT, layout, correct });
          return [r.thr, r.tau];
        },
        dispose() {
          for (const t of [vocabT.offsets, vocabT.columns, vocabT.tokenColumn, probs, hidden]) t.dispose();
        },
        bytes: hiddenReads * 4 + probCount * 8 + T * 4,
        work: { amount: (2 * macs) / 1e9, unit: 'GFLOP/s' },
        sizes: { 'V*': Math.round(off[groups] / groups) },
        peers: opts.peers
          ? thrPeers({
              responses,
              tokens,
              dim: d,
              correct,
              hidden: Float64Array.from(hiddenHost),
              probs: probsHost,
              tokenColumn: vocabT.host.tokenColumn,
              K: off[1],
            })
          : undefined,
      };
    },
  };
}

export function reweightCase(groups: number, responses: number, tokens: number): BenchCase {
  const T = groups * responses * tokens;
  return {
    op: 'thrReweight',
    sizes: { G: groups, n: responses, L: tokens },
    dtype: 'f32',
    hostBytes: T * 16,
    deviceBytes: T * 16,
    largestTensorBytes: T * 4,
    async setup(ctx) {
      const layout = uniformLayout(groups, responses, tokens);
      const adv = ctx.tensor(randomF32(T, 15), [T], 'f32');
      const thr = ctx.tensor(randomF32(T, 16), [T], 'f32');
      const tau = ctx.tensor(randomF32(groups, 17, 0.1).map(Math.abs), [groups], 'f32');
      const correct = new Uint8Array(groups * responses);
      for (let r = 0; r < correct.length; r++) correct[r] = r % 2;
      return {
        async run() {
          return [await ctx.thrReweight({ tokenAdvantages: adv, thr, tau, layout, correct, p: 0.1 })];
        },
        dispose() {
          for (const t of [adv, thr, tau]) t.dispose();
        },
        bytes: T * 12,
        work: { amount: (T * 12) / 1e9, unit: 'GB/s' },
      };
    },
  };
}
