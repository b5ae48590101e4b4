/**
 * CUDA failures, injected: on the CUDA emulator (vitest project "cuda-emu"), GK_EMU_FAULT makes one
 * chosen runtime call or kernel launch fail (tools/cuda-emu/emu_runtime.cc, "fault injection"), so the
 * addon's handling of what a GPU does only when something breaks is tested on every CI run: each
 * failure becomes a GrpoKernelsError with its code and the failing call, the process lives, and the
 * context keeps working where CUDA allows it. Its own file: an illegal address poisons the emulated
 * context (as it does a real one) until the test resets it.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { NativeDevice } from '../../src/backends/cuda/native.js';
import { thrTuning } from '../../src/backends/cuda/thr.js';
import { type Context, createContext } from '../../src/index.js';
import { f32Bits, makeThrCase, randomGroups, runThr } from '../fixtures/thr.js';
import { randomInts, randomNormal } from '../util/rng.js';
import { EMULATED, probeGpu, rejection } from './helpers.js';

const gpu = EMULATED ? await probeGpu() : { reason: 'fault injection needs the CUDA emulator' };
if (!EMULATED) console.warn('test/cuda/faults: skipped: fault injection runs only on the CUDA emulator');
const cuda = gpu.ctx as Context;

afterEach(() => {
  delete process.env.GK_EMU_FAULT;
});

function inject(spec: string): void {
  process.env.GK_EMU_FAULT = spec;
}

const V = 3001;
const N = 6;
const logitsHost = Float32Array.from(randomNormal(41, N * V, 2));
const targets = randomInts(42, N, 0, V);

async function logprobsOk(ctx: Context): Promise<void> {
  const r = await ctx.logprobs(ctx.tensor(logitsHost, [N, V], 'f32'), targets);
  const lp = await r.logprobs.read();
  expect(lp.length).toBe(N);
  for (const v of lp) expect(Number.isFinite(v) && v <= 0).toBe(true);
}

describe.skipIf(gpu.ctx === undefined)('cuda: injected CUDA failures (emulator)', () => {
  it('a failed cudaMallocAsync is OUT_OF_MEMORY naming the call; the next op works', async () => {
    const x = cuda.tensor(logitsHost, [N, V], 'f32');
    inject('cudaMallocAsync:cudaErrorMemoryAllocation');
    const e = await rejection(cuda.logprobs(x, targets));
    expect(e.code).toBe('OUT_OF_MEMORY');
    expect(e.message).toMatch(/cudaMallocAsync/);
    await logprobsOk(cuda);
  });

  it("an op whose kernel launch fails leaves no device check behind: the flags an earlier op raised in its slot are not reported again at a later op's read", async () => {
    const x = cuda.tensor(logitsHost, [N, V], 'f32');
    const bad = Int32Array.from(targets);
    bad[3] = V + 7;
    const badOnDevice = cuda.tensor(bad, [N], 'i32'); // checked by the kernel, not the host
    // 1. A target only the device sees is out of range: the first check slot raised, reported at the read.
    const first = await cuda.logprobs(x, badOnDevice);
    const e1 = await rejection(first.logprobs.read());
    expect(e1.code).toBe('RANGE');
    expect(e1.message).toMatch(/targets/);
    // 2. The next op takes that slot again; its kernel fails to launch, so its flags are never copied back.
    inject('launch@logprobs_fwd:cudaErrorInvalidValue');
    const e2 = await rejection(cuda.logprobs(x, targets));
    expect(e2.message).toMatch(/logprobs_fwd/);
    delete process.env.GK_EMU_FAULT;
    // 3. A good op's read is not failed by the slot's old flags.
    const good = await cuda.logprobs(x, targets);
    const lp = await good.logprobs.read();
    for (const v of lp) expect(Number.isFinite(v) && v <= 0).toBe(true);
    for (const t of [x, badOnDevice, first.logprobs, first.lse, good.logprobs, good.lse]) t.dispose();
  });

  it('a failed upload (fire-and-forget) is reported by the next awaited call, naming cudaMemcpyAsync', async () => {
    await cuda.synchronize();
    inject('cudaMemcpyAsync:cudaErrorLaunchTimeout');
    const t = cuda.tensor(logitsHost, [N, V], 'f32'); // queued: returns at once
    const e = await rejection(t.read());
    expect(e.code).toBe('DEVICE_LOST');
    expect(e.message).toMatch(/cudaMemcpyAsync/);
    expect(e.message).toMatch(/cudaErrorLaunchTimeout/);
    t.dispose();
    await logprobsOk(cuda);
  });

  it('a failed cudaMemcpyAsync while reading a tensor rejects read() with DEVICE_LOST naming it', async () => {
    const t = cuda.tensor(logitsHost, [N, V], 'f32');
    await cuda.synchronize();
    inject('cudaMemcpyAsync:cudaErrorLaunchTimeout#read');
    const e = await rejection(t.read());
    expect(e.code).toBe('DEVICE_LOST');
    expect(e.message).toMatch(/cudaMemcpyAsync/);
    expect(e.message).toMatch(/cudaErrorLaunchTimeout/);
    expect(Array.from(await t.read())).toEqual(Array.from(logitsHost));
  });

  it('no device: cuda is BACKEND_UNAVAILABLE naming cudaGetDeviceCount, and auto moves on with the reason', async () => {
    inject('cudaGetDeviceCount:cudaErrorNoDevice');
    const e = await rejection(createContext({ backend: 'cuda' }));
    expect(e.code).toBe('BACKEND_UNAVAILABLE');
    expect(e.message).toMatch(/cudaGetDeviceCount/);
    inject('cudaGetDeviceCount:cudaErrorNoDevice#auto');
    const ctx = await createContext({ backend: 'auto' });
    try {
      expect(ctx.backend).not.toBe('cuda');
      const skip = ctx.skipped.find((s) => s.backend === 'cuda');
      expect(skip?.reason).toMatch(/cudaGetDeviceCount/);
    } finally {
      ctx.dispose();
    }
  });

  // GK_EMU_SMEM_OPTIN: the shared memory per block the emulated device reports (an H100's 227 KiB unless
  // set). thr.cu picks its tile configuration from it (header, "Configurations"); the emulator refuses
  // a cudaFuncSetAttribute above it, so a configuration that did not fit would fail these calls.
  async function thrAt(optin: number | undefined, dtype: 'f32' | 'bf16') {
    const c = makeThrCase({ seed: 9, groups: randomGroups(9, 3, 5, 40), dim: 40, vocabSize: 200, dtype });
    if (optin === undefined) delete process.env.GK_EMU_SMEM_OPTIN;
    else process.env.GK_EMU_SMEM_OPTIN = String(optin);
    try {
      return await runThr(cuda, c);
    } finally {
      delete process.env.GK_EMU_SMEM_OPTIN;
    }
  }

  it('THR runs where sm_80 and newer GPUs do: 99 KiB per block (sm_86, sm_89: the small scores configuration with f32 hidden states), 163 KiB (A100), 227 KiB; the same bits in each on mma.sync', async () => {
    thrTuning.path = 'mma';
    try {
      for (const dtype of ['f32', 'bf16'] as const) {
        const ref = await thrAt(undefined, dtype);
        expect(ref.thr.every(Number.isFinite), `${dtype}: finite THR`).toBe(true);
        for (const kib of [99, 163]) {
          const r = await thrAt(kib * 1024, dtype);
          expect(f32Bits(r.thr), `${dtype} at ${kib} KiB: thr`).toEqual(f32Bits(ref.thr));
          expect(f32Bits(r.tau), `${dtype} at ${kib} KiB: tau`).toEqual(f32Bits(ref.tau));
        }
      }
    } finally {
      thrTuning.path = 'auto';
    }
  });

  it("THR's wgmma kernels only where they fit: at 163 KiB 'auto' (and 'wgmma-m') run mma.sync's tiles, at 227 KiB the wgmma scores", async () => {
    try {
      thrTuning.path = 'mma';
      const mma = await thrAt(undefined, 'f32');
      thrTuning.path = 'auto';
      expect(f32Bits((await thrAt(163 * 1024, 'f32')).thr), "'auto' at 163 KiB").toEqual(f32Bits(mma.thr));
      expect(f32Bits((await thrAt(undefined, 'f32')).thr), "'auto' at 227 KiB").not.toEqual(f32Bits(mma.thr));
      thrTuning.path = 'wgmma-m';
      expect(f32Bits((await thrAt(163 * 1024, 'f32')).thr), "'wgmma-m' at 163 KiB").toEqual(f32Bits(mma.thr));
    } finally {
      thrTuning.path = 'auto';
    }
  });

  it('THR below what the small configuration needs is BACKEND_UNAVAILABLE saying what it needs (73 KiB with f32 hidden states, 57 KiB with bf16: its scores kernel); the context keeps working', async () => {
    const e = await rejection(thrAt(72 * 1024, 'f32'));
    expect(e.code).toBe('BACKEND_UNAVAILABLE');
    expect(e.message).toMatch(/tokenHiddenReward/);
    expect(e.message).toMatch(/need 73 KiB of shared memory per block with f32 hidden states/);
    expect(e.message).toMatch(/allows 72 KiB/);
    // 16-bit hidden rows shrink the hidden stages: 72 KiB is enough for them, 56 KiB is not.
    const r = await thrAt(72 * 1024, 'bf16');
    expect(r.thr.every(Number.isFinite)).toBe(true);
    const e16 = await rejection(thrAt(56 * 1024, 'bf16'));
    expect(e16.code).toBe('BACKEND_UNAVAILABLE');
    expect(e16.message).toMatch(/need 57 KiB of shared memory per block with f16\/bf16 hidden states/);
    expect(e16.message).toMatch(/allows 56 KiB/);
    const again = await thrAt(undefined, 'f32');
    expect(again.thr.every(Number.isFinite)).toBe(true);
    await logprobsOk(cuda);
  });

  // What an advantages call puts on the stream (issue 10, "advantages"): uniform groups upload nothing
  // (their offsets are g·n in the kernel) and, since no advantages kernel raises flags, no flag reset
  // kernel runs before them and no flag read-back follows. A fault armed on the next cudaMemcpyAsync or
  // the next launch shows which call comes first.
  it('uniform advantages make no host-to-device or flag copy; ragged ones upload their offsets', async () => {
    const rewards = cuda.tensor(Float32Array.from(randomNormal(43, 64 * 8)), [64 * 8], 'f32');
    const uniformOffsets = Int32Array.from({ length: 65 }, (_, g) => 8 * g);
    const cpu = await createContext({ backend: 'js' });
    try {
      const host = await rewards.read();
      const want = await (await cpu.advantages(host, { groupSize: 8 })).advantages.read();
      await cuda.synchronize();
      for (const [k, layout] of [{ groupSize: 8 }, { groupOffsets: uniformOffsets }].entries()) {
        inject(`cudaMemcpyAsync:cudaErrorInvalidValue#uniform${k}`);
        const a = await cuda.advantages(rewards, layout); // would reject if it copied anything
        delete process.env.GK_EMU_FAULT;
        const got = await a.advantages.read();
        for (let i = 0; i < want.length; i++) expect(Math.abs(got[i] - want[i])).toBeLessThan(1e-5);
      }
      // The raw device with uniform offsets: the launcher itself sees they are uniform.
      const dev = (rewards.storage as unknown as { device: NativeDevice }).device;
      const out = [dev.alloc(64 * 8 * 4), dev.alloc(64 * 4), dev.alloc(64 * 4), dev.alloc(64)];
      try {
        inject('cudaMemcpyAsync:cudaErrorInvalidValue#raw');
        await dev.advantages({
          rewards: (rewards.storage as unknown as { ptr: bigint }).ptr,
          groupOffsets: uniformOffsets,
          estimator: 'grpo',
          std: 'sample',
          eps: 1e-6,
          scale: 'group',
          singleton: 'zero',
          nanRewards: 'propagate',
          whitenMaskEps: 0,
          whitenVariance: 'sample',
          whitenVarianceEps: 'add',
          outAdvantages: out[0],
          advantagesSize: 64 * 8,
          outMean: out[1],
          outStd: out[2],
          outDegenerate: out[3],
        });
        delete process.env.GK_EMU_FAULT;
      } finally {
        for (const p of out) dev.free(p);
      }
      // Ragged groups upload their offsets: the armed fault fires there.
      const ragged = Int32Array.from({ length: 65 }, (_, g) => (g === 64 ? 512 : 8 * g + (g % 2)));
      inject('cudaMemcpyAsync:cudaErrorInvalidValue#ragged');
      const e = await rejection(cuda.advantages(rewards, { groupOffsets: ragged }));
      expect(e.message).toMatch(/cudaMemcpyAsync/);
      delete process.env.GK_EMU_FAULT;
      // The first launch of an advantages call is its own kernel; of a logprobs call (which raises
      // flags), the flag reset.
      inject('launch:cudaErrorInvalidValue#adv');
      const la = await rejection(cuda.advantages(rewards, { groupSize: 8 }));
      expect(la.message).toMatch(/launch of group_advantages_kernel/);
      inject('launch:cudaErrorInvalidValue#logprobs');
      const ll = await rejection(cuda.logprobs(cuda.tensor(logitsHost, [N, V], 'f32'), targets));
      expect(ll.message).toMatch(/launch of reset_flags_kernel/);
      delete process.env.GK_EMU_FAULT;
      await logprobsOk(cuda);
    } finally {
      cpu.dispose();
      rewards.dispose();
    }
  });

  // Last: it poisons the emulated context, as an illegal address does a real one.
  it('an illegal address in a kernel is DEVICE_LOST naming the launch; later ops fail too; the process lives', async () => {
    const ctx = await createContext({ backend: 'cuda' });
    const x = ctx.tensor(logitsHost, [N, V], 'f32');
    inject('launch:cudaErrorIllegalAddress');
    const e = await rejection(ctx.logprobs(x, targets));
    expect(e.code).toBe('DEVICE_LOST');
    expect(e.message).toMatch(/launch of \w+/);
    expect(e.message).toMatch(/illegal memory access/);
    // Sticky, as on the hardware: the context is unusable, and says so.
    const again = await rejection(ctx.logprobs(x, targets));
    expect(again.code).toBe('DEVICE_LOST');
    ctx.dispose();
    inject('reset');
    const fresh = await createContext({ backend: 'cuda' });
    try {
      await logprobsOk(fresh);
    } finally {
      fresh.dispose();
    }
  });
});
