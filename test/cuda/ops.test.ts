/**
 * The cuda backend beyond the case tables: the numerical cases of every op (shapes, dtypes, ragged and
 * singleton groups, special values, poisoned outputs) run on every backend from test/cases/*.ts
 * (test/cuda/ops-cases.test.ts here). What stays: the tuning knobs (forced vocabulary splits, one group
 * per M batch), the device error paths, asynchronous jobs, 64-bit offsets, the in-place backward on
 * misaligned rows, raw-device flags, and determinism. Needs a GPU or the emulator: elsewhere every test
 * skips with the reason printed.
 *
 * Every numerical check here uses the tables' float64 references and tolerances
 * (test/cases/tolerances.ts) through expectOutputsWithin / expectThrWithin: one bound per op and dtype.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { logprobsTuning } from '../../src/backends/cuda/logprobs.js';
import { loadNativeAddon } from '../../src/backends/cuda/native.js';
import type { CudaStorage } from '../../src/backends/cuda/storage.js';
import { thrTuning } from '../../src/backends/cuda/thr.js';
import {
  type Context,
  encodeFloats,
  type FloatDType,
  GrpoKernelsError,
  setOutputPoison,
  type Tensor,
} from '../../src/index.js';
import { bruteBackward, bruteForward, expectOutputsWithin, forwardWants } from '../cases/logprobs.js';
import { expectThrWithin } from '../cases/thr.js';
import { decodeLogits } from '../fixtures/logprobs.js';
import { makeThrCase, randomGroups, runThr } from '../fixtures/thr.js';
import { POISON_F32 } from '../util/compare.js';
import { randomInts, randomNormal } from '../util/rng.js';
import { EMULATED, probeGpu, SANITIZER } from './helpers.js';

const gpu = await probeGpu();
const noGpu = gpu.ctx === undefined;
const cuda = gpu.ctx as Context;

afterEach(() => {
  setOutputPoison(undefined);
  logprobsTuning.splits = 0;
  thrTuning.mBudgetBytes = 0;
});

async function read(t: Tensor | undefined): Promise<Float64Array> {
  if (t === undefined) throw new Error('missing output');
  const a = await t.read();
  return Float64Array.from(a as ArrayLike<number>);
}

function logitsData(seed: number, n: number, v: number, dtype: FloatDType) {
  return encodeFloats(dtype, randomNormal(seed, n * v, 3));
}

/** Targets in [0, V) with every 7th row ignored. */
function targetsFor(seed: number, n: number, v: number, ignore = -100): Int32Array {
  const t = randomInts(seed, n, 0, v);
  for (let i = 3; i < n; i += 7) t[i] = ignore;
  return t;
}

describe.skipIf(noGpu)('cuda logprobs: forced splits, errors', () => {
  it('[8, 151936] bf16 with a forced split count (7) is within the tolerance; unsplit too; the same bits twice', async () => {
    const n = 8;
    const v = 151936;
    const data = logitsData(n * 31 + v, n, v, 'bf16');
    const x = cuda.tensor(data as Uint16Array, [n, v], 'bf16');
    const targets = targetsFor(n + 5, n, v);
    const want = forwardWants(bruteForward(decodeLogits('bf16', data), n, v, targets, 1, -100));
    const opts = { entropy: true, sumSquares: true };
    const runs: Record<string, Float64Array>[] = [];
    for (const splits of [7, 1, 0, 0]) {
      logprobsTuning.splits = splits;
      const r = await cuda.logprobs(x, targets, opts);
      const got = {
        logprobs: await read(r.logprobs),
        lse: await read(r.lse),
        entropy: await read(r.entropy),
        sumSquares: await read(r.sumSquares),
      };
      expectOutputsWithin('logprobs', 'bf16', got, want, `splits=${splits}`);
      for (let i = 3; i < n; i += 7) expect(got.logprobs[i], `ignored row ${i}`).toBe(0);
      runs.push(got);
    }
    expect(Array.from(runs[3].logprobs), 'the same inputs give the same bits').toEqual(
      Array.from(runs[2].logprobs),
    );
  });

  for (const dtype of ['f32', 'f16', 'bf16'] as const) {
    for (const splits of [0, 3]) {
      it(`an all −Inf row is a RANGE error naming the row (${dtype}, ${splits ? 'split' : 'one block per row'})`, async () => {
        logprobsTuning.splits = splits;
        const v = 1000;
        const data = new Float32Array(3 * v).fill(0.5);
        data.fill(Number.NEGATIVE_INFINITY, v, 2 * v);
        const x = cuda.tensor(encodeFloats(dtype, data) as never, [3, v], dtype);
        // The op returns without waiting; the next wait reports the kernel's flag.
        const r = await cuda.logprobs(x, new Int32Array([1, 2, 3]));
        await expect(r.lse.read()).rejects.toMatchObject({
          code: 'RANGE',
          argument: 'logits',
          message: expect.stringMatching(/row 1 /),
        });
      });
    }
  }
});

// ---------------------------------------------------------------------------- advantages
describe.skipIf(noGpu)('cuda advantages: determinism', () => {
  it('1M responses in 64k groups: deterministic', async () => {
    const G = 65536;
    const go2 = new Int32Array(G + 1);
    for (let g = 0; g < G; g++) go2[g + 1] = go2[g] + 16;
    const r2 = Float32Array.from(randomNormal(8, G * 16));
    const a = await read((await cuda.advantages(r2, { groupOffsets: go2 })).advantages);
    const b = await read((await cuda.advantages(r2, { groupOffsets: go2 })).advantages);
    expect(a.every((v, i) => Object.is(v, b[i]))).toBe(true);
  });
});

// ------------------------------------------------------------------------------- device errors
describe.skipIf(noGpu)('cuda jobs are asynchronous', () => {
  it('the event loop keeps turning while jobs run, and their promises settle in submission order', async () => {
    // Enough work to outlast many loop turns: one [16, V] job on the emulator (about half a second),
    // twenty [4096, V] bf16 jobs on a GPU (milliseconds).
    const jobs = EMULATED ? 1 : 20;
    const n = EMULATED ? 16 : 4096;
    const v = 151936;
    // 16 random rows repeated: drawing 622M normals on the host took 45 s of the H200's test run.
    const block = encodeFloats('bf16', randomNormal(31, 16 * v, 3)) as Uint16Array;
    const data = new Uint16Array(n * v);
    for (let r = 0; r < n; r += 16) data.set(block.subarray(0, Math.min(16, n - r) * v), r * v);
    const x = cuda.tensor(data, [n, v], 'bf16');
    const t = randomInts(32, n, 0, v);
    let ticks = 0;
    let running = true;
    const spin = () => {
      if (!running) return;
      ticks++;
      setImmediate(spin);
    };
    const settled: number[] = [];
    const pending = Array.from({ length: jobs }, (_, i) =>
      cuda.logprobs(x, t).then((r) => {
        settled.push(i);
        return r;
      }),
    );
    setImmediate(spin);
    const results = await Promise.all(pending);
    running = false;
    expect(ticks, 'setImmediate turns while the jobs ran').toBeGreaterThan(0);
    expect(settled).toEqual([...Array(jobs).keys()]);
    const first = await read(results[0].logprobs);
    for (const r of results.slice(1)) expect(sameBits(await read(r.logprobs), first)).toBe(true);
  });
});

describe.skipIf(noGpu)('cuda device errors', () => {
  if (SANITIZER) console.warn('test/cuda: the deliberate OUT_OF_MEMORY case skipped under compute-sanitizer');
  it.skipIf(SANITIZER)(
    'an allocation larger than the device is OUT_OF_MEMORY, and the context keeps working',
    async () => {
      const addon = loadNativeAddon();
      const dev = new addon.CudaDevice!(0);
      try {
        expect(() => dev.alloc(1n << 50n)).toThrow(expect.objectContaining({ code: 'OUT_OF_MEMORY' }));
        const p = dev.alloc(1024n);
        await dev.synchronize();
        dev.free(p);
      } finally {
        dev.close();
      }
      const x = await cuda.logprobs(cuda.tensor(new Float32Array(8), [2, 4], 'f32'), new Int32Array([0, 1]));
      expect(Array.from(await x.logprobs.read())).toEqual([
        Math.fround(-Math.log(4)),
        Math.fround(-Math.log(4)),
      ]);
    },
  );

  it('fromDevicePointer wraps without taking ownership', async () => {
    const src = cuda.tensor(Float32Array.from([1, 2, 3, 4]), [4], 'f32');
    const ptr = (src.storage as unknown as { ptr: bigint }).ptr;
    const view = cuda.fromDevicePointer(ptr, [2, 2], 'f32');
    expect(Array.from(await view.read())).toEqual([1, 2, 3, 4]);
    view.dispose(); // must not free src
    expect(Array.from(await src.read())).toEqual([1, 2, 3, 4]);
    expect(() => cuda.fromDevicePointer(ptr + 1n, [1], 'f32')).toThrow(GrpoKernelsError);
  });
});

// ------------------------------------------------------------------ review: desk-check suspicions
// Cases added by the desk check of the CUDA backend (no GPU was available to run them). Each names
// the hazard it targets; see docs/cuda.md "Not yet verified on a GPU".

/** The NativeDevice behind the shared cuda context (for raw allocations and internal wrappers). */
function deviceOf(ctx: Context) {
  const probe = ctx.tensor(new Float32Array(1), [1], 'f32');
  const dev = (probe.storage as unknown as CudaStorage<'f32'>).device;
  probe.dispose();
  return dev;
}

function ptrOfTensor(t: Tensor): bigint {
  return (t.storage as unknown as CudaStorage<'f32'>).ptr;
}

function sameBits(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++)
    if (!Object.is(a[i], b[i]) && !(Number.isNaN(a[i]) && Number.isNaN(b[i]))) return false;
  return true;
}

describe.skipIf(noGpu)('cuda review: 64-bit offsets, in-place backward, error flags', () => {
  // N·V > 2^31: rows past 2^31 / V (= 14134.2 for V = 151936) index the logits beyond int32. 4.3 GB of
  // bf16 logits plus 4.3 GB of gradient; the rows repeat 8 random patterns so the float64 reference runs
  // on the last rows alone.
  // On the emulator this one case takes about a minute and 9 GB of host memory: opt in with GK_EMU_FULL=1.
  // Under compute-sanitizer (GRPO_KERNELS_SANITIZER=1) it skips too: 8.6 GB through instrumented kernels.
  const bigSkip = (EMULATED && process.env.GK_EMU_FULL !== '1') || SANITIZER;
  if (EMULATED && bigSkip)
    console.warn('test/cuda: [14200, 151936] skipped on the emulator (~60 s, 9 GB; GK_EMU_FULL=1 runs it)');
  else if (bigSkip) console.warn('test/cuda: [14200, 151936] (8.6 GB) skipped under compute-sanitizer');
  it.skipIf(bigSkip)(
    '[14200, 151936] bf16: forward and backward rows past 2^31 elements are within the tolerance',
    async () => {
      const N = 14200;
      const V = 151936;
      expect(N * V).toBeGreaterThan(2 ** 31);
      const P = 8;
      const pattern = logitsData(77, P, V, 'bf16') as Uint16Array;
      const block = new Uint16Array(256 * V);
      for (let i = 0; i < 256; i++) block.set(pattern.subarray((i % P) * V, ((i % P) + 1) * V), i * V);
      const dev = deviceOf(cuda);
      const ptr = dev.alloc(BigInt(N) * BigInt(V) * 2n);
      try {
        for (let r0 = 0; r0 < N; r0 += 256) {
          const rows = Math.min(256, N - r0);
          dev.upload(ptr + BigInt(r0) * BigInt(V) * 2n, block.subarray(0, rows * V));
        }
        const logits = cuda.fromDevicePointer(ptr, [N, V], 'bf16');
        const targets = randomInts(78, N, 0, V);
        targets[N - 3] = -100;
        const k = 70; // the last k rows: all past 2^31 elements
        const small = new Uint16Array(k * V);
        for (let j = 0; j < k; j++) {
          const q = (N - k + j) % P;
          small.set(pattern.subarray(q * V, (q + 1) * V), j * V);
        }
        const tSmall = targets.slice(N - k);
        const x64 = decodeLogits('bf16', small);
        const opts = { entropy: true, sumSquares: true };
        const g = await cuda.logprobs(logits, targets, opts);
        const tail = async (t: Tensor | undefined) => (await read(t)).slice(N - k);
        const want = forwardWants(bruteForward(x64, k, V, tSmall, 1, -100));
        const got = {
          logprobs: await tail(g.logprobs),
          lse: await tail(g.lse),
          entropy: await tail(g.entropy),
          sumSquares: await tail(g.sumSquares),
        };
        expectOutputsWithin('logprobs', 'bf16', got, want, 'the rows past 2^31 elements');

        const glp = Float32Array.from(randomNormal(79, N));
        const gent = Float32Array.from(randomNormal(80, N));
        const gg = await cuda.logprobsBackward(logits, targets, g.lse, glp, {
          gradEntropy: gent,
          entropy: g.entropy,
        });
        // The reference from the lse and entropy the kernel was given.
        const gradWant = bruteBackward(
          x64,
          k,
          V,
          tSmall,
          -100,
          1,
          Float32Array.from(got.lse),
          Float32Array.from(got.entropy),
          glp.slice(N - k),
          gent.slice(N - k),
        );
        const view = cuda.fromDevicePointer(ptrOfTensor(gg) + BigInt(N - k) * BigInt(V) * 2n, [k, V], 'bf16');
        expectOutputsWithin(
          'logprobsBackward',
          'bf16',
          { gradLogits: decodeLogits('bf16', await view.read()) },
          { gradLogits: gradWant },
          'gradLogits of the rows past 2^31 elements',
        );
        gg.dispose();
      } finally {
        dev.free(ptr);
      }
    },
  );

  // In place: the gradient overwrites the logits; each element must be read before any thread writes
  // it. Odd V makes rows misaligned (scalar heads and tails next to the 16-byte vectors).
  for (const [n, v, dtype] of [
    [9, 32003, 'f16'],
    [5, 4099, 'f32'],
    [3, 151936, 'bf16'],
  ] as const) {
    it(`in-place backward [${n}, ${v}] ${dtype} equals the out-of-place one bit for bit`, async () => {
      const data = logitsData(n * 13 + v, n, v, dtype);
      const x = cuda.tensor(data as never, [n, v], dtype) as Tensor<FloatDType>;
      const y = cuda.tensor(data as never, [n, v], dtype) as Tensor<FloatDType>;
      const t = targetsFor(n + 1, n, v);
      const fwd = await cuda.logprobs(x, t, { entropy: true });
      const glp = Float32Array.from(randomNormal(11, n));
      const gent = Float32Array.from(randomNormal(12, n));
      const ref = await cuda.logprobsBackward(x, t, fwd.lse, glp, {
        gradEntropy: gent,
        entropy: fwd.entropy,
      });
      const out = await cuda.logprobsBackward(y, t, fwd.lse, glp, {
        gradEntropy: gent,
        entropy: fwd.entropy,
        inPlace: true,
      });
      expect(out).toBe(y);
      expect(sameBits(Array.from(await y.read()), Array.from(await ref.read()))).toBe(true);
    });
  }

  // The flags name the smallest bad row with that row's own target (packed 64-bit atomicMin), on both
  // the unsplit forward, the split forward's merge kernel, and the backward.
  it('bad targets through the raw device: ops do not wait; the next wait names the first bad row and its value, every time', async () => {
    const addon = loadNativeAddon();
    const dev = new addon.CudaDevice!(0);
    try {
      const n = 64;
      const v = 100;
      const lg = dev.alloc(n * v * 4);
      dev.upload(lg, Float32Array.from(randomNormal(13, n * v)));
      const tg = new Int32Array(n);
      tg[40] = -7;
      tg[5] = 1000;
      tg[50] = 100;
      const tp = dev.alloc(n * 4);
      dev.upload(tp, tg);
      const o1 = dev.alloc(n * 4);
      const o2 = dev.alloc(n * 4);
      const grad = dev.alloc(n * v * 4);
      dev.upload(o2, new Float32Array(n));
      for (const splits of [1, 3]) {
        for (let rep = 0; rep < 5; rep++) {
          await dev.logprobs({
            logits: lg,
            dtype: 'f32',
            targets: tp,
            rows: n,
            vocab: v,
            temperature: 1,
            ignoreIndex: -100,
            outLogprobs: o1,
            outLse: o2,
            splits,
          });
          await expect(dev.synchronize()).rejects.toMatchObject({
            code: 'RANGE',
            message: expect.stringMatching(/^targets: .* got targets\[5\] = 1000$/),
          });
          await dev.synchronize(); // reported once
        }
      }
      await dev.logprobsBackward({
        logits: lg,
        dtype: 'f32',
        targets: tp,
        lse: o2,
        gradLogprobs: o2,
        rows: n,
        vocab: v,
        temperature: 1,
        ignoreIndex: -100,
        outGradLogits: grad,
      });
      const host = new Float32Array(1);
      await expect(dev.read(o1, host)).rejects.toMatchObject({
        code: 'RANGE',
        message: expect.stringMatching(/got targets\[5\] = 1000$/),
      });
    } finally {
      dev.close();
    }
  });
});

describe.skipIf(noGpu)('cuda review: logprobs edges', () => {
  it('every row ignored (split forward); +Inf and NaN-among-−Inf rows, at each split count', async () => {
    setOutputPoison(POISON_F32);
    logprobsTuning.splits = 4;
    const n = 6;
    const v = 5000;
    const allIgnored = await cuda.logprobs(
      cuda.tensor(Float32Array.from(randomNormal(14, n * v)), [n, v], 'f32'),
      new Int32Array(n).fill(-100),
      { entropy: true, sumSquares: true },
    );
    for (const [k, t] of Object.entries(allIgnored))
      expect(Array.from(await read(t as Tensor)), k).toEqual(new Array(n).fill(0));
    setOutputPoison(undefined);

    const data = Float32Array.from(randomNormal(15, 3 * v));
    data[17] = Number.POSITIVE_INFINITY; // row 0: +Inf → NaN everywhere
    data.fill(Number.NEGATIVE_INFINITY, v, 2 * v); // row 1: −Inf except one NaN → NaN, not RANGE
    data[v + 4000] = Number.NaN;
    const t = new Int32Array([3, 3, 3]);
    const want = forwardWants(bruteForward(Float64Array.from(data), 3, v, t, 1, -100));
    for (const splits of [1, 0, 3]) {
      logprobsTuning.splits = splits;
      const g = await cuda.logprobs(cuda.tensor(data, [3, v], 'f32'), t, { entropy: true, sumSquares: true });
      const got = {
        logprobs: await read(g.logprobs),
        lse: await read(g.lse),
        entropy: await read(g.entropy),
        sumSquares: await read(g.sumSquares),
      };
      expectOutputsWithin('logprobs', 'f32', got, want, `splits=${splits}`);
    }
  });
});

describe.skipIf(noGpu)('cuda THR: one group per M batch', () => {
  // |V*| beyond 64 columns (several v-tiles, K not a multiple of 16), T_g of hundreds (several 64-token
  // tiles), d = 13 and 200 (not a multiple of the 8-deep k-step or of the 32-deep stage): the same bits
  // whether the groups share M batches or each has its own.
  for (const [dim, dtype] of [
    [13, 'f32'],
    [200, 'bf16'],
  ] as const) {
    it(`wide V* (> 64 columns), long groups, d=${dim} ${dtype}: within the tolerance, and the same bits one group per M batch`, async () => {
      const c = makeThrCase({
        seed: dim + 3,
        groups: randomGroups(dim + 3, 3, 9, 80),
        dim,
        vocabSize: 400,
        dtype,
      });
      expect(
        Math.max(...Array.from(c.vocabOffsets.subarray(1), (x, g) => x - c.vocabOffsets[g])),
      ).toBeGreaterThan(64);
      const a = await runThr(cuda, c);
      expectThrWithin(a, c, {}, 'shared M batches');
      thrTuning.mBudgetBytes = 4; // every group alone in its batch
      const b = await runThr(cuda, c);
      expect(sameBits(Array.from(b.thr), Array.from(a.thr)), 'thr bits').toBe(true);
      expect(sameBits(Array.from(b.tau), Array.from(a.tau)), 'tau bits').toBe(true);
    });
  }
});
