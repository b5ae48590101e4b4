/**
 * The LM-head family's case table (linearLogprobs, linearLogprobsBackward, the sharded states), run
 * on every backend by test/lmhead.test.ts (cpu, webgpu) and test/cuda/ops-lmhead.test.ts (cuda): each
 * case defined once with its float64 reference (test/lmhead/reference.ts, which materialises the
 * logits), tolerances in test/cases/tolerances.ts.
 *
 * Shapes: d from 1 to 896 (odd d, so rows are not 16-byte aligned), V = 7, 257, 32003 and 151936,
 * N from 1 to 300; every dtype (hidden and weight the same), temperatures from 1e-3 to 4, ignored
 * rows, bias, entropy and Σp², gradEntropy, gradients in the input dtype (gradDtype 'input').
 * Self-checked cases: batch invariance (a row alone, among 7 and among 300 rows: the same bits),
 * determinism (two runs: the same bits), gradDtype 'input' = the f32 gradients rounded (bit for bit, also
 * with each backend's backward in small chunks), sharded states (1, 2, 3 and 8 shards, uneven) merged
 * against the reference.
 */
import { lmheadTuning as cpuTuning } from '../../src/backends/cpu/lmhead.js';
import { lmheadTuning as cudaTuning } from '../../src/backends/cuda/lmhead.js';
import { lmheadTuning as webgpuTuning } from '../../src/backends/webgpu/lmhead.js';
import type { Context } from '../../src/context.js';
import { decodeFloats, encodeFloats, type FloatDType } from '../../src/dtypes.js';
import type { LogprobStates, Tensor } from '../../src/index.js';
import {
  type BackwardRef,
  backwardRef,
  type ForwardRef,
  forwardRef,
  gradVector,
  type HeadInputs,
  type HeadSpec,
  logits,
  makeHead,
} from '../lmhead/reference.js';
import { firstBitDiff, wordsOf } from './check.js';
import type { Case, Outputs, RefCase, SelfCase, Want } from './runner.js';
import { lazy } from './runner.js';
import { TOLERANCES } from './tolerances.js';

// The same for every dtype (test/cases/tolerances.ts, "LM-head family").
const FORWARD_TOL = TOLERANCES.linearLogprobs.f32;
const BACKWARD_TOL = TOLERANCES.linearLogprobsBackward.f32;

export interface CaseOptions {
  /** The cuda backend is the CPU emulator: its largest shapes take minutes and are skipped. */
  emulated?: boolean;
}

interface FwdOpts {
  T?: number;
  entropy?: boolean;
  sumSquares?: boolean;
}

function upload(ctx: Context, x: HeadInputs) {
  const hidden = ctx.tensor(x.hidden, [x.N, x.d], x.dtype);
  const weight = ctx.tensor(x.weight, [x.V, x.d], x.dtype);
  const bias = x.bias ? ctx.tensor(x.bias, [x.V], x.dtype) : undefined;
  return {
    hidden,
    weight,
    bias,
    dispose: () => {
      for (const t of [hidden, weight, bias]) t?.dispose();
    },
  };
}

async function read(t: Tensor | undefined): Promise<Outputs[string]> {
  if (t === undefined) throw new Error('missing output');
  const data = await t.read();
  t.dispose();
  return { dtype: t.dtype, data };
}

function describeSpec(s: HeadSpec, o: FwdOpts = {}): string {
  const parts = [`N=${s.N} d=${s.d} V=${s.V} ${s.dtype}`];
  if (o.T !== undefined && o.T !== 1) parts.push(`T=${o.T}`);
  if (s.bias) parts.push('bias');
  if (s.ignored?.length) parts.push(`${s.ignored.length} ignored`);
  if (o.entropy) parts.push('entropy');
  if (o.sumSquares) parts.push('Σp²');
  return parts.join(' ');
}

interface Prepared {
  x: HeadInputs;
  fwd: ForwardRef;
  X: Float64Array;
}

function prepare(spec: HeadSpec, T: number): () => Prepared {
  return lazy(() => {
    const x = makeHead(spec);
    const { X, Amax } = logits(x);
    return { x, X, fwd: forwardRef(X, Amax, x.targets, x.N, x.V, T, spec.ignoreIndex) };
  });
}

function forwardWant(f: ForwardRef, o: FwdOpts): Record<string, Want> {
  const w: Record<string, Want> = {
    logprobs: { values: f.logprobs, scale: f.scale },
    lse: { values: f.lse, scale: f.scale },
  };
  if (o.entropy) w.entropy = { values: f.entropy, scale: f.scale };
  if (o.sumSquares) w.sumSquares = { values: f.sumSquares, scale: f.sqScale };
  return w;
}

async function forwardOutputs(r: {
  logprobs: Tensor;
  lse: Tensor;
  entropy?: Tensor;
  sumSquares?: Tensor;
}): Promise<Outputs> {
  const out: Outputs = { logprobs: await read(r.logprobs), lse: await read(r.lse) };
  if (r.entropy) out.entropy = await read(r.entropy);
  if (r.sumSquares) out.sumSquares = await read(r.sumSquares);
  return out;
}

function forwardCase(spec: HeadSpec, o: FwdOpts = {}, skip?: RefCase['skip']): RefCase {
  const T = o.T ?? 1;
  const p = prepare(spec, T);
  return {
    kind: 'reference',
    name: `forward ${describeSpec(spec, o)}`,
    tol: FORWARD_TOL,
    skip,
    async run(ctx) {
      const { x } = p();
      const t = upload(ctx, x);
      try {
        const r = await ctx.linearLogprobs(t.hidden, t.weight, x.targets, {
          temperature: T,
          ignoreIndex: spec.ignoreIndex,
          entropy: o.entropy,
          sumSquares: o.sumSquares,
          bias: t.bias,
        });
        return await forwardOutputs(r);
      } finally {
        t.dispose();
      }
    },
    want: () => forwardWant(p().fwd, o),
    check(got) {
      // Ignored rows are 0 in every output, exactly.
      for (const r of spec.ignored ?? [])
        for (const k of Object.keys(got))
          if (got[k][r] !== 0) throw new Error(`${k}[${r}] = ${got[k][r]}, expected 0 (ignored row)`);
    },
  };
}

interface BwdOpts {
  T?: number;
  gradEntropy?: boolean;
  /** Gradients in the input dtype. */
  gradDtype?: 'input';
  /** gradLogprobs (and gradEntropy) times this (default 1): a small one puts all of G below 2⁻¹⁴. */
  gradScale?: number;
}

function backwardCase(spec: HeadSpec, o: BwdOpts = {}, skip?: RefCase['skip']): RefCase {
  const T = o.T ?? 1;
  const input = o.gradDtype === 'input';
  const gradDtype = input ? spec.dtype : 'f32';
  const p = prepare(spec, T);
  const grads = lazy(() => {
    const { x, X, fwd } = p();
    const g = gradVector(spec.seed + 10, x.N, o.gradScale ?? 1);
    const gE = o.gradEntropy ? gradVector(spec.seed + 11, x.N, 0.5 * (o.gradScale ?? 1)) : undefined;
    const ref: BackwardRef = backwardRef(x, X, fwd, g, gE, T, spec.ignoreIndex);
    return { g, gE, ref };
  });
  return {
    kind: 'reference',
    name: `backward ${describeSpec(spec, { T })}${o.gradEntropy ? ' gradEntropy' : ''}${input ? ' gradDtype=input' : ''}${o.gradScale ? ` gradients ×2^${Math.log2(o.gradScale)}` : ''}`,
    tol: input ? TOLERANCES.linearLogprobsBackwardInput[spec.dtype] : BACKWARD_TOL,
    skip,
    async run(ctx) {
      const { x, fwd } = p();
      const { g, gE } = grads();
      const t = upload(ctx, x);
      try {
        const r = await ctx.linearLogprobsBackward(
          t.hidden,
          t.weight,
          x.targets,
          Float32Array.from(fwd.lse),
          g,
          {
            temperature: T,
            ignoreIndex: spec.ignoreIndex,
            bias: t.bias,
            gradEntropy: gE,
            entropy: gE ? Float32Array.from(fwd.entropy) : undefined,
            gradDtype: o.gradDtype,
          },
        );
        const out: Outputs = { gradHidden: await read(r.gradHidden), gradWeight: await read(r.gradWeight) };
        if (spec.bias) out.gradBias = await read(r.gradBias);
        return out;
      } finally {
        t.dispose();
      }
    },
    want() {
      const { ref } = grads();
      const w: Record<string, Want> = {
        gradHidden: { values: ref.gradHidden, scale: ref.hiddenScale },
        gradWeight: { values: ref.gradWeight, scale: ref.weightScale },
      };
      if (spec.bias) w.gradBias = { values: ref.gradBias, scale: ref.biasScale };
      return w;
    },
    check(got, raw) {
      for (const [k, v] of Object.entries(raw))
        if (v.dtype !== gradDtype) throw new Error(`${k} is ${v.dtype}, expected ${gradDtype}`);
      const d = spec.d;
      for (const r of spec.ignored ?? [])
        for (let k = 0; k < d; k++)
          if (got.gradHidden[r * d + k] !== 0) throw new Error(`gradHidden[${r}, ${k}] ≠ 0 (ignored row)`);
    },
  };
}

/** Shard boundaries of [0, V) into `parts` uneven pieces (first pieces larger), or given cuts. */
export function shardCuts(V: number, parts: number): number[] {
  const cuts = [0];
  for (let i = 1; i < parts; i++) cuts.push(Math.round((V * i * (parts + i)) / (parts * (2 * parts))));
  cuts.push(V);
  for (let i = 1; i < cuts.length; i++) if (cuts[i] <= cuts[i - 1]) cuts[i] = cuts[i - 1] + 1;
  return cuts;
}

function sliceRows(x: Float32Array | Uint16Array, d: number, v0: number, v1: number) {
  return x.slice(v0 * d, v1 * d);
}

async function disposeStates(states: LogprobStates[]) {
  for (const s of states)
    for (const t of [s.max, s.sumExp, s.sumExpDelta, s.sumExpSq, s.targetLogit]) t?.dispose();
}

/** linearLogprobStates over `parts` shards, merged: against the unsharded reference. */
function shardedCase(spec: HeadSpec, parts: number, o: FwdOpts = {}, skip?: RefCase['skip']): RefCase {
  const T = o.T ?? 1;
  const p = prepare(spec, T);
  return {
    kind: 'reference',
    name: `sharded ${parts} ways ${describeSpec(spec, o)}`,
    tol: FORWARD_TOL,
    skip,
    async run(ctx) {
      const { x } = p();
      const cuts = shardCuts(x.V, parts);
      const hidden = ctx.tensor(x.hidden, [x.N, x.d], x.dtype);
      const states: LogprobStates[] = [];
      try {
        for (let i = 0; i < parts; i++) {
          const [v0, v1] = [cuts[i], cuts[i + 1]];
          const w = ctx.tensor(sliceRows(x.weight, x.d, v0, v1), [v1 - v0, x.d], x.dtype);
          const b = x.bias ? ctx.tensor(x.bias.slice(v0, v1), [v1 - v0], x.dtype) : undefined;
          try {
            states.push(
              await ctx.linearLogprobStates(hidden, w, x.targets, {
                vocabStart: v0,
                bias: b,
                temperature: T,
                ignoreIndex: spec.ignoreIndex,
                entropy: o.entropy,
                sumSquares: o.sumSquares,
              }),
            );
          } finally {
            w.dispose();
            b?.dispose();
          }
        }
        const r = await ctx.mergeLogprobStates(states, x.targets, {
          entropy: o.entropy,
          sumSquares: o.sumSquares,
        });
        return await forwardOutputs(r);
      } finally {
        hidden.dispose();
        await disposeStates(states);
      }
    },
    want: () => forwardWant(p().fwd, o),
  };
}

/**
 * A tensor-parallel backward: each of `parts` shards of the head calls linearLogprobsBackward with its
 * vocabStart and the full head's lse and entropy; gradHidden is the sum of the shards' terms (the
 * all-reduce, in shard order, in f32), gradWeight and gradBias the shards' rows side by side.
 */
function shardedBackwardCase(spec: HeadSpec, parts: number, o: BwdOpts = {}): RefCase {
  const T = o.T ?? 1;
  const p = prepare(spec, T);
  const grads = lazy(() => {
    const { x, X, fwd } = p();
    const g = gradVector(spec.seed + 10, x.N, 1);
    const gE = o.gradEntropy ? gradVector(spec.seed + 11, x.N, 0.5) : undefined;
    return { g, gE, ref: backwardRef(x, X, fwd, g, gE, T, spec.ignoreIndex) };
  });
  return {
    kind: 'reference',
    name: `sharded backward ${parts} ways ${describeSpec(spec, { T })}${o.gradEntropy ? ' gradEntropy' : ''}`,
    tol: BACKWARD_TOL,
    async run(ctx) {
      const { x, fwd } = p();
      const { g, gE } = grads();
      const cuts = shardCuts(x.V, parts);
      const hidden = ctx.tensor(x.hidden, [x.N, x.d], x.dtype);
      const gh = new Float32Array(x.N * x.d);
      const gw = new Float32Array(x.V * x.d);
      const gb = new Float32Array(x.V);
      try {
        for (let i = 0; i < parts; i++) {
          const [v0, v1] = [cuts[i], cuts[i + 1]];
          const w = ctx.tensor(sliceRows(x.weight, x.d, v0, v1), [v1 - v0, x.d], x.dtype);
          const b = x.bias ? ctx.tensor(x.bias.slice(v0, v1), [v1 - v0], x.dtype) : undefined;
          try {
            const r = await ctx.linearLogprobsBackward(hidden, w, x.targets, Float32Array.from(fwd.lse), g, {
              vocabStart: v0,
              temperature: T,
              ignoreIndex: spec.ignoreIndex,
              bias: b,
              gradEntropy: gE,
              entropy: gE ? Float32Array.from(fwd.entropy) : undefined,
            });
            const h = (await r.gradHidden.read()) as Float32Array;
            for (let j = 0; j < h.length; j++) gh[j] = Math.fround(gh[j] + h[j]);
            gw.set((await r.gradWeight.read()) as Float32Array, v0 * x.d);
            if (r.gradBias) gb.set((await r.gradBias.read()) as Float32Array, v0);
            for (const t of [r.gradHidden, r.gradWeight, r.gradBias]) t?.dispose();
          } finally {
            w.dispose();
            b?.dispose();
          }
        }
        const out: Outputs = {
          gradHidden: { dtype: 'f32', data: gh },
          gradWeight: { dtype: 'f32', data: gw },
        };
        if (spec.bias) out.gradBias = { dtype: 'f32', data: gb };
        return out;
      } finally {
        hidden.dispose();
      }
    },
    want() {
      const { ref } = grads();
      const w: Record<string, Want> = {
        gradHidden: { values: ref.gradHidden, scale: ref.hiddenScale },
        gradWeight: { values: ref.gradWeight, scale: ref.weightScale },
      };
      if (spec.bias) w.gradBias = { values: ref.gradBias, scale: ref.biasScale };
      return w;
    },
  };
}

/** logprobStates over shards of materialised logits (f64 reference logits rounded to the dtype). */
function logitShardCase(N: number, V: number, dtype: FloatDType, parts: number, o: FwdOpts = {}): RefCase {
  const T = o.T ?? 1;
  const spec: HeadSpec = { N, d: 8, V, dtype, seed: 900 + parts, ignored: [1] };
  const data = lazy(() => {
    // Logits given directly: take the reference's logits rounded to the dtype as the input, then the
    // reference of those exact values.
    const x = makeHead(spec);
    const { X } = logits(x);
    const enc = dtype === 'f32' ? Float32Array.from(X) : encodeFloats(dtype, X);
    const exact = decodeFloats(dtype, enc);
    const fwd = forwardRef(exact, new Float64Array(N), x.targets, N, V, T);
    return { x, enc, fwd };
  });
  return {
    kind: 'reference',
    name: `logit shards ${parts} ways N=${N} V=${V} ${dtype}${T !== 1 ? ` T=${T}` : ''}`,
    tol: FORWARD_TOL,
    async run(ctx) {
      const { x, enc } = data();
      const cuts = shardCuts(V, parts);
      const states: LogprobStates[] = [];
      try {
        for (let i = 0; i < parts; i++) {
          const [v0, v1] = [cuts[i], cuts[i + 1]];
          const shard = dtype === 'f32' ? new Float32Array((v1 - v0) * N) : new Uint16Array((v1 - v0) * N);
          for (let n = 0; n < N; n++) shard.set(enc.subarray(n * V + v0, n * V + v1), n * (v1 - v0));
          const lg = ctx.tensor(shard, [N, v1 - v0], dtype);
          try {
            states.push(
              await ctx.logprobStates(lg, x.targets, {
                vocabStart: v0,
                temperature: T,
                entropy: o.entropy,
                sumSquares: o.sumSquares,
              }),
            );
          } finally {
            lg.dispose();
          }
        }
        return await forwardOutputs(
          await ctx.mergeLogprobStates(states, x.targets, { entropy: o.entropy, sumSquares: o.sumSquares }),
        );
      } finally {
        await disposeStates(states);
      }
    },
    want: () => forwardWant(data().fwd, o),
  };
}

// ---------------------------------------------------------------- self-checked cases

/** The bits of row `row` alone (N = 1), among 7 rows and among 300 rows (forward and gradHidden). */
function batchInvarianceCase(dtype: FloatDType, d: number, V: number, withBias: boolean): SelfCase {
  return {
    kind: 'self',
    name: `batch invariance d=${d} V=${V} ${dtype}${withBias ? ' bias' : ''}: a row alone, among 7 and among 300`,
    async run(ctx) {
      const big = makeHead({ N: 300, d, V, dtype, seed: 77, bias: withBias });
      const problems: string[] = [];
      const rowsOf = (rows: number[]) => {
        const h = dtype === 'f32' ? new Float32Array(rows.length * d) : new Uint16Array(rows.length * d);
        rows.forEach((r, i) => {
          h.set(big.hidden.subarray(r * d, (r + 1) * d), i * d);
        });
        return { h, t: Int32Array.from(rows.map((r) => big.targets[r])) };
      };
      const weight = ctx.tensor(big.weight, [V, d], dtype);
      const bias = big.bias ? ctx.tensor(big.bias, [V], dtype) : undefined;
      const g = gradVector(5, 300);
      const probe = [0, 3, 150, 299];
      const run = async (rows: number[]) => {
        const { h, t } = rowsOf(rows);
        const hidden = ctx.tensor(h, [rows.length, d], dtype);
        try {
          const f = await ctx.linearLogprobs(hidden, weight, t, { entropy: true, sumSquares: true, bias });
          const gl = Float32Array.from(rows.map((r) => g[r]));
          const b = await ctx.linearLogprobsBackward(hidden, weight, t, f.lse, gl, {
            bias,
            gradEntropy: Float32Array.from(rows.map((r) => g[(r + 1) % 300])),
            entropy: f.entropy,
          });
          const out = {
            lp: new Uint32Array((await f.logprobs.read()).buffer),
            lse: new Uint32Array((await f.lse.read()).buffer),
            h: new Uint32Array((await f.entropy!.read()).buffer),
            sq: new Uint32Array((await f.sumSquares!.read()).buffer),
            gh: new Uint32Array((await b.gradHidden.read()).buffer),
          };
          for (const x of [
            f.logprobs,
            f.lse,
            f.entropy,
            f.sumSquares,
            b.gradHidden,
            b.gradWeight,
            b.gradBias,
          ])
            x?.dispose();
          return out;
        } finally {
          hidden.dispose();
        }
      };
      try {
        const all = await run(Array.from({ length: 300 }, (_, i) => i));
        for (const r of probe) {
          const seven = [r, ...[1, 2, 4, 5, 6, 7].map((k) => (r + k * 37) % 300)];
          const alone = await run([r]);
          const among = await run(seven);
          for (const k of ['lp', 'lse', 'h', 'sq'] as const) {
            if (alone[k][0] !== all[k][r])
              problems.push(`${k}[${r}]: alone ${alone[k][0]}, among 300 ${all[k][r]}`);
            if (among[k][0] !== all[k][r])
              problems.push(`${k}[${r}]: among 7 ${among[k][0]}, among 300 ${all[k][r]}`);
          }
          for (let j = 0; j < d; j++) {
            if (alone.gh[j] !== all.gh[r * d + j] || among.gh[j] !== all.gh[r * d + j]) {
              problems.push(`gradHidden[${r}, ${j}] differs (alone / among 7 / among 300)`);
              break;
            }
          }
        }
      } finally {
        weight.dispose();
        bias?.dispose();
      }
      return problems;
    },
  };
}

/**
 * Runs `run` with the backend's backward split into small chunks (each backend's test hook: cuda and
 * webgpu the G chunk, so several row and vocabulary chunks and, for input-dtype gradients, the second
 * pass; cpu the columns per block of that pass; js has no chunks), then restores the plan's.
 */
async function withSmallChunks<T>(ctx: Context, run: () => Promise<T>): Promise<T> {
  const knobs: { hook: Record<string, number>; small: Record<string, number> }[] = [
    { hook: cpuTuning, small: { accCols: 192 } },
    { hook: cudaTuning, small: { chunkRows: 128, chunkVocab: 128 } },
    { hook: webgpuTuning, small: { chunkRows: 64, chunkVocab: 64 } },
  ];
  const knob = knobs[['cpu', 'cuda', 'webgpu'].indexOf(ctx.backend)];
  if (knob === undefined) return run();
  const saved = { ...knob.hook };
  Object.assign(knob.hook, knob.small);
  try {
    return await run();
  } finally {
    Object.assign(knob.hook, saved);
  }
}

/**
 * gradDtype 'input': each gradient equals the same backend's f32 gradient rounded to the input dtype
 * (nearest even, src/dtypes.ts's encoder), bit for bit: with the plan's chunks and with small ones (see
 * withSmallChunks: the cpu and cuda second pass over several row chunks, webgpu's packing of odd d).
 * For f32 inputs the option is a no-op: the same f32 bits.
 */
function gradDtypeInputCase(spec: HeadSpec, gradEntropy: boolean): SelfCase {
  return {
    kind: 'self',
    name: `backward gradDtype=input is the f32 gradients rounded, bit for bit (${describeSpec(spec)}${gradEntropy ? ' gradEntropy' : ''}; the plan's chunks and small ones)`,
    async run(ctx) {
      const x = makeHead(spec);
      const t = upload(ctx, x);
      const problems: string[] = [];
      try {
        const f = await ctx.linearLogprobs(t.hidden, t.weight, x.targets, { bias: t.bias, entropy: true });
        const g = gradVector(spec.seed + 10, x.N);
        const options = {
          bias: t.bias,
          temperature: 0.9,
          ignoreIndex: spec.ignoreIndex,
          gradEntropy: gradEntropy ? gradVector(spec.seed + 11, x.N, 0.5) : undefined,
          entropy: gradEntropy ? f.entropy : undefined,
        };
        const grads = async (gradDtype: 'f32' | 'input') => {
          const r = await ctx.linearLogprobsBackward(t.hidden, t.weight, x.targets, f.lse, g, {
            ...options,
            gradDtype,
          });
          const out: Record<string, { dtype: string; data: Float32Array | Uint16Array }> = {};
          for (const [k, v] of Object.entries(r) as [string, Tensor][]) {
            out[k] = { dtype: v.dtype, data: (await v.read()) as Float32Array | Uint16Array };
            v.dispose();
          }
          return out;
        };
        const f32 = await grads('f32');
        for (const [label, narrow] of [
          ["the plan's chunks", await grads('input')],
          ['small chunks', await withSmallChunks(ctx, () => grads('input'))],
        ] as const) {
          for (const [k, want32] of Object.entries(f32)) {
            const got = narrow[k];
            if (got.dtype !== spec.dtype) {
              problems.push(`${label}: ${k} is ${got.dtype}, expected ${spec.dtype}`);
              continue;
            }
            const want =
              spec.dtype === 'f32' ? want32.data : encodeFloats(spec.dtype, want32.data as Float32Array);
            const i = firstBitDiff(want, got.data);
            if (i >= 0)
              problems.push(
                `${label}: ${k}[${i}] has bits ${wordsOf(got.data)[i]}, the rounded f32 gradient ${wordsOf(want)[i]}`,
              );
          }
        }
        for (const o of [f.logprobs, f.lse, f.entropy]) o?.dispose();
      } finally {
        t.dispose();
      }
      return problems;
    },
  };
}

/** Two runs of forward, backward and 3-way sharded states: the same bits. */
function determinismCase(dtype: FloatDType): SelfCase {
  return {
    kind: 'self',
    name: `determinism ${dtype}: two runs give the same bits (forward, backward, 3 shards merged)`,
    async run(ctx) {
      const x = makeHead({ N: 37, d: 72, V: 501, dtype, seed: 31, bias: true });
      const t = upload(ctx, x);
      const g = gradVector(8, x.N);
      const once = async () => {
        const words: (Uint32Array | Uint16Array | Int32Array | Uint8Array)[] = [];
        const f = await ctx.linearLogprobs(t.hidden, t.weight, x.targets, { entropy: true, bias: t.bias });
        const b = await ctx.linearLogprobsBackward(t.hidden, t.weight, x.targets, f.lse, g, {
          bias: t.bias,
          gradEntropy: g,
          entropy: f.entropy,
        });
        for (const o of [f.logprobs, f.lse, f.entropy, b.gradHidden, b.gradWeight, b.gradBias])
          words.push(wordsOf(await o!.read()));
        const cuts = shardCuts(x.V, 3);
        const states: LogprobStates[] = [];
        for (let i = 0; i < 3; i++) {
          const w = ctx.tensor(
            sliceRows(x.weight, x.d, cuts[i], cuts[i + 1]),
            [cuts[i + 1] - cuts[i], x.d],
            dtype,
          );
          const bb = ctx.tensor(x.bias!.slice(cuts[i], cuts[i + 1]), [cuts[i + 1] - cuts[i]], dtype);
          states.push(
            await ctx.linearLogprobStates(t.hidden, w, x.targets, {
              vocabStart: cuts[i],
              bias: bb,
              entropy: true,
            }),
          );
          w.dispose();
          bb.dispose();
        }
        const m = await ctx.mergeLogprobStates(states, x.targets, { entropy: true });
        for (const o of [m.logprobs, m.lse, m.entropy]) words.push(wordsOf(await o!.read()));
        await disposeStates(states);
        return words;
      };
      try {
        const a = await once();
        const b = await once();
        const problems: string[] = [];
        a.forEach((w, i) => {
          const v = b[i];
          for (let j = 0; j < w.length; j++)
            if (w[j] !== v[j]) {
              problems.push(`output ${i} element ${j}: ${w[j]} then ${v[j]}`);
              break;
            }
        });
        return problems;
      } finally {
        t.dispose();
      }
    },
  };
}

/**
 * Edges the fuzzing of 2026-11-28 found backends disagreeing on, checked by themselves: a +Inf logit
 * makes a row's state sums NaN (as its logprobs are); at the smallest temperature a state's max term
 * is e^0 = 1, so its sums are finite (the js reference once took an f32 max against f64 logits);
 * the backward of zero rows gives empty gradHidden and a zero gradWeight.
 */
function edgeCase(): SelfCase {
  return {
    kind: 'self',
    name: 'edges: a +Inf logit in a state, states at T = 2^-126, the backward of zero rows',
    async run(ctx) {
      const problems: string[] = [];
      const logits = ctx.tensor(new Float32Array([Number.POSITIVE_INFINITY, 1, 2, 0.5, 1, 2]), [2, 3]);
      const s = await ctx.logprobStates(logits, new Int32Array([0, 1]), { entropy: true, sumSquares: true });
      const sums = [await s.sumExp.read(), await s.sumExpDelta!.read(), await s.sumExpSq!.read()];
      if (!sums.every((x) => Number.isNaN(x[0])))
        problems.push(`+Inf row: sums ${sums.map((x) => x[0])}, expected NaN`);
      if (!sums.every((x) => Number.isFinite(x[1])))
        problems.push(`finite row: sums ${sums.map((x) => x[1])}`);
      const x = makeHead({ N: 3, d: 5, V: 7, dtype: 'f32', seed: 61 });
      const H = ctx.tensor(x.hidden as Float32Array, [3, 5]);
      const W = ctx.tensor(x.weight as Float32Array, [7, 5]);
      const tiny = await ctx.linearLogprobStates(H, W, new Int32Array([0, 3, 6]), { temperature: 2 ** -126 });
      const se = await tiny.sumExp.read();
      if (!se.every((v) => v >= 1 && Number.isFinite(v)))
        problems.push(`T = 2^-126: sumExp ${Array.from(se)}`);
      const empty = ctx.tensor(new Float32Array(0), [0, 5]);
      const g = await ctx.linearLogprobsBackward(
        empty,
        W,
        new Int32Array(0),
        new Float32Array(0),
        new Float32Array(0),
      );
      if (g.gradHidden.shape.join() !== '0,5')
        problems.push(`N = 0: gradHidden shape [${g.gradHidden.shape}]`);
      const gw = await g.gradWeight.read();
      if (gw.length !== 35 || !gw.every((v) => v === 0)) problems.push('N = 0: gradWeight is not all +0');
      for (const t of [
        logits,
        H,
        W,
        empty,
        g.gradHidden,
        g.gradWeight,
        ...Object.values(s),
        ...Object.values(tiny),
      ])
        if (t && typeof t === 'object' && 'dispose' in t) (t as Tensor).dispose();
      return problems;
    },
  };
}

// ---------------------------------------------------------------- the table

export function lmheadCases(_options: CaseOptions = {}): Case[] {
  const cases: Case[] = [
    forwardCase(
      { N: 5, d: 64, V: 7, dtype: 'f32', seed: 1, ignored: [2] },
      { entropy: true, sumSquares: true },
    ),
    forwardCase({ N: 7, d: 128, V: 257, dtype: 'bf16', seed: 2, bias: true }, { T: 0.7, entropy: true }),
    forwardCase(
      { N: 7, d: 96, V: 257, dtype: 'f16', seed: 3, ignored: [0, 6] },
      { T: 1.3, sumSquares: true },
    ),
    forwardCase({ N: 33, d: 896, V: 257, dtype: 'f32', seed: 4, bias: true }, { entropy: true }),
    forwardCase({ N: 19, d: 896, V: 257, dtype: 'bf16', seed: 5 }, { entropy: true, sumSquares: true }),
    forwardCase({ N: 300, d: 64, V: 257, dtype: 'bf16', seed: 6, ignored: [0, 129, 299] }, { entropy: true }),
    forwardCase(
      { N: 5, d: 64, V: 32003, dtype: 'bf16', seed: 7, ignored: [3] },
      { entropy: true, sumSquares: true },
    ),
    forwardCase({ N: 3, d: 64, V: 32003, dtype: 'f32', seed: 8, bias: true }, { T: 0.5 }),
    forwardCase({ N: 2, d: 64, V: 151936, dtype: 'bf16', seed: 9 }, { entropy: true }),
    // N = 3 rows (within one row tile on every backend, as 7 would be): the largest case, in every file.
    forwardCase({ N: 3, d: 896, V: 32003, dtype: 'bf16', seed: 17, bias: true }, { entropy: true }),
    forwardCase({ N: 6, d: 32, V: 300, dtype: 'f32', seed: 10 }, { T: 1e-3, entropy: true }),
    forwardCase({ N: 6, d: 32, V: 300, dtype: 'bf16', seed: 11, logitScale: 30 }, { T: 4, entropy: true }),
    forwardCase({ N: 9, d: 67, V: 101, dtype: 'f16', seed: 12, bias: true }, { entropy: true }),
    forwardCase({ N: 9, d: 67, V: 101, dtype: 'bf16', seed: 13 }, { sumSquares: true }),
    forwardCase({ N: 9, d: 67, V: 101, dtype: 'f32', seed: 14 }, { entropy: true }),
    forwardCase({ N: 4, d: 1, V: 9, dtype: 'f32', seed: 15, bias: true }, { entropy: true }),
    forwardCase({ N: 1, d: 130, V: 129, dtype: 'f16', seed: 16 }),
    // d = 0: the logits are the bias (empty hidden and weight, whose data pointers may be null).
    forwardCase(
      { N: 5, d: 0, V: 37, dtype: 'f32', seed: 18, bias: true, ignored: [1, 4] },
      { entropy: true, sumSquares: true },
    ),

    backwardCase({ N: 5, d: 64, V: 7, dtype: 'f32', seed: 21, ignored: [2] }),
    backwardCase(
      { N: 7, d: 128, V: 257, dtype: 'bf16', seed: 22, bias: true },
      { T: 0.7, gradEntropy: true },
    ),
    backwardCase({ N: 7, d: 96, V: 257, dtype: 'f16', seed: 23, ignored: [0, 6] }, { T: 1.3 }),
    backwardCase({ N: 33, d: 896, V: 257, dtype: 'f32', seed: 24, bias: true }, { gradEntropy: true }),
    backwardCase({ N: 19, d: 896, V: 257, dtype: 'bf16', seed: 25 }),
    backwardCase(
      { N: 300, d: 64, V: 257, dtype: 'bf16', seed: 26, ignored: [0, 129, 299], bias: true },
      { gradEntropy: true },
    ),
    backwardCase({ N: 5, d: 64, V: 32003, dtype: 'bf16', seed: 27, ignored: [3] }, { gradEntropy: true }),
    backwardCase({ N: 3, d: 64, V: 32003, dtype: 'f32', seed: 28, bias: true }, { T: 0.5 }),
    backwardCase({ N: 6, d: 32, V: 300, dtype: 'f32', seed: 30 }, { T: 1e-3 }),
    backwardCase({ N: 9, d: 67, V: 101, dtype: 'f16', seed: 32, bias: true }, { gradEntropy: true }),
    backwardCase({ N: 9, d: 67, V: 101, dtype: 'bf16', seed: 33 }),
    backwardCase({ N: 9, d: 67, V: 101, dtype: 'f32', seed: 34 }, { gradEntropy: true }),
    backwardCase({ N: 4, d: 1, V: 9, dtype: 'f32', seed: 35, bias: true }),
    // d = 0, with ignored rows and with none live: empty gradHidden and gradWeight, gradBias alone (the
    // cpu backend once passed memset their null pointers: scripts/cpu-memcheck.sh's UBSan saw it).
    backwardCase(
      { N: 5, d: 0, V: 37, dtype: 'f32', seed: 60, bias: true, ignored: [1, 4] },
      { gradEntropy: true },
    ),
    backwardCase({ N: 2, d: 0, V: 37, dtype: 'bf16', seed: 61, bias: true, ignored: [0, 1] }),
    // f16 G below f16's normal range (2⁻¹⁴): cuda rounds G to f16 for the tensor cores and scales it by
    // a power of two first (lm_grad_scale_kernel; per row for gradHidden and gradBias, per call for
    // gradWeight), else its subnormals keep only an absolute step of 2⁻²⁴ (the differential fuzz,
    // 2026-11-28: up to 678× the bound). Peaked logits (p down to 1e-10 within a row, held to f16's
    // floor at the scale: test/lmhead/reference.ts) and a small gradient (2⁻¹⁴·N(0, 1), an unscaled
    // token mean: every G subnormal unscaled).
    backwardCase({ N: 2, d: 16, V: 257, dtype: 'f16', seed: 62, bias: true, logitScale: 6 }),
    backwardCase(
      { N: 9, d: 67, V: 101, dtype: 'f16', seed: 63, bias: true, ignored: [4] },
      { gradEntropy: true, gradScale: 2 ** -14 },
    ),
    backwardCase(
      { N: 9, d: 67, V: 101, dtype: 'f16', seed: 64, bias: true },
      { gradScale: 2 ** -14, gradDtype: 'input' },
    ),
    backwardCase({ N: 2, d: 64, V: 151936, dtype: 'bf16', seed: 36 }, { gradEntropy: true }),
    backwardCase({ N: 3, d: 896, V: 32003, dtype: 'bf16', seed: 37, bias: true }),
    // Gradients in the input dtype (gradDtype 'input'): the f32 bound plus one rounding.
    backwardCase(
      { N: 7, d: 128, V: 257, dtype: 'bf16', seed: 38, bias: true },
      { T: 0.7, gradEntropy: true, gradDtype: 'input' },
    ),
    backwardCase(
      { N: 9, d: 67, V: 101, dtype: 'f16', seed: 39, bias: true, ignored: [4] },
      { gradEntropy: true, gradDtype: 'input' },
    ),
    backwardCase({ N: 9, d: 67, V: 101, dtype: 'f32', seed: 54, bias: true }, { gradDtype: 'input' }),
    backwardCase({ N: 5, d: 64, V: 32003, dtype: 'bf16', seed: 55, ignored: [3] }, { gradDtype: 'input' }),
    backwardCase(
      { N: 300, d: 64, V: 257, dtype: 'f16', seed: 56, ignored: [0, 299] },
      { gradDtype: 'input' },
    ),
    gradDtypeInputCase(
      { N: 450, d: 40, V: 1000, dtype: 'bf16', seed: 57, bias: true, ignored: [0, 129] },
      true,
    ),
    gradDtypeInputCase({ N: 130, d: 67, V: 1001, dtype: 'f16', seed: 58, bias: true }, false),
    gradDtypeInputCase({ N: 9, d: 33, V: 300, dtype: 'f32', seed: 59, bias: true }, true),
    edgeCase(),

    ...[1, 2, 3, 8].map((k) =>
      shardedCase({ N: 11, d: 48, V: 257, dtype: 'f32', seed: 40 + k, bias: true, ignored: [4] }, k, {
        entropy: true,
        sumSquares: true,
      }),
    ),
    shardedCase({ N: 7, d: 64, V: 1003, dtype: 'bf16', seed: 50 }, 3, { T: 0.8, entropy: true }),
    shardedCase({ N: 5, d: 96, V: 32003, dtype: 'f16', seed: 51 }, 8, { entropy: true }),
    ...[1, 2, 3, 8].map((k) => logitShardCase(9, 300, 'f32', k, { entropy: true, sumSquares: true })),
    shardedBackwardCase({ N: 9, d: 64, V: 1001, dtype: 'bf16', seed: 52, bias: true, ignored: [2] }, 3, {
      gradEntropy: true,
    }),
    shardedBackwardCase({ N: 7, d: 40, V: 300, dtype: 'f32', seed: 53 }, 2),
    logitShardCase(6, 1000, 'bf16', 3, { T: 0.6, entropy: true }),

    batchInvarianceCase('bf16', 64, 257, true),
    batchInvarianceCase('f32', 40, 131, false),
    determinismCase('bf16'),
    determinismCase('f32'),
  ];
  return cases;
}
