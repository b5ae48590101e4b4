/// <reference types="@webgpu/types" />
/**
 * The THR family on WebGPU: host side of shaders/thr.wgsl (formulas, tiles, bytes and FLOPs are in
 * that file's header).
 *
 * - tokenHiddenReward: per chunk of non-degenerate groups, `thr_m` (M_g into a scratch buffer,
 *   64 × 64 tiles, 4 × 4 outputs per invocation), `thr_score` (64-token blocks × 128-column slices
 *   of V*, 64 × 64 tiles, 4 × 4 per invocation: partial s_t per slice into a scratch buffer) and
 *   `thr_fold` (raw s_t = Σ slices, in order, into thr); then one `thr_tau` over
 *   every group (signs, tau, degenerate groups → THR 0, tau NaN). Chunks: consecutive groups whose
 *   M scratch (Σ K_g·d f32), probs window and hidden window each fit one storage binding; a single
 *   group that does not fit runs alone in parts (per block of 128·n rows of V*, thr_m over runs of
 *   its correct tokens, each continuing the sums the last stored; the scores per token range over
 *   each block's slices, then the fold), with the bits of one pass (docs/webgpu.md); one row of probs
 *   or hidden, or 128 rows of M, larger than a binding is a SHAPE error naming probs, hidden or
 *   vocab. Host-built per-group tables (token start, T_g, K_g, offsets, first
 *   workgroup) map a flat workgroup index to its group by binary search; the correct tokens and
 *   their weights are the API's plan (src/api/thr-plan.ts), uploaded as they are.
 * - thrReweight: `thr_reweight`, one invocation per token; per-response (group, correct,
 *   degenerate) words and per-group eta come from the host copies and the plan the API passes.
 */
import { bytesPerElement } from '../../dtypes.js';
import { GrpoKernelsError } from '../../errors.js';
import type { Tensor } from '../../tensor.js';
import type {
  ThrAggregateArgs,
  ThrResult,
  ThrReweightArgs,
  ThrScoreArgs,
  TokenHiddenRewardArgs,
} from '../backend.js';
import { type Window, windowOf } from './chunking.js';
import { runWithScratch, type WebGpuKit } from './kit.js';
import { type Binding, roundUp, Usage } from './runtime.js';
import { type EntrySpec, type ModuleKey, xSection } from './shaders.js';
import { gpuStorage, outputTensor } from './storage.js';
import { uniformLayout } from './uniforms.js';

/** The uniform struct of shaders/thr.wgsl (checked against the WGSL by infra.test.ts). */
export const THR_PARAMS = uniformLayout('thr.wgsl', 'ThrParams', [
  ['count', 'u32'],
  ['groups', 'u32'],
  ['dim', 'u32'],
  ['tiles_d', 'u32'],
  ['x_base', 'u32'],
  ['tok_base', 'u32'],
  ['probs_base', 'u32'],
  ['num_responses', 'u32'],
  ['mode', 'u32'],
  ['mask', 'u32'],
  ['p', 'f32'],
  ['beta', 'f32'],
  ['m_base', 'u32'],
  ['m_accum', 'u32'],
  ['v_base', 'u32'],
  ['v_count', 'u32'],
]);
const ZERO_PARAMS = {
  count: 0,
  groups: 0,
  dim: 0,
  tiles_d: 0,
  x_base: 0,
  tok_base: 0,
  probs_base: 0,
  num_responses: 0,
  mode: 0,
  mask: 0,
  p: 0,
  beta: 0,
  m_base: 0,
  m_accum: 0,
  v_base: 0,
  v_count: 0,
};
type ThrParams = typeof ZERO_PARAMS;
const paramsOf = (p: Partial<ThrParams>): ThrParams => ({ ...ZERO_PARAMS, ...p });

/**
 * For tests: `maxChunkBytes` caps the bytes of one chunk's M scratch, probs span and hidden span
 * (forces several chunks, and splits a group whose rows exceed it); `lastChunks` is the chunk count
 * of the latest tokenHiddenReward call, `lastSplit` how many of them are split groups.
 */
export const thrTuning: { maxChunkBytes: number | undefined; lastChunks: number; lastSplit: number } = {
  maxChunkBytes: undefined,
  lastChunks: 0,
  lastSplit: 0,
};

/** Output tile edge of thr_m (64 v × 64 k of M) and thr_score (64 tokens): TB in thr.wgsl. */
const TILE = 64;
/** V* columns per thr_score workgroup: SLICE in thr.wgsl. */
const SCORE_SLICE = 128;
const INFO_STRIDE = 10; // INFO_STRIDE in thr.wgsl
/** Correct tokens per thr_m k-step: KS in common.wgsl's tile_gemm. */
const KSTEP = 16;

type Kind = 'uniform' | 'read' | 'rw';
const spec = (entry: string, bindings: [number, Kind][]): EntrySpec => ({ entry, bindings });
const M_SPEC = spec('thr_m', [
  [0, 'uniform'],
  [1, 'read'],
  [3, 'read'],
  [4, 'read'],
  [5, 'read'],
  [6, 'read'],
  [7, 'read'],
  [8, 'rw'],
]);
const SCORE_SPEC = spec('thr_score', [
  [0, 'uniform'],
  [1, 'read'],
  [3, 'read'],
  [4, 'read'],
  [5, 'read'],
  [8, 'rw'],
  [21, 'rw'],
]);
const FOLD_SPEC = spec('thr_fold', [
  [0, 'uniform'],
  [5, 'read'],
  [9, 'rw'],
  [21, 'rw'],
]);
const TAU_SPEC = spec('thr_tau', [
  [0, 'uniform'],
  [9, 'rw'],
  [10, 'rw'],
  [11, 'read'],
  [12, 'read'],
  [13, 'read'],
  [14, 'read'],
]);
const REWEIGHT_SPEC = spec('thr_reweight', [
  [0, 'uniform'],
  [11, 'read'],
  [15, 'read'],
  [16, 'read'],
  [17, 'read'],
  [18, 'read'],
  [19, 'read'],
  [20, 'rw'],
]);

function moduleKey(k: WebGpuKit, dtype: 'f32' | 'f16' | 'bf16'): ModuleKey {
  const f16 = dtype === 'f16' && k.useShaderF16;
  return { file: 'thr.wgsl', sections: [xSection(dtype, f16), 'response_of', 'tile_gemm'], f16 };
}

// ---------------------------------------------------------------------------- tokenHiddenReward
interface Chunk {
  groups: number[]; // non-degenerate groups, ascending
  mRows: number; // Σ K_g
  parts: number; // Σ T_g·ceil(K_g / SCORE_SLICE): thr_score's partial sums (a split group: its largest part's)
  split?: Split; // a lone group whose probs or hidden rows do not fit one binding
}

/**
 * A group split into parts whose probs and hidden rows each fit one binding: thr_m over runs of its
 * correct tokens ([c0, c0 + nc) of the plan's list, spanning tokens [t0, t1)), each part after the
 * first continuing the sums the earlier ones stored; then thr_score and thr_fold over token ranges.
 */
interface Split {
  m: { c0: number; nc: number; t0: number; t1: number }[];
  s: { t0: number; t1: number }[];
  /** Row ranges of V*_g (multiples of 128 rows but the last) whose M rows fit one binding. */
  v: VPart[];
}
interface VPart {
  v0: number;
  v1: number;
}

/** One group (or part of one) in a dispatch's table: thr.wgsl's INFO fields. */
interface Entry {
  tok0: number; // global first token
  T: number;
  koff: number; // first row of its M block in the M binding
  K: number;
  poff: number; // first probability, relative to the probs window's base
  c0: number; // first correct token in the plan's list
  nc: number;
}

export async function webgpuTokenHiddenReward(k: WebGpuKit, a: TokenHiddenRewardArgs): Promise<ThrResult> {
  return (await thrRun(k, a, 'full')) as ThrResult;
}

/**
 * thrAggregate: thr_m alone, writing each live group's M_g into rows [vocab offsets[g], +K_g) of a
 * [ΣK_g, d] f32 tensor (cleared first, so degenerate groups' rows are 0). The same dispatches and
 * bits as tokenHiddenReward's M scratch.
 */
export async function webgpuThrAggregate(k: WebGpuKit, a: ThrAggregateArgs): Promise<Tensor<'f32'>> {
  return (await thrRun(k, { ...a, beta: 0 }, 'aggregate')) as Tensor<'f32'>;
}

/** thrScore: thr_score, thr_fold and thr_tau on the given aggregate (bound in place of the M scratch). */
export async function webgpuThrScore(k: WebGpuKit, a: ThrScoreArgs): Promise<ThrResult> {
  return (await thrRun(k, a, 'score', a.aggregate)) as ThrResult;
}

/**
 * 'full': M_g into a scratch (live groups packed), then the scores; 'aggregate': M_g into the output
 * tensor at each group's own rows; 'score': the scores from a given aggregate. In the last two, a
 * chunk's M window spans its groups' rows of the tensor (degenerate groups' included) and koff is a
 * group's row offset from the chunk's first.
 */
async function thrRun(
  k: WebGpuKit,
  a: TokenHiddenRewardArgs,
  mode: 'full' | 'aggregate' | 'score',
  aggregate?: Tensor<'f32'>,
): Promise<ThrResult | Tensor<'f32'>> {
  const stacked = mode !== 'full';
  const { rt } = k;
  rt.check();
  const { layout, dim: d } = a;
  const { numGroups: G, numTokens: T, groupTokenOffsets: gto } = layout;
  const ro = layout.responseOffsets;
  const go = layout.groupOffsets;
  const vOff = a.vocab.hostOffsets;
  const dtype = a.hidden.dtype;
  const eb = bytesPerElement(dtype);
  k.checkVector('vocab.tokenColumn', T);
  k.checkVector('thr', T);
  if (G >= 2 ** 30)
    throw new GrpoKernelsError('SHAPE', `layout: ${G} groups (at most 2^30)`, { argument: 'layout' });

  // The API's plan: the live groups, and their correct tokens with f32 weights (f64 rounded once).
  const { degenerate, correctStart: cStart, correctTokens, correctWeights } = a.plan;
  const live: number[] = [];
  for (let g = 0; g < G; g++) if (!degenerate[g]) live.push(g);

  // A group's parts of at most `rows` tokens. thr_m's cut its correct tokens into runs whose span
  // fits, each a multiple of 16 (thr.wgsl's k-step) where one fits, so the k-steps fall as in one
  // pass and M has one pass's bits (a cut elsewhere adds the padding's 0·0 mid-sum, which turns a
  // −0 sum into +0); the scores' are token ranges, multiples of 64 (a token block) where possible.
  const splitGroup = (g: number, rows: number, vRows: number): Split => {
    const K = vOff[g + 1] - vOff[g];
    const vParts: VPart[] = [];
    for (let v = 0; v < K; v += vRows) vParts.push({ v0: v, v1: Math.min(K, v + vRows) });
    const step = rows >= TILE ? Math.floor(rows / TILE) * TILE : rows;
    const sParts: Split['s'] = [];
    for (let t = gto[g]; t < gto[g + 1]; t += step)
      sParts.push({ t0: t, t1: Math.min(gto[g + 1], t + step) });
    const mParts: Split['m'] = [];
    const c1 = cStart[g + 1];
    for (let c = cStart[g]; c < c1; ) {
      let e = c;
      while (e < c1 && correctTokens[e] - correctTokens[c] < rows) e++;
      if (e < c1 && e - c >= KSTEP) e -= (e - c) % KSTEP;
      mParts.push({ c0: c, nc: e - c, t0: correctTokens[c], t1: correctTokens[e - 1] + 1 });
      c = e;
    }
    return { m: mParts, s: sParts, v: vParts };
  };

  // Chunks of consecutive live groups whose M, probs and hidden windows fit one binding.
  const align = rt.limits.minStorageBufferOffsetAlignment;
  const cap = Math.min(
    thrTuning.maxChunkBytes ?? Number.POSITIVE_INFINITY,
    Math.floor(rt.limits.maxStorageBufferBindingSize / 4) * 4 - align,
    rt.limits.maxBufferSize,
  );
  const chunks: Chunk[] = [];
  let cur: Chunk | undefined;
  for (const g of live) {
    const K = vOff[g + 1] - vOff[g];
    const mBytes = K * d * 4;
    const pBytes = (a.probsOffsets[g + 1] - a.probsOffsets[g]) * 4;
    const hBytes = (gto[g + 1] - gto[g]) * d * eb;
    const tooBig = (what: string, bytes: number) =>
      new GrpoKernelsError(
        'SHAPE',
        `${what}: group ${g} needs ${bytes} bytes in one storage binding (${what === 'vocab' ? `M = |V*| × d = ${K} × ${d} f32` : 'its rows'}); this device binds at most ${cap} bytes`,
        { argument: what },
      );
    // (tokenHiddenReward's M scratch is one buffer; the aggregate's rows are the caller's tensor.)
    if (mode === 'full' && mBytes > rt.limits.maxBufferSize) throw tooBig('vocab', mBytes);
    if (mBytes > cap || pBytes > cap || hBytes > cap) {
      // Split: parts of at most `rows` tokens and `vRows` rows of V*. One row of each must fit, and
      // 128 rows of M (a scores slice).
      const rows = Math.floor(cap / Math.max(K * 4, d * eb));
      const vRows = mBytes <= cap ? K : Math.floor(cap / (d * 4) / SCORE_SLICE) * SCORE_SLICE;
      if (vRows < 1)
        throw new GrpoKernelsError(
          'SHAPE',
          `vocab: group ${g}'s M (|V*| × d = ${K} × ${d} f32) is split by blocks of ${SCORE_SLICE} rows of ${SCORE_SLICE * d * 4} bytes each in one storage binding; this device binds at most ${cap} bytes`,
          { argument: 'vocab' },
        );
      if (rows < 1) {
        const what = K * 4 >= d * eb ? 'probs' : 'hidden';
        throw new GrpoKernelsError(
          'SHAPE',
          `${what}: one row of group ${g} needs ${Math.max(K * 4, d * eb)} bytes in one storage binding; this device binds at most ${cap} bytes`,
          { argument: what },
        );
      }
      const split = splitGroup(g, rows, vRows);
      const most = split.s.reduce((m, p) => Math.max(m, p.t1 - p.t0), 0);
      chunks.push({ groups: [g], mRows: K, parts: most * Math.ceil(K / SCORE_SLICE), split });
      cur = undefined;
      continue;
    }
    // Partial sums: T_g·ceil(K/128) ≤ T_g·K f32, so they fit wherever the probs fit.
    const parts = (gto[g + 1] - gto[g]) * Math.ceil(K / SCORE_SLICE);
    if (cur !== undefined) {
      const g0 = cur.groups[0];
      // Stacked M (aggregate, score): the chunk's window spans its groups' rows of the tensor.
      const mSpan = stacked ? vOff[g + 1] - vOff[g0] : cur.mRows + K;
      const fits =
        mSpan * d * 4 <= cap &&
        (a.probsOffsets[g + 1] - a.probsOffsets[g0]) * 4 <= cap &&
        (gto[g + 1] - gto[g0]) * d * eb <= cap;
      if (fits) {
        cur.groups.push(g);
        cur.mRows += K;
        cur.parts += parts;
        continue;
      }
    }
    cur = { groups: [g], mRows: K, parts };
    chunks.push(cur);
  }
  thrTuning.lastChunks = chunks.length;
  thrTuning.lastSplit = chunks.filter((c) => c.split !== undefined).length;
  const mScratchRows = chunks.reduce((m, c) => Math.max(m, c.mRows), 0);
  const partScratch = chunks.reduce((m, c) => Math.max(m, c.parts), 0);
  const tilesD = Math.ceil(d / TILE);

  const key = moduleKey(k, dtype);
  const constants = { WG: k.wg };
  const scores = mode !== 'aggregate';
  const [mPipe, sPipe, fPipe, tauPipe] = await Promise.all([
    chunks.length > 0 && mode !== 'score' ? k.pipelines.get(key, M_SPEC, constants) : undefined,
    chunks.length > 0 && scores ? k.pipelines.get(key, SCORE_SPEC, constants) : undefined,
    chunks.length > 0 && scores ? k.pipelines.get(key, FOLD_SPEC, constants) : undefined,
    G > 0 && scores ? k.pipelines.get(key, TAU_SPEC, constants) : undefined,
  ]);
  const mRowsAll = vOff[G];

  return runWithScratch(
    k,
    mode === 'full' ? 'tokenHiddenReward' : mode === 'aggregate' ? 'thrAggregate' : 'thrScore',
    (s) => {
      const mOut = mode === 'aggregate' ? outputTensor(rt, 'f32', [mRowsAll, d]) : undefined;
      const thr = scores ? outputTensor(rt, 'f32', [T]) : undefined;
      const tau = scores ? outputTensor(rt, 'f32', [G]) : undefined;
      const result = (): ThrResult | Tensor<'f32'> => mOut ?? { thr: thr!, tau: tau! };
      if (G === 0) return result();
      const thrBuf = thr ? gpuStorage(thr).buffer : k.dummies[0];
      const hidden = gpuStorage(a.hidden, 'hidden').buffer;
      const probs = gpuStorage(a.probs, 'probs').buffer;
      const tcol = gpuStorage(a.vocab.tokenColumn, 'vocab.tokenColumn').buffer;
      const enc = rt.device.createCommandEncoder({ label: 'tokenHiddenReward' });
      // The aggregate's rows of degenerate groups stay 0: clear it, then thr_m writes the live ones.
      if (mOut && mRowsAll * d > 0) enc.clearBuffer(gpuStorage(mOut).buffer, 0, roundUp(mRowsAll * d * 4, 4));
      const pass = enc.beginComputePass();
      if (chunks.length > 0) {
        let mbuf: GPUBuffer;
        if (stacked) {
          mbuf = gpuStorage(mOut ?? aggregate!, 'aggregate').buffer;
        } else {
          mbuf = s.buffer(mScratchRows * d * 4, 'THR M scratch');
        }
        const spart = s.buffer(scores ? partScratch * 4 : 4, 'THR partial scores');
        // A storage binding is never empty: no correct tokens (impossible with live groups) binds one.
        const ctok = correctTokens.length > 0 ? correctTokens : new Int32Array(1);
        const cw = correctWeights.length > 0 ? Float32Array.from(correctWeights) : new Float32Array(1);
        const ctokBuf = rt.transientData(ctok, Usage.STORAGE, 'correct tokens');
        const cwBuf = rt.transientData(cw, Usage.STORAGE, 'correct weights');
        // The dispatches of `what` over `entries` with the hidden, probs and M windows hw, pw, mw:
        // thr_m (accum: continuing the sums in M), thr_score, thr_fold; vp: a split group's rows of V*.
        const dispatch = (
          what: 'm' | 'score' | 'fold',
          entries: Entry[],
          hw: Window,
          pw: Window,
          mw: Window,
          accum = false,
          vp?: VPart,
        ) => {
          const n = entries.length;
          const info = new Uint32Array(n * INFO_STRIDE);
          let mWg = 0;
          let sWg = 0;
          let fWg = 0;
          let part = 0;
          entries.forEach((e, i) => {
            const slices = Math.ceil(e.K / SCORE_SLICE);
            const rows = vp ? vp.v1 - vp.v0 : e.K;
            const row = [e.tok0, e.T, e.koff, e.K, e.poff, e.c0, e.nc];
            info.set(what === 'm' ? [...row, mWg] : [...row, sWg, part, fWg], i * INFO_STRIDE);
            mWg += Math.ceil(rows / TILE) * tilesD;
            sWg += Math.ceil(e.T / TILE) * Math.ceil(rows / SCORE_SLICE);
            fWg += Math.ceil(e.T / k.wg);
            part += e.T * slices;
          });
          const table = rt.transientData(
            info,
            Usage.STORAGE,
            what === 'm' ? 'THR M table' : 'THR score table',
          );
          const base = {
            groups: n,
            dim: d,
            tiles_d: tilesD,
            x_base: hw.base,
            tok_base: entries[0].tok0,
            probs_base: pw.base,
            m_base: mw.base,
            v_base: vp?.v0 ?? 0,
            v_count: vp ? vp.v1 - vp.v0 : 0,
          };
          const common: Binding[] = [
            { binding: 1, buffer: hidden, offset: hw.offset, size: hw.size },
            { binding: 3, buffer: probs, offset: pw.offset, size: pw.size },
            { binding: 4, buffer: tcol },
            { binding: 8, buffer: mbuf, offset: mw.offset, size: mw.size },
            { binding: 5, buffer: table },
          ];
          if (what === 'm') {
            const u = paramsOf({ ...base, count: mWg, m_accum: accum ? 1 : 0 });
            rt.dispatch(
              pass,
              mPipe!,
              [
                { binding: 0, buffer: rt.uniform(THR_PARAMS, u) },
                ...common,
                { binding: 6, buffer: ctokBuf },
                { binding: 7, buffer: cwBuf },
              ],
              mWg,
            );
          } else if (what === 'score') {
            const u = paramsOf({ ...base, count: sWg });
            rt.dispatch(
              pass,
              sPipe!,
              [{ binding: 0, buffer: rt.uniform(THR_PARAMS, u) }, ...common, { binding: 21, buffer: spart }],
              sWg,
            );
          } else {
            rt.dispatch(
              pass,
              fPipe!,
              [
                { binding: 0, buffer: rt.uniform(THR_PARAMS, paramsOf({ groups: n, count: fWg })) },
                { binding: 5, buffer: table },
                { binding: 9, buffer: thrBuf },
                { binding: 21, buffer: spart },
              ],
              fWg,
            );
          }
        };
        // Windows over global tokens [t0, t1) of group g: its hidden rows and probability rows.
        const hiddenWindow = (t0: number, t1: number) => windowOf(t0 * d, t1 * d, eb, hidden.size, align);
        const probsWindow = (g: number, t0: number, t1: number) => {
          const K = vOff[g + 1] - vOff[g];
          const p0 = a.probsOffsets[g] - gto[g] * K; // (the group's rows are [T_g, K])
          return windowOf(p0 + t0 * K, p0 + t1 * K, 4, probs.size, align);
        };
        // Rows [r0, r1) of the M binding's buffer: the scratch's (from 0), or the stacked tensor's.
        const mWindow = (r0: number, r1: number) => windowOf(r0 * d, r1 * d, 4, mbuf.size, align);
        for (const c of chunks) {
          const g0 = c.groups[0];
          const gLast = c.groups[c.groups.length - 1];
          const mRow0 = stacked ? vOff[g0] : 0; // the chunk's first M row in mbuf
          if (c.split !== undefined) {
            const K = vOff[g0 + 1] - vOff[g0];
            const part = (t0: number, t1: number, c0: number, nc: number): Entry => ({
              tok0: t0,
              T: t1 - t0,
              koff: 0,
              K,
              poff: 0,
              c0,
              nc,
            });
            // M: per block of V* rows, the runs of correct tokens, each continuing the last's sums.
            if (mPipe)
              for (const vp of c.split.v)
                c.split.m.forEach((p, i) => {
                  const e = part(p.t0, p.t1, p.c0, p.nc);
                  const mw = mWindow(mRow0 + vp.v0, mRow0 + vp.v1);
                  dispatch('m', [e], hiddenWindow(p.t0, p.t1), probsWindow(g0, p.t0, p.t1), mw, i > 0, vp);
                });
            // The scores: per token range, each block of V* rows' slices, then the fold over all.
            if (scores)
              for (const p of c.split.s) {
                const e = part(p.t0, p.t1, cStart[g0], 0);
                const [hw, pw] = [hiddenWindow(p.t0, p.t1), probsWindow(g0, p.t0, p.t1)];
                for (const vp of c.split.v)
                  dispatch('score', [e], hw, pw, mWindow(mRow0 + vp.v0, mRow0 + vp.v1), false, vp);
                dispatch('fold', [e], hw, pw, mWindow(mRow0, mRow0 + 1));
              }
            continue;
          }
          let kRow = 0;
          const entries = c.groups.map((g): Entry => {
            const K = vOff[g + 1] - vOff[g];
            const e = {
              tok0: gto[g],
              T: gto[g + 1] - gto[g],
              koff: stacked ? vOff[g] - vOff[g0] : kRow,
              K,
              poff: a.probsOffsets[g] - a.probsOffsets[g0],
              c0: cStart[g],
              nc: cStart[g + 1] - cStart[g],
            };
            kRow += K;
            return e;
          });
          const hw = hiddenWindow(gto[g0], gto[gLast + 1]);
          const pw = windowOf(a.probsOffsets[g0], a.probsOffsets[gLast + 1], 4, probs.size, align);
          // The M binding: the scratch's rows of this chunk, or the tensor's rows of its groups.
          const mw = mWindow(mRow0, stacked ? vOff[gLast + 1] : c.mRows);
          if (mPipe) dispatch('m', entries, hw, pw, mw);
          if (scores) {
            dispatch('score', entries, hw, pw, mw);
            dispatch('fold', entries, hw, pw, mw);
          }
        }
      }
      if (!scores) {
        pass.end();
        rt.submit(enc);
        return result();
      }
      const gdeg = Uint32Array.from(degenerate);
      rt.dispatch(
        pass,
        tauPipe!,
        [
          { binding: 0, buffer: rt.uniform(THR_PARAMS, paramsOf({ groups: G, beta: a.beta })) },
          { binding: 9, buffer: thrBuf },
          { binding: 10, buffer: gpuStorage(tau!).buffer },
          { binding: 11, buffer: rt.transientData(ro, Usage.STORAGE, 'responseOffsets') },
          { binding: 12, buffer: rt.transientData(go, Usage.STORAGE, 'groupOffsets') },
          { binding: 13, buffer: gpuStorage(a.correct, 'correct').buffer },
          { binding: 14, buffer: rt.transientData(gdeg, Usage.STORAGE, 'degenerate groups') },
        ],
        G,
      );
      pass.end();
      rt.submit(enc);
      return result();
    },
  );
}

// --------------------------------------------------------------------------------- thrReweight
export async function webgpuThrReweight(k: WebGpuKit, a: ThrReweightArgs): Promise<Tensor<'f32'>> {
  const { rt } = k;
  rt.check();
  const { layout } = a;
  const { numGroups: G, numTokens: T, numResponses: R } = layout;
  const go = layout.groupOffsets;
  k.checkVector('tokenAdvantages', T);
  if (G >= 2 ** 30)
    throw new GrpoKernelsError('SHAPE', `layout: ${G} groups (at most 2^30)`, { argument: 'layout' });
  const pipe = T > 0 ? await k.pipelines.get(moduleKey(k, 'f32'), REWEIGHT_SPEC, { WG: k.wg }) : undefined;
  return rt.run('thrReweight', () => {
    const out = outputTensor(rt, 'f32', [T]);
    if (T === 0) return out;
    // Per response: group | degenerate << 30 | correct << 31. Per group: the plan's eta in f32.
    const { degenerate } = a.plan;
    const rinfo = new Uint32Array(R);
    for (let g = 0; g < G; g++) {
      for (let r = go[g]; r < go[g + 1]; r++) {
        rinfo[r] = (g | (degenerate[g] ? 1 << 30 : 0) | (a.hostCorrect[r] ? 1 << 31 : 0)) >>> 0;
      }
    }
    const eta = new Float32Array(Math.max(1, G));
    eta.set(a.plan.eta);
    const enc = rt.device.createCommandEncoder({ label: 'thrReweight' });
    const pass = enc.beginComputePass();
    rt.dispatch(
      pass,
      pipe!,
      [
        {
          binding: 0,
          buffer: rt.uniform(
            THR_PARAMS,
            paramsOf({
              count: T,
              num_responses: R,
              mode: a.mode === 'nthr' ? 1 : 0,
              mask: a.mask ? 1 : 0,
              p: a.mode === 'thr' ? a.p : 0,
            }),
          ),
        },
        { binding: 11, buffer: rt.transientData(layout.responseOffsets, Usage.STORAGE, 'responseOffsets') },
        { binding: 15, buffer: gpuStorage(a.tokenAdvantages, 'tokenAdvantages').buffer },
        { binding: 16, buffer: gpuStorage(a.thr, 'thr').buffer },
        { binding: 17, buffer: gpuStorage(a.tau, 'tau').buffer },
        { binding: 18, buffer: rt.transientData(rinfo, Usage.STORAGE, 'response info') },
        { binding: 19, buffer: rt.transientData(eta, Usage.STORAGE, 'eta') },
        { binding: 20, buffer: gpuStorage(out).buffer },
      ],
      Math.ceil(T / k.wg),
    );
    pass.end();
    rt.submit(enc);
    return out;
  });
}
