/**
 * Adversarial input at the API surface, one table of cases run on js, cpu (native), webgpu and cuda
 * (docs/DESIGN.md, "Errors"): every case either fails with a GrpoKernelsError of the expected code
 * whose message names the argument (at the call, or at the read for values only the device sees), or
 * succeeds with the outputs js gives on the same data. Never an error of another type, a crash, a hang
 * (each case has a timeout) or a different number.
 *
 * Classes of input: typed arrays of the wrong kind (BigInt, Float64, Uint8Clamped, plain arrays),
 * views with a byteOffset and odd lengths, SharedArrayBuffer and detached memory; NaN, ±Inf, negative,
 * fractional, ≥ 2^31 and ≥ 2^53 numbers where sizes, offsets, group sizes, targets and ids go; zero
 * sizes; option objects that are null, arrays, prototype-less, misspelt, of the wrong type, or whose
 * getter throws; mismatched dtypes; inputs that alias each other or an in-place output; tensors of
 * another context, of a disposed one, disposed, or built by hand around another tensor's storage;
 * ops called without awaiting, then disposed out of order, or overtaken by an in-place op.
 *
 * What it found (2026-11-28) is fixed; the case that found each names it (see `found`).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { decodeFloats, encodeFloats, type FloatDType } from '../../src/dtypes.js';
import {
  type Context,
  createContext,
  type ErrorCode,
  GrpoKernelsError,
  groupOffsetsFromSize,
  lmheadScratchBytes,
  pack,
  packMask,
  readPolicyStats,
  Tensor,
  unpack,
} from '../../src/index.js';
import { randomInts, randomNormal } from '../util/rng.js';

export type BackendName = 'js' | 'cpu' | 'webgpu' | 'cuda';

interface Case {
  name: string;
  /** The expected outcome: success (compared with js), or a typed error naming `argument`. */
  want: 'ok' | [ErrorCode, string];
  /** Backends the case applies to (default all); the others do not run it. */
  only?: readonly BackendName[];
  /** The defect the case found, when it found one. */
  found?: string;
  run(ctx: Context): unknown;
}

// ---------------------------------------------------------------- inputs (fixed seeds)
const f32 = (n: number, seed: number, scale = 1) => Float32Array.from(randomNormal(seed, n, scale));
const i32 = (a: readonly number[]) => Int32Array.from(a);
const u8 = (a: readonly number[]) => Uint8Array.from(a);

const N = 5;
const V = 13;
/** Targets of N rows over V columns, one ignored (−100). */
const TARGETS = i32([0, 12, -100, 7, 3]);
function logits(ctx: Context, dtype: FloatDType = 'f32', n = N, v = V, seed = 1): Tensor<FloatDType> {
  const x = randomNormal(seed, n * v, 2);
  return ctx.tensor(encodeFloats(dtype, x) as never, [n, v], dtype as never) as Tensor<FloatDType>;
}

/** A ragged THR batch: 4 responses (one empty) in 2 groups, 9 tokens. */
const LAYOUT = { responseOffsets: i32([0, 2, 5, 5, 9]), groupOffsets: i32([0, 2, 4]) };
const TOKENS = i32([3, 5, 3, 7, 1, 2, 4, 2, 6]);
const T = 9;
const D = 4;
const CORRECT = u8([1, 0, 1, 0]);
async function thrInputs(ctx: Context) {
  const vocab = await ctx.restrictedVocab(TOKENS, LAYOUT);
  const lg = logits(ctx, 'f32', T, 8, 21);
  const { lse } = await ctx.logprobs(lg, TOKENS);
  const probs = await ctx.gatherProbs(lg, lse, { layout: LAYOUT, vocab });
  return { hidden: ctx.tensor(f32(T * D, 22), [T, D]), probs, vocab, layout: LAYOUT, correct: CORRECT };
}

const REJECT = () => ({
  logprobs: Float32Array.from(randomNormal(36, 7, 0.3, -1)),
  rolloutLogprobs: Float32Array.from(randomNormal(37, 7, 0.3, -1)),
  layout: { responseOffsets: i32([0, 3, 3, 7]) },
});
const K3_RS = { criteria: 'seq_mean_k3', thresholds: 0.01 };

const POLICY = () => ({
  logprobs: Float32Array.from(randomNormal(31, 7, 0.3, -1)),
  oldLogprobs: Float32Array.from(randomNormal(32, 7, 0.3, -1)),
  advantages: f32(7, 33),
  layout: { responseOffsets: i32([0, 3, 3, 7]) },
});

/** A Float32Array view at a byte offset into a larger buffer (misaligned for 8-byte types). */
function offsetView<A extends Float32Array | Int32Array | Uint8Array | Uint16Array>(
  make: new (b: ArrayBuffer, offset: number, length: number) => A,
  values: ArrayLike<number>,
  bytes: number,
): A {
  const buf = new ArrayBuffer((values.length + 3) * bytes);
  const view = new make(buf, bytes, values.length);
  view.set(values as never);
  return view;
}

function detached<A extends Float32Array | Int32Array | Uint8Array>(a: A): A {
  structuredClone(a.buffer, { transfer: [a.buffer] });
  return a;
}

function shared<A extends Float32Array | Int32Array | Uint8Array>(
  make: new (b: SharedArrayBuffer) => A,
  values: ArrayLike<number>,
  bytes: number,
): A {
  const a = new make(new SharedArrayBuffer(values.length * bytes));
  a.set(values as never);
  return a;
}

// ---------------------------------------------------------------- the table
const CASES: Case[] = [
  // ------------------------------------------------ ctx.tensor
  {
    name: 'tensor: BigInt64Array',
    want: ['DTYPE', 'data'],
    run: (c) => c.tensor(new BigInt64Array(2) as never),
  },
  {
    name: 'tensor: Float64Array',
    want: ['DTYPE', 'data'],
    found: "said \"dtype: expected 'f16' or 'bf16' for a Uint16Array\" for every unsupported array",
    run: (c) => c.tensor(new Float64Array(2) as never),
  },
  {
    name: 'tensor: Uint8ClampedArray',
    want: ['DTYPE', 'data'],
    run: (c) => c.tensor(new Uint8ClampedArray(2) as never),
  },
  { name: 'tensor: a plain array', want: ['DTYPE', 'data'], run: (c) => c.tensor([1, 2] as never) },
  {
    name: 'tensor: a DataView',
    want: ['DTYPE', 'data'],
    run: (c) => c.tensor(new DataView(new ArrayBuffer(8)) as never, [2], 'f32'),
  },
  {
    name: 'tensor: dtype null',
    want: ['DTYPE', 'dtype'],
    found: 'null was read as "no dtype" and the array type inferred',
    run: (c) => c.tensor(f32(2, 1), [2], null as never),
  },
  {
    name: "tensor: dtype 'f64'",
    want: ['DTYPE', 'dtype'],
    run: (c) => c.tensor(f32(2, 1), [2], 'f64' as never),
  },
  {
    name: 'tensor: Uint16Array without dtype',
    want: ['DTYPE', 'dtype'],
    run: (c) => c.tensor(new Uint16Array(2) as never),
  },
  {
    name: 'tensor: Int16Array as bf16',
    want: ['DTYPE', 'data'],
    run: (c) => c.tensor(new Int16Array(2) as never, [2], 'bf16'),
  },
  { name: 'tensor: shape [NaN]', want: ['SHAPE', 'shape'], run: (c) => c.tensor(f32(2, 1), [Number.NaN]) },
  { name: 'tensor: shape [1.5, 2]', want: ['SHAPE', 'shape'], run: (c) => c.tensor(f32(3, 1), [1.5, 2]) },
  { name: 'tensor: shape [-1, -2]', want: ['SHAPE', 'shape'], run: (c) => c.tensor(f32(2, 1), [-1, -2]) },
  {
    name: 'tensor: shape [2^60, 0] (not an exact integer)',
    want: ['SHAPE', 'shape'],
    found: 'accepted: a zero-size tensor whose dimension is no exact integer',
    run: (c) => c.tensor(new Float32Array(0), [2 ** 60, 0]),
  },
  {
    name: 'tensor: shape [2^31, 2^31, 0] (product overflows 2^53 but is 0)',
    want: 'ok',
    run: (c) => c.tensor(new Float32Array(0), [2 ** 31, 2 ** 31, 0]),
  },
  { name: "tensor: shape ['2']", want: ['SHAPE', 'shape'], run: (c) => c.tensor(f32(2, 1), ['2' as never]) },
  {
    name: 'tensor: shape not an array',
    want: ['SHAPE', 'shape'],
    run: (c) => c.tensor(f32(2, 1), 2 as never),
  },
  {
    name: 'tensor: shape product ≠ length',
    want: ['SHAPE', 'shape'],
    run: (c) => c.tensor(f32(6, 1), [4, 2]),
  },
  { name: 'tensor: shape [] holds one element', want: 'ok', run: (c) => c.tensor(f32(1, 1), []) },
  { name: 'tensor: empty u8', want: 'ok', run: (c) => c.tensor(new Uint8Array(0)) },
  {
    name: 'tensor: a detached ArrayBuffer',
    want: ['DTYPE', 'data'],
    found: 'a TypeError of the copy (slice, set or Construct on a detached ArrayBuffer) on every backend',
    run: (c) => c.tensor(detached(f32(4, 1))),
  },
  {
    name: 'tensor: views at a byte offset, odd lengths (u8, f16, i32)',
    want: 'ok',
    run: (c) => [
      c.tensor(offsetView(Uint8Array, [1, 2, 3, 4, 5], 1)),
      c.tensor(offsetView(Uint16Array, [0x3c00, 0xbc00, 0x7c00], 2), [3], 'f16'),
      c.tensor(offsetView(Int32Array, [7, -8, 9], 4)),
    ],
  },
  {
    name: 'tensor: SharedArrayBuffer, odd u8 view',
    want: 'ok',
    run: (c) => c.tensor(new Uint8Array(new SharedArrayBuffer(9), 1, 7).fill(3)),
  },
  {
    name: 'tensor: a length-tracking view of a resizable ArrayBuffer',
    want: 'ok',
    run: (c) => {
      const ab = new (ArrayBuffer as unknown as new (n: number, o: object) => ArrayBuffer)(16, {
        maxByteLength: 64,
      });
      const a = new Float32Array(ab);
      a.set([1, 2, 3, 4]);
      return c.tensor(a);
    },
  },
  {
    name: 'fromDevicePointer off cuda',
    want: ['BACKEND_UNAVAILABLE', 'fromDevicePointer'],
    only: ['js', 'cpu', 'webgpu'],
    run: (c) => c.fromDevicePointer(0n, [1], 'f32'),
  },
  {
    name: 'fromGPUBuffer off webgpu',
    want: ['BACKEND_UNAVAILABLE', 'fromGPUBuffer'],
    only: ['js', 'cpu'],
    run: (c) => c.fromGPUBuffer({}, [1], 'f32'),
  },
  {
    name: "fromGPUBuffer: dtype 'f64'",
    want: ['DTYPE', 'dtype'],
    only: ['webgpu'],
    found: "accepted: a Tensor of dtype 'f64' whose read() threw a TypeError from createBuffer",
    run: (c) => c.fromGPUBuffer(gpuBuffer(c, 16), [4], 'f64' as never),
  },
  {
    name: 'fromGPUBuffer: an object shaped like a GPUBuffer',
    want: ['DTYPE', 'buffer'],
    only: ['webgpu'],
    found: 'accepted: its read() and every op on it threw TypeErrors from Dawn',
    run: (c) => c.fromGPUBuffer({ size: 16, usage: 0x8c }, [4], 'f32'),
  },
  {
    name: 'fromGPUBuffer: shape [2^60, 0]',
    want: ['SHAPE', 'shape'],
    only: ['webgpu'],
    run: (c) => c.fromGPUBuffer(gpuBuffer(c, 16), [2 ** 60, 0], 'f32'),
  },
  {
    name: 'fromGPUBuffer: logits and lse in one buffer, logprobsBackward inPlace',
    want: ['DTYPE', 'lse'],
    only: ['webgpu'],
    run: (c) => {
      const b = gpuBuffer(c, 64);
      return c.logprobsBackward(
        c.fromGPUBuffer(b, [4, 4], 'f32'),
        i32([0, 1, 2, 3]),
        c.fromGPUBuffer(b, [4], 'f32'),
        f32(4, 2),
        {
          inPlace: true,
        },
      );
    },
  },

  // ------------------------------------------------ tensors by hand, of other contexts, disposed
  {
    name: 'new Tensor(...) around another tensor’s storage, with a larger shape',
    want: ['DTYPE', 'values'],
    found: 'accepted: webgpu read 100000 floats of a 3-float buffer, js returned 3 elements for [100000]',
    run: (c) => c.whiten(new Tensor('f32', [100000], c.backend, c.tensor(f32(3, 1)).storage)),
  },
  {
    name: 'new Tensor(...) with a storage of its own',
    want: ['DTYPE', 'values'],
    found: 'js: a TypeError reading its data',
    run: (c) => c.whiten(new Tensor('f32', [3], c.backend, { read: async () => f32(3, 1), free() {} })),
  },
  {
    name: 'a u8 tensor’s storage relabelled f32',
    want: ['DTYPE', 'values'],
    run: (c) => c.whiten(new Tensor('f32', [4], c.backend, c.tensor(new Uint8Array(4)).storage as never)),
  },
  {
    name: 'a tensor of another context of the same backend',
    want: ['DTYPE', 'logits'],
    run: async (c) => {
      const other = await createContext({ backend: c.backend as BackendName });
      try {
        return await c.logprobs(logits(other), TARGETS);
      } finally {
        other.dispose();
      }
    },
  },
  {
    name: 'a tensor of a js context',
    want: ['DTYPE', 'values'],
    run: async (c) => {
      const other = await createContext({ backend: 'js' });
      const t = other.tensor(f32(3, 1));
      try {
        return await c.whiten(t);
      } finally {
        other.dispose();
      }
    },
  },
  {
    name: 'a tensor of a disposed context',
    want: ['BACKEND_UNAVAILABLE', 'logits'],
    run: async (c) => {
      const other = await createContext({ backend: c.backend as BackendName });
      const x = logits(other);
      other.dispose();
      return c.logprobs(x, TARGETS);
    },
  },
  {
    name: 'a disposed tensor',
    want: ['SHAPE', 'targets'],
    run: (c) => {
      const t = c.tensor(TARGETS);
      t.dispose();
      return c.logprobs(logits(c), t);
    },
  },
  {
    name: 'a disposed context: an op, a tensor, a read',
    want: ['BACKEND_UNAVAILABLE', 'logprobs'],
    run: async (c) => {
      const x = await createContext({ backend: c.backend as BackendName });
      const t = logits(x);
      x.dispose();
      await expectTyped(() => x.tensor(f32(2, 1)), 'BACKEND_UNAVAILABLE', 'tensor');
      await expectTyped(() => t.read(), 'BACKEND_UNAVAILABLE', 'tensor');
      await expectTyped(() => x.synchronize(), 'BACKEND_UNAVAILABLE', 'synchronize');
      return x.logprobs(t, TARGETS);
    },
  },

  // ------------------------------------------------ createContext, copyProbe, lmheadScratchBytes
  {
    name: 'createContext: backend null',
    want: ['BACKEND_UNAVAILABLE', 'backend'],
    found: "null was read as 'auto'",
    run: () => createContext({ backend: null as never }),
  },
  {
    name: 'createContext: deviceIndex NaN',
    want: ['BACKEND_UNAVAILABLE', 'deviceIndex'],
    found: "ignored off cuda (and 'auto' only skipped cuda with it)",
    run: (c) => createContext({ backend: c.backend as BackendName, deviceIndex: Number.NaN }),
  },
  {
    name: "createContext: deviceIndex '0'",
    want: ['DTYPE', 'deviceIndex'],
    run: (c) => createContext({ backend: c.backend as BackendName, deviceIndex: '0' as never }),
  },
  {
    name: 'createContext: threads 1.5',
    want: ['RANGE', 'threads'],
    run: (c) => createContext({ backend: c.backend as BackendName, threads: 1.5 }),
  },
  {
    name: 'createContext: an unknown option',
    want: ['DTYPE', 'options.thread'],
    run: (c) => createContext({ backend: c.backend as BackendName, thread: 2 } as never),
  },
  { name: 'copyProbe: a bigint', want: ['DTYPE', 'bytes'], run: (c) => c.copyProbe(16n as never) },
  { name: 'copyProbe: 2^53', want: ['RANGE', 'bytes'], run: (c) => c.copyProbe(2 ** 53) },
  {
    name: 'lmheadScratchBytes: an object shaped like a Context',
    want: ['DTYPE', 'ctx'],
    found: "a TypeError for backend 'webgpu'; an unknown backend name fell through to the cuda addon",
    run: () =>
      lmheadScratchBytes(
        { backend: 'webgpu', device: { name: '', details: {} } },
        { rows: 1, vocab: 2, dim: 3, dtype: 'f32' },
      ),
  },

  // ------------------------------------------------ layout helpers
  {
    name: 'groupOffsetsFromSize(-4, 2)',
    want: ['RANGE', 'numResponses'],
    found: 'a RangeError (Invalid typed array length: -1)',
    run: () => groupOffsetsFromSize(-4, 2),
  },
  {
    name: 'groupOffsetsFromSize(2^31, 2^31)',
    want: ['RANGE', 'numResponses'],
    found: 'returned [0, −2^31]: the offset wrapped in the Int32Array',
    run: () => groupOffsetsFromSize(2 ** 31, 2 ** 31),
  },
  {
    name: 'groupOffsetsFromSize(NaN, 1)',
    want: ['RANGE', 'numResponses'],
    run: () => groupOffsetsFromSize(Number.NaN, 1),
  },
  {
    name: 'packMask(null, …)',
    want: ['DTYPE', 'mask'],
    found: 'a TypeError',
    run: () => packMask(null as never, [1, 1]),
  },
  {
    name: 'packMask: shape null',
    want: ['SHAPE', 'shape'],
    found: 'a TypeError (not iterable)',
    run: () => packMask(new Uint8Array(1), null as never),
  },
  {
    name: 'packMask: shape [1e10, 0]',
    want: ['SHAPE', 'shape'],
    found: 'a RangeError (Invalid typed array length)',
    run: () => packMask(new Uint8Array(0), [1e10, 0]),
  },
  {
    name: 'pack(null, …)',
    want: ['DTYPE', 'values'],
    found: 'a TypeError',
    run: () => pack(null as never, packMask(u8([1]), [1, 1])),
  },
  {
    name: 'unpack: a packing whose positions lie outside its [R, T]',
    want: ['RANGE', 'packing'],
    found: 'wrote past the padded array silently',
    run: () => unpack(f32(1, 1), { responseOffsets: i32([0, 1]), positions: i32([5]), shape: [1, 1] }),
  },
  {
    name: 'pack and unpack a valid packing',
    want: 'ok',
    run: () =>
      unpack(
        pack(f32(6, 3), packMask(u8([1, 0, 1, 1, 0, 1]), [2, 3])),
        packMask(u8([1, 0, 1, 1, 0, 1]), [2, 3]),
        -1,
      ),
  },

  // ------------------------------------------------ logprobs: targets
  {
    name: 'logprobs: f32 with an ignored row',
    want: 'ok',
    run: (c) => c.logprobs(logits(c), TARGETS, { entropy: true, sumSquares: true }),
  },
  {
    name: 'logprobs: bf16',
    want: 'ok',
    run: (c) => c.logprobs(logits(c, 'bf16'), TARGETS, { entropy: true }),
  },
  {
    name: 'logprobs: f16, odd N and V',
    want: 'ok',
    run: (c) => c.logprobs(logits(c, 'f16', 3, 7), i32([6, 0, 3]), { sumSquares: true }),
  },
  {
    name: 'logprobs: targets BigInt64Array',
    want: ['DTYPE', 'targets'],
    run: (c) => c.logprobs(logits(c), new BigInt64Array(N) as never),
  },
  {
    name: 'logprobs: targets Uint32Array',
    want: ['DTYPE', 'targets'],
    run: (c) => c.logprobs(logits(c), new Uint32Array(N) as never),
  },
  {
    name: 'logprobs: targets Float32Array',
    want: ['DTYPE', 'targets'],
    run: (c) => c.logprobs(logits(c), new Float32Array(N) as never),
  },
  {
    name: 'logprobs: targets a plain array',
    want: ['DTYPE', 'targets'],
    run: (c) => c.logprobs(logits(c), [0, 1, 2, 3, 4] as never),
  },
  {
    name: 'logprobs: targets a 2-D tensor',
    want: ['SHAPE', 'targets'],
    run: (c) => c.logprobs(logits(c), c.tensor(new Int32Array(6), [2, 3])),
  },
  {
    name: 'logprobs: host target = V',
    want: ['RANGE', 'targets'],
    run: (c) => c.logprobs(logits(c), i32([0, V, 1, 2, 3])),
  },
  {
    name: 'logprobs: device target = V',
    want: ['RANGE', 'targets'],
    run: (c) => c.logprobs(logits(c), c.tensor(i32([0, V, 1, 2, 3]))),
  },
  {
    name: 'logprobs: device target −2^31',
    want: ['RANGE', 'targets'],
    run: (c) => c.logprobs(logits(c), c.tensor(i32([0, -(2 ** 31), 1, 2, 3]))),
  },
  {
    name: 'logprobs: device target 2^31 − 1',
    want: ['RANGE', 'targets'],
    run: (c) => c.logprobs(logits(c), c.tensor(i32([0, 2 ** 31 - 1, 1, 2, 3]))),
  },
  {
    name: 'logprobs: ignoreIndex −2^31 on device targets',
    want: 'ok',
    run: (c) => c.logprobs(logits(c), c.tensor(i32([0, -(2 ** 31), 1, 2, 3])), { ignoreIndex: -(2 ** 31) }),
  },
  {
    name: 'logprobs: ignoreIndex a valid column (3)',
    want: 'ok',
    run: (c) => c.logprobs(logits(c), c.tensor(i32([0, 3, 1, 3, 12])), { ignoreIndex: 3 }),
  },
  {
    name: 'logprobs: targets at a byte offset',
    want: 'ok',
    run: (c) => c.logprobs(logits(c), offsetView(Int32Array, TARGETS, 4)),
  },
  {
    name: 'logprobs: targets in a SharedArrayBuffer',
    want: 'ok',
    run: (c) => c.logprobs(logits(c), shared(Int32Array, TARGETS, 4)),
  },
  {
    name: 'logprobs: detached targets (N = 0)',
    want: ['DTYPE', 'targets'],
    found: 'a TypeError of the upload (slice, set or Construct on a detached ArrayBuffer)',
    run: (c) => c.logprobs(logits(c, 'f32', 0), detached(i32([1, 2]))),
  },
  // ------------------------------------------------ logprobs: options
  {
    name: 'logprobs: ignoreIndex 2^31',
    want: ['RANGE', 'ignoreIndex'],
    run: (c) => c.logprobs(logits(c), TARGETS, { ignoreIndex: 2 ** 31 }),
  },
  {
    name: 'logprobs: ignoreIndex 1.5',
    want: ['RANGE', 'ignoreIndex'],
    run: (c) => c.logprobs(logits(c), TARGETS, { ignoreIndex: 1.5 }),
  },
  {
    name: 'logprobs: ignoreIndex −100n',
    want: ['DTYPE', 'ignoreIndex'],
    run: (c) => c.logprobs(logits(c), TARGETS, { ignoreIndex: -100n as never }),
  },
  {
    name: 'logprobs: ignoreIndex null',
    want: ['DTYPE', 'ignoreIndex'],
    run: (c) => c.logprobs(logits(c), TARGETS, { ignoreIndex: null as never }),
  },
  {
    name: 'logprobs: temperature 0',
    want: ['RANGE', 'temperature'],
    run: (c) => c.logprobs(logits(c), TARGETS, { temperature: 0 }),
  },
  {
    name: 'logprobs: temperature −1',
    want: ['RANGE', 'temperature'],
    run: (c) => c.logprobs(logits(c), TARGETS, { temperature: -1 }),
  },
  {
    name: 'logprobs: temperature NaN',
    want: ['RANGE', 'temperature'],
    run: (c) => c.logprobs(logits(c), TARGETS, { temperature: Number.NaN }),
  },
  {
    name: 'logprobs: temperature +Inf',
    want: ['RANGE', 'temperature'],
    run: (c) => c.logprobs(logits(c), TARGETS, { temperature: Number.POSITIVE_INFINITY }),
  },
  {
    name: 'logprobs: temperature 1e-39',
    want: ['RANGE', 'temperature'],
    run: (c) => c.logprobs(logits(c), TARGETS, { temperature: 1e-39 }),
  },
  {
    name: "logprobs: temperature '1'",
    want: ['DTYPE', 'temperature'],
    run: (c) => c.logprobs(logits(c), TARGETS, { temperature: '1' as never }),
  },
  {
    name: 'logprobs: temperature new Number(1)',
    want: ['DTYPE', 'temperature'],
    run: (c) => c.logprobs(logits(c), TARGETS, { temperature: new Number(1) as never }),
  },
  {
    name: 'logprobs: temperature 1e300',
    want: 'ok',
    run: (c) => c.logprobs(logits(c), TARGETS, { temperature: 1e300 }),
  },
  {
    name: 'logprobs: entropy 1',
    want: ['DTYPE', 'entropy'],
    run: (c) => c.logprobs(logits(c), TARGETS, { entropy: 1 as never }),
  },
  {
    name: 'logprobs: options null',
    want: ['DTYPE', 'options'],
    run: (c) => c.logprobs(logits(c), TARGETS, null as never),
  },
  {
    name: 'logprobs: options an array',
    want: ['DTYPE', 'options'],
    run: (c) => c.logprobs(logits(c), TARGETS, [] as never),
  },
  {
    name: 'logprobs: a misspelt option',
    want: ['DTYPE', 'options.temprature'],
    run: (c) => c.logprobs(logits(c), TARGETS, { temprature: 2 } as never),
  },
  {
    name: 'logprobs: a prototype-less options object',
    want: 'ok',
    run: (c) => c.logprobs(logits(c), TARGETS, Object.assign(Object.create(null), { temperature: 0.7 })),
  },
  {
    name: "logprobs: an option's getter throws: the caller's own error, as a rejection",
    want: 'ok',
    run: async (c) => {
      const boom = new Error('getter');
      const p = c.logprobs(logits(c), TARGETS, {
        get temperature(): number {
          throw boom;
        },
      });
      expect(p).toBeInstanceOf(Promise);
      expect(await p.catch((e: unknown) => e)).toBe(boom);
      return 'rejected with the caller’s error';
    },
  },
  // ------------------------------------------------ logprobs: logits
  {
    name: 'logprobs: logits i32',
    want: ['DTYPE', 'logits'],
    run: (c) => c.logprobs(c.tensor(new Int32Array(N * V), [N, V]) as never, TARGETS),
  },
  {
    name: 'logprobs: logits 1-D',
    want: ['SHAPE', 'logits'],
    run: (c) => c.logprobs(c.tensor(f32(V, 1)), i32([0])),
  },
  {
    name: 'logprobs: logits 3-D',
    want: ['SHAPE', 'logits'],
    run: (c) => c.logprobs(c.tensor(f32(N * V, 1), [N, V, 1]), TARGETS),
  },
  {
    name: 'logprobs: logits a Float32Array',
    want: ['SHAPE', 'logits'],
    run: (c) => c.logprobs(f32(N * V, 1) as never, TARGETS),
  },
  {
    name: 'logprobs: logits [N, 0]',
    want: ['SHAPE', 'logits'],
    run: (c) => c.logprobs(c.tensor(new Float32Array(0), [N, 0]), TARGETS),
  },
  {
    name: 'logprobs: logits [0, 2^31]',
    want: ['SHAPE', 'logits'],
    run: (c) => c.logprobs(c.tensor(new Float32Array(0), [0, 2 ** 31]), i32([])),
  },
  {
    name: 'logprobs: logits [2^32 + 1, 0]',
    want: ['SHAPE', 'logits'],
    run: (c) => c.logprobs(c.tensor(new Float32Array(0), [2 ** 32 + 1, 0]), i32([])),
  },
  {
    name: 'logprobs: logits [0, V]',
    want: 'ok',
    run: (c) => c.logprobs(logits(c, 'f32', 0), i32([]), { entropy: true }),
  },
  {
    name: 'logprobs: a row of −Inf',
    want: ['RANGE', 'logits'],
    run: (c) => {
      const x = f32(N * V, 1);
      x.fill(Number.NEGATIVE_INFINITY, V, 2 * V);
      return c.logprobs(c.tensor(x, [N, V]), TARGETS);
    },
  },
  {
    name: 'logprobs: NaN and +Inf logits',
    want: 'ok',
    run: (c) => {
      const x = f32(N * V, 1);
      x[2] = Number.NaN;
      x[V + 4] = Number.POSITIVE_INFINITY;
      return c.logprobs(c.tensor(x, [N, V]), TARGETS, { entropy: true });
    },
  },
  // ------------------------------------------------ logprobsBackward
  {
    name: 'logprobsBackward: with gradEntropy',
    want: 'ok',
    run: async (c) => {
      const x = logits(c);
      const f = await c.logprobs(x, TARGETS, { entropy: true });
      return c.logprobsBackward(x, TARGETS, f.lse, f32(N, 2), { gradEntropy: f32(N, 3), entropy: f.entropy });
    },
  },
  {
    name: 'logprobsBackward: bf16 in place',
    want: 'ok',
    run: async (c) => {
      const x = logits(c, 'bf16');
      const f = await c.logprobs(x, TARGETS);
      const g = await c.logprobsBackward(x, TARGETS, f.lse, f32(N, 2), { inPlace: true });
      expect(g).toBe(x);
      return g;
    },
  },
  {
    name: 'logprobsBackward: gradEntropy without entropy',
    want: ['DTYPE', 'entropy'],
    run: (c) => c.logprobsBackward(logits(c), TARGETS, f32(N, 1), f32(N, 2), { gradEntropy: f32(N, 3) }),
  },
  {
    name: 'logprobsBackward: lse of N + 1',
    want: ['SHAPE', 'lse'],
    run: (c) => c.logprobsBackward(logits(c), TARGETS, f32(N + 1, 1), f32(N, 2)),
  },
  {
    name: 'logprobsBackward: gradLogprobs f16',
    want: ['DTYPE', 'gradLogprobs'],
    run: (c) =>
      c.logprobsBackward(logits(c), TARGETS, f32(N, 1), c.tensor(new Uint16Array(N), [N], 'f16') as never),
  },
  {
    name: "logprobsBackward: inPlace 'yes'",
    want: ['DTYPE', 'inPlace'],
    run: (c) => c.logprobsBackward(logits(c), TARGETS, f32(N, 1), f32(N, 2), { inPlace: 'yes' as never }),
  },
  {
    name: 'logprobsBackward: device target −5',
    want: ['RANGE', 'targets'],
    run: (c) => c.logprobsBackward(logits(c), c.tensor(i32([0, -5, 1, 2, 3])), f32(N, 1), f32(N, 2)),
  },
  {
    name: 'logprobsBackward: lse ±Inf and NaN',
    want: 'ok',
    run: (c) =>
      c.logprobsBackward(
        logits(c),
        TARGETS,
        Float32Array.from([Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, Number.NaN, 1, 2]),
        f32(N, 2),
      ),
  },
  // ------------------------------------------------ gatherProbs
  {
    name: 'gatherProbs: from restrictedVocab',
    want: 'ok',
    run: async (c) => (await thrInputs(c)).probs,
  },
  {
    name: 'gatherProbs: a vocab.offsets tensor that disagrees with its host copy',
    want: 'ok',
    found: 'webgpu read the device offsets (other numbers than js and cpu, which plan with the host copy)',
    run: async (c) => {
      const vocab = await c.restrictedVocab(TOKENS, LAYOUT);
      const lg = logits(c, 'f32', T, 8, 21);
      const { lse } = await c.logprobs(lg, TOKENS);
      return c.gatherProbs(lg, lse, {
        layout: LAYOUT,
        vocab: { ...vocab, offsets: c.tensor(i32([0, 1, 1 << 30])) },
      });
    },
  },
  {
    name: 'gatherProbs: vocab columns ≥ V',
    want: ['RANGE', 'vocab.columns'],
    run: async (c) => {
      const vocab = await c.restrictedVocab(TOKENS, LAYOUT);
      return c.gatherProbs(logits(c, 'f32', T, 6), f32(T, 1), { layout: LAYOUT, vocab });
    },
  },
  {
    name: 'gatherProbs: vocab null',
    want: ['DTYPE', 'vocab'],
    run: (c) => c.gatherProbs(logits(c, 'f32', T, 8), f32(T, 1), { layout: LAYOUT, vocab: null as never }),
  },
  {
    name: 'gatherProbs: vocab tensors without their host copies',
    want: ['DTYPE', 'vocab.offsets'],
    run: async (c) => {
      const { host: _h, ...tensors } = await c.restrictedVocab(TOKENS, LAYOUT);
      return c.gatherProbs(logits(c, 'f32', T, 8), f32(T, 1), { layout: LAYOUT, vocab: tensors as never });
    },
  },
  {
    name: 'gatherProbs: layout of T tokens, logits of T − 1',
    want: ['LAYOUT', 'layout.responseOffsets'],
    run: async (c) =>
      c.gatherProbs(logits(c, 'f32', T - 1, 8), f32(T - 1, 1), {
        layout: LAYOUT,
        vocab: await c.restrictedVocab(TOKENS, LAYOUT),
      }),
  },
  {
    name: 'gatherProbs: options missing',
    want: ['LAYOUT', 'layout'],
    run: (c) => c.gatherProbs(logits(c, 'f32', T, 8), f32(T, 1), undefined as never),
  },

  // ------------------------------------------------ LM head
  {
    name: 'linearLogprobs: with a bias, entropy and Σp²',
    want: 'ok',
    run: (c) =>
      c.linearLogprobs(c.tensor(f32(N * 6, 41), [N, 6]), c.tensor(f32(V * 6, 42), [V, 6]), TARGETS, {
        bias: f32(V, 43),
        entropy: true,
        sumSquares: true,
      }),
  },
  {
    name: 'linearLogprobs: weight bf16, hidden f32',
    want: ['DTYPE', 'weight'],
    run: (c) =>
      c.linearLogprobs(
        c.tensor(f32(N * 6, 41), [N, 6]),
        c.tensor(new Uint16Array(V * 6), [V, 6], 'bf16') as never,
        TARGETS,
      ),
  },
  {
    name: 'linearLogprobs: weight d ≠ hidden d',
    want: ['SHAPE', 'weight'],
    run: (c) => c.linearLogprobs(c.tensor(f32(N * 6, 41), [N, 6]), c.tensor(f32(V * 5, 42), [V, 5]), TARGETS),
  },
  {
    name: 'linearLogprobs: bias of V + 1',
    want: ['SHAPE', 'bias'],
    run: (c) =>
      c.linearLogprobs(c.tensor(f32(N * 6, 41), [N, 6]), c.tensor(f32(V * 6, 42), [V, 6]), TARGETS, {
        bias: f32(V + 1, 1),
      }),
  },
  {
    name: 'linearLogprobs: a bias of −Inf everywhere',
    want: ['RANGE', 'logits'],
    run: (c) =>
      c.linearLogprobs(c.tensor(f32(N * 6, 41), [N, 6]), c.tensor(f32(V * 6, 42), [V, 6]), TARGETS, {
        bias: new Float32Array(V).fill(Number.NEGATIVE_INFINITY),
      }),
  },
  {
    name: 'linearLogprobs: device target = V',
    want: ['RANGE', 'targets'],
    run: (c) =>
      c.linearLogprobs(
        c.tensor(f32(N * 6, 41), [N, 6]),
        c.tensor(f32(V * 6, 42), [V, 6]),
        c.tensor(i32([0, V, 1, 2, 3])),
      ),
  },
  {
    name: 'linearLogprobs: d = 0',
    want: 'ok',
    run: (c) =>
      c.linearLogprobs(c.tensor(new Float32Array(0), [N, 0]), c.tensor(new Float32Array(0), [V, 0]), TARGETS),
  },
  {
    name: 'linearLogprobs: hidden and weight the same tensor',
    want: 'ok',
    run: (c) => {
      const h = c.tensor(f32(N * 6, 41), [N, 6]);
      return c.linearLogprobs(h, h, i32([0, 4, 1, 2, -100]));
    },
  },
  {
    name: 'linearLogprobsBackward: with gradEntropy',
    want: 'ok',
    run: async (c) => {
      const h = c.tensor(f32(N * 6, 41), [N, 6]);
      const w = c.tensor(f32(V * 6, 42), [V, 6]);
      const f = await c.linearLogprobs(h, w, TARGETS, { entropy: true });
      return c.linearLogprobsBackward(h, w, TARGETS, f.lse, f32(N, 44), {
        gradEntropy: f32(N, 45),
        entropy: f.entropy,
      });
    },
  },
  {
    name: 'linearLogprobsBackward: vocabStart + V past 2^31 − 1',
    want: ['RANGE', 'vocabStart'],
    run: (c) =>
      c.linearLogprobsBackward(
        c.tensor(f32(N * 6, 41), [N, 6]),
        c.tensor(f32(V * 6, 42), [V, 6]),
        TARGETS,
        f32(N, 1),
        f32(N, 2),
        { vocabStart: 2 ** 31 - V },
      ),
  },
  {
    name: "linearLogprobsBackward: gradDtype 'f16'",
    want: ['RANGE', 'gradDtype'],
    run: (c) =>
      c.linearLogprobsBackward(
        c.tensor(f32(N * 6, 41), [N, 6]),
        c.tensor(f32(V * 6, 42), [V, 6]),
        TARGETS,
        f32(N, 1),
        f32(N, 2),
        { gradDtype: 'f16' as never },
      ),
  },
  {
    name: 'logprobStates + mergeLogprobStates over two shards',
    want: 'ok',
    run: async (c) => {
      const t = i32([0, 20, -100, 7, 25]);
      const s1 = await c.logprobStates(logits(c, 'f32', N, V, 1), t, { entropy: true });
      const s2 = await c.logprobStates(logits(c, 'f32', N, V, 2), t, { vocabStart: V, entropy: true });
      return c.mergeLogprobStates([s1, s2], t, { entropy: true });
    },
  },
  {
    name: 'mergeLogprobStates: a sparse array of states',
    want: ['DTYPE', 'states[0]'],
    found: "the holes were skipped: 'targets: expected shape [-1]' named the wrong argument",
    run: (c) => c.mergeLogprobStates(new Array(2), i32([0])),
  },
  {
    name: 'mergeLogprobStates: a gap between shards',
    want: ['LAYOUT', 'states[1].vocabStart'],
    run: async (c) => {
      const s1 = await c.logprobStates(logits(c), TARGETS);
      const s2 = await c.logprobStates(logits(c), TARGETS, { vocabStart: V + 1 });
      return c.mergeLogprobStates([s1, s2], TARGETS);
    },
  },
  {
    name: 'mergeLogprobStates: a disposed state tensor',
    want: ['SHAPE', 'states[0].sumExp'],
    run: async (c) => {
      const s = await c.logprobStates(logits(c), TARGETS);
      s.sumExp.dispose();
      return c.mergeLogprobStates([s], TARGETS);
    },
  },
  {
    name: 'mergeLogprobStates: not an array',
    want: ['DTYPE', 'states'],
    run: (c) => c.mergeLogprobStates({ length: 1, 0: {} } as never, i32([0])),
  },

  // ------------------------------------------------ advantages, expandToTokens, whiten
  { name: 'advantages: grpo', want: 'ok', run: (c) => c.advantages(f32(6, 51), { groupSize: 3 }) },
  {
    name: 'advantages: groupSize 2^31',
    want: ['LAYOUT', 'groupSize'],
    run: (c) => c.advantages(f32(6, 51), { groupSize: 2 ** 31 }),
  },
  {
    name: 'advantages: groupSize NaN',
    want: ['RANGE', 'groupSize'],
    run: (c) => c.advantages(f32(6, 51), { groupSize: Number.NaN }),
  },
  {
    name: 'advantages: groupSize −3',
    want: ['RANGE', 'groupSize'],
    run: (c) => c.advantages(f32(6, 51), { groupSize: -3 }),
  },
  {
    name: "advantages: groupSize '3'",
    want: ['DTYPE', 'groupSize'],
    run: (c) => c.advantages(f32(6, 51), { groupSize: '3' as never }),
  },
  {
    name: 'advantages: groupSize 2^53 on no rewards',
    want: 'ok',
    run: (c) => c.advantages(f32(0, 51), { groupSize: 2 ** 53 }),
  },
  {
    name: 'advantages: both groupSize and groupOffsets',
    want: ['LAYOUT', 'groupOffsets'],
    run: (c) => c.advantages(f32(6, 51), { groupSize: 3, groupOffsets: i32([0, 6]) }),
  },
  {
    name: 'advantages: groupOffsets Uint32Array',
    want: ['DTYPE', 'groupOffsets'],
    run: (c) => c.advantages(f32(6, 51), { groupOffsets: new Uint32Array([0, 6]) as never }),
  },
  {
    name: 'advantages: groupOffsets a Tensor',
    want: ['DTYPE', 'groupOffsets'],
    run: (c) => c.advantages(f32(6, 51), { groupOffsets: c.tensor(i32([0, 6])) as never }),
  },
  {
    name: 'advantages: groupOffsets decreasing',
    want: ['LAYOUT', 'groupOffsets'],
    run: (c) => c.advantages(f32(6, 51), { groupOffsets: i32([0, 4, 3, 6]) }),
  },
  {
    name: 'advantages: groupOffsets ending past R',
    want: ['LAYOUT', 'groupOffsets'],
    run: (c) => c.advantages(f32(6, 51), { groupOffsets: i32([0, 3, 2 ** 31 - 1]) }),
  },
  {
    name: 'advantages: groupOffsets at a byte offset, shared memory',
    want: 'ok',
    run: (c) => c.advantages(f32(6, 51), { groupOffsets: shared(Int32Array, [0, 2, 2, 6], 4) }),
  },
  {
    name: 'advantages: empty groups',
    want: 'ok',
    run: (c) => c.advantages(f32(6, 51), { groupOffsets: i32([0, 0, 3, 3, 6, 6]) }),
  },
  {
    name: 'advantages: no rewards, two empty groups',
    want: 'ok',
    run: (c) => c.advantages(f32(0, 51), { groupOffsets: i32([0, 0, 0]) }),
  },
  {
    name: 'advantages: rewards f16',
    want: ['DTYPE', 'rewards'],
    run: (c) => c.advantages(c.tensor(new Uint16Array(6), [6], 'f16') as never, { groupSize: 3 }),
  },
  {
    name: 'advantages: rewards 2-D',
    want: ['SHAPE', 'rewards'],
    run: (c) => c.advantages(c.tensor(f32(6, 51), [2, 3]), { groupSize: 3 }),
  },
  {
    name: 'advantages: rewards Float64Array',
    want: ['DTYPE', 'rewards'],
    run: (c) => c.advantages(new Float64Array(6) as never, { groupSize: 3 }),
  },
  {
    name: 'advantages: NaN and +Inf rewards',
    want: 'ok',
    run: (c) =>
      c.advantages(Float32Array.from([Number.NaN, 1, 2, Number.POSITIVE_INFINITY, 0, 1]), { groupSize: 3 }),
  },
  {
    name: 'advantages: eps 1e-45 (an f32 denormal)',
    want: ['RANGE', 'eps'],
    run: (c) => c.advantages(f32(6, 51), { groupSize: 3, eps: 1e-45 }),
  },
  {
    name: "advantages: estimator 'ppo'",
    want: ['RANGE', 'estimator'],
    run: (c) => c.advantages(f32(6, 51), { groupSize: 3, estimator: 'ppo' as never }),
  },
  {
    name: 'advantages: opo without responseOffsets',
    want: ['LAYOUT', 'responseOffsets'],
    run: (c) => c.advantages(f32(6, 51), { groupSize: 3, estimator: 'opo' }),
  },
  {
    name: 'advantages: reinforce_pp_baseline per token',
    want: 'ok',
    run: (c) =>
      c.advantages(f32(6, 51), {
        groupSize: 3,
        estimator: 'reinforce_pp_baseline',
        responseOffsets: i32([0, 1, 3, 3, 7, 8, 12]),
      }),
  },
  {
    name: 'advantages: grpo_passk with a singleton group',
    want: ['LAYOUT', 'groupOffsets'],
    run: (c) => c.advantages(f32(6, 51), { groupOffsets: i32([0, 1, 6]), estimator: 'grpo_passk' }),
  },
  {
    name: 'advantages: preset trl with a NaN reward',
    want: 'ok',
    run: (c) =>
      c.advantages(Float32Array.from([1, Number.NaN, 0, 0.5, 0.5, 1]), { groupSize: 3, preset: 'trl' }),
  },
  { name: 'expandToTokens: ragged', want: 'ok', run: (c) => c.expandToTokens(f32(3, 52), i32([0, 2, 2, 5])) },
  {
    name: 'expandToTokens: responseOffsets in shared memory',
    want: 'ok',
    run: (c) => c.expandToTokens(f32(3, 52), shared(Int32Array, [0, 2, 2, 5], 4)),
  },
  {
    name: 'expandToTokens: responseOffsets a Tensor',
    want: ['DTYPE', 'responseOffsets'],
    run: (c) => c.expandToTokens(f32(3, 52), c.tensor(i32([0, 2, 2, 5])) as never),
  },
  {
    name: 'expandToTokens: responseOffsets of R',
    want: ['LAYOUT', 'responseOffsets'],
    run: (c) => c.expandToTokens(f32(3, 52), i32([0, 2, 5])),
  },
  {
    name: 'expandToTokens: values undefined',
    want: ['DTYPE', 'values'],
    run: (c) => c.expandToTokens(undefined as never, i32([0])),
  },
  { name: 'whiten: 3-D', want: 'ok', run: (c) => c.whiten(c.tensor(f32(24, 53), [2, 3, 4])) },
  { name: 'whiten: a 0-D tensor', want: 'ok', run: (c) => c.whiten(c.tensor(f32(1, 53), [])) },
  {
    name: 'whiten: a mask of 255s and 0s',
    want: 'ok',
    run: (c) => c.whiten(f32(4, 53), { mask: u8([255, 2, 1, 0]) }),
  },
  {
    name: 'whiten: mask of the wrong length',
    want: ['SHAPE', 'mask'],
    run: (c) => c.whiten(f32(4, 53), { mask: new Uint8Array(3) }),
  },
  {
    name: 'whiten: mask Int32Array',
    want: ['DTYPE', 'mask'],
    run: (c) => c.whiten(f32(4, 53), { mask: new Int32Array(4) as never }),
  },
  {
    name: 'whiten: mask null',
    want: ['DTYPE', 'mask'],
    run: (c) => c.whiten(f32(4, 53), { mask: null as never }),
  },
  {
    name: 'whiten: keepMean 1',
    want: ['DTYPE', 'keepMean'],
    run: (c) => c.whiten(f32(4, 53), { keepMean: 1 as never }),
  },

  // ------------------------------------------------ THR
  {
    name: 'restrictedVocab: host and device tokens agree',
    want: 'ok',
    run: async (c) => [
      await c.restrictedVocab(TOKENS, LAYOUT),
      await c.restrictedVocab(c.tensor(TOKENS), LAYOUT),
    ],
  },
  {
    name: 'restrictedVocab: a negative token',
    want: ['RANGE', 'tokens'],
    run: (c) => c.restrictedVocab(i32([3, 5, 3, -7, 1, 2, 4, 2, 6]), LAYOUT),
  },
  {
    name: 'restrictedVocab: tokens of T − 1',
    want: ['SHAPE', 'tokens'],
    run: (c) => c.restrictedVocab(TOKENS.subarray(1), LAYOUT),
  },
  {
    name: 'restrictedVocab: tokens a plain array',
    want: ['DTYPE', 'tokens'],
    run: (c) => c.restrictedVocab([...TOKENS] as never, LAYOUT),
  },
  {
    name: 'restrictedVocab: layout null',
    want: ['LAYOUT', 'layout'],
    run: (c) => c.restrictedVocab(TOKENS, null as never),
  },
  {
    name: 'restrictedVocab: layout without groupOffsets',
    want: ['DTYPE', 'layout.groupOffsets'],
    run: (c) => c.restrictedVocab(TOKENS, { responseOffsets: LAYOUT.responseOffsets } as never),
  },
  { name: 'tokenHiddenReward', want: 'ok', run: async (c) => c.tokenHiddenReward(await thrInputs(c)) },
  {
    name: 'tokenHiddenReward: layout, correct and tokens in shared memory',
    want: 'ok',
    run: async (c) => {
      const layout = {
        responseOffsets: shared(Int32Array, LAYOUT.responseOffsets, 4),
        groupOffsets: shared(Int32Array, LAYOUT.groupOffsets, 4),
      };
      const vocab = await c.restrictedVocab(shared(Int32Array, TOKENS, 4), layout);
      const lg = logits(c, 'f32', T, 8, 21);
      const { lse } = await c.logprobs(lg, shared(Int32Array, TOKENS, 4));
      const probs = await c.gatherProbs(lg, lse, { layout, vocab });
      const hidden = c.tensor(f32(T * D, 22), [T, D]);
      return c.tokenHiddenReward({ hidden, probs, vocab, layout, correct: shared(Uint8Array, CORRECT, 1) });
    },
  },
  {
    name: 'tokenHiddenReward: d = 0',
    want: 'ok',
    run: async (c) =>
      c.tokenHiddenReward({ ...(await thrInputs(c)), hidden: c.tensor(new Float32Array(0), [T, 0]) }),
  },
  {
    name: 'tokenHiddenReward: correct 2',
    want: ['RANGE', 'correct'],
    run: async (c) => c.tokenHiddenReward({ ...(await thrInputs(c)), correct: u8([2, 0, 1, 0]) }),
  },
  {
    name: 'tokenHiddenReward: correct a Tensor',
    want: ['DTYPE', 'correct'],
    run: async (c) => c.tokenHiddenReward({ ...(await thrInputs(c)), correct: c.tensor(CORRECT) as never }),
  },
  {
    name: 'tokenHiddenReward: correct Int8Array',
    want: ['DTYPE', 'correct'],
    run: async (c) => c.tokenHiddenReward({ ...(await thrInputs(c)), correct: new Int8Array(4) as never }),
  },
  {
    name: 'tokenHiddenReward: hidden a Float32Array',
    want: ['SHAPE', 'hidden'],
    run: async (c) => c.tokenHiddenReward({ ...(await thrInputs(c)), hidden: f32(T * D, 1) as never }),
  },
  {
    name: 'tokenHiddenReward: probs of 3',
    want: ['SHAPE', 'probs'],
    run: async (c) => c.tokenHiddenReward({ ...(await thrInputs(c)), probs: f32(3, 1) }),
  },
  {
    name: 'tokenHiddenReward: beta NaN',
    want: ['RANGE', 'beta'],
    run: async (c) => c.tokenHiddenReward({ ...(await thrInputs(c)), beta: Number.NaN }),
  },
  {
    name: 'tokenHiddenReward: beta 1e40',
    want: ['RANGE', 'beta'],
    run: async (c) => c.tokenHiddenReward({ ...(await thrInputs(c)), beta: 1e40 }),
  },
  {
    name: 'tokenHiddenReward: options undefined',
    want: ['DTYPE', 'options'],
    run: (c) => c.tokenHiddenReward(undefined as never),
  },
  {
    name: 'tokenHiddenReward: an unknown option',
    want: ['DTYPE', 'options.foo'],
    run: async (c) => c.tokenHiddenReward({ ...(await thrInputs(c)), foo: 1 } as never),
  },
  {
    name: 'thrAggregate then thrScore',
    want: 'ok',
    run: async (c) => {
      const a = await thrInputs(c);
      return c.thrScore({ ...a, aggregate: await c.thrAggregate(a) });
    },
  },
  {
    name: 'thrAggregate: degenerate 2',
    want: ['RANGE', 'degenerate'],
    run: async (c) => c.thrAggregate({ ...(await thrInputs(c)), degenerate: u8([2, 0]) }),
  },
  {
    name: 'thrScore: aggregate of the wrong shape',
    want: ['SHAPE', 'aggregate'],
    run: async (c) => c.thrScore({ ...(await thrInputs(c)), aggregate: c.tensor(f32(4, 1), [1, 4]) }),
  },
  {
    name: 'thrScore: aggregate a Float32Array',
    want: ['DTYPE', 'aggregate'],
    run: async (c) => c.thrScore({ ...(await thrInputs(c)), aggregate: f32(4, 1) as never }),
  },
  {
    name: 'thrReweight',
    want: 'ok',
    run: (c) =>
      c.thrReweight({
        tokenAdvantages: f32(T, 61),
        thr: f32(T, 62),
        tau: f32(2, 63, 0.1),
        layout: LAYOUT,
        correct: CORRECT,
        p: 0.3,
      }),
  },
  {
    name: 'thrReweight: p 2',
    want: ['RANGE', 'p'],
    run: (c) =>
      c.thrReweight({
        tokenAdvantages: f32(T, 61),
        thr: f32(T, 62),
        tau: f32(2, 63),
        layout: LAYOUT,
        correct: CORRECT,
        p: 2,
      }),
  },
  {
    name: 'thrReweight: eta null',
    want: ['DTYPE', 'eta'],
    run: (c) =>
      c.thrReweight({
        tokenAdvantages: f32(T, 61),
        thr: f32(T, 62),
        tau: f32(2, 63),
        layout: LAYOUT,
        correct: CORRECT,
        mode: 'nthr',
        eta: null as never,
      }),
  },
  {
    name: "thrReweight: mask false with 'nthr'",
    want: ['RANGE', 'mask'],
    run: (c) =>
      c.thrReweight({
        tokenAdvantages: f32(T, 61),
        thr: f32(T, 62),
        tau: f32(2, 63),
        layout: LAYOUT,
        correct: CORRECT,
        mode: 'nthr',
        mask: false,
      }),
  },
  {
    name: 'thrReweight: tokenAdvantages and thr the same tensor, nthr with an empty group',
    want: 'ok',
    run: (c) => {
      const x = c.tensor(f32(T, 61));
      return c.thrReweight({
        tokenAdvantages: x,
        thr: x,
        tau: f32(3, 63),
        layout: { responseOffsets: LAYOUT.responseOffsets, groupOffsets: i32([0, 2, 2, 4]) },
        correct: CORRECT,
        mode: 'nthr',
      });
    },
  },

  // ------------------------------------------------ policyLoss
  { name: 'policyLoss: ppo', want: 'ok', run: (c) => c.policyLoss(POLICY(), { tokenLoss: true }) },
  {
    name: 'policyLoss: layout and mask in shared memory',
    want: 'ok',
    run: (c) =>
      c.policyLoss(
        {
          ...POLICY(),
          layout: { responseOffsets: shared(Int32Array, [0, 3, 3, 7], 4) },
          mask: shared(Uint8Array, [1, 1, 0, 1, 1, 0, 1], 1),
        },
        { tokenLoss: true },
      ),
  },
  {
    name: 'policyLoss: inputs undefined',
    want: ['DTYPE', 'inputs'],
    run: (c) => c.policyLoss(undefined as never),
  },
  {
    name: 'policyLoss: an unknown input',
    want: ['DTYPE', 'inputs.foo'],
    run: (c) => c.policyLoss({ ...POLICY(), foo: 1 } as never),
  },
  {
    name: 'policyLoss: layout missing',
    want: ['LAYOUT', 'layout'],
    run: (c) => c.policyLoss({ ...POLICY(), layout: undefined as never }),
  },
  {
    name: 'policyLoss: responseOffsets a plain array',
    want: ['DTYPE', 'layout.responseOffsets'],
    run: (c) => c.policyLoss({ ...POLICY(), layout: { responseOffsets: [0, 7] as never } }),
  },
  {
    name: 'policyLoss: groupOffsets null',
    want: ['DTYPE', 'layout.groupOffsets'],
    run: (c) =>
      c.policyLoss({
        ...POLICY(),
        layout: { responseOffsets: i32([0, 3, 3, 7]), groupOffsets: null as never },
      }),
  },
  {
    name: 'policyLoss: mask Float32Array',
    want: ['DTYPE', 'mask'],
    run: (c) => c.policyLoss({ ...POLICY(), mask: new Float32Array(7) as never }),
  },
  {
    name: 'policyLoss: a host mask at an odd byte offset',
    want: 'ok',
    run: (c) => c.policyLoss({ ...POLICY(), mask: offsetView(Uint8Array, [1, 0, 1, 1, 0, 1, 1], 1) }),
  },
  {
    name: 'policyLoss: a device mask of 255s',
    want: 'ok',
    run: (c) => c.policyLoss({ ...POLICY(), mask: c.tensor(u8([255, 0, 2, 1, 0, 1, 1])) }),
  },
  {
    name: 'policyLoss: no tokens',
    want: 'ok',
    run: (c) =>
      c.policyLoss({
        logprobs: f32(0, 1),
        oldLogprobs: f32(0, 2),
        advantages: f32(0, 3),
        layout: { responseOffsets: i32([0, 0, 0]) },
      }),
  },
  {
    name: 'policyLoss: NaN, +Inf and −Inf log-probs',
    want: 'ok',
    run: (c) => {
      const x = POLICY();
      x.logprobs[1] = Number.NaN;
      x.logprobs[4] = Number.POSITIVE_INFINITY;
      x.oldLogprobs[5] = Number.NEGATIVE_INFINITY;
      return c.policyLoss(x);
    },
  },
  {
    name: 'policyLoss: kl without refLogprobs',
    want: ['DTYPE', 'refLogprobs'],
    run: (c) => c.policyLoss(POLICY(), { kl: { coef: 0.1 } }),
  },
  {
    name: 'policyLoss: kl.coef missing',
    want: ['DTYPE', 'kl.coef'],
    run: (c) => c.policyLoss({ ...POLICY(), refLogprobs: f32(7, 4) }, { kl: {} as never }),
  },
  {
    name: 'policyLoss: sapoTau null',
    want: ['DTYPE', 'sapoTau'],
    run: (c) => c.policyLoss(POLICY(), { loss: 'sapo', sapoTau: null as never }),
  },
  {
    name: 'policyLoss: globalTokens 1.5',
    want: ['RANGE', 'globalTokens'],
    run: (c) => c.policyLoss(POLICY(), { globalTokens: 1.5 }),
  },
  {
    name: 'policyLoss: globalTokens 2^53',
    want: 'ok',
    run: (c) => c.policyLoss(POLICY(), { globalTokens: 2 ** 53 }),
  },
  {
    name: "policyLoss: dualClip 'Off'",
    want: ['RANGE', 'dualClip'],
    run: (c) => c.policyLoss(POLICY(), { dualClip: 'Off' as never }),
  },
  {
    name: 'policyLoss: kl, entropy and rollout correction',
    want: 'ok',
    run: (c) =>
      c.policyLoss(
        {
          ...POLICY(),
          refLogprobs: f32(7, 34, 0.3),
          entropy: Float32Array.from(randomNormal(35, 7, 0.2, 1)),
          rolloutLogprobs: f32(7, 36, 0.3),
        },
        {
          kl: { coef: 0.1, estimator: 'k2' },
          entropyCoef: 0.01,
          rolloutCorrection: { level: 'sequence', mode: 'mask', normalize: true },
        },
      ),
  },
  {
    name: 'policyLoss: logprobs and oldLogprobs the same tensor',
    want: 'ok',
    run: (c) => {
      const x = c.tensor(POLICY().logprobs);
      return c.policyLoss({ ...POLICY(), logprobs: x, oldLogprobs: x });
    },
  },
  {
    name: 'readPolicyStats: a Float32Array',
    want: ['DTYPE', 'stats'],
    run: () => readPolicyStats(new Float32Array(13) as never),
  },

  // ------------------------------------------------ rolloutRejection
  { name: 'rolloutRejection: seq_mean_k3', want: 'ok', run: (c) => c.rolloutRejection(REJECT(), K3_RS) },
  {
    name: 'rolloutRejection: layout and mask in shared memory',
    want: 'ok',
    run: (c) =>
      c.rolloutRejection(
        {
          ...REJECT(),
          layout: { responseOffsets: shared(Int32Array, [0, 3, 3, 7], 4) },
          mask: shared(Uint8Array, [1, 1, 0, 1, 1, 0, 1], 1),
        },
        { criteria: 'token_k1,seq_max_k2', thresholds: '0.5_2,0.1' },
      ),
  },
  {
    name: 'rolloutRejection: a host mask at an odd byte offset, every criterion',
    want: 'ok',
    run: (c) =>
      c.rolloutRejection(
        { ...REJECT(), mask: offsetView(Uint8Array, [1, 0, 1, 1, 0, 1, 1], 1) },
        {
          criteria:
            'token_k1,token_k2,token_k3,seq_sum_k1,seq_sum_k2,seq_sum_k3,seq_mean_k1,seq_mean_k2,seq_mean_k3,seq_max_k2,seq_max_k3',
          thresholds: 2,
        },
      ),
  },
  {
    name: 'rolloutRejection: a device mask of 255s',
    want: 'ok',
    run: (c) => c.rolloutRejection({ ...REJECT(), mask: c.tensor(u8([255, 0, 2, 1, 0, 1, 1])) }, K3_RS),
  },
  {
    name: 'rolloutRejection: logprobs and rolloutLogprobs the same tensor',
    want: 'ok',
    run: (c) => {
      const x = c.tensor(f32(7, 34));
      return c.rolloutRejection({ ...REJECT(), logprobs: x, rolloutLogprobs: x }, K3_RS);
    },
  },
  {
    name: 'rolloutRejection: no tokens',
    want: 'ok',
    run: (c) =>
      c.rolloutRejection(
        { logprobs: f32(0, 1), rolloutLogprobs: f32(0, 2), layout: { responseOffsets: i32([0, 0, 0]) } },
        K3_RS,
      ),
  },
  {
    name: 'rolloutRejection: NaN, +Inf and −Inf log-probs',
    want: 'ok',
    run: (c) => {
      const x = REJECT();
      x.logprobs[1] = Number.NaN;
      x.logprobs[4] = Number.POSITIVE_INFINITY;
      x.rolloutLogprobs[5] = Number.NEGATIVE_INFINITY;
      return c.rolloutRejection(x, K3_RS);
    },
  },
  {
    name: 'rolloutRejection: a detached logprobs',
    want: ['DTYPE', 'logprobs'],
    run: (c) => c.rolloutRejection({ ...REJECT(), logprobs: detached(f32(7, 35)) }, K3_RS),
  },
  {
    name: 'rolloutRejection: options undefined',
    want: ['DTYPE', 'options'],
    run: (c) => c.rolloutRejection(REJECT(), undefined as never),
  },
  {
    name: 'rolloutRejection: criteria null',
    want: ['DTYPE', 'criteria'],
    run: (c) => c.rolloutRejection(REJECT(), { criteria: null as never }),
  },

  // ------------------------------------------------ ops in flight: order, disposal
  {
    name: 'an op called before an in-place backward reads the logits as they were',
    want: 'ok',
    found:
      'webgpu: a later op whose pipeline was cached submitted before an earlier one compiling its own, so the earlier op read the gradient',
    run: async (c) => {
      // A context of its own, so that the forward's pipeline is cold and the backward's warm.
      const own = await createContext({ backend: c.backend as BackendName });
      try {
        const warm = logits(own, 'f32', 2, V, 9);
        await (await own.logprobsBackward(warm, i32([0, 1]), f32(2, 1), f32(2, 2), { inPlace: true })).read();
        const x = logits(own, 'f32', 40, 300, 7);
        const t = randomInts(8, 40, 0, 300);
        const first = own.logprobs(x, t, { entropy: true, sumSquares: true });
        const probs = own.gatherProbs(x, f32(40, 3), {
          layout: { responseOffsets: i32([0, 40]), groupOffsets: i32([0, 1]) },
          vocab: { offsets: i32([0, 2]), columns: i32([5, 17]), tokenColumn: new Int32Array(40) },
        });
        const grad = own.logprobsBackward(x, t, f32(40, 4), f32(40, 5), { inPlace: true });
        return await host([await first, await probs, await grad]);
      } finally {
        own.dispose();
      }
    },
  },
  {
    name: 'a read called right after an in-place backward sees the gradient',
    want: 'ok',
    found: "webgpu: the read's copy was submitted before the backward, and returned the logits",
    run: async (c) => {
      const own = await createContext({ backend: c.backend as BackendName });
      try {
        const x = logits(own, 'f32', 8, 50, 7);
        const t = randomInts(9, 8, 0, 50);
        const grad = own.logprobsBackward(x, t, f32(8, 4), f32(8, 5), { inPlace: true });
        const read = x.read();
        expect(await grad).toBe(x);
        return await read;
      } finally {
        own.dispose();
      }
    },
  },
  {
    name: 'ops called without awaiting, their inputs disposed out of order before they settle',
    want: 'ok',
    run: async (c) => {
      const x = logits(c, 'f32', 6, 40, 11);
      const t = c.tensor(randomInts(12, 6, 0, 40));
      const r = c.tensor(f32(8, 13));
      const ps = [
        c.logprobs(x, t, { entropy: true }),
        c.advantages(r, { groupSize: 4 }),
        c.whiten(r),
        c.logprobStates(x, t),
        c.logprobsBackward(x, t, f32(6, 14), f32(6, 15)),
        c.logprobs(x, t, { temperature: 0.5 }),
      ];
      r.dispose();
      x.dispose();
      t.dispose();
      const out = [];
      for (const p of ps) out.push(await p);
      return out;
    },
  },
  {
    name: 'results disposed in another order than they were made',
    want: 'ok',
    run: async (c) => {
      const a = await c.whiten(f32(5, 16));
      const b = await c.expandToTokens(a, i32([0, 1, 1, 3, 4, 6]));
      const d = await c.whiten(b);
      a.dispose();
      d.dispose();
      return b;
    },
  },
  {
    name: 'a context disposed with ops in flight: typed errors, no hang',
    want: 'ok',
    run: async (c) => {
      const own = await createContext({ backend: c.backend as BackendName });
      const x = logits(own, 'f32', 64, 500, 17);
      const ps = [own.logprobs(x, randomInts(18, 64, 0, 500)), own.whiten(f32(100, 19)), own.synchronize()];
      own.dispose();
      for (const p of ps) {
        const settled = await p.then(
          (v) =>
            host(v).then(
              () => undefined,
              (e: unknown) => e,
            ),
          (e: unknown) => e,
        );
        // The op either settled (its results then unreadable) or was refused; either way a typed error.
        if (settled !== undefined) expect(settled).toBeInstanceOf(GrpoKernelsError);
        if (settled !== undefined)
          expect(['BACKEND_UNAVAILABLE', 'DEVICE_LOST']).toContain((settled as GrpoKernelsError).code);
      }
      return 'settled';
    },
  },
];

// ---------------------------------------------------------------- helpers
/** A caller's GPUBuffer (STORAGE | COPY_SRC | COPY_DST) on the device of a webgpu context under test. */
function gpuBuffer(ctx: Context, bytes: number): unknown {
  return gpuDevices.get(ctx)!.createBuffer({ size: bytes, usage: 0x80 | 0x4 | 0x8 });
}
/** The GPUDevice of each webgpu context under test (created on a device the test owns). */
const gpuDevices = new Map<Context, { createBuffer(d: { size: number; usage: number }): unknown }>();

/** Reads every tensor in a result (in order) and decodes float dtypes, for comparison. */
async function host(v: unknown): Promise<unknown> {
  if (v instanceof Tensor) {
    const data = await v.read();
    const values =
      v.dtype === 'f16' || v.dtype === 'bf16'
        ? decodeFloats(v.dtype, data as Uint16Array)
        : Array.from(data as ArrayLike<number>);
    return { dtype: v.dtype, shape: [...v.shape], values: Array.from(values) };
  }
  if (ArrayBuffer.isView(v)) return Array.from(v as unknown as ArrayLike<number>);
  if (Array.isArray(v)) {
    const out = [];
    for (const x of v) out.push(await host(x));
    return out;
  }
  if (typeof v === 'object' && v !== null) {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) out[k] = await host((v as Record<string, unknown>)[k]);
    return out;
  }
  return v;
}

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

/** Runs a case to the end: its call, then a read of everything it returned (device checks surface there). */
async function outcome(run: () => unknown): Promise<Outcome> {
  try {
    const v = await run();
    return { ok: true, value: await host(v) };
  } catch (error) {
    return { ok: false, error };
  }
}

async function expectTyped(run: () => unknown, code: ErrorCode, argument: string): Promise<void> {
  const o = await outcome(run);
  expect(o.ok, `expected ${code} naming ${argument}, got a result`).toBe(false);
  checkError((o as { error: unknown }).error, code, argument);
}

function checkError(e: unknown, code: ErrorCode, argument: string): void {
  if (!(e instanceof GrpoKernelsError)) {
    throw new Error(
      `expected a GrpoKernelsError ${code} naming ${argument}, got ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`,
    );
  }
  expect(e.code, e.message).toBe(code);
  expect(
    e.argument === argument || e.message.startsWith(argument),
    `the message names ${argument}: ${e.message}`,
  ).toBe(true);
}

/** Same structure; numbers equal within 2e-4 (absolute + relative), NaN/±Inf class for class. */
function expectSame(got: unknown, want: unknown, path: string): void {
  if (typeof want === 'number') {
    expect(typeof got, path).toBe('number');
    const a = got as number;
    if (!Number.isFinite(want) || !Number.isFinite(a)) {
      expect(
        Object.is(a, want) || (Number.isNaN(a) && Number.isNaN(want)),
        `${path}: got ${a}, js ${want}`,
      ).toBe(true);
      return;
    }
    expect(Math.abs(a - want) <= 2e-4 + 2e-4 * Math.abs(want), `${path}: got ${a}, js ${want}`).toBe(true);
    return;
  }
  if (Array.isArray(want)) {
    expect(Array.isArray(got), path).toBe(true);
    expect((got as unknown[]).length, `${path}.length`).toBe(want.length);
    for (let i = 0; i < want.length; i++) expectSame((got as unknown[])[i], want[i], `${path}[${i}]`);
    return;
  }
  if (typeof want === 'object' && want !== null) {
    expect(Object.keys(got as object).sort(), path).toEqual(Object.keys(want).sort());
    for (const k of Object.keys(want))
      expectSame((got as Record<string, unknown>)[k], (want as Record<string, unknown>)[k], `${path}.${k}`);
    return;
  }
  expect(got, path).toEqual(want);
}

// ---------------------------------------------------------------- running the table
async function open(backend: BackendName): Promise<Context | string> {
  try {
    if (backend === 'webgpu') {
      const { createWebGpuBackend } = await import('../../src/backends/webgpu/index.js');
      const { Context: Ctx } = await import('../../src/context.js');
      const b = await createWebGpuBackend();
      const ctx = new Ctx(b);
      gpuDevices.set(ctx, b.runtime.device as never);
      return ctx;
    }
    const ctx = await createContext({ backend });
    if (ctx.backend === backend) return ctx;
    ctx.dispose(); // 'cpu' fell back to 'js' (no native addon): say why instead of testing js twice
    return ctx.skipped.map((s) => s.reason).join('; ');
  } catch (e) {
    return (e as Error).message;
  }
}

/**
 * Runs the table on `backends`, with js opened beside them as the reference every other backend's
 * results must match: test/api-fuzz.test.ts on js, cpu and webgpu, test/cuda/ops-api-fuzz.test.ts on
 * cuda (a GPU, or the emulator in the cuda-emu project).
 */
export async function apiFuzz(backends: readonly BackendName[]): Promise<void> {
  const contexts = new Map<BackendName, Context | string>();
  for (const b of new Set<BackendName>(['js', ...backends])) contexts.set(b, await open(b));
  afterAll(() => {
    for (const c of contexts.values()) if (typeof c !== 'string') c.dispose();
  });

  /** js's outcome of each case, computed once: what every other backend must match. */
  const reference = new Map<string, Promise<Outcome>>();
  function referenceOf(c: Case): Promise<Outcome> {
    let r = reference.get(c.name);
    if (r === undefined) {
      const js = contexts.get('js') as Context;
      r = outcome(() => c.run(js));
      reference.set(c.name, r);
    }
    return r;
  }

  it('case names are unique', () => {
    expect(new Set(CASES.map((c) => c.name)).size).toBe(CASES.length);
  });

  for (const backend of backends) {
    const made = contexts.get(backend)!;
    const reason = typeof made === 'string' ? made : undefined;
    if (reason !== undefined) console.warn(`api-fuzz: ${backend} skipped: ${reason}`);
    describe.skipIf(reason !== undefined)(
      `api fuzz on ${backend}${reason ? ` (skipped: ${reason})` : ''}`,
      () => {
        // A case for other backends only is not registered here (not skipped: the GPU run's gate
        // counts every skipped test as one that should have run).
        for (const c of CASES.filter((k) => k.only === undefined || k.only.includes(backend))) {
          it(c.name, { timeout: 20_000 }, async () => {
            const ctx = made as Context;
            const got = await outcome(() => c.run(ctx));
            if (c.want === 'ok') {
              if (!got.ok) {
                const e = got.error as Error;
                throw new Error(`expected a result, got ${e?.constructor?.name}: ${e?.message}`);
              }
              if (backend !== 'js' && (c.only === undefined || c.only.includes('js'))) {
                const ref = await referenceOf(c);
                expect(ref.ok, 'js gives a result').toBe(true);
                expectSame(got.value, (ref as { value: unknown }).value, 'result');
              }
            } else {
              expect(got.ok, `expected ${c.want[0]} naming ${c.want[1]}, got a result`).toBe(false);
              checkError((got as { error: unknown }).error, c.want[0], c.want[1]);
            }
            // Whatever the case did, the context still works and still gives js's numbers.
            const after = await host(await ctx.logprobs(logits(ctx, 'f32', 2, 5, 99), i32([4, 0])));
            expectSame(after, await sanity, 'the next op');
          });
        }
      },
    );
  }
}

const sanity = (async () => {
  const js = await createContext({ backend: 'js' });
  const v = await host(await js.logprobs(logits(js, 'f32', 2, 5, 99), i32([4, 0])));
  js.dispose();
  return v;
})();
