/**
 * Loading the native addon, shared by the cuda and the native cpu backends, and turning its errors into
 * GrpoKernelsErrors. The file is the prebuilt one the npm package carries for this platform
 * (prebuilds/linux-x64/), else a local source build (build/Release/), or GRPO_KERNELS_NATIVE_PATH;
 * each is first loaded in a child process, so one that cannot load here costs a reason, not a crash.
 * Every failure to start names what failed: each file tried and why, a build without CUDA or without
 * the cpu kernels, or the call that failed.
 */

import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type ErrorCode, GrpoKernelsError } from '../errors.js';
import type {
  NativeCpuBuildInfo,
  NativeCpuDevice,
  NativeCpuDeviceOptions,
  NativeCpuLmheadPlanArgs,
} from './cpu/native.js';
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
  rejectionStatistic: string[];
  rejectionLevel: string[];
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
  CpuDevice?: new (options: NativeCpuDeviceOptions) => NativeCpuDevice;
  /** Gives the whole 2 MiB pages of an unwritten array 2 MiB pages; returns their bytes (native/cpu/memory.cc). */
  cpuAdviseHugePages?(array: ArrayBufferView): number;
  /** The lowest i ≥ 1 with offsets[i] < offsets[i − 1], or −1 (native/cpu/offsets.cc). */
  cpuFirstDecrease?(offsets: Int32Array): number;
  /** Of non-decreasing offsets: [nonempty ranges, the longest range's length] (native/cpu/offsets.cc). */
  cpuOffsetCounts?(offsets: Int32Array): [number, number];
  /** The native cpu LM head's scratch plan (native/cpu/lmhead.cc). */
  cpuLmheadPlan?(args: NativeCpuLmheadPlanArgs): {
    forwardBytes: number;
    backwardBytes: number;
    /** The backward with gradients in the input dtype (gradDtype 'input'). */
    backwardInputBytes: number;
  };
}

const packageRoot = fileURLToPath(new URL('../../', import.meta.url));
const ADDON_FILE = 'grpo_kernels_native.node';

/** Where an addon file comes from (docs/install.md, "Which addon is loaded"). */
export type NativeAddonSource = 'env' | 'prebuilt' | 'local';

export interface NativeAddonCandidate {
  source: NativeAddonSource;
  path: string;
}

/** This machine's key into prebuilds/: `${platform}-${arch}`, e.g. "linux-x64". */
export function prebuiltKey(): string {
  return `${process.platform}-${process.arch}`;
}

/**
 * The files tried, in order: GRPO_KERNELS_NATIVE_PATH alone when set; else the prebuilt for this
 * platform (prebuilds/<platform>-<arch>/, in the npm tarball for linux-x64), then a local source build
 * (build/Release/, made by `npm run build:native`). GRPO_KERNELS_NATIVE=local skips the prebuilt,
 * GRPO_KERNELS_NATIVE=prebuilt the local build.
 */
export function nativeAddonCandidates(): NativeAddonCandidate[] {
  const env = process.env.GRPO_KERNELS_NATIVE_PATH;
  if (env !== undefined && env !== '') return [{ source: 'env', path: env }];
  const only = process.env.GRPO_KERNELS_NATIVE;
  const all: NativeAddonCandidate[] = [
    { source: 'prebuilt', path: join(packageRoot, 'prebuilds', prebuiltKey(), ADDON_FILE) },
    { source: 'local', path: join(packageRoot, 'build', 'Release', ADDON_FILE) },
  ];
  return only === 'local' || only === 'prebuilt' ? all.filter((c) => c.source === only) : all;
}

/** The first candidate file that exists (what would be loaded, before the load probe), else the last tried. */
export function nativeAddonPath(): string {
  const all = nativeAddonCandidates();
  return (all.find((c) => existsSync(c.path)) ?? all[all.length - 1]).path;
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

/**
 * Loads the file in a child Node process first (once per file and process): a prebuilt that cannot
 * load here (an older glibc, a foreign architecture) or that crashes while loading then costs a
 * reason, not this process. Returns why it failed, or undefined. GRPO_KERNELS_NATIVE_PROBE=0 skips it.
 */
const probed = new Map<string, string | undefined>();
function probeInChild(path: string): string | undefined {
  if (process.env.GRPO_KERNELS_NATIVE_PROBE === '0') return undefined;
  if (probed.has(path)) return probed.get(path);
  const why = runProbe(path);
  probed.set(path, why);
  return why;
}

function runProbe(path: string): string | undefined {
  const code =
    'const m = require(process.argv[1]); const i = m.buildInfo(); ' +
    "if (typeof i !== 'object' || typeof i.cuda !== 'boolean') throw new Error('buildInfo() returned ' + JSON.stringify(i));";
  const r = spawnSync(process.execPath, ['-e', code, path], { encoding: 'utf8', timeout: 60_000 });
  if (r.error) return `the load probe could not run: ${r.error.message}`;
  if (r.signal) return `loading it crashed a probe process (${r.signal})`;
  if (r.status === 0) return undefined;
  // Node prints the thrown error's first line after the stack frame lines; dlopen's reason is in it.
  const line = (r.stderr ?? '').split('\n').find((l) => /^\w*Error: /.test(l));
  return line?.replace(/^\w*Error: /, '').trim() ?? `the load probe exited with ${r.status}`;
}

let cached: { key: string; addon: NativeAddon; from: NativeAddonCandidate } | undefined;

/**
 * Loads (once per candidate list) the first addon that loads; BACKEND_UNAVAILABLE with each
 * candidate's reason when none does, worded for the backend that asked (`cuda` or `cpu`).
 */
export function loadNativeAddon(backend: 'cuda' | 'cpu' = 'cuda'): NativeAddon {
  const candidates = nativeAddonCandidates();
  const key = JSON.stringify(candidates);
  if (cached?.key === key) return cached.addon;
  const reasons: string[] = [];
  let found = false;
  for (const c of candidates) {
    if (!existsSync(c.path)) {
      if (c.source === 'prebuilt')
        reasons.push(
          prebuiltKey() === 'linux-x64'
            ? 'no prebuilt addon (prebuilds/linux-x64/ is absent: a source checkout)'
            : `no prebuilt addon for ${prebuiltKey()} (the npm package carries linux-x64 only)`,
        );
      else reasons.push(recordedBuildFailure(c.path) ?? `${c.path} does not exist`);
      continue;
    }
    found = true;
    const why = probeInChild(c.path);
    if (why !== undefined) {
      reasons.push(`${c.source} ${c.path} does not load here: ${why}`);
      continue;
    }
    try {
      const addon = createRequire(import.meta.url)(c.path) as NativeAddon;
      cached = { key, addon, from: c };
      return addon;
    } catch (e) {
      reasons.push(`${c.source} ${c.path} does not load here: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  throw new GrpoKernelsError(
    'BACKEND_UNAVAILABLE',
    `${backend} backend: native addon ${found ? 'not loadable' : 'not built'}: ${reasons.join('; ')} ` +
      `(build one from source with \`npm run build:native\`; see docs/install.md)`,
  );
}

/** Which file the loaded addon came from, for a backend's device details: "prebuilt linux-x64", "local build", … */
export function loadedNativeAddon(): string {
  const from = cached?.from;
  if (from === undefined) return 'not loaded';
  if (from.source === 'prebuilt') return `prebuilt ${prebuiltKey()}`;
  return from.source === 'local' ? `local build (${from.path})` : `GRPO_KERNELS_NATIVE_PATH (${from.path})`;
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
