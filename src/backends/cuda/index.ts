/**
 * The cuda backend: a thin wrapper over the native addon (native/addon.cc, kernels in native/cuda/).
 * Ops are asynchronous: the addon queues each on its device's job thread, which enqueues the kernels
 * on one CUDA stream (so ops run in call order) and settles the promise when the stream has synced;
 * the Node event loop never waits for the GPU. docs/cuda.md describes the build and the decisions.
 */
import { existsSync } from 'node:fs';
import type { DType, HostArrayMap } from '../../dtypes.js';
import { GrpoKernelsError } from '../../errors.js';
import type { Backend, BackendOptions, DeviceInfo } from '../backend.js';
import { cudaAdvantages, cudaExpandToTokens, cudaWhiten } from './advantages.js';
import {
  cudaLinearLogprobStates,
  cudaLinearLogprobs,
  cudaLinearLogprobsBackward,
  cudaLogprobStates,
  cudaMergeLogprobStates,
} from './lmhead.js';
import { cudaGatherProbs, cudaLogprobs, cudaLogprobsBackward } from './logprobs.js';
import { loadedNativeAddon, loadNativeAddon, type NativeDevice, native } from './native.js';
import { cudaPolicyLoss } from './policy.js';
import { cudaRolloutRejection } from './rejection.js';
import { CudaMemory } from './storage.js';
import { cudaThrAggregate, cudaThrReweight, cudaThrScore, cudaTokenHiddenReward } from './thr.js';

/**
 * The static CUDA runtime says "driver version is insufficient" also when there is no driver at all
 * (libcuda.so.1 absent): say which, so a user does not look for a newer driver on a machine with none.
 */
function driverHint(message: string): string {
  if (!/cudaErrorInsufficientDriver|cudaErrorNoDevice/.test(message)) return message;
  if (process.platform === 'linux' && !existsSync('/proc/driver/nvidia/version')) {
    return `${message}: no NVIDIA driver is loaded on this machine (/proc/driver/nvidia/version is absent); the addon is built, and needs only the driver, not the CUDA toolkit`;
  }
  return message;
}

/** Creates the cuda backend; BACKEND_UNAVAILABLE names the missing addon, the build, or the CUDA call. */
export async function createCudaBackend(options: BackendOptions): Promise<Backend> {
  const addon = loadNativeAddon();
  const build = addon.buildInfo();
  if (!build.cuda || addon.CudaDevice === undefined) {
    throw new GrpoKernelsError(
      'BACKEND_UNAVAILABLE',
      `cuda backend: ${build.reason || 'built without CUDA'}`,
    );
  }
  const index = options.deviceIndex ?? 0;
  if (!Number.isInteger(index) || index < 0) {
    throw new GrpoKernelsError(
      'BACKEND_UNAVAILABLE',
      `cuda backend: deviceIndex must be an integer ≥ 0, got ${index}`,
      {
        argument: 'deviceIndex',
      },
    );
  }
  const Device = addon.CudaDevice;
  let dev: NativeDevice;
  try {
    dev = new Device(index);
  } catch (e) {
    const err = e as { code?: string; message?: string };
    throw new GrpoKernelsError(
      err.code === 'OUT_OF_MEMORY' ? 'OUT_OF_MEMORY' : 'BACKEND_UNAVAILABLE',
      `cuda backend: ${driverHint(err.message ?? String(e))}`,
      { cause: e },
    );
  }
  const info = dev.info();
  const device: DeviceInfo = {
    name: info.name,
    details: {
      index: info.index,
      computeCapability: info.computeCapability,
      multiProcessors: info.multiProcessors,
      totalMemoryGiB: Math.round((info.totalMemoryBytes / 2 ** 30) * 10) / 10,
      l2CacheMiB: Math.round((info.l2CacheBytes / 2 ** 20) * 10) / 10,
      cudaRuntime: info.cudaRuntimeVersion,
      cudaDriver: info.cudaDriverVersion,
      archs: info.archs,
      addon: loadedNativeAddon(),
    },
  };
  const mem = new CudaMemory(dev);
  let disposed = false;
  return {
    name: 'cuda',
    device,
    upload<D extends DType>(data: HostArrayMap[D], shape: readonly number[], dtype: D) {
      return mem.upload(data, shape, dtype);
    },
    logprobs: (a) => cudaLogprobs(mem, a),
    logprobsBackward: (a) => cudaLogprobsBackward(mem, a, { inPlace: a.inPlace }),
    gatherProbs: (a) => cudaGatherProbs(mem, a),
    advantages: (a) => cudaAdvantages(mem, a),
    expandToTokens: (a) => cudaExpandToTokens(mem, a),
    whiten: (a) => cudaWhiten(mem, a),
    tokenHiddenReward: (a) => cudaTokenHiddenReward(mem, a),
    thrReweight: (a) => cudaThrReweight(mem, a),
    thrAggregate: (a) => cudaThrAggregate(mem, a),
    thrScore: (a) => cudaThrScore(mem, a),
    linearLogprobs: (a) => cudaLinearLogprobs(mem, a),
    linearLogprobsBackward: (a) => cudaLinearLogprobsBackward(mem, a),
    logprobStates: (a) => cudaLogprobStates(mem, a),
    linearLogprobStates: (a) => cudaLinearLogprobStates(mem, a),
    mergeLogprobStates: (a) => cudaMergeLogprobStates(mem, a),
    policyLoss: (a) => cudaPolicyLoss(mem, a),
    rolloutRejection: (a) => cudaRolloutRejection(mem, a),
    // The offsets check of the API, native where the addon has its cpu part (native/cpu/offsets.cc).
    firstDecrease: addon.cpuFirstDecrease,
    offsetCounts: addon.cpuOffsetCounts,
    synchronize: () => native(() => dev.synchronize()),
    copyProbe: (bytes) => native(() => dev.copyProbe(bytes)),
    fromDevicePointer<D extends DType>(pointer: bigint | number, shape: readonly number[], dtype: D) {
      return mem.wrap(pointer, shape, dtype);
    },
    dispose() {
      if (disposed) return;
      disposed = true;
      dev.close();
    },
  };
}
