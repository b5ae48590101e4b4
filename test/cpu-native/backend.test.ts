/**
 * The native cpu backend as a backend: selection (auto, the fallback to js with its reason), threads
 * (option, environment, the cap at the cores), the asynchronous job model (an op returns before its
 * kernels finish), and the strict native boundary (unknown keys, wrong array types and lengths).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { loadNativeAddon } from '../../src/backends/addon.js';
import type {
  NativeCpuLogprobsArgs,
  NativeCpuThrReweightArgs,
  NativeCpuTokenHiddenRewardArgs,
} from '../../src/backends/cpu/native.js';
import { createContext, GrpoKernelsError } from '../../src/index.js';
import { expectSameBits } from '../cases/check.js';
import { randomNormal } from '../util/rng.js';
import { openNativeCpu } from './helpers.js';

const probe = await openNativeCpu('portable');
const reason = probe.reason;
probe.ctx?.dispose();
const cores = (() => {
  try {
    return loadNativeAddon('cpu').cpuInfo?.().cores ?? 1;
  } catch {
    return 1;
  }
})();

/** A native call refused at the boundary: a DTYPE error whose message matches `msg`. */
async function expectRefused(call: () => Promise<unknown>, msg: RegExp): Promise<void> {
  let err: unknown;
  try {
    await call();
  } catch (e) {
    err = e;
  }
  expect(err, String(msg)).toBeInstanceOf(Error);
  expect((err as { code?: string }).code).toBe('DTYPE');
  expect((err as Error).message).toMatch(msg);
}

const savedEnv = { ...process.env };
afterEach(() => {
  for (const k of ['GRPO_KERNELS_THREADS', 'GRPO_KERNELS_NATIVE_PATH', 'GRPO_KERNELS_CPU_PORTABLE']) {
    if (savedEnv[k] === undefined) delete process.env[k];
    else process.env[k] = savedEnv[k];
  }
});

describe.skipIf(reason !== undefined)(`native cpu backend${reason ? ` (skipped: ${reason})` : ''}`, () => {
  it("'cpu' by name is the native backend; its device says which kernels and how many threads", async () => {
    // Every core by default: not the caller's GRPO_KERNELS_THREADS (scripts/cpu-memcheck.sh sets it).
    delete process.env.GRPO_KERNELS_THREADS;
    const ctx = await createContext({ backend: 'cpu' });
    expect(ctx.backend).toBe('cpu');
    expect(ctx.skipped).toEqual([]);
    expect(['avx2', 'portable']).toContain(ctx.device.details.isa);
    expect(ctx.device.details.threads).toBe(cores);
    expect(ctx.device.name).toMatch(/^CPU \(native, /);
    ctx.dispose();
  });

  it("'auto' takes cpu before js (after cuda and webgpu, when they cannot start or are software)", async () => {
    const ctx = await createContext();
    const passed = ctx.skipped.map((s) => s.backend);
    if (ctx.backend === 'cpu') expect(passed).toEqual(['cuda', 'webgpu']);
    else expect(['cuda', 'webgpu']).toContain(ctx.backend);
    expect(passed).not.toContain('cpu');
    ctx.dispose();
  });

  it('threads: the option, then GRPO_KERNELS_THREADS, never more than the cores', async () => {
    const one = await createContext({ backend: 'cpu', threads: 1 });
    expect(one.device.details.threads).toBe(1);
    one.dispose();
    const many = await createContext({ backend: 'cpu', threads: 1000 });
    expect(many.device.details.threads).toBe(cores);
    expect(many.device.details.requestedThreads).toBe(1000);
    many.dispose();
    process.env.GRPO_KERNELS_THREADS = '1';
    const env = await createContext({ backend: 'cpu' });
    expect(env.device.details.threads).toBe(1);
    env.dispose();
    const opt = await createContext({ backend: 'cpu', threads: 2 });
    expect(opt.device.details.threads).toBe(Math.min(2, cores)); // the option wins over the variable
    opt.dispose();
    process.env.GRPO_KERNELS_THREADS = 'many';
    await expect(createContext({ backend: 'cpu' })).rejects.toMatchObject({
      code: 'RANGE',
      argument: 'GRPO_KERNELS_THREADS',
    });
    delete process.env.GRPO_KERNELS_THREADS;
    await expect(createContext({ backend: 'cpu', threads: 0 })).rejects.toMatchObject({
      code: 'RANGE',
      argument: 'threads',
    });
    await expect(createContext({ backend: 'cpu', threads: '2' as never })).rejects.toMatchObject({
      code: 'DTYPE',
      argument: 'threads',
    });
  });

  it('GRPO_KERNELS_CPU_PORTABLE=1 forces the portable kernels', async () => {
    process.env.GRPO_KERNELS_CPU_PORTABLE = '1';
    const ctx = await createContext({ backend: 'cpu' });
    expect(ctx.device.details.isa).toBe('portable');
    expect(ctx.device.details.portableReason).toBe('GRPO_KERNELS_CPU_PORTABLE=1');
    ctx.dispose();
  });

  it('an op returns before its kernels finish, and read() waits for an in-place op queued before it', async () => {
    const ctx = await createContext({ backend: 'cpu' });
    const rows = 64;
    const vocab = 151936;
    const x = ctx.tensor(Float32Array.from(randomNormal(81, rows * vocab)), [rows, vocab]);
    const targets = new Int32Array(rows).fill(3);
    let settled = false;
    const p = ctx.logprobs(x, targets).then((r) => {
      settled = true;
      return r;
    });
    await new Promise((r) => setImmediate(r));
    expect(settled, 'the event loop ran while the kernels worked').toBe(false);
    const { lse } = await p;
    // In place, then read at once: the read must see the gradient, not the logits.
    const before = (await x.read())[0];
    const g = ctx.logprobsBackward(x, targets, lse, new Float32Array(rows).fill(1), { inPlace: true });
    const after = (await x.read())[0];
    await g;
    expect(after).not.toBe(before);
    expect(after).toBeLessThan(0); // −p·g for a non-target element
    ctx.dispose();
  });

  it('large tensors get 2 MiB pages before their first write, and keep their data', async () => {
    const addon = loadNativeAddon('cpu');
    const MiB = 1 << 20;
    const a = new Float32Array((9 * MiB) / 4);
    const advised = addon.cpuAdviseHugePages!(a);
    // The whole 2 MiB pages inside the array (4 or 3 of them, by its alignment), or 0 where the OS
    // has no transparent huge pages.
    expect([0, 6 * MiB, 8 * MiB]).toContain(advised);
    expect(addon.cpuAdviseHugePages!(new Float32Array(1024))).toBe(0);
    expect(() => addon.cpuAdviseHugePages!([1, 2] as never)).toThrow(/expected a typed array/);
    const ctx = await createContext({ backend: 'cpu' });
    const x = Float32Array.from(randomNormal(5, 3 * MiB));
    const t = ctx.tensor(x);
    expectSameBits(await t.read(), x, 'a 12 MiB tensor read back');
    ctx.dispose();
  });

  it('the native boundary refuses unknown keys, wrong array types and wrong lengths', async () => {
    const addon = loadNativeAddon('cpu');
    const dev = new addon.CpuDevice!({ threads: 1, portable: true, avx512: false });
    const base: NativeCpuLogprobsArgs = {
      logits: new Float32Array(6),
      dtype: 'f32',
      targets: new Int32Array(2),
      rows: 2,
      vocab: 3,
      temperature: 1,
      ignoreIndex: -100,
      outLogprobs: new Float32Array(2),
      outLse: new Float32Array(2),
    };
    await dev.logprobs(base);
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ ...base, temprature: 1 }, /unknown key 'temprature'/],
      [{ ...base, targets: new Float32Array(2) }, /targets: expected an Int32Array/],
      [{ ...base, outLse: new Float32Array(3) }, /outLse: expected 2 elements, got 3/],
      [{ ...base, dtype: 'f64' }, /dtype: expected one of 'f32', 'f16', 'bf16'/],
      [{ ...base, rows: undefined }, /missing key 'rows'/],
    ];
    for (const [args, msg] of bad) await expectRefused(() => dev.logprobs(args as never), msg);
    dev.close();
    expect(() => dev.logprobs(base)).toThrow(/the cpu context was disposed/);
  });

  it("THR's plan (correct tokens, their f32 weights, NTHR's eta) is checked against the layout", async () => {
    const addon = loadNativeAddon('cpu');
    const dev = new addon.CpuDevice!({ threads: 1, portable: true, avx512: false });
    // One group: a correct and an incorrect response of one token each; d = 1, |V*| = 1.
    const layout = { responseOffsets: new Int32Array([0, 1, 2]), groupOffsets: new Int32Array([0, 2]) };
    const correct = new Uint8Array([1, 0]);
    const degenerate = new Uint8Array([0]);
    const thr: NativeCpuTokenHiddenRewardArgs = {
      ...layout,
      correct,
      degenerate,
      hidden: new Float32Array([1, 2]),
      hiddenDtype: 'f32',
      dim: 1,
      probs: new Float32Array([0.25, 0.5]),
      probsOffsets: new Float64Array([0, 2]),
      vocabOffsets: new Int32Array([0, 1]),
      tokenColumn: new Int32Array([0, 0]),
      correctStart: new Int32Array([0, 1]),
      correctTokens: new Int32Array([0]),
      correctWeights: new Float32Array([1]),
      beta: 1,
      precision: 'f32',
      outThr: new Float32Array(2),
      outTau: new Float32Array(1),
    };
    await dev.tokenHiddenReward(thr);
    // s_t = g_tᵀ M h_t with M = w·g_0·h_0 = 0.75: s_0 = 0.75²·1 = 0.5625, s_1 = 0.75·0.5·2 = 0.75.
    expect(Array.from(thr.outThr)).toEqual([0.5625, -0.75]);
    const badThr: [Record<string, unknown>, RegExp][] = [
      [{ weighting: 'length' }, /unknown key 'weighting'/],
      [{ correctStart: new Int32Array([0]) }, /correctStart: expected 2 elements, got 1/],
      [{ correctWeights: new Float64Array([1]) }, /correctWeights: expected a Float32Array/],
      [{ correctWeights: new Float32Array(2) }, /correctWeights: expected 1 elements, got 2/],
      [
        { correctStart: new Int32Array([0, 0]) },
        /correctStart must run from 0 to the number of correct tokens/,
      ],
      [{ correctTokens: new Int32Array([2]) }, /correctTokens\[0\] = 2 is not a token of group 0/],
      [{ degenerate: new Uint8Array([1]) }, /degenerate group 0 lists correct tokens/],
    ];
    for (const [patch, msg] of badThr)
      await expectRefused(() => dev.tokenHiddenReward({ ...thr, ...patch } as never), msg);
    const reweight: NativeCpuThrReweightArgs = {
      ...layout,
      correct,
      degenerate,
      tokenAdvantages: new Float32Array([1, 1]),
      thr: new Float32Array([0.5, -0.5]),
      tau: new Float32Array([0.1]),
      mode: 'nthr',
      p: 0,
      mask: true,
      eta: new Float64Array([0.25]),
      out: new Float32Array(2),
    };
    await dev.thrReweight(reweight);
    expect(Array.from(reweight.out)).toEqual([1, 0.25]);
    await expectRefused(
      () => dev.thrReweight({ ...reweight, eta: new Float64Array(2) }),
      /eta: expected 1 elements, got 2/,
    );
    await expectRefused(
      () => dev.thrReweight({ ...reweight, eta: 0.3 } as never),
      /eta: expected a Float64Array/,
    );
    dev.close();
  });
});

describe('without the native addon', () => {
  it("'cpu' falls back to js and ctx.skipped says why", async () => {
    process.env.GRPO_KERNELS_NATIVE_PATH = '/nonexistent/grpo_kernels_native.node';
    const ctx = await createContext({ backend: 'cpu' });
    expect(ctx.backend).toBe('js');
    expect(ctx.skipped).toHaveLength(1);
    expect(ctx.skipped[0].backend).toBe('cpu');
    expect(ctx.skipped[0].reason).toMatch(/^cpu backend: native addon not built/);
    ctx.dispose();
    const auto = await createContext();
    if (auto.backend === 'js') expect(auto.skipped.map((s) => s.backend)).toEqual(['cuda', 'webgpu', 'cpu']);
    auto.dispose();
    await expect(createContext({ backend: 'cuda' })).rejects.toBeInstanceOf(GrpoKernelsError);
  });
});
