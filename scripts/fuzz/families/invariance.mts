/**
 * Family 'invariance': batch invariance on the backend alone (docs/DESIGN.md, "Numerics"): a unit (a
 * row, a group, a response) computed inside one batch and inside another, at another position, among
 * other units, gives the same bits in every output it owns. Each case draws K units and calls the op
 * on all of them (the whole), then on units [a, b) of those with fresh filler units before and after
 * them, or alone (the part), and compares the shared units' outputs bit for bit (Session.same): no
 * tolerance, no js. The part runs with knobs that must not move a bit (partOf): on cpu half the time
 * on a context of 1 thread (the whole on every core); on webgpu on a second device with rows in
 * chunks of 1 to 7, THR's chunks capped (groups split in parts), the LM head's and policyLoss's chunks
 * forced; on cuda the LM head's G chunks, policyLoss's blocks and THR's M budget forced.
 *
 * Ops, with the unit each owns:
 * - logprobs (entropy, Σp²) and logprobsBackward (out of place or in place; the part is given the
 *   whole's lse and entropy for its shared rows): rows of N(0, s²) logits of every dtype, some ±Inf or
 *   NaN elements, ignored rows; up to 600 rows of V ≤ 1000, or up to 48 rows of 8000 to 40000 columns
 *   (several 32 KiB chunks, the split forward's merge), past cuda's 4·SMs rows.
 * - linearLogprobs and linearLogprobsBackward's gradHidden (gradWeight and gradBias sum over the rows,
 *   so they are not a row's): rows of hidden states on one head, up to 200 rows (several 128-row
 *   tiles) of d ≤ 260 and V ≤ 520.
 * - gatherProbs, tokenHiddenReward, thrAggregate + thrScore, thrReweight: groups (their V*, their
 *   block of probabilities, M_g, tau), up to 12 groups of ≤ 6 responses of ≤ 24 tokens, d ≤ 260, both
 *   precisions.
 * - advantages (every estimator whose advantage is its group's: not gpg's batch count nor
 *   reinforce_pp_baseline's batch whitening; scale 'group' or 'none'): groups.
 * - policyLoss's gradLogprobs, gradEntropy and tokenLoss: responses, with the global counts given
 *   (globalTokens, globalSequences, scaleFactor), as a data-parallel trainer gives them; no batch
 *   renormalisation of rollout weights. The loss and stats sum over the batch: not compared.
 */

import { lmheadTuning as cpuLmhead } from '../../../src/backends/cpu/lmhead.js';
import { lmheadTuning as cudaLmhead } from '../../../src/backends/cuda/lmhead.js';
import { policyTuning as cudaPolicy } from '../../../src/backends/cuda/policy.js';
import { thrTuning as cudaThr } from '../../../src/backends/cuda/thr.js';
import { lmheadTuning as webgpuLmhead } from '../../../src/backends/webgpu/lmhead.js';
import { policyTuning as webgpuPolicy } from '../../../src/backends/webgpu/policy.js';
import { thrTuning as webgpuThr } from '../../../src/backends/webgpu/thr.js';
import {
  AGGREGATIONS,
  Context,
  createContext,
  ESTIMATORS,
  KL_ESTIMATORS,
  POLICY_LOSSES,
  type PolicyLossInputs,
  type PolicyLossOptions,
  PRESETS,
  type RestrictedVocab,
  ROLLOUT_LEVELS,
  ROLLOUT_MODES,
  type ThrPrecision,
  type Weighting,
} from '../../../src/index.js';
import { bruteForward } from '../../../test/cases/logprobs.js';
import { FLOAT_DTYPES, floatData, type Rand } from '../gen.mjs';
import { type Family, type Keep, type Paired, readValues, type Session, type Values } from '../harness.mjs';
import { readAdvantages } from './advantages.mjs';
import { readLogprobs } from './logprobs.mjs';

// ------------------------------------------------------------------ batches of units

/** Where the shared units sit: the whole is units [0, K); the part is `before` fillers, units [a, b), `after` fillers. */
interface Batch<U> {
  whole: U[];
  part: U[];
  /** For each unit of the part, its index in the whole, −1 for a filler. */
  src: number[];
  text: string;
}

/** K ≥ 1 units from `make`, a slice of them, and fillers around it (none: the slice alone). */
function batch<U>(r: Rand, K: number, make: () => U): Batch<U> {
  const whole = Array.from({ length: K }, make);
  const a = r.int(0, K - 1);
  const b = r.bool(0.5) ? a + 1 : r.int(a + 1, K);
  const alone = r.bool(0.2);
  const before = alone ? 0 : r.pick([0, 1, 2, 5, r.int(0, K)]);
  const after = alone ? 0 : r.pick([0, 1, 3, r.int(0, K)]);
  const pre = Array.from({ length: before }, make);
  const post = Array.from({ length: after }, make);
  const part = [...pre, ...whole.slice(a, b), ...post];
  const src = [...pre.map(() => -1), ...whole.slice(a, b).map((_, i) => a + i), ...post.map(() => -1)];
  return { whole, part, src, text: `K=${K} shared=[${a},${b}) before=${before} after=${after}` };
}

/** Element pairs: unit i of the part holds size(part[i]) elements, the same as its whole unit. */
function pairsOf<U>(bt: Batch<U>, size: (u: U) => number): Int32Array {
  const start: number[] = [];
  let n = 0;
  for (const u of bt.whole) {
    start.push(n);
    n += size(u);
  }
  const out: number[] = [];
  bt.part.forEach((u, i) => {
    const m = size(u);
    for (let k = 0; k < m; k++) out.push(bt.src[i] < 0 ? -1 : start[bt.src[i]] + k);
  });
  return Int32Array.from(out);
}

function paired<U>(
  bt: Batch<U>,
  whole: Values,
  part: Values,
  sizes: Record<string, (u: U) => number>,
): Record<string, Paired> {
  const out: Record<string, Paired> = {};
  for (const [k, size] of Object.entries(sizes))
    if (whole[k] !== undefined || part[k] !== undefined)
      out[k] = {
        whole: whole[k] ?? new Float64Array(0),
        part: part[k] ?? new Float64Array(0),
        pairs: pairsOf(bt, size),
      };
  return out;
}

const concat = (xs: readonly ArrayLike<number>[]): Float64Array => {
  const out = new Float64Array(xs.reduce((n, x) => n + x.length, 0));
  let o = 0;
  for (const x of xs) {
    out.set(x, o);
    o += x.length;
  }
  return out;
};

// ------------------------------------------------------------------ where the part runs

/** A knob set for the part's call: its label, and a setter that returns the undo. */
type Knob = [label: string, set: () => () => void];

function knob<T extends object, K extends keyof T>(label: string, obj: T, key: K, value: T[K]): Knob {
  return [
    `${label}=${String(value)}`,
    () => {
      const old = obj[key];
      obj[key] = value;
      return () => {
        obj[key] = old;
      };
    },
  ];
}

/** The context the part runs on and the knobs set around its call (each claimed not to move a bit). */
interface Part {
  ctx: Context;
  note: string;
  run<T>(f: (ctx: Context) => Promise<T>): Promise<T>;
}

// Contexts beside the backend's (module-level: they live for the run): on cpu one of 1 thread, on
// webgpu one on a device of its own, whose row chunks the part's knobs set.
let single: Context | undefined;
let secondGpu: { ctx: Context; tuning: { maxChunkRows: number } } | undefined;

/**
 * Where the part runs: on cpu, half the time on 1 thread (and the input-dtype gradWeight's column
 * blocks forced); on webgpu, half the time on a second device
 * with rows in chunks of 1 to 7, and the LM head's and policyLoss's chunks forced; on cuda, the LM
 * head's G chunks, policyLoss's blocks and THR's M budget forced (each knob half the time). `extra`:
 * the case's own knobs (THR's chunk cap on webgpu).
 */
async function partOf(r: Rand, s: Session, extra: Knob[] = []): Promise<Part> {
  let ctx = s.backend;
  const knobs: Knob[] = [...extra];
  const backend = s.backend.backend;
  if (backend === 'cpu' && r.bool()) {
    single ??= await createContext({ backend: 'cpu', threads: 1 });
    ctx = single;
    knobs.unshift(['threads=1', () => () => {}]);
  }
  if (backend === 'cpu') {
    if (r.bool()) knobs.push(knob('lm.accCols', cpuLmhead, 'accCols', r.pick([8, 64])));
  } else if (backend === 'webgpu') {
    if (r.bool()) {
      if (secondGpu === undefined) {
        const { createWebGpuBackend } = await import('../../../src/backends/webgpu/index.js');
        const b = await createWebGpuBackend();
        secondGpu = { ctx: new Context(b), tuning: b.kit.tuning };
      }
      ctx = secondGpu.ctx;
      knobs.push(knob('maxChunkRows', secondGpu.tuning, 'maxChunkRows', r.pick([1, 2, 3, 7, Infinity])));
    }
    if (r.bool()) knobs.push(knob('lm.chunkRows', webgpuLmhead, 'chunkRows', r.pick([64, 128])));
    if (r.bool()) knobs.push(knob('lm.chunkVocab', webgpuLmhead, 'chunkVocab', r.pick([64, 128])));
    if (r.bool()) knobs.push(knob('policy.chunkMultiple', webgpuPolicy, 'chunkMultiple', r.pick([1, 4])));
    if (r.bool()) knobs.push(knob('policy.chunkTokens', webgpuPolicy, 'chunkTokens', 2048));
  } else if (backend === 'cuda') {
    if (r.bool()) knobs.push(knob('lm.chunkRows', cudaLmhead, 'chunkRows', r.pick([128, 256])));
    if (r.bool()) knobs.push(knob('lm.chunkVocab', cudaLmhead, 'chunkVocab', r.pick([128, 256])));
    if (r.bool())
      knobs.push(knob('policy.chunkResponses', cudaPolicy, 'chunkResponses', r.pick([8, 16, 64])));
    if (r.bool()) knobs.push(knob('policy.chunkTokens', cudaPolicy, 'chunkTokens', r.pick([1024, 2048])));
    if (r.bool()) knobs.push(knob('thr.mBudgetBytes', cudaThr, 'mBudgetBytes', r.pick([1, 4096, 65536])));
  }
  return {
    ctx,
    note: knobs.length > 0 ? ` part: ${knobs.map((k) => k[0]).join(' ')}` : '',
    async run(f) {
      const undo = knobs.map(([, set]) => set());
      try {
        return await f(ctx);
      } finally {
        for (const u of undo.reverse()) u();
      }
    },
  };
}

// ------------------------------------------------------------------ rows: a forward, then a backward

/** A row: its logits (logprobs) or hidden state (LM head), target, and upstream gradients. */
interface Row {
  x: Float64Array;
  target: number;
  g: number;
  gE: number;
}

/** A backward's inputs beside the rows: each row's lse and upstream gradient, and with gradEntropy
 * the options both backwards take for it (spread into them). */
interface Upstream {
  lse: Float32Array;
  grad: Float32Array;
  entropyGrad: { gradEntropy: Float32Array; entropy: Float32Array } | Record<string, never>;
}

/** A forward over rows and a backward whose named outputs are each row's own. */
interface RowOps {
  forwardOp: string;
  forward(ctx: Context, rows: Row[], keep: Keep): Promise<Values>;
  /** Undefined: no backward this case. */
  backward?: {
    op: string;
    desc: string;
    /** gradEntropy given (the forward computed the entropy). */
    gradEntropy: boolean;
    run(ctx: Context, rows: Row[], up: Upstream, keep: Keep): Promise<Values>;
    sizes: Record<string, (u: Row) => number>;
    /** Outputs that sum over every row (the LM head's gradWeight): the whole again under the part's
     * knobs, element for element. */
    sums?: string[];
  };
}

const perUnit = () => 1;

/** The forward on both batches, then the backward, whose part takes the whole's lse and entropy for
 * its shared rows (its fillers their own), so that only the backward's own invariance is under test. */
async function rowsCase(s: Session, bt: Batch<Row>, part: Part, desc: string, ops: RowOps) {
  let fw: Values | undefined;
  let fp: Values | undefined;
  const sizes = { logprobs: perUnit, lse: perUnit, entropy: perUnit, sumSquares: perUnit };
  await s.same({
    op: ops.forwardOp,
    desc,
    async run(keep) {
      fw = await ops.forward(s.backend, bt.whole, keep);
      fp = await part.run((ctx) => ops.forward(ctx, bt.part, keep));
      return paired(bt, fw, fp, sizes);
    },
  });
  const back = ops.backward;
  if (fw === undefined || fp === undefined || back === undefined) return;
  const wf = fw;
  const pf = fp;
  const take = (k: string) => Float32Array.from(bt.src, (j, i) => (j < 0 ? pf[k][i] : wf[k][j]));
  const upstream = (rows: Row[], lse: Float32Array, entropy: () => Float32Array): Upstream => ({
    lse,
    grad: Float32Array.from(rows, (w) => w.g),
    entropyGrad: back.gradEntropy
      ? { gradEntropy: Float32Array.from(rows, (w) => w.gE), entropy: entropy() }
      : {},
  });
  const up = upstream(bt.whole, Float32Array.from(wf.lse), () => Float32Array.from(wf.entropy));
  let bw: Values | undefined;
  await s.same({
    op: back.op,
    desc: `${desc} ${back.desc}`,
    async run(keep) {
      bw = await back.run(s.backend, bt.whole, up, keep);
      const partUp = upstream(bt.part, take('lse'), () => take('entropy'));
      const p = await part.run((ctx) => back.run(ctx, bt.part, partUp, keep));
      return paired(bt, bw, p, back.sizes);
    },
  });
  const sums = back.sums ?? [];
  if (bw === undefined || sums.length === 0 || part.note === '') return;
  const whole = bw;
  await s.same({
    op: `${back.op} (sums over rows)`,
    desc: `${desc} ${back.desc}`,
    async run(keep) {
      const again = await part.run((ctx) => back.run(ctx, bt.whole, up, keep));
      const out: Record<string, Paired> = {};
      for (const k of sums)
        if (whole[k] !== undefined || again[k] !== undefined)
          out[k] = {
            whole: whole[k] ?? new Float64Array(0),
            part: again[k] ?? new Float64Array(0),
            pairs: Int32Array.from(again[k] ?? [], (_, i) => i),
          };
      return out;
    },
  });
}

async function logprobsCase(r: Rand, s: Session): Promise<void> {
  const dtype = r.pick(FLOAT_DTYPES);
  const big = r.bool(1 / 8);
  const V = big
    ? r.pick([8192, 16384, 16385, r.int(8000, 40000)])
    : r.pick([1, 2, 3, 31, 32, 33, 255, 256, 257, r.int(1, 300), r.int(1, 1000)]);
  const maxRows = Math.max(1, Math.min(600, Math.floor(600_000 / V)));
  const K = r.pick([1, 2, 7, r.int(1, maxRows), r.int(1, maxRows)]);
  const temperature = r.pick([1, 1, 0.7, 1.3, 1e-2, 50]);
  const sd = r.pick([1, 3, 10, 30]);
  const special = r.bool(0.2);
  const bt = batch(r, K, (): Row => {
    const x = r.normals(V, sd);
    if (special)
      for (let k = 0; k < 2; k++) x[r.int(0, V - 1)] = r.pick([Infinity, -Infinity, Number.NaN, 1e4]);
    if (x.every((v) => v === -Infinity)) x[0] = 0; // an all −Inf row is an error, not a value
    return { x, target: r.bool(0.1) ? -100 : r.int(0, V - 1), g: r.normal(), gE: r.normal() };
  });
  const entropy = r.bool(0.6);
  const sumSquares = r.bool(0.5);
  const onDevice = r.bool(0.3);
  const backward = r.bool(0.6);
  const gradEntropy = entropy && r.bool(0.5);
  const inPlace = r.bool(0.4);
  const part = await partOf(r, s);
  const upload = (ctx: Context, rows: Row[], keep: Keep) => {
    const targets = Int32Array.from(rows, (w) => w.target);
    return {
      L: keep(ctx.tensor(floatData(dtype, concat(rows.map((w) => w.x))).bits, [rows.length, V], dtype)),
      t: onDevice ? keep(ctx.tensor(targets)) : targets,
    };
  };
  await rowsCase(
    s,
    bt,
    part,
    `logprobs ${dtype} V=${V} ${bt.text} T=${temperature} sd=${sd} special=${special} entropy=${entropy} sumSquares=${sumSquares} deviceTargets=${onDevice}${part.note}`,
    {
      forwardOp: 'logprobs',
      async forward(ctx, rows, keep) {
        const { L, t } = upload(ctx, rows, keep);
        return readLogprobs(await ctx.logprobs(L, t, { temperature, entropy, sumSquares }), keep);
      },
      backward: backward
        ? {
            op: 'logprobsBackward',
            desc: `inPlace=${inPlace} gradEntropy=${gradEntropy}`,
            gradEntropy,
            async run(ctx, rows, up, keep) {
              const { L, t } = upload(ctx, rows, keep);
              const g = await ctx.logprobsBackward(L, t, up.lse, up.grad, {
                temperature,
                inPlace,
                ...up.entropyGrad,
              });
              return { gradLogits: await readValues(keep(g)) };
            },
            sizes: { gradLogits: () => V },
          }
        : undefined,
    },
  );
}

async function lmheadCase(r: Rand, s: Session): Promise<void> {
  const dtype = r.pick(FLOAT_DTYPES);
  const big = r.bool(1 / 4);
  const K = big ? r.int(20, 200) : r.pick([1, 2, 7, r.int(1, 24)]);
  const d = big ? r.pick([128, 136, r.int(97, 260)]) : r.pick([1, 3, 8, 17, 64, r.int(1, 96)]);
  const V = big ? r.int(129, 520) : r.pick([1, 2, 33, 64, r.int(1, 300)]);
  const temperature = r.pick([1, 1, 0.7, 2, 0.05]);
  const spread = r.pick([1, 3]);
  const weight = floatData(dtype, r.normals(V * d, spread / Math.sqrt(d)));
  const bias = r.bool(0.35) ? floatData(dtype, r.normals(V)) : undefined;
  const bt = batch(
    r,
    K,
    (): Row => ({
      x: r.normals(d),
      target: r.bool(0.1) ? -100 : r.int(0, V - 1),
      g: r.normal(),
      gE: r.normal(),
    }),
  );
  const entropy = r.bool(0.6);
  const sumSquares = r.bool(0.4);
  const backward = r.bool(0.6);
  const gradEntropy = entropy && r.bool(0.5);
  const gradDtype = r.pick(['f32', 'input'] as const);
  const part = await partOf(r, s);
  const upload = (ctx: Context, rows: Row[], keep: Keep) => ({
    H: keep(ctx.tensor(floatData(dtype, concat(rows.map((w) => w.x))).bits, [rows.length, d], dtype)),
    W: keep(ctx.tensor(weight.bits, [V, d], dtype)),
    B: bias ? keep(ctx.tensor(bias.bits, [V], dtype)) : undefined,
    t: Int32Array.from(rows, (w) => w.target),
  });
  await rowsCase(
    s,
    bt,
    part,
    `lmhead ${dtype} d=${d} V=${V} ${bt.text} T=${temperature} bias=${bias !== undefined} entropy=${entropy} sumSquares=${sumSquares}${part.note}`,
    {
      forwardOp: 'linearLogprobs',
      async forward(ctx, rows, keep) {
        const { H, W, B, t } = upload(ctx, rows, keep);
        return readLogprobs(
          await ctx.linearLogprobs(H, W, t, { temperature, entropy, sumSquares, bias: B }),
          keep,
        );
      },
      // gradHidden, a row's own; gradWeight and gradBias sum over every row of the batch, so they are
      // compared on the whole batch again under the part's knobs (chunks, threads).
      backward: backward
        ? {
            op: 'linearLogprobsBackward',
            desc: `gradDtype=${gradDtype} gradEntropy=${gradEntropy}`,
            gradEntropy,
            async run(ctx, rows, up, keep) {
              const { H, W, B, t } = upload(ctx, rows, keep);
              const res = await ctx.linearLogprobsBackward(H, W, t, up.lse, up.grad, {
                temperature,
                bias: B,
                gradDtype,
                ...up.entropyGrad,
              });
              for (const t of [res.gradHidden, res.gradWeight, res.gradBias]) keep(t);
              const out: Values = {
                gradHidden: await readValues(res.gradHidden),
                gradWeight: await readValues(res.gradWeight),
              };
              if (res.gradBias) out.gradBias = await readValues(res.gradBias);
              return out;
            },
            sizes: { gradHidden: () => d },
            sums: ['gradWeight', 'gradBias'],
          }
        : undefined,
    },
  );
}

// ------------------------------------------------------------------ THR groups

interface ThrGroup {
  lengths: number[];
  correct: number[];
  tokens: number[];
  /** |V*_g|: the group's distinct token ids. */
  K: number;
  /** [T_g, V] logits (exact values of the dtype) and their f32 lse, for gatherProbs. */
  logits: Float64Array;
  lse: number[];
  /** [T_g, d] hidden states; [T_g, K] probabilities on V*_g; thrReweight's inputs. */
  hidden: Float64Array;
  probs: number[];
  adv: number[];
  thr: number[];
  tau: number;
}

/** The packed layout of groups of responses ({ lengths } per group). */
function layoutOf(groups: readonly { lengths: number[] }[]) {
  const go = [0];
  const ro = [0];
  for (const g of groups) {
    for (const n of g.lengths) ro.push(ro[ro.length - 1] + n);
    go.push(ro.length - 1);
  }
  return { groupOffsets: Int32Array.from(go), responseOffsets: Int32Array.from(ro) };
}

function lengthsOf(r: Rand, maxSize: number, maxLength: number): number[] {
  const size = r.bool(0.2) ? 1 : r.int(1, maxSize);
  return Array.from({ length: size }, () => (r.bool(0.12) ? 0 : r.int(1, maxLength)));
}

async function thrCase(r: Rand, s: Session): Promise<void> {
  const big = r.bool(1 / 6);
  const V = big ? r.int(60, 500) : r.pick([1, 2, 3, r.int(1, 20), r.int(1, 300)]);
  const few = r.pick([0, 1, 4, V - 1, V - 1]);
  const dtype = r.pick(FLOAT_DTYPES);
  const hdtype = r.pick(FLOAT_DTYPES);
  const d = big ? r.pick([127, 129, 200, r.int(65, 260)]) : r.pick([1, 2, 3, 7, 16, 33, 64, r.int(1, 96)]);
  const temperature = r.pick([1, 1, 0.7, 1.5, 0.05]);
  const sd = r.pick([1, 3, 10, 30]);
  const allSame = r.bool(0.15);
  const group = (): ThrGroup => {
    const lengths = big ? lengthsOf(r, 6, 90) : lengthsOf(r, 6, 24);
    const flag = r.int(0, 1);
    const correct = lengths.map(() => (allSame ? flag : r.int(0, 1)));
    const T = lengths.reduce((a, b) => a + b, 0);
    const tokens = Array.from({ length: T }, () => r.int(0, Math.min(V - 1, few)));
    const ids = [...new Set(tokens)].sort((a, b) => a - b);
    const logits = floatData(dtype, r.normals(T * V, sd)).values;
    const lse = Array.from(bruteForward(logits, T, V, new Int32Array(T), temperature, -100).lse, Math.fround);
    const probs: number[] = [];
    for (let t = 0; t < T; t++) {
      const sure = r.bool(0.3);
      for (const id of ids) probs.push(sure && id === tokens[t] ? 1 - r.u() * 1e-3 : 0.5 * r.u() ** 3);
    }
    return {
      lengths,
      correct,
      tokens,
      K: ids.length,
      logits,
      lse,
      hidden: floatData(hdtype, r.normals(T * d)).values,
      probs,
      adv: Array.from({ length: T }, () => r.normal()),
      thr: Array.from({ length: T }, () => r.normal()),
      tau: r.bool(0.1) ? Number.NaN : Math.abs(r.normal()) * 0.5,
    };
  };
  const bt = batch(r, big ? r.int(1, 3) : r.int(1, 12), group);
  const weighting = r.pick<Weighting>(['length', 'none']);
  const beta = r.pick([1, 1, 0.5, 0, 2]);
  const precision = r.pick<ThrPrecision>(['f32', 'f32', 'tf32']);
  // On webgpu, half the time the part's chunks are capped at its largest group's need (or twice it):
  // several chunks, and groups whose rows or M exceed a binding run in parts.
  const extra: Knob[] = [];
  if (s.backend.backend === 'webgpu' && r.bool()) {
    let need = 0;
    for (const g of bt.part) {
      const T = g.tokens.length;
      need = Math.max(need, g.K * d * 4, T * g.K * 4, T * d * 4);
    }
    extra.push(knob('thr.maxChunkBytes', webgpuThr, 'maxChunkBytes', need * r.pick([1, 2])));
  }
  const part = await partOf(r, s, extra);
  const desc = `thr V=${V} few=${few} ${dtype} hidden=${hdtype} d=${d} ${bt.text} T=${temperature} weighting=${weighting} beta=${beta} precision=${precision}${part.note}`;

  const tokensOf = (g: ThrGroup) => g.tokens.length;
  const inputs = async (ctx: Context, groups: ThrGroup[], keep: Keep) => {
    const layout = layoutOf(groups);
    const T = layout.responseOffsets[layout.responseOffsets.length - 1];
    const v: RestrictedVocab = await ctx.restrictedVocab(
      Int32Array.from(groups.flatMap((g) => g.tokens)),
      layout,
    );
    for (const t of [v.offsets, v.columns, v.tokenColumn]) keep(t);
    const hidden = floatData(hdtype, concat(groups.map((g) => g.hidden))).bits;
    return {
      layout,
      vocab: v,
      hidden: keep(ctx.tensor(hidden, [T, d], hdtype)),
      probs: Float32Array.from(groups.flatMap((g) => g.probs)),
      correct: Uint8Array.from(groups.flatMap((g) => g.correct)),
    };
  };

  await s.same({
    op: 'restrictedVocab+gatherProbs',
    desc,
    async run(keep) {
      const call = async (ctx: Context, groups: ThrGroup[]): Promise<Values> => {
        const x = await inputs(ctx, groups, keep);
        const T = groups.reduce((n, g) => n + g.tokens.length, 0);
        const logits = floatData(dtype, concat(groups.map((g) => g.logits))).bits;
        const L = keep(ctx.tensor(logits, [T, V], dtype));
        const lse = Float32Array.from(groups.flatMap((g) => g.lse));
        const p = keep(await ctx.gatherProbs(L, lse, { layout: x.layout, vocab: x.vocab, temperature }));
        return {
          columns: await readValues(x.vocab.columns),
          tokenColumn: await readValues(x.vocab.tokenColumn),
          probs: await readValues(p),
        };
      };
      const w = await call(s.backend, bt.whole);
      const p = await part.run((ctx) => call(ctx, bt.part));
      return paired(bt, w, p, {
        columns: (g) => g.K,
        tokenColumn: tokensOf,
        probs: (g) => tokensOf(g) * g.K,
      });
    },
  });

  await s.same({
    op: 'tokenHiddenReward',
    desc,
    async run(keep) {
      const call = async (ctx: Context, groups: ThrGroup[]): Promise<Values> => {
        const x = await inputs(ctx, groups, keep);
        const res = await ctx.tokenHiddenReward({ ...x, weighting, beta, precision });
        keep(res.thr);
        keep(res.tau);
        return { thr: await readValues(res.thr), tau: await readValues(res.tau) };
      };
      const w = await call(s.backend, bt.whole);
      const p = await part.run((ctx) => call(ctx, bt.part));
      return paired(bt, w, p, { thr: tokensOf, tau: perUnit });
    },
  });

  if (r.bool(0.4)) {
    // A group's aggregate rows are compared where it is live (a correct and an incorrect response
    // with tokens): a degenerate group has none to compare.
    const live = (g: ThrGroup) =>
      g.lengths.some((n, i) => n > 0 && g.correct[i] === 1) &&
      g.lengths.some((n, i) => n > 0 && g.correct[i] === 0);
    await s.same({
      op: 'thrAggregate+thrScore',
      desc,
      async run(keep) {
        const call = async (ctx: Context, groups: ThrGroup[]): Promise<Values> => {
          const x = await inputs(ctx, groups, keep);
          const common = {
            hidden: x.hidden,
            probs: x.probs,
            vocab: x.vocab,
            layout: x.layout,
            correct: x.correct,
            precision,
          };
          const aggregate = keep(await ctx.thrAggregate({ ...common, weighting }));
          const res = await ctx.thrScore({ ...common, aggregate, beta });
          keep(res.thr);
          keep(res.tau);
          return {
            aggregate: await readValues(aggregate),
            thr: await readValues(res.thr),
            tau: await readValues(res.tau),
          };
        };
        const w = await call(s.backend, bt.whole);
        const p = await part.run((ctx) => call(ctx, bt.part));
        const out = paired(bt, w, p, { aggregate: (g) => g.K * d, thr: tokensOf, tau: perUnit });
        let o = 0;
        for (const g of bt.part) {
          if (!live(g)) out.aggregate.pairs.fill(-1, o, o + g.K * d);
          o += g.K * d;
        }
        return out;
      },
    });
  }

  const mode = r.pick(['thr', 'thr', 'thr-only', 'nthr'] as const);
  const p = mode === 'thr' ? r.pick([0, 0.1, -0.1, 1, -1]) : undefined;
  const mask = mode !== 'nthr' && r.bool() ? r.bool() : undefined;
  const eta = mode === 'nthr' && r.bool() ? r.pick<number | 'auto'>([0, 0.3, 1, 'auto']) : undefined;
  await s.same({
    op: 'thrReweight',
    desc: `${desc} mode=${mode} p=${p} mask=${mask} eta=${eta}`,
    async run(keep) {
      const call = async (ctx: Context, groups: ThrGroup[]): Promise<Values> => {
        const out = await ctx.thrReweight({
          tokenAdvantages: Float32Array.from(groups.flatMap((g) => g.adv)),
          thr: Float32Array.from(groups.flatMap((g) => g.thr)),
          tau: Float32Array.from(groups, (g) => g.tau),
          layout: layoutOf(groups),
          correct: Uint8Array.from(groups.flatMap((g) => g.correct)),
          mode,
          ...(p !== undefined ? { p } : {}),
          ...(mask !== undefined ? { mask } : {}),
          ...(eta !== undefined ? { eta } : {}),
        });
        return { values: await readValues(keep(out)) };
      };
      const w = await call(s.backend, bt.whole);
      const q = await part.run((ctx) => call(ctx, bt.part));
      return paired(bt, w, q, { values: tokensOf });
    },
  });
}

// ------------------------------------------------------------------ advantages groups

/** Estimators whose advantages are the group's own (gpg scales by the batch's count of nonzero rewards;
 * reinforce_pp_baseline whitens over the batch). */
const GROUP_ESTIMATORS = ESTIMATORS.filter((e) => e !== 'gpg' && e !== 'reinforce_pp_baseline');

async function advantagesCase(r: Rand, s: Session): Promise<void> {
  const kind = r.pick(['binary', 'normal', 'const', 'offset']);
  const reward = () =>
    kind === 'binary'
      ? r.int(0, 1)
      : kind === 'normal'
        ? r.normal()
        : kind === 'const'
          ? 0.5
          : 1e6 + 0.25 * r.normal();
  const nan = r.bool(0.1);
  const estimator = r.pick(GROUP_ESTIMATORS);
  const bt = batch(r, r.pick([1, 3, r.int(1, 64), r.int(1, 2000)]), () => {
    const lengths = lengthsOf(r, r.pick([4, 16, 64]), 12);
    if (estimator === 'grpo_passk' && lengths.length < 2) lengths.push(r.int(0, 12)); // needs n ≥ 2
    const rewards = lengths.map(() => (nan && r.bool(0.05) ? r.pick([Number.NaN, Infinity]) : reward()));
    return { lengths, rewards };
  });
  const o = {
    estimator,
    ...(r.bool(0.4) ? { preset: r.pick(PRESETS) } : {}),
    ...(r.bool(0.3) ? { std: r.pick(['sample', 'population'] as const) } : {}),
    ...(r.bool(0.2) ? { eps: r.pick([0, 1e-6, 1e-4]) } : {}),
    ...(r.bool(0.3) ? { scale: r.pick(['group', 'none'] as const) } : {}),
    ...(r.bool(0.3) ? { singleton: r.pick(['zero', 'mean0', 'nan'] as const) } : {}),
    ...(r.bool(0.2) ? { nanRewards: r.pick(['propagate', 'unscorable'] as const) } : {}),
  };
  const withLengths = estimator === 'opo' || r.bool(0.5);
  const part = await partOf(r, s);
  await s.same({
    op: 'advantages',
    desc: `advantages ${bt.text} rewards=${kind} nan=${nan} ${JSON.stringify(o)} responseOffsets=${withLengths}${part.note}`,
    async run(keep) {
      const call = async (ctx: Context, groups: typeof bt.whole): Promise<Values> => {
        const { groupOffsets, responseOffsets } = layoutOf(groups);
        const res = await ctx.advantages(Float32Array.from(groups.flatMap((g) => g.rewards)), {
          ...o,
          groupOffsets,
          ...(withLengths ? { responseOffsets } : {}),
        });
        return readAdvantages(res, keep);
      };
      const w = await call(s.backend, bt.whole);
      const p = await part.run((ctx) => call(ctx, bt.part));
      return paired(bt, w, p, {
        advantages: (g) => g.lengths.length,
        mean: perUnit,
        std: perUnit,
        degenerate: perUnit,
      });
    },
  });
}

// ------------------------------------------------------------------ policyLoss responses

interface Response {
  lp: number[];
  old: number[];
  adv: number[];
  ref: number[];
  roll: number[];
  ent: number[];
  mask: number[];
}

async function policyCase(r: Rand, s: Session): Promise<void> {
  const big = r.bool(1 / 8);
  const spread = r.pick([0.01, 0.1, 0.5, 3]);
  const refSpread = r.pick([1e-4, 1e-2, 0.3, 3]);
  const bt = batch(r, big ? r.int(1, 40) : r.int(1, 16), (): Response => {
    const L = r.bool(0.1) ? 0 : r.int(1, big ? 300 : 12);
    const lp = Array.from({ length: L }, () => -Math.abs(r.normal()) * 2);
    const old = lp.map((v) => Math.fround(v + r.normal() * spread));
    return {
      lp,
      old,
      adv: lp.map(() => r.normal()),
      ref: lp.map((v) => v + r.normal() * refSpread),
      roll: old.map((v) => v + r.normal() * 0.2),
      ent: lp.map(() => Math.abs(r.normal()) * 2),
      mask: lp.map(() => (r.bool(0.8) ? 1 : 0)),
    };
  });
  const loss = r.pick(POLICY_LOSSES);
  const aggregation = r.pick(AGGREGATIONS);
  const o: PolicyLossOptions = {
    loss,
    aggregation,
    globalTokens: r.int(1, 500),
    globalSequences: r.int(1, 20),
    tokenLoss: true,
  };
  if (aggregation === 'seq-mean-token-sum-norm') o.scaleFactor = r.pick([1, 3, 64, 2048]);
  if (r.bool(0.3)) o.preset = r.pick(PRESETS);
  if (['ppo', 'gspo', 'cispo', 'gmpo'].includes(loss) && r.bool(0.35)) o.clipLow = r.pick([0.1, 0.2, 1e-3]);
  if (['ppo', 'gspo', 'cispo', 'gmpo'].includes(loss) && r.bool(0.35)) o.clipHigh = r.pick([0.28, 0.5, 5]);
  if (loss === 'ppo' && r.bool(0.3)) o.dualClip = r.pick([3, 1.5, 'off'] as const);
  if (loss === 'sapo' && r.bool(0.4)) o.sapoTau = { pos: r.pick([1, 0.5]), neg: r.pick([1.05, 2]) };
  if (loss === 'vespo' && r.bool(0.4))
    o.vespo = { kPos: r.pick([2, 1]), lambdaPos: r.pick([3, 0.5]), kNeg: r.pick([3, 4]), lambdaNeg: 2 };
  if (r.bool(0.3)) o.ranks = r.int(1, 4);
  const kl = r.bool(0.4);
  if (kl) {
    o.kl = { coef: r.pick([0, 0.01, 0.1]), estimator: r.pick(KL_ESTIMATORS), straightThrough: r.bool(0.3) };
    if (loss !== 'gspo' && loss !== 'gmpo' && r.bool(0.3)) o.kl.biasCorrection = true; // (token ratios)
  }
  const ent = r.bool(0.35);
  if (ent) o.entropyCoef = r.pick([0.01, -0.001, 0]);
  let roll = r.bool(0.3);
  if (roll) {
    const mode = r.pick(ROLLOUT_MODES);
    o.rolloutCorrection = {
      // (vespo and sequence-mask: token weights only)
      level: loss === 'vespo' || mode === 'sequence-mask' ? 'token' : r.pick(ROLLOUT_LEVELS),
      mode,
      ...(r.bool(0.3) ? { lower: 0.5, upper: r.pick([2, 3, 5]) } : {}),
    };
  }
  // The off-policy mask: κ_r per response (from the rollout log-probs when given).
  if (r.bool(0.25)) {
    o.offPolicyMask = { threshold: r.pick([0, 0.02, 0.1, -0.05]) };
    if (!roll) roll = r.bool(0.5);
  }
  const mask = r.bool(0.4);
  const deviceMask = mask && r.bool(0.3);
  const part = await partOf(r, s);
  const perToken = (u: Response) => u.lp.length;
  await s.same({
    op: 'policyLoss',
    desc: `policy ${bt.text} spread=${spread} ${JSON.stringify(o)} mask=${mask}${deviceMask ? '(device)' : ''} entropy=${ent}${part.note}`,
    async run(keep) {
      const call = async (ctx: Context, rs: Response[]): Promise<Values> => {
        const f = (k: keyof Response) => Float32Array.from(rs.flatMap((u) => u[k]));
        const { responseOffsets } = layoutOf([{ lengths: rs.map((u) => u.lp.length) }]);
        const inputs: PolicyLossInputs = {
          logprobs: f('lp'),
          oldLogprobs: f('old'),
          advantages: f('adv'),
          layout: { responseOffsets },
        };
        if (kl) inputs.refLogprobs = f('ref');
        if (roll) inputs.rolloutLogprobs = f('roll');
        if (ent) inputs.entropy = f('ent');
        if (mask) {
          const m = Uint8Array.from(rs.flatMap((u) => u.mask));
          inputs.mask = deviceMask ? keep(ctx.tensor(m)) : m;
        }
        const res = await ctx.policyLoss(inputs, o);
        for (const t of [res.loss, res.stats, res.gradLogprobs, res.gradEntropy, res.tokenLoss]) keep(t);
        const out: Values = {
          gradLogprobs: await readValues(res.gradLogprobs),
          tokenLoss: await readValues(res.tokenLoss!),
        };
        if (res.gradEntropy) out.gradEntropy = await readValues(res.gradEntropy);
        return out;
      };
      const w = await call(s.backend, bt.whole);
      const p = await part.run((ctx) => call(ctx, bt.part));
      return paired(bt, w, p, { gradLogprobs: perToken, tokenLoss: perToken, gradEntropy: perToken });
    },
  });
}

// ------------------------------------------------------------------ the family

const CASES = [logprobsCase, lmheadCase, thrCase, advantagesCase, policyCase] as const;

export const invarianceFamily: Family = {
  name: 'invariance',
  ops: 'a unit inside two batches, bit for bit: logprobs(+Backward), linearLogprobs(+Backward gradHidden), restrictedVocab+gatherProbs, tokenHiddenReward, thrAggregate+thrScore, thrReweight, advantages, policyLoss',
  async run(r, s) {
    await r.pick(CASES)(r, s);
  },
};
