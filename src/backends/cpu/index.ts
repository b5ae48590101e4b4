/**
 * The cpu backend: native SIMD kernels on every core (native/cpu/*.cc inside the addon, AVX2 + FMA +
 * F16C where the CPU has them, a portable build elsewhere), behind the same Backend interface. Ops are
 * asynchronous: the addon runs each on its job thread and thread pool in call order and settles the
 * promise when the kernels are done, so the event loop never waits for them; a bad value only the
 * kernels see (a target out of range, a row of all −Inf) rejects that op's promise with the RANGE error
 * the host checks give. docs/cpu.md describes the design, threads and numerics.
 *
 * Threads: `createContext({ backend: 'cpu', threads })`, else env GRPO_KERNELS_THREADS, else every
 * core; never more than the cores (the pool would only contend with itself). Results are bitwise the
 * same for any thread count (fixed blocks). Env GRPO_KERNELS_CPU_PORTABLE=1 forces the portable
 * kernels (tests run both paths); GRPO_KERNELS_CPU_AVX512=0 keeps the LM head on its AVX2 build on a CPU
 * with AVX-512F (the same bits: native/cpu/gemm.h).
 */
import type { DType, HostArrayMap } from '../../dtypes.js';
import { GrpoKernelsError } from '../../errors.js';
import { loadedNativeAddon, loadNativeAddon } from '../addon.js';
import type { Backend, BackendOptions, DeviceInfo } from '../backend.js';
import { snapshotArgs } from '../snapshot.js';
import { cpuAdvantages, cpuExpandToTokens, cpuWhiten } from './advantages.js';
import {
  cpuLinearLogprobStates,
  cpuLinearLogprobs,
  cpuLinearLogprobsBackward,
  cpuLogprobStates,
  cpuMergeLogprobStates,
} from './lmhead.js';
import { cpuGatherProbs, cpuLogprobs, cpuLogprobsBackward } from './logprobs.js';
import { type NativeCpuDevice, native } from './native.js';
import { cpuPolicyLoss } from './policy.js';
import { cpuRolloutRejection } from './rejection.js';
import { CpuQueue, cpuTensor } from './storage.js';
import { cpuThrAggregate, cpuThrReweight, cpuThrScore, cpuTokenHiddenReward } from './thr.js';

/**
 * Test hook: when > 0, the most threads a context may have instead of the core count, so the tests can
 * check that 8 threads give the bits of 1 and 2 on a 2-core machine. Not for users: more threads than
 * cores only adds contention.
 */
export const cpuTuning = { maxThreads: 0 };

/** The thread count a context asks for: the option, else GRPO_KERNELS_THREADS, else undefined (all cores). */
function requestedThreads(options: BackendOptions): number | undefined {
  if (options.threads !== undefined) return options.threads;
  const env = process.env.GRPO_KERNELS_THREADS;
  if (env === undefined || env === '') return undefined;
  const n = Number(env);
  if (!Number.isInteger(n) || n < 1) {
    throw new GrpoKernelsError(
      'RANGE',
      `GRPO_KERNELS_THREADS: expected a positive integer, got ${JSON.stringify(env)}`,
      { argument: 'GRPO_KERNELS_THREADS' },
    );
  }
  return n;
}

/** Creates the native cpu backend; BACKEND_UNAVAILABLE names the missing addon or build. */
export async function createCpuBackend(options: BackendOptions): Promise<Backend> {
  const addon = loadNativeAddon('cpu');
  if (addon.CpuDevice === undefined || addon.cpuInfo === undefined) {
    throw new GrpoKernelsError(
      'BACKEND_UNAVAILABLE',
      'cpu backend: the native addon was built without the cpu kernels (an older build: rebuild it with `npm run build:native`)',
    );
  }
  const cores = addon.cpuInfo().cores;
  const requested = requestedThreads(options);
  const cap = cpuTuning.maxThreads > 0 ? cpuTuning.maxThreads : cores;
  const threads = Math.min(requested ?? cores, cap);
  const portable = process.env.GRPO_KERNELS_CPU_PORTABLE === '1';
  const avx512 = process.env.GRPO_KERNELS_CPU_AVX512 !== '0';
  let dev: NativeCpuDevice;
  try {
    dev = new addon.CpuDevice({ threads, portable, avx512 });
  } catch (e) {
    throw new GrpoKernelsError('BACKEND_UNAVAILABLE', `cpu backend: ${(e as Error).message ?? String(e)}`, {
      cause: e,
    });
  }
  const info = dev.info();
  const details: DeviceInfo['details'] = {
    isa: info.isa,
    lmheadIsa: info.lmheadIsa,
    logprobsIsa: info.logprobsIsa,
    threads: info.threads,
    cores: info.cores,
    addon: loadedNativeAddon(),
  };
  if (requested !== undefined && requested !== info.threads) details.requestedThreads = requested;
  if (info.isa === 'portable')
    details.portableReason = portable
      ? 'GRPO_KERNELS_CPU_PORTABLE=1'
      : info.avx2Compiled
        ? 'this CPU lacks AVX2, FMA or F16C'
        : 'built without the AVX2 kernels (not x86-64)';
  const device: DeviceInfo = {
    name: `CPU (native, ${info.isa === 'avx2' ? 'AVX2 + FMA + F16C' : 'portable'}, ${info.threads} thread${info.threads === 1 ? '' : 's'})`,
    details,
  };
  const q = new CpuQueue(dev, addon.cpuAdviseHugePages);
  let disposed = false;
  return {
    name: 'cpu',
    device,
    firstDecrease: addon.cpuFirstDecrease,
    offsetCounts: addon.cpuOffsetCounts,
    upload<D extends DType>(data: HostArrayMap[D], shape: readonly number[], dtype: D) {
      return cpuTensor(q, q.copy(dtype, data), shape, dtype);
    },
    // Every op on a snapshot of its host arrays (snapshotArgs): the addon reads them in place when the
    // job runs, after the call has returned to a caller who may rewrite them.
    logprobs: (a) => cpuLogprobs(q, snapshotArgs(a)),
    logprobsBackward: (a) => cpuLogprobsBackward(q, snapshotArgs(a)),
    gatherProbs: (a) => cpuGatherProbs(q, snapshotArgs(a)),
    linearLogprobs: (a) => cpuLinearLogprobs(q, snapshotArgs(a)),
    linearLogprobsBackward: (a) => cpuLinearLogprobsBackward(q, snapshotArgs(a)),
    logprobStates: (a) => cpuLogprobStates(q, snapshotArgs(a)),
    linearLogprobStates: (a) => cpuLinearLogprobStates(q, snapshotArgs(a)),
    mergeLogprobStates: (a) => cpuMergeLogprobStates(q, snapshotArgs(a)),
    advantages: (a) => cpuAdvantages(q, snapshotArgs(a)),
    expandToTokens: (a) => cpuExpandToTokens(q, snapshotArgs(a)),
    whiten: (a) => cpuWhiten(q, snapshotArgs(a)),
    tokenHiddenReward: (a) => cpuTokenHiddenReward(q, snapshotArgs(a)),
    thrReweight: (a) => cpuThrReweight(q, snapshotArgs(a)),
    thrAggregate: (a) => cpuThrAggregate(q, snapshotArgs(a)),
    thrScore: (a) => cpuThrScore(q, snapshotArgs(a)),
    policyLoss: (a) => cpuPolicyLoss(q, snapshotArgs(a)),
    rolloutRejection: (a) => cpuRolloutRejection(q, snapshotArgs(a)),
    synchronize: () => native(() => dev.synchronize()),
    copyProbe: (bytes) => native(() => dev.copyProbe(bytes)),
    dispose() {
      if (disposed) return;
      disposed = true;
      q.clear();
      dev.close();
    },
  };
}

/**
 * Seconds per streaming read of `data`'s bytes on a context's threads (median of 7): the bandwidth
 * yardstick of the benchmarks. Opens its own pool of `threads` (default: every core).
 */
export async function cpuReadProbe(data: ArrayBufferView, threads?: number): Promise<number> {
  const addon = loadNativeAddon('cpu');
  if (addon.CpuDevice === undefined || addon.cpuInfo === undefined)
    throw new GrpoKernelsError('BACKEND_UNAVAILABLE', 'cpu backend: the native addon lacks the cpu kernels');
  const dev = new addon.CpuDevice({
    threads: threads ?? addon.cpuInfo().cores,
    portable: false,
    avx512: true,
  });
  try {
    return await native(() => dev.readProbe(data));
  } finally {
    dev.close();
  }
}
