/**
 * logprobsBackward on cuda over vocabularies that span several of the kernel's chunks (32 KiB of
 * logits: 16384 bf16/f16 or 8192 f32 columns, native/cuda/logprobs.cu, "BACKWARD"):
 * - batch invariance: a row's gradient has the same bits computed alone, among 7 rows and among 300, at
 *   four positions (with an odd V each position starts at a different 16-byte misalignment, so the
 *   kernel's scalar heads and tails and its vectors meet different elements), with and without the
 *   entropy term, in place and not, and read through a view one element off the allocation's
 *   alignment (input and output then differ in misalignment: the all-scalar path);
 * - ignored rows give exactly +0;
 * - agreement with the float64 reference at the case tables' tolerance (test/cases/tolerances.ts,
 *   logprobsBackward).
 * Every backward call gets the same host lse, entropy and upstream gradients for the probe row, so the
 * test depends on the backward alone (the forward's invariance is ops-invariance.test.ts).
 *
 * Sizes: V = 5000 (one short chunk), 20000 (aligned rows; 2 chunks in bf16/f16, 3 in f32) and 33331
 * (odd; 3 and 5 chunks), N ≤ 300: seconds on the emulator.
 */
import { describe, expect, it } from 'vitest';
import type { CudaStorage } from '../../src/backends/cuda/storage.js';
import {
  type Context,
  encodeFloats,
  type FloatDType,
  type LogprobsBackwardOptions,
  type Tensor,
} from '../../src/index.js';
import { bruteBackward, expectOutputsWithin } from '../cases/logprobs.js';
import { decodeLogits } from '../fixtures/logprobs.js';
import { randomInts, randomNormal } from '../util/rng.js';
import { probeGpu } from './helpers.js';

const gpu = await probeGpu();
const noGpu = gpu.ctx === undefined;
const cuda = gpu.ctx as Context;

const DTYPES: FloatDType[] = ['f32', 'f16', 'bf16'];
const VOCABS = [5000, 20000, 33331];
const BATCHES = [7, 300];
const TEMPERATURE = 0.9;
const IGNORE = -100;

type Bits = Uint32Array | Uint16Array;
type Data = Float32Array | Uint16Array;

function bytesPer(dtype: FloatDType): number {
  return dtype === 'f32' ? 4 : 2;
}

async function bits(t: Tensor): Promise<Bits> {
  const a = await t.read();
  return a instanceof Float32Array ? new Uint32Array(a.buffer, a.byteOffset, a.length) : (a as Uint16Array);
}

/** Index of the first element whose bits differ, or -1. */
function firstDifference(a: Bits, b: Bits): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

/** The host inputs of one backward call (f32 arrays of N; the logits stay encoded in their dtype). */
interface Inputs {
  data: Data;
  targets: Int32Array;
  lse: Float32Array;
  entropy: Float32Array;
  glp: Float32Array;
  gent: Float32Array;
  n: number;
}

function options(inp: Inputs, withEntropy: boolean, inPlace: boolean): LogprobsBackwardOptions {
  return withEntropy
    ? { temperature: TEMPERATURE, gradEntropy: inp.gent, entropy: inp.entropy, inPlace }
    : { temperature: TEMPERATURE, inPlace };
}

/** The gradient's bits on cuda; `offset` > 0 reads the logits through a view that many elements into a
 * larger allocation (a start off the 16-byte alignment of the fresh output). */
async function backward(
  dtype: FloatDType,
  v: number,
  inp: Inputs,
  withEntropy: boolean,
  inPlace: boolean,
  offset = 0,
): Promise<Bits> {
  const { n } = inp;
  let owner: Tensor | undefined;
  let logits: Tensor<FloatDType>;
  if (offset === 0) {
    logits = cuda.tensor(inp.data as never, [n, v], dtype) as Tensor<FloatDType>;
  } else {
    const padded =
      inp.data instanceof Float32Array ? new Float32Array(n * v + offset) : new Uint16Array(n * v + offset);
    padded.set(inp.data, offset);
    owner = cuda.tensor(padded as never, [n * v + offset], dtype);
    const ptr = (owner.storage as unknown as CudaStorage<'f32'>).ptr + BigInt(offset * bytesPer(dtype));
    logits = cuda.fromDevicePointer(ptr, [n, v], dtype);
  }
  try {
    const g = await cuda.logprobsBackward(
      logits,
      inp.targets,
      inp.lse,
      inp.glp,
      options(inp, withEntropy, inPlace),
    );
    if (inPlace) expect(g).toBe(logits);
    const out = await bits(g);
    if (!inPlace) g.dispose();
    return out;
  } finally {
    logits.dispose();
    owner?.dispose();
  }
}

/** n random rows (logits ~ N(0, 3²)) with the probe row at `positions`; lse and entropy from the cuda
 * forward, then the probe's own values set at its positions; every 5th other row ignored. */
async function batch(
  seed: number,
  dtype: FloatDType,
  n: number,
  v: number,
  probe: Inputs,
  positions: number[],
) {
  const data = encodeFloats(dtype, randomNormal(seed, n * v, 3));
  const targets = randomInts(seed + 1, n, 0, v);
  for (let i = 2; i < n; i += 5) targets[i] = IGNORE;
  for (const at of positions) {
    data.set(probe.data, at * v);
    targets[at] = probe.targets[0];
  }
  const logits = cuda.tensor(data as never, [n, v], dtype) as Tensor<FloatDType>;
  const f = await cuda.logprobs(logits, targets, { temperature: TEMPERATURE, entropy: true });
  const lse = (await f.lse.read()) as Float32Array;
  const entropy = (await f.entropy?.read()) as Float32Array;
  for (const t of [logits, f.logprobs, f.lse, f.entropy]) t?.dispose();
  const glp = Float32Array.from(randomNormal(seed + 2, n));
  const gent = Float32Array.from(randomNormal(seed + 3, n));
  for (const at of positions) {
    lse[at] = probe.lse[0];
    entropy[at] = probe.entropy[0];
    glp[at] = probe.glp[0];
    gent[at] = probe.gent[0];
  }
  return { data, targets, lse, entropy, glp, gent, n } satisfies Inputs;
}

async function probeRow(seed: number, dtype: FloatDType, v: number): Promise<Inputs> {
  const data = encodeFloats(dtype, randomNormal(seed, v, 3));
  const targets = Int32Array.of((seed * 7919) % v);
  const logits = cuda.tensor(data as never, [1, v], dtype) as Tensor<FloatDType>;
  const f = await cuda.logprobs(logits, targets, { temperature: TEMPERATURE, entropy: true });
  const lse = (await f.lse.read()) as Float32Array;
  const entropy = (await f.entropy?.read()) as Float32Array;
  for (const t of [logits, f.logprobs, f.lse, f.entropy]) t?.dispose();
  return { data, targets, lse, entropy, glp: Float32Array.of(0.7), gent: Float32Array.of(-0.4), n: 1 };
}

/** Row `at` of `got` against the probe's gradient `ref`, and every ignored row exactly +0. */
function check(got: Bits, ref: Bits, inp: Inputs, v: number, positions: number[], what: string) {
  for (const at of positions) {
    const d = firstDifference(got.subarray(at * v, (at + 1) * v), ref);
    expect(d, `${what}: row ${at}, first column whose bits differ`).toBe(-1);
  }
  for (let i = 0; i < inp.n; i++) {
    if (inp.targets[i] !== IGNORE) continue;
    const row = got.subarray(i * v, (i + 1) * v);
    const nz = row.findIndex((b) => b !== 0);
    expect(nz, `${what}: ignored row ${i}, first column not +0`).toBe(-1);
  }
}

describe.skipIf(noGpu)('cuda logprobsBackward over several chunks', () => {
  for (const dtype of DTYPES) {
    for (const v of VOCABS) {
      it(`${dtype} V=${v}: a row alone, among ${BATCHES.join(' and ')} rows, in place and not, equal bits; within the tolerance`, async () => {
        const seed = v + 11 * bytesPer(dtype);
        const probe = await probeRow(seed, dtype, v);
        for (const withEntropy of [false, true]) {
          const mode = withEntropy ? 'with gradEntropy' : 'plain';
          const ref = await backward(dtype, v, probe, withEntropy, false);
          const alone = await backward(dtype, v, probe, withEntropy, true);
          expect(firstDifference(alone, ref), `${mode}: alone in place`).toBe(-1);
          const off = await backward(dtype, v, probe, withEntropy, false, 1);
          expect(firstDifference(off, ref), `${mode}: alone, one element off alignment`).toBe(-1);
        }
        for (const n of BATCHES) {
          const positions = [0, 3, Math.floor(n / 2) + 1, n - 1];
          const inp = await batch(seed + n, dtype, n, v, probe, positions);
          for (const withEntropy of [false, true]) {
            const mode = withEntropy ? 'with gradEntropy' : 'plain';
            const ref = await backward(dtype, v, probe, withEntropy, false);
            const outOfPlace = await backward(dtype, v, inp, withEntropy, false);
            check(outOfPlace, ref, inp, v, positions, `N=${n} ${mode}`);
            check(
              await backward(dtype, v, inp, withEntropy, true),
              ref,
              inp,
              v,
              positions,
              `N=${n} ${mode} in place`,
            );
            if (n !== BATCHES[0]) continue;
            // The small batch also through a view off the alignment (out of place: all scalars; in place:
            // vectors after each chunk's head), and against the float64 reference.
            for (const inPlace of [false, true]) {
              const got = await backward(dtype, v, inp, withEntropy, inPlace, 1);
              check(
                got,
                ref,
                inp,
                v,
                positions,
                `N=${n} ${mode} off alignment${inPlace ? ', in place' : ''}`,
              );
            }
            const gg = outOfPlace instanceof Uint32Array ? new Float32Array(outOfPlace.buffer) : outOfPlace;
            const want = bruteBackward(
              decodeLogits(dtype, inp.data),
              n,
              v,
              inp.targets,
              IGNORE,
              TEMPERATURE,
              inp.lse,
              withEntropy ? inp.entropy : undefined,
              inp.glp,
              withEntropy ? inp.gent : undefined,
            );
            expectOutputsWithin(
              'logprobsBackward',
              dtype,
              { gradLogits: decodeLogits(dtype, gg) },
              { gradLogits: want },
              `N=${n} ${mode} vs the float64 reference`,
            );
          }
        }
      });
    }
  }
});
