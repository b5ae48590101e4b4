/**
 * Shared setup of the cuda tests: a cuda context when this machine has a usable GPU, else the reason
 * (printed once, and every GPU test skips with it), and a cpu context as the reference.
 */
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect } from 'vitest';
import { type LmheadPath, lmheadTuning } from '../../src/backends/cuda/lmhead.js';
import { type Context, createContext, GrpoKernelsError } from '../../src/index.js';
import { lmheadCases } from '../cases/lmhead.js';
import type { Case } from '../cases/runner.js';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** The CUDA build (build/Release) and the CPU-only build scripts/ci-native.sh makes (build/nocuda). */
export const CUDA_ADDON = `${ROOT}build/Release/grpo_kernels_native.node`;
export const NOCUDA_ADDON =
  process.env.GRPO_KERNELS_NOCUDA_ADDON ?? `${ROOT}build/nocuda/Release/grpo_kernels_native.node`;

/** Set by the vitest project "cuda-emu": the cuda tests run on the CPU emulator (tools/cuda-emu/). */
export const EMULATED = process.env.GRPO_KERNELS_CUDA_EMU === '1';
/**
 * Set by scripts/emu-memcheck.sh: the test files (names, comma-separated) whose cp.async copies land
 * when issued (the emulator's GK_EMU_CP_ASYNC=eager, read at its first cp.async), so that the eager
 * files and the rest run in one vitest pass. Each test file is a process of its own (the forks pool
 * isolates them), and this module is evaluated before any of its kernels runs.
 */
const EAGER_FILES = process.env.GK_EMU_CP_ASYNC_EAGER_FILES;
if (EAGER_FILES) {
  const path = expect.getState().testPath ?? '';
  if (EAGER_FILES.split(',').some((f) => f !== '' && path.endsWith(`/${f}`))) {
    process.env.GK_EMU_CP_ASYNC = 'eager';
    console.warn(`test/cuda: ${path.slice(path.lastIndexOf('/') + 1)} with eager cp.async copies`);
  }
}
/**
 * Set by scripts/gpu/run.sh (and test/cuda/sanitize.sh) for the runs under compute-sanitizer: the
 * deliberate out-of-memory case and the multi-GB case skip, each with its reason printed. The first
 * is a failing CUDA call by design; the second would move 8.6 GB through instrumented kernels, and
 * its 64-bit offsets are checked by the plain run of the same tests.
 */
export const SANITIZER = process.env.GRPO_KERNELS_SANITIZER === '1';
/**
 * Set by scripts/emu-memcheck.sh (the emulator under AddressSanitizer, CI's stand-in for a GPU's
 * memcheck): the LM-head case tables leave out their two largest shapes there (LARGEST_LMHEAD_SHAPES:
 * minutes under ASan, the same kernels and launch paths as the smaller ones; lmheadTileCases all of
 * V 32003), which npm test runs.
 */
export const EMU_MEMCHECK = process.env.GK_EMU_MEMCHECK === '1';
/** The LM-head case table's two largest shapes (V 151936, and d 896 with V 32003), by case name. */
export const LARGEST_LMHEAD_SHAPES = /V=151936|d=896 V=32003/;
/** Why the emulator addon is missing (build/emu/emu-build-status.json, written by scripts/build-emu.mjs). */
function emuMissingReason(): string {
  try {
    const s = JSON.parse(readFileSync(`${ROOT}build/emu/emu-build-status.json`, 'utf8')) as {
      reason?: string;
    };
    return `CUDA emulator not built: ${s.reason ?? 'unknown reason'}`;
  } catch {
    return 'CUDA emulator not built (node scripts/build-emu.mjs)';
  }
}

export interface GpuProbe {
  ctx?: Context;
  reason?: string;
}

let probe: Promise<GpuProbe> | undefined;

/** Starts the cuda backend once per test file; on failure returns why (and warns once). */
export function probeGpu(): Promise<GpuProbe> {
  probe ??= (async () => {
    const path = process.env.GRPO_KERNELS_NATIVE_PATH;
    if (EMULATED && (path === undefined || !existsSync(path))) {
      const reason = emuMissingReason();
      console.warn(`test/cuda: emulated tests skipped: ${reason}`);
      return { reason };
    }
    if (process.env.GRPO_KERNELS_NATIVE_PATH === undefined && !existsSync(CUDA_ADDON)) {
      const reason = `native addon not built (${CUDA_ADDON} missing)`;
      console.warn(`test/cuda: GPU tests skipped: ${reason}`);
      return { reason };
    }
    try {
      return { ctx: await createContext({ backend: 'cuda' }) };
    } catch (e) {
      const reason = e instanceof Error ? e.message : String(e);
      console.warn(`test/cuda: GPU tests skipped: ${reason}`);
      return { reason };
    }
  })();
  return probe;
}

export async function cpuContext(): Promise<Context> {
  return createContext({ backend: 'js' });
}

/** The GrpoKernelsError a promise rejects with (fails the test if it resolves or rejects otherwise). */
export async function rejection(p: Promise<unknown>): Promise<GrpoKernelsError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(GrpoKernelsError);
    return e as GrpoKernelsError;
  }
  throw new Error('expected a rejection');
}

/**
 * The CUDA THR tile configurations the THR tests run (native/cuda/thr.cu, "Configurations"): the one
 * the device's shared memory per block selects (the large one on the emulator, an A100, H100, H200),
 * and the small one (64 × 128 M tiles, 2-stage pipelines: what a 99 KiB sm_86 / sm_89 GPU runs),
 * forced on any device by thrTuning.smallTiles (src/backends/cuda/thr.ts), both on mma.sync; and the
 * scores on wgmma, with rounded and with truncated operands, with M on wgmma too, and TMA-fed.
 */
export const THR_TILE_CONFIGS = [
  { name: "the device's tiles on mma.sync", smallTiles: false, path: 'mma' },
  { name: 'small tiles', smallTiles: true, path: 'mma' },
  // The scores on Hopper's wgmma (thr_scores_wgmma_kernel; f32 hidden states with aligned rows, elsewhere
  // the mma.sync tiles): a 9.0 device from a build with sm_90a, or the emulator. 'auto' takes them there.
  { name: 'wgmma scores', smallTiles: false, path: 'wgmma' },
  // The same on operands truncated to TF32 as the tensor cores read f32 (no rounding pass).
  { name: 'wgmma scores, truncated operands', smallTiles: false, path: 'wgmma-truncate' },
  // The wgmma scores and M on wgmma too (thr_m_wgmma_kernel: operands staged transposed through registers).
  { name: 'wgmma scores and M', smallTiles: false, path: 'wgmma-m' },
  // M on wgmma and the scores on truncated operands, in 'tf32' fed by TMA to warp-specialised tiles
  // (thr_scores_tma_kernel); on the emulator the bits of 'wgmma-truncate' (asserted by ops-thr-tiles).
  { name: 'TMA scores and wgmma M', smallTiles: false, path: 'tma' },
  // The same with 256-column scores blocks ('tf32'; 'tma''s bits anywhere, asserted by ops-thr-tiles).
  { name: 'TMA scores in 256-column blocks', smallTiles: false, path: 'tma-wide' },
  // M on mma.sync and, in 'tf32', the TMA-fed scores on operands rounded once in a pass of their own
  // (thr_round_kernel), in 128- and 256-column blocks: the bits of 'auto' (asserted by ops-thr-tiles).
  { name: 'TMA scores on rounded copies', smallTiles: false, path: 'tma-rounded' },
  { name: 'TMA scores on rounded copies, 256-column blocks', smallTiles: false, path: 'tma-wide-rounded' },
  // 'tma-rounded' with M as a TMA-fed GEMM on transposed, rounded copies of its operands ('tf32'; bits
  // of its own, within the 'tf32' bound).
  { name: 'TMA scores and TMA-fed M', smallTiles: false, path: 'tma-m' },
] as const;

/**
 * The LM-head case table for a file that runs it on Hopper's tiles (ops-lmhead-wgmma.test.ts,
 * ops-lmhead-tma.test.ts): lmheadTuning.path set to `path` for the file, and the cases that can take the
 * tiles: the head's, with 16-bit operands (f32 stays on mma.sync; the logit shards run no head). On the
 * emulator, not the two largest shapes (V 151936, and d 896 with V 32003: a minute or more each there;
 * ops-lmhead.test.ts runs them on the mma.sync tiles, and a GPU runs them here); under emu-memcheck no
 * V 32003 at all.
 */
export function lmheadTileCases(path: Exclude<LmheadPath, 'auto' | 'mma'>): Case[] {
  beforeAll(() => {
    lmheadTuning.path = path;
  });
  afterAll(() => {
    lmheadTuning.path = 'auto';
  });
  if (EMU_MEMCHECK)
    console.warn(
      `test/cuda: the '${path}' LM-head case table without V 32003 under emu-memcheck (npm test runs it)`,
    );
  return lmheadCases({ emulated: EMULATED || SANITIZER }).filter(
    (c) =>
      !c.name.startsWith('logit shards') &&
      /\b(bf16|f16)\b/.test(c.name) &&
      !(EMULATED && LARGEST_LMHEAD_SHAPES.test(c.name)) &&
      // Under emu-memcheck not V 32003 either: its many vocabulary chunks run here in the forced
      // small-chunk cases, and ops-lmhead.test.ts runs it on mma.sync (a minute and a half under ASan).
      !(EMU_MEMCHECK && /V=32003/.test(c.name)),
  );
}
