/**
 * Loading the native addon (build/Release/grpo_kernels_native.node, or GRPO_KERNELS_NATIVE_PATH), shared
 * by the cuda and the native cpu backends, and turning its errors into GrpoKernelsErrors. Every failure
 * to start names what failed: the missing file (and why the install script did not build it), a build
 * without CUDA or without the cpu kernels, or the call that failed.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type ErrorCode, GrpoKernelsError } from '../errors.js';
import type { NativeCpuBuildInfo, NativeCpuDevice } from './cpu/native.js';
import type { NativeDevice, NativeLmheadPlan } from './cuda/native.js';

/** The C++ enum tables (native/addon.cc enums()): each enum's names in the C++ order. */
export interface NativeEnums {
  estimator: string[];
  stdKind: string[];
  scaleKind: string[];
  singleton: string[];
  nanRewards: string[];
  thrPrecision: string[];
  reweightMode: string[];
  policyLoss: string[];
  klEstimator: string[];
  rolloutLevel: string[];
  rolloutMode: string[];
  aggregation: string[];
  termAggregation: string[];
  seqTokenDivisor: string[];
}

export interface NativeBuildInfo {
  /** Whether the addon was compiled with the CUDA kernels. */
  cuda: boolean;
  /** Whether it was compiled with the native cpu kernels (absent in builds older than them). */
  cpu?: boolean;
  /** Why not, e.g. "built without CUDA: nvcc not found at build time". */
  reason: string;
  archs?: string;
  cudaRuntimeVersion?: number;
}

export interface NativeAddon {
  buildInfo(): NativeBuildInfo;
  /** The C++ enum tables (every build since the cpu backend; older builds: CUDA only). */
  enums?(): NativeEnums;
  /** CUDA builds only: the LM-head launchers' scratch at a size (native/cuda/lmhead.cuh). */
  lmheadPlan?(args: {
    rows: number;
    vocab: number;
    dim: number;
    dtype: 'f32' | 'f16' | 'bf16';
  }): NativeLmheadPlan;
  /** CUDA builds only. */
  CudaDevice?: new (
    index: number,
  ) => NativeDevice;
  /** Builds with the native cpu kernels (native/addon_cpu.cc). */
  cpuInfo?(): NativeCpuBuildInfo;
  CpuDevice?: new (options: { threads: number; portable: boolean }) => NativeCpuDevice;
}

const packageRoot = fileURLToPath(new URL('../../', import.meta.url));

/** Where the addon is loaded from: GRPO_KERNELS_NATIVE_PATH, else build/Release/ in the package. */
export function nativeAddonPath(): string {
  const env = process.env.GRPO_KERNELS_NATIVE_PATH;
  if (env !== undefined && env !== '') return env;
  return join(packageRoot, 'build', 'Release', 'grpo_kernels_native.node');
}

/** The reason scripts/build-native.mjs recorded when it could not build the addon, if any. */
function recordedBuildFailure(addonPath: string): string | undefined {
  const status = join(dirname(addonPath), '..', 'native-build-status.json');
  try {
    const s = JSON.parse(readFileSync(status, 'utf8')) as { ok?: boolean; reason?: string };
    return s.ok === false && typeof s.reason === 'string' ? s.reason : undefined;
  } catch {
    return undefined;
  }
}

let cached: { path: string; addon: NativeAddon } | undefined;

/**
 * Loads (once per path) the addon; BACKEND_UNAVAILABLE with the reason when it cannot, worded for the
 * backend that asked (`cuda` or `cpu`).
 */
export function loadNativeAddon(backend: 'cuda' | 'cpu' = 'cuda'): NativeAddon {
  const path = nativeAddonPath();
  if (cached?.path === path) return cached.addon;
  if (!existsSync(path)) {
    const why = recordedBuildFailure(path);
    throw new GrpoKernelsError(
      'BACKEND_UNAVAILABLE',
      `${backend} backend: native addon not built: ${why ?? `${path} does not exist`} ` +
        `(build it with \`npm run build:native\`; see docs/${backend}.md)`,
    );
  }
  let addon: NativeAddon;
  try {
    addon = createRequire(import.meta.url)(path) as NativeAddon;
  } catch (e) {
    throw new GrpoKernelsError(
      'BACKEND_UNAVAILABLE',
      `${backend} backend: native addon not loadable: ${path}: ${e instanceof Error ? e.message : String(e)}`,
      { cause: e },
    );
  }
  cached = { path, addon };
  return addon;
}

const CODES: readonly ErrorCode[] = [
  'SHAPE',
  'DTYPE',
  'RANGE',
  'LAYOUT',
  'BACKEND_UNAVAILABLE',
  'DEVICE_LOST',
  'OUT_OF_MEMORY',
];

/**
 * A native Error (with `code`) → GrpoKernelsError with the same code, its message prefixed with the
 * backend's name ("cuda ", "cpu "). A RANGE error raised by a kernel (a flag on cuda, a fault report on
 * cpu) starts with the argument it names ("targets: ..."): it keeps the message as the host checks word
 * it and gets that argument.
 */
export function fromNativeErrorOf(backend: 'cuda' | 'cpu') {
  return (e: unknown, fallback: ErrorCode = 'DEVICE_LOST'): GrpoKernelsError => {
    if (e instanceof GrpoKernelsError) return e;
    const code = (e as { code?: unknown })?.code;
    const c =
      typeof code === 'string' && (CODES as readonly string[]).includes(code)
        ? (code as ErrorCode)
        : fallback;
    const msg = e instanceof Error ? e.message : String(e);
    const named = c === 'RANGE' ? /^([A-Za-z][\w.]*): /.exec(msg) : null;
    if (named) return new GrpoKernelsError(c, msg, { argument: named[1], cause: e });
    return new GrpoKernelsError(c, `${backend} ${msg}`, { cause: e });
  };
}
