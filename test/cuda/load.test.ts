/**
 * The native addon on every machine: it builds (CUDA and CPU-only), loads, and the cuda backend either
 * starts or says exactly why not (the missing addon, the build without CUDA, the failing CUDA call).
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { loadNativeAddon } from '../../src/backends/cuda/native.js';
import { createContext } from '../../src/index.js';
import { CUDA_ADDON, NOCUDA_ADDON, probeGpu, rejection } from './helpers.js';

const hasCudaBuild = existsSync(CUDA_ADDON);
const hasNoCudaBuild = existsSync(NOCUDA_ADDON);
if (!hasCudaBuild) console.warn(`test/cuda: CUDA-build tests skipped: ${CUDA_ADDON} not built`);
if (!hasNoCudaBuild)
  console.warn(
    `test/cuda: CPU-only-build tests skipped: ${NOCUDA_ADDON} not built (scripts/ci-native.sh builds it)`,
  );

const gpu = await probeGpu();
const savedPath = process.env.GRPO_KERNELS_NATIVE_PATH;

afterEach(() => {
  if (savedPath === undefined) delete process.env.GRPO_KERNELS_NATIVE_PATH;
  else process.env.GRPO_KERNELS_NATIVE_PATH = savedPath;
});

describe('native addon: build and load', () => {
  it.skipIf(!hasCudaBuild)('the CUDA build loads and reports CUDA and its architectures', () => {
    process.env.GRPO_KERNELS_NATIVE_PATH = CUDA_ADDON;
    const info = loadNativeAddon().buildInfo();
    expect(info.cuda).toBe(true);
    // The architectures asked for (CMAKE_CUDA_ARCHITECTURES, default "80-real;90a-real;90": sm_80, sm_90a
    // and sm_90).
    const asked = (process.env.CMAKE_CUDA_ARCHITECTURES || '80-real;90a-real;90').match(/\d+a?/g) ?? [];
    expect(asked.length).toBeGreaterThan(0);
    for (const arch of asked) expect(info.archs).toMatch(new RegExp(`\\b${arch}\\b`));
    expect(info.cudaRuntimeVersion).toBeGreaterThanOrEqual(12000);
  });

  it.skipIf(!hasCudaBuild)('loading the addon and opening a device never crashes the process', () => {
    // A child process, so that a crash would show as a signal instead of killing the test runner.
    const code = `const m = require(${JSON.stringify(CUDA_ADDON)});
      try { const d = new m.CudaDevice(0); d.close(); console.log('ok device'); }
      catch (e) { console.log('error', e.code, e.message); }`;
    const r = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8', timeout: 60_000 });
    expect(r.signal, r.stderr).toBeNull();
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^(ok device|error (BACKEND_UNAVAILABLE|OUT_OF_MEMORY) cuda\w+)/);
  });

  it.skipIf(!hasNoCudaBuild)('the CPU-only build loads and reports why CUDA is missing', () => {
    process.env.GRPO_KERNELS_NATIVE_PATH = NOCUDA_ADDON;
    const info = loadNativeAddon().buildInfo();
    expect(info.cuda).toBe(false);
    expect(info.reason).toMatch(/built without CUDA|disabled by GRPO_WITH_CUDA=OFF/);
  });

  it.skipIf(!hasNoCudaBuild)(
    'the CPU-only build has the native cpu kernels (and both builds have them)',
    async () => {
      for (const path of [NOCUDA_ADDON, ...(hasCudaBuild ? [CUDA_ADDON] : [])]) {
        process.env.GRPO_KERNELS_NATIVE_PATH = path;
        const addon = loadNativeAddon();
        expect(addon.buildInfo().cpu, path).toBe(true);
        expect(addon.cpuInfo?.().cores, path).toBeGreaterThan(0);
        const ctx = await createContext({ backend: 'cpu' });
        expect(ctx.backend, path).toBe('cpu');
        const r = await ctx.logprobs(ctx.tensor(new Float32Array([0, 1, 2, 3]), [1, 4]), new Int32Array([3]));
        expect((await r.lse.read())[0]).toBeCloseTo(Math.log(1 + Math.E + Math.E ** 2 + Math.E ** 3), 5);
        ctx.dispose();
      }
    },
  );

  it.skipIf(!hasNoCudaBuild)('createContext({ backend: "cuda" }) on the CPU-only build says so', async () => {
    process.env.GRPO_KERNELS_NATIVE_PATH = NOCUDA_ADDON;
    const e = await rejection(createContext({ backend: 'cuda' }));
    expect(e.code).toBe('BACKEND_UNAVAILABLE');
    expect(e.message).toMatch(/^cuda backend: (built without CUDA|disabled by GRPO_WITH_CUDA=OFF)/);
  });

  it('a missing addon gives BACKEND_UNAVAILABLE "native addon not built"', async () => {
    process.env.GRPO_KERNELS_NATIVE_PATH = '/nonexistent/grpo_kernels_native.node';
    const e = await rejection(createContext({ backend: 'cuda' }));
    expect(e.code).toBe('BACKEND_UNAVAILABLE');
    expect(e.message).toMatch(/native addon not built/);
  });
});

describe('cuda backend without a usable GPU', () => {
  // On a GPU machine these cases do not apply; the op tests (ops.test.ts) run instead.
  const noGpu = gpu.ctx === undefined;
  if (!noGpu) console.warn('test/cuda: no-GPU error-path tests skipped: this machine has a usable GPU');

  it.skipIf(!noGpu || !hasCudaBuild)(
    'createContext rejects with BACKEND_UNAVAILABLE naming the CUDA call',
    async () => {
      process.env.GRPO_KERNELS_NATIVE_PATH = CUDA_ADDON;
      const e = await rejection(createContext({ backend: 'cuda' }));
      expect(e.code).toBe('BACKEND_UNAVAILABLE');
      // e.g. "cuda backend: cudaGetDeviceCount failed: CUDA driver version is insufficient for CUDA
      // runtime version (cudaErrorInsufficientDriver)" or "... no CUDA-capable device is detected".
      expect(e.message).toMatch(
        /^cuda backend: cudaGetDeviceCount (failed: .+ \(cudaError\w+\)|found no CUDA device)/,
      );
    },
  );

  it.skipIf(!noGpu)('auto skips cuda and records why', async () => {
    const ctx = await createContext({ backend: 'auto' });
    try {
      expect(ctx.backend).not.toBe('cuda');
      const cuda = ctx.skipped.find((s) => s.backend === 'cuda');
      expect(cuda?.reason).toMatch(
        /^cuda backend: (cudaGetDeviceCount|native addon not built|built without CUDA)/,
      );
    } finally {
      ctx.dispose();
    }
  });

  it('an invalid deviceIndex is rejected before any CUDA call', async () => {
    const e = await rejection(createContext({ backend: 'cuda', deviceIndex: -1 }));
    expect(e.code).toBe('BACKEND_UNAVAILABLE');
  });
});
