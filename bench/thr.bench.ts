/**
 * THR: the matrix form (cpu backend's tokenHiddenReward) against the pairwise double sum of
 * docs/THR.md item 3, on one group of 8 responses (half correct), d = 256, |V*| = 2000.
 *
 * Multiply-adds counted per group:
 *   matrix form: K·d·(T⁺ + T)           (build M from the T⁺ correct tokens, then M·h_t for every t)
 *   pairwise:    T·T⁺·(K + d)           (⟨g_u, g_t⟩ as a dense K-long dot, ⟨h_u, h_t⟩ d-long, per pair)
 * At T = 4096, T⁺ = 2048: 3.15e9 against 1.89e10, a predicted ratio of 6.0 (it grows as T⁺·(K+d)
 * / (K·d·1.5), linearly in the response length).
 * The pairwise sum runs twice: as the obvious code (one accumulator per dot product, latency-bound)
 * and with 4-accumulator dots (the instruction-level parallelism the matrix form's register
 * blocking has), so the table separates the algorithmic gain from the implementation's.
 * At large sizes it is timed on an evenly spaced subsample of rows t, scaled by T / rows (every
 * row costs the same), plus its O(T·K) setup timed once; the table says so. All single-threaded.
 * Each size also reports max |pairwise − matrix| / max |THR| over the rows computed (a check).
 */
import { createContext } from '../src/context.js';
import { makeThrCase, type ThrCase, uniformGroup } from '../test/fixtures/thr.js';

export interface ThrBenchRow {
  method: 'matrix (cpu backend)' | 'pairwise double sum' | 'pairwise, 4-accumulator dots';
  responses: number;
  tokensPerResponse: number;
  tokens: number;
  correctTokens: number;
  dim: number;
  vocab: number;
  runs: number;
  /** Median and min of the timed runs (ms); extrapolated rows: the scaled subsample time. */
  medianMs: number;
  minMs: number;
  multiplyAdds: number;
  gmacPerS: number;
  /** Rows t timed when extrapolated (undefined: every row). */
  sampledRows?: number;
  /** pairwise median / matrix median at the same size. */
  ratio?: number;
  /** Multiply-add count ratio at the same size. */
  predictedRatio?: number;
  /** max |pairwise − matrix| / max |matrix| over the rows the pairwise sum computed. */
  maxRelDiff?: number;
  device: string;
  node: string;
  date: string;
}

export interface ThrBenchOptions {
  /** Tokens per response; default [512, 2048]. */
  lengths?: number[];
  /** Timed runs of the matrix form per size (default 3) and of the full pairwise sum (default 1). */
  runs?: number;
  /** Sizes with more tokens than this time the pairwise sum on a subsample (default 4096). */
  fullPairwiseUpTo?: number;
  /** Rows of the subsample (default 256). */
  sampledRows?: number;
  print?: boolean;
}

const RESPONSES = 8;
const CORRECT = 4;
const DIM = 256;
const VOCAB = 2000;

/**
 * The pairwise double sum over rows `rows` (all of them by default), f64, timed whole. `unrolled`
 * splits each dot product over 4 accumulators (the instruction-level parallelism the matrix form's
 * register blocking has), separating the algorithmic gain from the implementation's.
 */
function pairwise(
  c: ThrCase,
  rows: Int32Array | undefined,
  unrolled: boolean,
): { s: Float64Array; setupMs: number; rowsMs: number } {
  const start = performance.now();
  const { responseOffsets: ro } = c.layout;
  const T = c.numTokens;
  const K = c.vocabOffsets[1];
  const d = c.dim;
  const H = c.hidden64;
  // Dense prediction errors g_t = e(col(y_t)) − q_t, one K-long row per token.
  const Gm = new Float64Array(T * K);
  for (let t = 0; t < T; t++) {
    for (let v = 0; v < K; v++) Gm[t * K + v] = -c.probs[t * K + v];
    Gm[t * K + c.tokenColumn[t]] += 1;
  }
  const anchors: number[] = [];
  const weights: number[] = [];
  for (let r = 0; r < c.correct.length; r++) {
    if (!c.correct[r]) continue;
    for (let u = ro[r]; u < ro[r + 1]; u++) {
      anchors.push(u);
      weights.push(1 / (ro[r + 1] - ro[r]));
    }
  }
  const which = rows ?? Int32Array.from({ length: T }, (_, t) => t);
  const mid = performance.now();
  const s = new Float64Array(which.length);
  for (let i = 0; i < which.length; i++) {
    const t = which[i];
    let acc = 0;
    for (let a = 0; a < anchors.length; a++) {
      const u = anchors[a];
      const gg = unrolled ? dot4(Gm, u * K, Gm, t * K, K) : dot(Gm, u * K, Gm, t * K, K);
      const hh = unrolled ? dot4(H, u * d, H, t * d, d) : dot(H, u * d, H, t * d, d);
      acc += weights[a] * gg * hh;
    }
    s[i] = acc;
  }
  return { s, setupMs: mid - start, rowsMs: performance.now() - mid };
}

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

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** Runs the comparison, prints a table (unless print: false) and returns machine-readable rows. */
export async function benchThr(options: ThrBenchOptions = {}): Promise<ThrBenchRow[]> {
  const lengths = options.lengths ?? [512, 2048];
  const runs = options.runs ?? 3;
  const fullUpTo = options.fullPairwiseUpTo ?? 4096;
  const nSample = options.sampledRows ?? 256;
  const ctx = await createContext({ backend: 'cpu' });
  const common = {
    device: ctx.device.name,
    node: process.version,
    date: new Date().toISOString().slice(0, 10),
  };
  const rows: ThrBenchRow[] = [];
  for (const L of lengths) {
    const c = makeThrCase({
      seed: 2026 + L,
      groups: [uniformGroup(RESPONSES, L, CORRECT)],
      dim: DIM,
      vocabSize: VOCAB + 48,
      exactVocab: VOCAB,
    });
    const T = c.numTokens;
    const Tp = CORRECT * L;
    const hidden = ctx.tensor(c.hidden as Float32Array, [T, DIM], 'f32');
    const vocab = await ctx.restrictedVocab(c.tokens, c.layout);
    const probs = ctx.tensor(c.probs, [c.probs.length], 'f32');
    const correct = c.correct;
    const thrOnce = async () => {
      const start = performance.now();
      const res = await ctx.tokenHiddenReward({ hidden, probs, vocab, layout: c.layout, correct });
      const ms = performance.now() - start;
      return { thr: await res.thr.read(), ms };
    };
    await thrOnce(); // warm-up (JIT)
    const times: number[] = [];
    let thr: Float32Array = new Float32Array(0);
    for (let i = 0; i < runs; i++) {
      const r = await thrOnce();
      times.push(r.ms);
      thr = r.thr;
    }
    const macMatrix = VOCAB * DIM * (Tp + T);
    const macPair = T * Tp * (VOCAB + DIM);
    const mMed = median(times);
    const base = {
      responses: RESPONSES,
      tokensPerResponse: L,
      tokens: T,
      correctTokens: Tp,
      dim: DIM,
      vocab: VOCAB,
    };
    rows.push({
      method: 'matrix (cpu backend)',
      ...base,
      runs,
      medianMs: mMed,
      minMs: Math.min(...times),
      multiplyAdds: macMatrix,
      gmacPerS: macMatrix / mMed / 1e6,
      ...common,
    });

    // Pairwise: whole at small sizes, else an evenly spaced subsample of rows, scaled by T / rows.
    const full = T <= fullUpTo;
    const sample = full
      ? undefined
      : Int32Array.from({ length: nSample }, (_, i) => Math.floor(((i + 0.5) * T) / nSample));
    for (const unrolled of [false, true]) {
      pairwise(c, Int32Array.from([0, 1, 2, 3]), unrolled); // warm-up (JIT)
      const pTimes: number[] = [];
      let s: Float64Array = new Float64Array(0);
      for (let i = 0; i < (full ? 1 : runs); i++) {
        // The O(T·K) setup (dense g rows) is timed once and not scaled; the rows scale by T / rows.
        const r = pairwise(c, sample, unrolled);
        pTimes.push(r.setupMs + (full ? r.rowsMs : (r.rowsMs * T) / nSample));
        s = r.s;
      }
      let maxAbs = 0;
      let maxDiff = 0;
      for (let i = 0; i < s.length; i++) {
        const t = sample ? sample[i] : i;
        const ref = c.correct[Math.floor(t / L)] ? s[i] : -s[i];
        maxAbs = Math.max(maxAbs, Math.abs(thr[t]));
        maxDiff = Math.max(maxDiff, Math.abs(ref - thr[t]));
      }
      const pMed = median(pTimes);
      rows.push({
        method: unrolled ? 'pairwise, 4-accumulator dots' : 'pairwise double sum',
        ...base,
        runs: pTimes.length,
        medianMs: pMed,
        minMs: Math.min(...pTimes),
        multiplyAdds: macPair,
        gmacPerS: macPair / pMed / 1e6,
        sampledRows: sample ? nSample : undefined,
        ratio: pMed / mMed,
        predictedRatio: macPair / macMatrix,
        maxRelDiff: maxDiff / maxAbs,
        ...common,
      });
    }
    for (const t of [hidden, probs, vocab.offsets, vocab.columns, vocab.tokenColumn]) t.dispose();
  }
  ctx.dispose();
  if (options.print ?? true) printTable(rows);
  return rows;
}

function printTable(rows: ThrBenchRow[]): void {
  console.log(`THR, one group of ${RESPONSES} responses (${CORRECT} correct), d = ${DIM}, |V*| = ${VOCAB}`);
  console.log(`${rows[0]?.device ?? ''}, Node ${rows[0]?.node ?? ''}, ${rows[0]?.date ?? ''}`);
  const head = [
    'method',
    'tokens',
    'T+',
    'median ms',
    'min ms',
    'MACs',
    'GMAC/s',
    'ratio',
    'predicted',
    'note',
  ];
  const body = rows.map((r) => [
    r.method,
    `${r.responses}x${r.tokensPerResponse}`,
    String(r.correctTokens),
    r.medianMs.toFixed(0),
    r.minMs.toFixed(0),
    r.multiplyAdds.toExponential(2),
    r.gmacPerS.toFixed(2),
    r.ratio === undefined ? '' : `${r.ratio.toFixed(1)}x`,
    r.predictedRatio === undefined ? '' : `${r.predictedRatio.toFixed(1)}x`,
    r.sampledRows === undefined
      ? `${r.runs} run(s)`
      : `${r.sampledRows} of ${r.tokens} rows timed, scaled x${r.tokens / r.sampledRows}; ${r.runs} run(s)`,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) => cells.map((x, i) => x.padEnd(widths[i])).join('  ');
  console.log(line(head));
  for (const b of body) console.log(line(b));
  for (const r of rows) {
    if (r.maxRelDiff !== undefined)
      console.log(
        `  ${r.responses}x${r.tokensPerResponse}, ${r.method} vs matrix: max |diff| / max |THR| = ${r.maxRelDiff.toExponential(2)}`,
      );
  }
}

// `node <compiled>/bench/thr.bench.js [lengths...]` runs it directly.
if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  const lengths = process.argv
    .slice(2)
    .map(Number)
    .filter((x) => x > 0);
  await benchThr(lengths.length ? { lengths } : {});
}
