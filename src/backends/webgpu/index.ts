/// <reference types="@webgpu/types" />
/**
 * The webgpu backend: WGSL kernels (shaders/*.wgsl) through Dawn's `webgpu` package in Node or
 * `navigator.gpu` in a browser. This file only wires op modules into the Backend interface.
 *
 * Shared pieces, one idea per file:
 *   gpu.ts       adapter + device (Dawn / navigator.gpu, max limits, features, software Vulkan)
 *   runtime.ts   GpuRuntime: buffers + live-byte count, error scopes (run), device loss (guard),
 *                dispatch over a 2-D grid, read-back
 *   storage.ts   GpuStorage tensors: upload, read, poisoned outputs, fromGPUBuffer
 *   shaders.ts   WGSL loading (common.wgsl sections + family file, concatenated) + pipeline cache
 *   uniforms.ts  uniform struct layouts defined once in TS (tested against the WGSL)
 *   chunking.ts  row chunks and aligned binding windows for tensors > one storage binding
 *   kit.ts       WebGpuKit: what every op module receives (runtime, pipelines, tuning, WG size)
 *   probe.ts     copyProbe
 * Op modules, one per kernel family: logprobs.ts, lmhead.ts, advantages.ts, thr.ts, policy.ts,
 * rejection.ts (+ shaders/<family>.wgsl; docs/webgpu.md says how to add one).
 */
import type { DType, FloatDType, HostArrayMap } from '../../dtypes.js';
import type { Tensor } from '../../tensor.js';
import type {
  AdvantagesArgs,
  AdvantagesResult,
  Backend,
  BackendOptions,
  DeviceInfo,
  ExpandToTokensArgs,
  GatherProbsArgs,
  LinearLogprobStatesArgs,
  LinearLogprobsArgs,
  LinearLogprobsBackwardArgs,
  LinearLogprobsGrads,
  LogprobStates,
  LogprobStatesArgs,
  LogprobsArgs,
  LogprobsBackwardArgs,
  LogprobsResult,
  MergeLogprobStatesArgs,
  PolicyLossArgs,
  PolicyLossResult,
  RolloutRejectionArgs,
  RolloutRejectionResult,
  ThrAggregateArgs,
  ThrResult,
  ThrReweightArgs,
  ThrScoreArgs,
  TokenHiddenRewardArgs,
  WhitenArgs,
} from '../backend.js';
import { ADVANTAGES_PARAMS, webgpuAdvantages, webgpuExpandToTokens, webgpuWhiten } from './advantages.js';
import { acquireDevice } from './gpu.js';
import { type Tuning, WebGpuKit } from './kit.js';
import {
  LMHEAD_PARAMS,
  webgpuLinearLogprobStates,
  webgpuLinearLogprobs,
  webgpuLinearLogprobsBackward,
  webgpuLogprobStates,
  webgpuMergeLogprobStates,
} from './lmhead.js';
import { LOGPROBS_PARAMS, webgpuGatherProbs, webgpuLogprobs, webgpuLogprobsBackward } from './logprobs.js';
import { POLICY_PARAMS, webgpuPolicyLoss } from './policy.js';
import { webgpuCopyProbe } from './probe.js';
import { REJECTION_PARAMS, webgpuRolloutRejection } from './rejection.js';
import { GpuRuntime } from './runtime.js';
import { pinInputs, uploadTensor, wrapBuffer } from './storage.js';
import {
  THR_PARAMS,
  webgpuThrAggregate,
  webgpuThrReweight,
  webgpuThrScore,
  webgpuTokenHiddenReward,
} from './thr.js';
import type { UniformLayout } from './uniforms.js';

/**
 * Every uniform struct of every family, checked against its .wgsl by test/webgpu/infra.test.ts.
 */
export const UNIFORM_LAYOUTS: readonly UniformLayout[] = [
  LOGPROBS_PARAMS,
  ADVANTAGES_PARAMS,
  THR_PARAMS,
  LMHEAD_PARAMS,
  POLICY_PARAMS,
  REJECTION_PARAMS,
];

export interface WebGpuBackendOptions extends BackendOptions {
  /** Internal knobs (tests): see Tuning in kit.ts. */
  tuning?: Partial<Tuning>;
}

export class WebGpuBackend implements Backend {
  readonly name = 'webgpu' as const;
  readonly device: DeviceInfo;
  readonly kit: WebGpuKit;

  constructor(rt: GpuRuntime, tuning?: Partial<Tuning>) {
    this.kit = new WebGpuKit(rt, tuning);
    this.device = describe(rt);
  }

  /** The runtime (device, limits, liveBytes), for tests and benchmarks. */
  get runtime(): GpuRuntime {
    return this.kit.rt;
  }

  upload<D extends DType>(data: HostArrayMap[D], shape: readonly number[], dtype: D): Tensor<D> {
    return uploadTensor(this.kit.rt, data, shape, dtype);
  }

  fromGPUBuffer<D extends DType>(buffer: unknown, shape: readonly number[], dtype: D): Tensor<D> {
    return wrapBuffer(this.kit.rt, buffer, shape, dtype);
  }

  // ------------------------------------------------------------ logprobs family (logprobs.ts)
  logprobs(a: LogprobsArgs): Promise<LogprobsResult> {
    return pinInputs(a, (s) => this.kit.rt.ordered(() => webgpuLogprobs(this.kit, s)));
  }
  logprobsBackward(a: LogprobsBackwardArgs): Promise<Tensor<FloatDType>> {
    return pinInputs(a, (s) => this.kit.rt.ordered(() => webgpuLogprobsBackward(this.kit, s)));
  }
  gatherProbs(a: GatherProbsArgs): Promise<Tensor<'f32'>> {
    return pinInputs(a, (s) => this.kit.rt.ordered(() => webgpuGatherProbs(this.kit, s)));
  }

  // ------------------------------------------------------------ LM-head family (lmhead.ts)
  linearLogprobs(a: LinearLogprobsArgs): Promise<LogprobsResult> {
    return pinInputs(a, (s) => this.kit.rt.ordered(() => webgpuLinearLogprobs(this.kit, s)));
  }
  linearLogprobsBackward(a: LinearLogprobsBackwardArgs): Promise<LinearLogprobsGrads<FloatDType>> {
    return pinInputs(a, (s) => this.kit.rt.ordered(() => webgpuLinearLogprobsBackward(this.kit, s)));
  }
  logprobStates(a: LogprobStatesArgs): Promise<LogprobStates> {
    return pinInputs(a, (s) => this.kit.rt.ordered(() => webgpuLogprobStates(this.kit, s)));
  }
  linearLogprobStates(a: LinearLogprobStatesArgs): Promise<LogprobStates> {
    return pinInputs(a, (s) => this.kit.rt.ordered(() => webgpuLinearLogprobStates(this.kit, s)));
  }
  mergeLogprobStates(a: MergeLogprobStatesArgs): Promise<LogprobsResult> {
    return pinInputs(a, (s) => this.kit.rt.ordered(() => webgpuMergeLogprobStates(this.kit, s)));
  }

  // ------------------------------------------------------------ advantages family (advantages.ts)
  advantages(a: AdvantagesArgs): Promise<AdvantagesResult> {
    return pinInputs(a, (s) => this.kit.rt.ordered(() => webgpuAdvantages(this.kit, s)));
  }
  expandToTokens(a: ExpandToTokensArgs): Promise<Tensor<'f32'>> {
    return pinInputs(a, (s) => this.kit.rt.ordered(() => webgpuExpandToTokens(this.kit, s)));
  }
  whiten(a: WhitenArgs): Promise<Tensor<'f32'>> {
    return pinInputs(a, (s) => this.kit.rt.ordered(() => webgpuWhiten(this.kit, s)));
  }

  // ------------------------------------------------------------ THR family (thr.ts)
  tokenHiddenReward(a: TokenHiddenRewardArgs): Promise<ThrResult> {
    return pinInputs(a, (s) => this.kit.rt.ordered(() => webgpuTokenHiddenReward(this.kit, s)));
  }
  thrReweight(a: ThrReweightArgs): Promise<Tensor<'f32'>> {
    return pinInputs(a, (s) => this.kit.rt.ordered(() => webgpuThrReweight(this.kit, s)));
  }
  thrAggregate(a: ThrAggregateArgs): Promise<Tensor<'f32'>> {
    return pinInputs(a, (s) => this.kit.rt.ordered(() => webgpuThrAggregate(this.kit, s)));
  }
  thrScore(a: ThrScoreArgs): Promise<ThrResult> {
    return pinInputs(a, (s) => this.kit.rt.ordered(() => webgpuThrScore(this.kit, s)));
  }

  // ------------------------------------------------------------ policy loss (policy.ts)
  policyLoss(a: PolicyLossArgs): Promise<PolicyLossResult> {
    return pinInputs(a, (s) => this.kit.rt.ordered(() => webgpuPolicyLoss(this.kit, s)));
  }

  // ------------------------------------------------------------ rollout rejection (rejection.ts)
  rolloutRejection(a: RolloutRejectionArgs): Promise<RolloutRejectionResult> {
    return pinInputs(a, (s) => this.kit.rt.ordered(() => webgpuRolloutRejection(this.kit, s)));
  }

  // ------------------------------------------------------------ timing, lifetime
  synchronize(): Promise<void> {
    const rt = this.kit.rt;
    return rt.ordered(() => rt.synchronize());
  }
  copyProbe(bytes: number): Promise<number> {
    return this.kit.rt.ordered(() => webgpuCopyProbe(this.kit.rt, bytes));
  }
  dispose(): void {
    if (this.kit.rt.lostReason === undefined) this.kit.dispose();
    this.kit.rt.dispose();
  }
}

function describe(rt: GpuRuntime): DeviceInfo {
  const info = (rt.adapter?.info ?? (rt.device as { adapterInfo?: GPUAdapterInfo }).adapterInfo) as
    | GPUAdapterInfo
    | undefined;
  const name =
    [info?.vendor, info?.architecture, info?.device, info?.description].filter((s) => s).join(' ') ||
    'WebGPU device';
  const details: Record<string, string | number | boolean> = {
    vendor: info?.vendor ?? '',
    architecture: info?.architecture ?? '',
    description: info?.description ?? '',
    callerDevice: !rt.owned,
    // A CPU rasteriser posing as a GPU (lavapipe/llvmpipe, SwiftShader, WARP): correct, not fast.
    software:
      (info as { isFallbackAdapter?: boolean } | undefined)?.isFallbackAdapter === true ||
      /llvmpipe|lavapipe|swiftshader|\bwarp\b|microsoft basic render/i.test(name),
    features: [...rt.features].sort().join(','),
  };
  for (const [k, v] of Object.entries(rt.limits)) details[k] = v;
  return { name, details };
}

/** Creates the webgpu backend on a new device, or on `options.device` (a caller's GPUDevice). */
export async function createWebGpuBackend(options: WebGpuBackendOptions = {}): Promise<WebGpuBackend> {
  const acquired = await acquireDevice(options.device);
  return new WebGpuBackend(new GpuRuntime(acquired), options.tuning);
}
