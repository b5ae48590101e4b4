/**
 * Batch invariance of the cuda logprobs family: a row's outputs are the same bits whether it is computed
 * alone, among 7 rows or among thousands, at the first, a middle or the last position, and whether the
 * caller sends the rows in one call or in chunks. Trainers compare rollout and training log-probs bit
 * for bit; this is what lets them. No tolerance: equality of the f32 (or f16/bf16) bit patterns.
 *
 * Sizes: V = 151936 among 7 rows, V = 32003 (odd: rows alternate 16-byte alignment) among 40, and
 * V = 257 among 3000 — thousands of rows of a long vocabulary would take many minutes on the emulator.
 */
import { describe, expect, it } from 'vitest';
import { type Context, encodeFloats, type FloatDType, type Tensor } from '../../src/index.js';
import { randomInts, randomNormal } from '../util/rng.js';
import { probeGpu } from './helpers.js';

const gpu = await probeGpu();
const noGpu = gpu.ctx === undefined;
const cuda = gpu.ctx as Context;

const DTYPES: FloatDType[] = ['f32', 'f16', 'bf16'];
const SHAPES = [
  { v: 151936, n: 7 },
  { v: 32003, n: 40 },
  { v: 257, n: 3000 },
];

function bytesPer(dtype: FloatDType): number {
  return dtype === 'f32' ? 4 : 2;
}

/** n random rows of v logits in `dtype`, as the host array ctx.tensor takes. */
function rows(seed: number, n: number, v: number, dtype: FloatDType): Float32Array | Uint16Array {
  return encodeFloats(dtype, randomNormal(seed, n * v, 3));
}

async function bits(t: Tensor | undefined): Promise<Bits> {
  if (t === undefined) throw new Error('missing output');
  const a = await t.read();
  return a instanceof Float32Array ? new Uint32Array(a.buffer, a.byteOffset, a.length) : (a as Uint16Array);
}

/** Forward (with entropy and Σp²) and backward of a batch; every output's bits, per row. */
async function run(
  dtype: FloatDType,
  data: Float32Array | Uint16Array,
  targets: Int32Array,
  n: number,
  v: number,
) {
  const logits = cuda.tensor(data as never, [n, v], dtype) as Tensor<FloatDType>;
  const f = await cuda.logprobs(logits, targets, { entropy: true, sumSquares: true, temperature: 0.9 });
  const plain = await cuda.logprobs(logits, targets, { temperature: 0.9 });
  // Upstream gradients from the row's target, so the probe rows (same target) get the same ones.
  const grad = Float32Array.from(targets, (t) => 0.25 + (t % 5) * 0.1);
  const gradEntropy = Float32Array.from(targets, (t) => 0.5 - (t % 3) * 0.2);
  const g = await cuda.logprobsBackward(logits, targets, f.lse, grad, {
    temperature: 0.9,
    gradEntropy,
    entropy: f.entropy,
  });
  const out = {
    logprobs: await bits(f.logprobs),
    lse: await bits(f.lse),
    entropy: await bits(f.entropy),
    sumSquares: await bits(f.sumSquares),
    plainLogprobs: await bits(plain.logprobs),
    plainLse: await bits(plain.lse),
    grad: await bits(g),
  };
  for (const t of [logits, f.logprobs, f.lse, f.entropy, f.sumSquares, plain.logprobs, plain.lse, g])
    t?.dispose();
  return out;
}

type Outs = Awaited<ReturnType<typeof run>>;
type Bits = Uint32Array | Uint16Array;

/** Index of the first element whose bits differ, or -1 (a loop: deep equality of 10^5-element arrays
 * is slow, and its diff of a failure slower still). */
function firstDifference(a: Bits, b: Bits): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

/** Expects row i of batch `o` to carry the same bits as row 0 of `alone`, output by output. */
function expectSameRow(o: Outs, i: number, alone: Outs, v: number, what: string) {
  for (const k of Object.keys(alone) as (keyof Outs)[]) {
    const w = k === 'grad' ? v : 1;
    const d = firstDifference(o[k].subarray(i * w, (i + 1) * w), alone[k].subarray(0, w));
    expect(d, `${what}: ${k}, first element whose bits differ`).toBe(-1);
  }
}

describe.skipIf(noGpu)('cuda logprobs family is batch invariant', () => {
  for (const dtype of DTYPES) {
    for (const { v, n } of SHAPES) {
      it(`${dtype} V=${v}: a row alone, among ${n} rows at three positions, and in two chunks`, async () => {
        const seed = v + n + bytesPer(dtype);
        const probe = rows(seed, 1, v, dtype);
        const probeTarget = (seed * 7) % v;
        const alone = await run(dtype, probe, Int32Array.of(probeTarget), 1, v);
        const batch = rows(seed + 1, n, v, dtype);
        const targets = randomInts(seed + 2, n, 0, v);
        const positions = [0, Math.floor(n / 2) + 1, n - 1];
        for (const at of positions) batch.set(probe, at * v);
        for (const at of positions) targets[at] = probeTarget;
        const whole = await run(dtype, batch, targets, n, v);
        for (const at of positions) expectSameRow(whole, at, alone, v, `row ${at} of ${n}`);
        // The caller chunks the batch at the middle probe: rows [0, k) and [k, n) in two calls.
        const k = positions[1];
        const head = await run(dtype, batch.subarray(0, k * v), targets.subarray(0, k), k, v);
        const tail = await run(dtype, batch.subarray(k * v), targets.subarray(k), n - k, v);
        expectSameRow(head, 0, alone, v, 'row 0 of the first chunk');
        expectSameRow(tail, 0, alone, v, 'first row of the second chunk');
        expectSameRow(tail, n - 1 - k, alone, v, 'last row of the second chunk');
      });
    }
  }
});
