/**
 * Batch invariance of the logprobs family on webgpu (DESIGN.md, "Numerics"; issue 10): a row's
 * results depend on that row alone, never on N, its position in the batch or the row chunking, so
 * a trainer gets the same bits at rollout (few rows) and at training (many rows).
 *
 * Three probe rows per (dtype, V) are computed alone (N = 1), then placed first, in the middle and
 * last inside larger batches: N = 7 and a batch of ≥ 128 rows, each unchunked and chunked by
 * `tuning.maxChunkRows` so that probes sit at chunk starts and ends. Every output must keep its
 * bits, compared as raw words (Uint32 for f32, Uint16 for half gradients): logprobs, lse, entropy,
 * sumSquares; the probe rows of logprobsBackward's gradient; the probe tokens' gatherProbs values.
 * The forward has two schedules of one reduction tree (src/backends/webgpu/logprobs.ts): chunks of
 * fewer than 128 rows split each row over several workgroups (where V has more than one segment:
 * V = 151936 and 32003), larger chunks take one workgroup per row; these batches run both, and
 * both inside one op when small chunks are forced. Before issue 10 the split count followed N, and
 * every dtype and V here failed.
 *
 * Sizes: V ∈ {151936, 32003, 4099} for f32, f16 and bf16. The large batch is N = 3000 at V = 4099
 * but N = 160 at V = 151936 and 32003: 3000 × 151936 f32 logits are 1.8 GB, minutes on lavapipe,
 * while 160 rows already take the one-workgroup-per-row schedule. Filler rows come from a small
 * pool of random rows (cheap to build); one filler row is ignored. Probe 1 has its maximum in its
 * last column, probe 2 is −Inf over its first half (so whole segments hold nothing but −Inf).
 *
 * The reduction (subgroup or workgroup-memory tree) is chosen from the device's features and the
 * tuning, never from N: invariance holds per variant, checked here for both.
 */
import { beforeEach, describe, expect, it } from 'vitest';
import type { RestrictedVocab } from '../../src/backends/backend.js';
import { encodeFloats, type FloatDType } from '../../src/dtypes.js';
import type { Layout } from '../../src/layout.js';
import type { Tensor } from '../../src/tensor.js';
import { randomInts, randomNormal } from '../util/rng.js';
import { gpu, noGpu, requireAdapter, resetTuning } from './setup.js';

requireAdapter();

const TEMPERATURE = 0.7;
const IGNORE = -100;
const POOL = 4; // distinct filler rows
/** gatherProbs: every group restricts to K columns. */
const K = 5;

type Host = Float32Array | Uint16Array;

interface BatchSpec {
  n: number;
  /** Rows holding probes 0, 1, 2 (first, middle, last). */
  positions: [number, number, number];
  /** maxChunkRows values to run with (Infinity: one chunk). */
  chunkRows: number[];
}

function batchesFor(v: number): BatchSpec[] {
  const large = v <= 4099 ? 3000 : 160;
  // Small chunk sizes are even: half dtypes with odd V round chunks down to 2 rows (whole words).
  const chunks = large === 3000 ? [Number.POSITIVE_INFINITY, 1000, 100] : [Number.POSITIVE_INFINITY, 40];
  return [
    { n: 7, positions: [0, 3, 6], chunkRows: [Number.POSITIVE_INFINITY, 2] },
    { n: large, positions: [0, large / 2, large - 1], chunkRows: chunks },
  ];
}

/** A host array of `rows` rows of `v` logits in `dtype`, N(0, 3²), with the probes' features. */
function probeRows(dtype: FloatDType, v: number): Host {
  const x = randomNormal(v + 17, 3 * v, 3);
  x[2 * v - 1] = 14; // probe 1: maximum in the last column
  x.fill(Number.NEGATIVE_INFINITY, 2 * v, 2 * v + Math.floor(v / 2)); // probe 2: first half −Inf
  return encodeFloats(dtype, x);
}

function makeLike(like: Host, n: number): Host {
  return like instanceof Float32Array ? new Float32Array(n) : new Uint16Array(n);
}

/** Raw words of a typed array (Uint32 for f32, Uint16 as is). */
function words(a: Float32Array | Uint16Array): Uint32Array | Uint16Array {
  return a instanceof Float32Array ? new Uint32Array(a.buffer, a.byteOffset, a.length) : a;
}

const hex = (w: number) => w.toString(16).padStart(8, '0');

/** First index where two word arrays differ, or -1. */
function firstDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

/** Every packed token its own K probs: responses of 2 tokens, groups of 2 responses. */
function gatherLayout(n: number, v: number): { layout: Layout; vocab: RestrictedVocab } {
  const r = Math.ceil(n / 2);
  const g = Math.ceil(r / 2);
  const responseOffsets = Int32Array.from({ length: r + 1 }, (_, i) => Math.min(2 * i, n));
  const groupOffsets = Int32Array.from({ length: g + 1 }, (_, i) => Math.min(2 * i, r));
  const cols = [0, 1, Math.floor(v / 2), v - 2, v - 1];
  const vocab = {
    offsets: Int32Array.from({ length: g + 1 }, (_, i) => i * K),
    columns: Int32Array.from({ length: g * K }, (_, i) => cols[i % K]),
    tokenColumn: new Int32Array(n),
  };
  return { layout: { responseOffsets, groupOffsets }, vocab: vocab as unknown as RestrictedVocab };
}

interface RowBits {
  forward: Record<string, number[]>; // output name → words of the probe rows (probe order)
  grad: (Uint32Array | Uint16Array)[]; // per probe, its gradient row
  probs: Uint32Array[]; // per probe, its K gathered probabilities
}

interface Inputs {
  x: Host;
  targets: Int32Array;
  /** Per-row backward inputs; the probes' entries are fixed by the caller. */
  gLp: Float32Array;
  gE: Float32Array;
}

/**
 * Runs the three ops on `n` rows and returns the probe rows' bits. The backward and gatherProbs
 * take each probe's lse and entropy from `alone` (when given) so that they are checked on their
 * own, whatever the forward did; the other rows take this batch's forward outputs.
 */
async function runBatch(
  dtype: FloatDType,
  v: number,
  n: number,
  positions: readonly number[],
  inp: Inputs,
  alone?: { lse: number[]; entropy: number[] },
): Promise<RowBits> {
  const ctx = gpu!.ctx;
  const x = ctx.tensor(inp.x, [n, v], dtype);
  const made: Tensor[] = [x];
  try {
    const fwd = await ctx.logprobs(x, inp.targets, {
      temperature: TEMPERATURE,
      entropy: true,
      sumSquares: true,
    });
    made.push(fwd.logprobs, fwd.lse, fwd.entropy!, fwd.sumSquares!);
    const outs: Record<string, Float32Array> = {
      logprobs: (await fwd.logprobs.read()) as Float32Array,
      lse: (await fwd.lse.read()) as Float32Array,
      entropy: (await fwd.entropy!.read()) as Float32Array,
      sumSquares: (await fwd.sumSquares!.read()) as Float32Array,
    };
    const forward: Record<string, number[]> = {};
    for (const [k, a] of Object.entries(outs)) forward[k] = positions.map((p) => words(a)[p]);

    const lse = outs.lse.slice();
    const entropy = outs.entropy.slice();
    positions.forEach((p, i) => {
      if (alone) {
        lse[p] = alone.lse[i];
        entropy[p] = alone.entropy[i];
      }
    });
    const grad = await ctx.logprobsBackward(x, inp.targets, lse, inp.gLp, {
      temperature: TEMPERATURE,
      gradEntropy: inp.gE,
      entropy,
    });
    made.push(grad);
    const graw = (await grad.read()) as Host;
    const gw = words(graw);

    const { layout, vocab } = gatherLayout(n, v);
    const probs = await ctx.gatherProbs(x, lse, { layout, vocab, temperature: TEMPERATURE });
    made.push(probs);
    const pw = words((await probs.read()) as Float32Array) as Uint32Array;
    return {
      forward,
      grad: positions.map((p) => gw.slice(p * v, (p + 1) * v)),
      probs: positions.map((p) => pw.slice(p * K, (p + 1) * K)),
    };
  } finally {
    for (const t of made) t.dispose();
  }
}

const G_LP = [0.5, -1.25, 2];
const G_E = [0.3, -0.7, 1.1];
const PROBE_TARGETS = (v: number) => [5, v - 1, v - 3];

/** Each probe alone (N = 1): the reference bits. */
async function aloneBits(dtype: FloatDType, v: number, probes: Host) {
  const bits: RowBits = { forward: {}, grad: [], probs: [] };
  const lse: number[] = [];
  const entropy: number[] = [];
  for (let p = 0; p < 3; p++) {
    const inp: Inputs = {
      x: probes.subarray(p * v, (p + 1) * v),
      targets: Int32Array.of(PROBE_TARGETS(v)[p]),
      gLp: Float32Array.of(G_LP[p]),
      gE: Float32Array.of(G_E[p]),
    };
    const r = await runBatch(dtype, v, 1, [0], inp);
    for (const [k, w] of Object.entries(r.forward)) bits.forward[k] = [...(bits.forward[k] ?? []), w[0]];
    bits.grad.push(r.grad[0]);
    bits.probs.push(r.probs[0]);
    lse.push(new Float32Array(Uint32Array.of(r.forward.lse[0]).buffer)[0]);
    entropy.push(new Float32Array(Uint32Array.of(r.forward.entropy[0]).buffer)[0]);
  }
  return { bits, lse, entropy };
}

function assemble(v: number, spec: BatchSpec, probes: Host, pool: Host): Inputs {
  const { n, positions } = spec;
  const x = makeLike(probes, n * v);
  const targets = randomInts(n + v, n, 0, v);
  const gLp = Float32Array.from(randomNormal(n + 1, n));
  const gE = Float32Array.from(randomNormal(n + 2, n));
  for (let r = 0; r < n; r++) {
    const p = positions.indexOf(r);
    const from =
      p >= 0 ? probes.subarray(p * v, (p + 1) * v) : pool.subarray((r % POOL) * v, ((r % POOL) + 1) * v);
    (x as Float32Array).set(from, r * v);
    if (p >= 0) {
      targets[r] = PROBE_TARGETS(v)[p];
      gLp[r] = G_LP[p];
      gE[r] = G_E[p];
    }
  }
  targets[1] = IGNORE; // row 1 is never a probe
  return { x, targets, gLp, gE };
}

/** Mismatch descriptions between the probes' alone bits and their bits in `got`. */
function compare(ref: RowBits, got: RowBits, what: string, positions: readonly number[]): string[] {
  const bad: string[] = [];
  for (const k of Object.keys(ref.forward)) {
    for (let p = 0; p < 3; p++) {
      const a = ref.forward[k][p];
      const b = got.forward[k][p];
      if (a !== b) bad.push(`${what} row ${positions[p]}: ${k} alone ${hex(a)}, in batch ${hex(b)}`);
    }
  }
  for (let p = 0; p < 3; p++) {
    const i = firstDiff(ref.grad[p], got.grad[p]);
    if (i >= 0) bad.push(`${what} row ${positions[p]}: gradient differs first at column ${i}`);
    const j = firstDiff(ref.probs[p], got.probs[p]);
    if (j >= 0) bad.push(`${what} row ${positions[p]}: gatherProbs differs first at column ${j}`);
  }
  return bad;
}

async function checkInvariance(dtype: FloatDType, v: number, batches = batchesFor(v)): Promise<string[]> {
  const probes = probeRows(dtype, v);
  const pool = encodeFloats(dtype, randomNormal(v + 29, POOL * v, 3));
  const ref = await aloneBits(dtype, v, probes);
  const bad: string[] = [];
  for (const spec of batches) {
    const inp = assemble(v, spec, probes, pool);
    for (const rows of spec.chunkRows) {
      gpu!.backend.kit.tuning.maxChunkRows = rows;
      const got = await runBatch(dtype, v, spec.n, spec.positions, inp, ref);
      bad.push(...compare(ref.bits, got, `${dtype} V=${v} N=${spec.n} chunks of ${rows}`, spec.positions));
    }
    gpu!.backend.kit.tuning.maxChunkRows = Number.POSITIVE_INFINITY;
  }
  return bad;
}

describe.skipIf(noGpu)(
  'webgpu logprobs family: batch invariance (a row alone, in N = 7, in N ≥ 128, chunked)',
  () => {
    const b = gpu?.backend;
    beforeEach(() => resetTuning(b!));

    for (const dtype of ['f32', 'f16', 'bf16'] as const) {
      it(`${dtype}: V = 151936, 32003, 4099`, async () => {
        const bad: string[] = [];
        for (const v of [151936, 32003, 4099]) bad.push(...(await checkInvariance(dtype, v)));
        expect(bad, 'probe rows whose bits changed with the batch').toEqual([]);
      });
    }

    it('workgroup-memory tree reductions (no subgroups) too: f32 and bf16, V = 32003', async () => {
      b!.kit.tuning.subgroups = false;
      const bad: string[] = [];
      for (const dtype of ['f32', 'bf16'] as const) bad.push(...(await checkInvariance(dtype, 32003)));
      expect(bad, 'probe rows whose bits changed with the batch').toEqual([]);
    });

    it('f16 through unpacked u32 words (no shader-f16): V = 4099', async () => {
      b!.kit.tuning.shaderF16 = false;
      const bad = await checkInvariance('f16', 4099);
      expect(bad, 'probe rows whose bits changed with the batch').toEqual([]);
    });
  },
);
