/**
 * A context owns one backend and the tensors made on it. Its methods are the package's ops: each
 * validates (src/api/), dispatches to the backend, and computes nothing itself.
 */
import * as adv from './api/advantages.js';
import * as lh from './api/lmhead.js';
import * as lp from './api/logprobs.js';
import * as pl from './api/policy.js';
import * as rj from './api/rejection.js';
import * as thr from './api/thr.js';
import type { TensorLike } from './api/validate.js';
import { checkDetached, checkOptions, describe, hostArrayName, ownedView, quote } from './api/validate.js';
import type {
  AdvantagesResult,
  Backend,
  BackendOptions,
  DeviceInfo,
  LinearLogprobsGrads,
  LogprobStates,
  LogprobsResult,
  PolicyLossResult,
  RestrictedVocab,
  RolloutRejectionResult,
  ThrResult,
} from './backends/backend.js';
import {
  type BackendChoice,
  loadAuto,
  loadBackend,
  loadCpu,
  type SkippedBackend,
} from './backends/registry.js';
import {
  DTYPES,
  type DType,
  type FloatDType,
  type HostArrayMap,
  inferDType,
  isHostArrayOf,
} from './dtypes.js';
import { fail } from './errors.js';
import type { Layout } from './layout.js';
import { adopt, type BackendName, retire, type Tensor } from './tensor.js';

export interface CreateContextOptions extends BackendOptions {
  /**
   * 'cuda' | 'webgpu' | 'cpu' (native SIMD kernels; falls back to 'js' when the addon cannot load, and
   * `ctx.skipped` says why) | 'js' (the TypeScript float64 reference) | 'auto' (cuda, then webgpu, then
   * cpu, then js). Default 'auto'.
   */
  backend?: BackendChoice;
}

export class Context {
  readonly #backend: Backend;
  #disposed = false;
  /** For `auto` (and `cpu` falling back to `js`): the backends passed over before this one, with the reason. */
  readonly skipped: readonly SkippedBackend[];

  constructor(backend: Backend, skipped: readonly SkippedBackend[] = []) {
    this.#backend = backend;
    this.skipped = skipped;
  }

  /** The backend, for an op: BACKEND_UNAVAILABLE once the context is disposed. */
  #live(op: string): Backend {
    if (this.#disposed) fail('BACKEND_UNAVAILABLE', op, `this ${this.#backend.name} context was disposed`);
    return this.#backend;
  }

  /** Marks an op's result tensors as this context's (a tensor of another context is refused). */
  #own<T>(result: T): T {
    return adopt(result, this.#backend);
  }

  /** Runs an op on the live backend and adopts its result (errors reject, never throw). */
  async #op<T>(name: string, run: (backend: Backend) => Promise<T>): Promise<T> {
    return this.#own(await run(this.#live(name)));
  }

  get backend(): BackendName {
    return this.#backend.name;
  }

  get device(): DeviceInfo {
    return this.#backend.device;
  }

  /**
   * Uploads host data. `shape` defaults to [data.length]; `dtype` defaults to the array's own
   * (required for Uint16Array, which may hold f16 or bf16 bits).
   */
  tensor(data: Float32Array, shape?: readonly number[], dtype?: 'f32'): Tensor<'f32'>;
  tensor(data: Int32Array, shape?: readonly number[], dtype?: 'i32'): Tensor<'i32'>;
  tensor(data: Uint8Array, shape?: readonly number[], dtype?: 'u8'): Tensor<'u8'>;
  tensor<D extends 'f16' | 'bf16'>(data: Uint16Array, shape: readonly number[], dtype: D): Tensor<D>;
  tensor<D extends DType>(data: HostArrayMap[D], shape?: readonly number[], dtype?: D): Tensor<D>;
  tensor<D extends DType>(data: HostArrayMap[D], shape?: readonly number[], dtype?: D): Tensor<D> {
    if (!ArrayBuffer.isView(data)) fail('DTYPE', 'data', 'expected a typed array');
    if (dtype === undefined && inferDType(data) === undefined) {
      fail(
        'DTYPE',
        data instanceof Uint16Array ? 'dtype' : 'data',
        data instanceof Uint16Array
          ? `expected 'f16' or 'bf16' for a Uint16Array, got none`
          : `expected a Float32Array, Int32Array, Uint8Array, or a Uint16Array with dtype 'f16' or 'bf16', got ${describe(data)}`,
      );
    }
    const dt = (dtype === undefined ? inferDType(data) : dtype) as D; // null is a wrong dtype, not none
    if (!DTYPES.includes(dt))
      fail('DTYPE', 'dtype', `expected one of ${DTYPES.join(', ')}, got ${quote(dt)}`);
    if (!isHostArrayOf(data, dt))
      fail('DTYPE', 'data', `expected a ${hostArrayName(dt)} for dtype ${dt}, got ${data.constructor.name}`);
    checkDetached('data', data);
    const s = checkTensorShape(shape ?? [data.length]);
    const n = s.reduce((a, b) => a * b, 1);
    if (n !== data.length)
      fail('SHAPE', 'shape', `expected its product (${n}) to equal data.length (${data.length})`);
    return this.#own(this.#live('tensor').upload(ownedView(data), s, dt));
  }

  /** WebGPU: wraps a caller's GPUBuffer (no copy; the caller keeps ownership). */
  fromGPUBuffer<D extends DType>(buffer: unknown, shape: readonly number[], dtype: D): Tensor<D> {
    if (!this.#backend.fromGPUBuffer)
      fail(
        'BACKEND_UNAVAILABLE',
        'fromGPUBuffer',
        `only the webgpu backend wraps GPUBuffers; this context is ${this.backend}`,
      );
    const backend = this.#live('fromGPUBuffer');
    checkWrapDType(dtype);
    return this.#own(backend.fromGPUBuffer!(buffer, checkTensorShape(shape), dtype));
  }

  /** CUDA: wraps a caller's device pointer (no copy; the caller keeps ownership). */
  fromDevicePointer<D extends DType>(
    pointer: bigint | number,
    shape: readonly number[],
    dtype: D,
  ): Tensor<D> {
    if (!this.#backend.fromDevicePointer)
      fail(
        'BACKEND_UNAVAILABLE',
        'fromDevicePointer',
        `only the cuda backend wraps device pointers; this context is ${this.backend}`,
      );
    const backend = this.#live('fromDevicePointer');
    checkWrapDType(dtype);
    return this.#own(backend.fromDevicePointer!(pointer, checkTensorShape(shape), dtype));
  }

  // ------------------------------------------------------------ logprobs family
  /** log softmax(logits / T) at the targets, in one pass per row. */
  logprobs(
    logits: Tensor<FloatDType>,
    targets: TensorLike<'i32'>,
    options?: lp.LogprobsOptions,
  ): Promise<LogprobsResult> {
    return this.#op('logprobs', (b) => lp.logprobs(b, logits, targets, options));
  }

  /** Gradient of the logprobs (and optionally entropy) w.r.t. the logits, [N, V] in the logits' dtype. */
  logprobsBackward(
    logits: Tensor<FloatDType>,
    targets: TensorLike<'i32'>,
    lse: TensorLike<'f32'>,
    gradLogprobs: TensorLike<'f32'>,
    options?: lp.LogprobsBackwardOptions,
  ): Promise<Tensor<FloatDType>> {
    return this.#op('logprobsBackward', (b) =>
      lp.logprobsBackward(b, logits, targets, lse, gradLogprobs, options),
    );
  }

  /** Softmax probabilities on each group's restricted vocabulary (packed [T_g, K_g] blocks). */
  gatherProbs(
    logits: Tensor<FloatDType>,
    lse: TensorLike<'f32'>,
    options: lp.GatherProbsOptions,
  ): Promise<Tensor<'f32'>> {
    return this.#op('gatherProbs', (b) => lp.gatherProbs(b, logits, lse, options));
  }

  // ------------------------------------------------------------ LM head family
  /**
   * logprobs of hidden · weightᵀ + bias (an LM head) without ever forming the [N, V] logits: the
   * same outputs as `logprobs` on those logits. hidden [N, d] and weight [V, d] share a float dtype.
   */
  linearLogprobs(
    hidden: Tensor<FloatDType>,
    weight: Tensor<FloatDType>,
    targets: TensorLike<'i32'>,
    options?: lh.LinearLogprobsOptions,
  ): Promise<LogprobsResult> {
    return this.#op('linearLogprobs', (b) => lh.linearLogprobs(b, hidden, weight, targets, options));
  }

  /**
   * Gradients of the linearLogprobs outputs (logprobs, and entropy with gradEntropy) w.r.t. hidden,
   * weight and bias, recomputing the logits tile by tile from `lse` (no [N, V] tensor): f32, or
   * hidden's dtype with `gradDtype: 'input'` (accumulated in f32 either way, rounded once).
   */
  linearLogprobsBackward<D extends FloatDType, G extends lh.LinearLogprobsGradDtype = 'f32'>(
    hidden: Tensor<D>,
    weight: Tensor<FloatDType>,
    targets: TensorLike<'i32'>,
    lse: TensorLike<'f32'>,
    gradLogprobs: TensorLike<'f32'>,
    options?: lh.LinearLogprobsBackwardOptions<G>,
  ): Promise<LinearLogprobsGrads<G extends 'input' ? D : 'f32'>> {
    return this.#op('linearLogprobsBackward', (b) =>
      lh.linearLogprobsBackward(b, hidden, weight, targets, lse, gradLogprobs, options),
    ) as Promise<LinearLogprobsGrads<G extends 'input' ? D : 'f32'>>;
  }

  /** Each row's online softmax state over a vocabulary shard of materialised logits. */
  logprobStates(
    logits: Tensor<FloatDType>,
    targets: TensorLike<'i32'>,
    options?: lh.LogprobStatesOptions,
  ): Promise<LogprobStates> {
    return this.#op('logprobStates', (b) => lh.logprobStates(b, logits, targets, options));
  }

  /** Each row's online softmax state over a vocabulary shard of an LM head (weight rows [vocabStart, +V)). */
  linearLogprobStates(
    hidden: Tensor<FloatDType>,
    weight: Tensor<FloatDType>,
    targets: TensorLike<'i32'>,
    options?: lh.LinearLogprobStatesOptions,
  ): Promise<LogprobStates> {
    return this.#op('linearLogprobStates', (b) =>
      lh.linearLogprobStates(b, hidden, weight, targets, options),
    );
  }

  /** The logprobs outputs over the union of vocabulary shards, merged in a fixed (array) order. */
  mergeLogprobStates(
    states: readonly LogprobStates[],
    targets: TensorLike<'i32'>,
    options?: lh.MergeLogprobStatesOptions,
  ): Promise<LogprobsResult> {
    return this.#op('mergeLogprobStates', (b) => lh.mergeLogprobStates(b, states, targets, options));
  }

  // ------------------------------------------------------------ advantages family
  /** Group-relative advantages (docs/ESTIMATORS.md). */
  advantages(rewards: TensorLike<'f32'>, options?: adv.AdvantagesOptions): Promise<AdvantagesResult> {
    return this.#op('advantages', (b) => adv.advantages(b, rewards, options));
  }

  /** Broadcasts one value per response to its tokens. */
  expandToTokens(values: TensorLike<'f32'>, responseOffsets: Int32Array): Promise<Tensor<'f32'>> {
    return this.#op('expandToTokens', (b) => adv.expandToTokens(b, values, responseOffsets));
  }

  /** (x − mean)·rsqrt(var + 1e-8) over the (masked) elements. */
  whiten(values: TensorLike<'f32'>, options?: adv.WhitenOptions): Promise<Tensor<'f32'>> {
    return this.#op('whiten', (b) => adv.whiten(b, values, options));
  }

  // ------------------------------------------------------------ THR family
  /** Each group's sorted unique sampled token ids (V*_g) and each token's column in it. */
  restrictedVocab(tokens: TensorLike<'i32'>, layout: Layout): Promise<RestrictedVocab> {
    return this.#op('restrictedVocab', (b) => thr.restrictedVocab(b, tokens, layout));
  }

  /** Token hidden reward (docs/THR.md) and each group's threshold tau. */
  tokenHiddenReward(options: thr.TokenHiddenRewardOptions): Promise<ThrResult> {
    return this.#op('tokenHiddenReward', (b) => thr.tokenHiddenReward(b, options));
  }

  /**
   * THR's aggregate M_g of every live group, [ΣK_g, d] f32: tokenHiddenReward's first half. A sum over
   * the correct tokens, so data-parallel shards all-reduce it (sum) before thrScore.
   */
  thrAggregate(options: thr.ThrAggregateOptions): Promise<Tensor<'f32'>> {
    return this.#op('thrAggregate', (b) => thr.thrAggregate(b, options));
  }

  /** THR and tau from an aggregate (thrAggregate's, all-reduced): tokenHiddenReward's second half. */
  thrScore(options: thr.ThrScoreOptions): Promise<ThrResult> {
    return this.#op('thrScore', (b) => thr.thrScore(b, options));
  }

  /** Reweights token advantages by THR (docs/THR.md, "Reweighting"). */
  thrReweight(options: thr.ThrReweightOptions): Promise<Tensor<'f32'>> {
    return this.#op('thrReweight', (b) => thr.thrReweight(b, options));
  }

  // ------------------------------------------------------------ policy loss
  /**
   * The scalar policy loss of POLICY.md (surrogate, KL penalty, entropy bonus, rollout correction,
   * aggregation) and its exact gradient with respect to the log-probs (and entropies), ready for
   * logprobsBackward. `loss` and `stats` stay on the device: readPolicyStats(result.stats) names them.
   */
  policyLoss(inputs: pl.PolicyLossInputs, options?: pl.PolicyLossOptions): Promise<PolicyLossResult> {
    return this.#op('policyLoss', (b) => pl.policyLoss(b, inputs, options));
  }

  /**
   * verl's rollout rejection sampling (`rollout_rs`): the mask of the valid tokens that pass every
   * criterion (pass it to policyLoss as `mask`: the rejected tokens leave the loss and its counts) and
   * verl's rollout_rs metrics (readRejectionStats names them).
   */
  rolloutRejection(
    inputs: rj.RolloutRejectionInputs,
    options: rj.RolloutRejectionOptions,
  ): Promise<RolloutRejectionResult> {
    return this.#op('rolloutRejection', (b) => rj.rolloutRejection(b, inputs, options));
  }

  /** Resolves when every op queued so far has finished on the device. */
  synchronize(): Promise<void> {
    return this.#op('synchronize', (b) => b.synchronize());
  }

  /** Seconds per device-to-device copy of `bytes` bytes (median), the bandwidth yardstick of benchmarks. */
  copyProbe(bytes: number): Promise<number> {
    return this.#op('copyProbe', (b) => {
      if (typeof bytes !== 'number') fail('DTYPE', 'bytes', `expected a number, got ${typeof bytes}`);
      if (!Number.isSafeInteger(bytes) || bytes < 1)
        fail('RANGE', 'bytes', `expected a positive integer, got ${bytes}`);
      return b.copyProbe(bytes);
    });
  }

  /**
   * Frees the backend's device and memory. Tensors of this context become unusable: using one (or
   * this context) afterwards is a BACKEND_UNAVAILABLE error, on every backend. Calling it twice is
   * harmless.
   */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    retire(this.#backend);
    this.#backend.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/**
 * A tensor's shape: an array of non-negative safe integers (a dimension past 2^53 − 1 is not exact,
 * which a zero-size shape such as [2^60, 0] would otherwise carry into the ops' size arithmetic).
 */
function checkTensorShape(shape: unknown): readonly number[] {
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    fail(
      'SHAPE',
      'shape',
      `expected an array of non-negative integers ≤ 2^53 − 1, got ${Array.isArray(shape) ? JSON.stringify(shape) : describe(shape)}`,
    );
  }
  return shape as readonly number[];
}

/** The dtype of a wrapped buffer or pointer: nothing infers it, so it must be one of DTYPES. */
function checkWrapDType(dtype: unknown): void {
  if (!(DTYPES as readonly unknown[]).includes(dtype))
    fail('DTYPE', 'dtype', `expected one of ${DTYPES.join(', ')}, got ${quote(dtype)}`);
}

/** Starts a backend. `auto` records why it skipped each backend in `ctx.skipped`. */
export async function createContext(options: CreateContextOptions = {}): Promise<Context> {
  checkOptions<CreateContextOptions>('options', options, ['backend', 'device', 'deviceIndex', 'threads']);
  // An absent backend is 'auto'; null, like any other value, must name one.
  const choice = options.backend === undefined ? 'auto' : options.backend;
  const threads = options.threads;
  if (threads !== undefined) {
    if (typeof threads !== 'number') fail('DTYPE', 'threads', `expected a number, got ${typeof threads}`);
    if (!Number.isInteger(threads) || threads < 1)
      fail('RANGE', 'threads', `expected a positive integer, got ${threads}`);
  }
  // Checked for every backend (cpu ignores it, and 'auto' would only skip cuda with it).
  const deviceIndex = options.deviceIndex;
  if (deviceIndex !== undefined) {
    if (typeof deviceIndex !== 'number')
      fail('DTYPE', 'deviceIndex', `expected a number, got ${describe(deviceIndex)}`);
    if (!Number.isInteger(deviceIndex) || deviceIndex < 0)
      fail(
        'BACKEND_UNAVAILABLE',
        'deviceIndex',
        `expected an integer ≥ 0 (a device ordinal), got ${deviceIndex}`,
      );
  }
  if (choice === 'auto') {
    const { backend, skipped } = await loadAuto(options);
    return new Context(backend, skipped);
  }
  if (choice === 'cpu') {
    const { backend, skipped } = await loadCpu(options);
    return new Context(backend, skipped);
  }
  if (choice !== 'js' && choice !== 'webgpu' && choice !== 'cuda') {
    fail(
      'BACKEND_UNAVAILABLE',
      'backend',
      `expected 'cpu', 'js', 'webgpu', 'cuda' or 'auto', got ${JSON.stringify(choice)}`,
    );
  }
  return new Context(await loadBackend(choice, options));
}
