/**
 * The cuda backend's side of the native addon: one interface per op (mirroring the params structs of
 * native/cuda/*.cuh), the device class, and error conversion with the "cuda " prefix. Loading the addon
 * itself is shared with the native cpu backend: src/backends/addon.ts (re-exported here).
 */
import { fromNativeErrorOf } from '../addon.js';
import type {
  Estimator,
  NanRewardPolicy,
  RejectionLevel,
  RejectionStatistic,
  ScaleKind,
  SingletonPolicy,
  StdKind,
  WhitenVarianceEps,
} from '../backend.js';
import type { NativePolicyLossArgsOf } from '../policy-native.js';

export {
  loadedNativeAddon,
  loadNativeAddon,
  type NativeAddon,
  type NativeBuildInfo,
  type NativeEnums,
  nativeAddonPath,
} from '../addon.js';

/**
 * The argument object of each native op: one interface per op, mirroring its params struct in
 * native/cuda/*.cuh (native/ops_cuda.cc fills the struct through native/args.h, which refuses a missing
 * required key, a key of the wrong type and an unknown key). Device pointers are bigints, host index
 * arrays typed arrays, enums their TypeScript names (checked against the C++ tables by
 * test/cuda/enums.test.ts). `poison` (src/debug.ts) is the test hook every op takes.
 */
type FloatDTypeName = 'f32' | 'f16' | 'bf16';
interface Poisonable {
  poison?: number;
}
export interface NativeLogprobsArgs extends Poisonable {
  logits: bigint;
  dtype: FloatDTypeName;
  targets: bigint;
  rows: number;
  vocab: number;
  temperature: number;
  ignoreIndex: number;
  outLogprobs: bigint;
  outLse: bigint;
  outEntropy?: bigint;
  outSumSquares?: bigint;
  /** Test hook: vocabulary segments (0 or absent: the count V fixes). */
  splits?: number;
}
export interface NativeLogprobsBackwardArgs extends Poisonable {
  logits: bigint;
  dtype: FloatDTypeName;
  targets: bigint;
  lse: bigint;
  gradLogprobs: bigint;
  gradEntropy?: bigint;
  entropy?: bigint;
  rows: number;
  vocab: number;
  temperature: number;
  ignoreIndex: number;
  /** The logits' pointer itself for in place. */
  outGradLogits: bigint;
}
export interface NativeGatherProbsArgs extends Poisonable {
  logits: bigint;
  dtype: FloatDTypeName;
  lse: bigint;
  numTokens: number;
  vocab: number;
  temperature: number;
  columns: bigint;
  groupTokenOffsets: Int32Array;
  vocabOffsets: Int32Array;
  probsOffsets: Float64Array;
  outProbs: bigint;
}
/** The LM head's inputs every lmhead op takes (native/cuda/lmhead.cuh). */
interface NativeHead extends Poisonable {
  hidden: bigint;
  weight: bigint;
  bias?: bigint;
  dtype: FloatDTypeName;
  targets: bigint;
  rows: number;
  dim: number;
  vocab: number;
  temperature: number;
  ignoreIndex: number;
}
/** Test hook: the LM head's tiles (absent: auto; 1 mma.sync, 2 wgmma where they apply). */
interface NativeHeadPath {
  path?: number;
}
export interface NativeLinearLogprobsArgs extends NativeHead, NativeHeadPath {
  outLogprobs: bigint;
  outLse: bigint;
  outEntropy?: bigint;
  outSumSquares?: bigint;
}
/** A state's outputs (LogprobStates), for linearLogprobStates and logprobStates. */
interface NativeStateOut {
  vocabStart: number;
  outMax: bigint;
  outSumExp: bigint;
  outSumExpDelta?: bigint;
  outSumExpSq?: bigint;
  outTargetLogit: bigint;
}
export interface NativeLinearLogprobStatesArgs extends NativeHead, NativeHeadPath, NativeStateOut {}
export interface NativeLinearLogprobsBackwardArgs extends NativeHead, NativeHeadPath {
  /** The shard's first row in the head; targets must lie in [0, targetLimit). */
  vocabStart: number;
  targetLimit: number;
  lse: bigint;
  gradLogprobs: bigint;
  gradEntropy?: bigint;
  entropy?: bigint;
  /** The gradients' dtype: 'f32', or the head's (gradDtype 'input'). */
  gradDtype: FloatDTypeName;
  /** Absent when rows·dim = 0. */
  outGradHidden?: bigint;
  outGradWeight: bigint;
  outGradBias?: bigint;
  /** Test hooks: the backward's G chunk (multiples of 128; absent: the plan's). */
  chunkRows?: number;
  chunkVocab?: number;
}
export interface NativeLogprobStatesArgs extends Poisonable, NativeStateOut {
  logits: bigint;
  dtype: FloatDTypeName;
  targets: bigint;
  rows: number;
  vocab: number;
  temperature: number;
  ignoreIndex: number;
}
export interface NativeMergeLogprobStatesArgs extends Poisonable {
  /** One entry per state, in merge order (0n: a sum the state does not have). */
  statesMax: BigUint64Array;
  statesSumExp: BigUint64Array;
  statesSumExpDelta: BigUint64Array;
  statesSumExpSq: BigUint64Array;
  statesTargetLogit: BigUint64Array;
  statesVocabStart: Float64Array;
  statesVocabEnd: Float64Array;
  targets: bigint;
  rows: number;
  vocab: number;
  temperature: number;
  ignoreIndex: number;
  outLogprobs: bigint;
  outLse: bigint;
  outEntropy?: bigint;
  outSumSquares?: bigint;
}
/** native/cuda/lmhead.cuh's LmheadPlan: what the lmhead launchers allocate (bytes) and their chunks. */
export interface NativeLmheadPlan {
  slices: number;
  forwardBytes: number;
  chunkRows: number;
  chunkVocab: number;
  backwardBytes: number;
  /** The backward with gradients in the input dtype (gradDtype 'input'). */
  backwardInputBytes: number;
}
export interface NativeExpandToTokensArgs extends Poisonable {
  values: bigint;
  responseOffsets: Int32Array;
  out: bigint;
}
export interface NativeWhitenArgs extends Poisonable {
  values: bigint;
  mask?: bigint;
  n: number;
  maskEps: number;
  variance: 'sample' | 'population';
  varianceEps: 'add' | 'clamp';
  keepMean: boolean;
  out: bigint;
}
interface NativeThrLayout {
  responseOffsets: Int32Array;
  groupOffsets: Int32Array;
  correct: Uint8Array;
  degenerate: Uint8Array;
}
export interface NativeTokenHiddenRewardArgs extends Poisonable, NativeThrLayout {
  hidden: bigint;
  hiddenDtype: FloatDTypeName;
  dim: number;
  probs: bigint;
  probsOffsets: Float64Array;
  vocabOffsets: Int32Array;
  tokenColumn: bigint;
  /** The API's plan (ThrPlan, src/api/thr-plan.ts): group g's correct tokens are
   * correctTokens[correctStart[g]..correctStart[g+1]); their weights (1/|y_r| or 1, so they carry the
   * weighting) rounded once to f32. */
  correctStart: Int32Array;
  correctTokens: Int32Array;
  correctWeights: Float32Array;
  beta: number;
  precision: 'f32' | 'tf32';
  /** Test hook: the scratch budget for one batch of M_g. */
  mBudgetBytes?: number;
  /** Test hook: the small tile configuration (thr.cu, "Configurations"). */
  smallTiles?: boolean;
  /** Test hook: the scores' tiles (absent: auto; 1 mma.sync, 2 wgmma where they apply). */
  path?: number;
  outThr: bigint;
  outTau: bigint;
}
/** thrAggregate: tokenHiddenReward's inputs less beta, the stacked aggregate as output. */
export interface NativeThrAggregateArgs
  extends Omit<NativeTokenHiddenRewardArgs, 'beta' | 'outThr' | 'outTau'> {
  aggregate: bigint;
}
/** thrScore: tokenHiddenReward's arguments and the aggregate as input. */
export interface NativeThrScoreArgs extends NativeTokenHiddenRewardArgs {
  aggregate: bigint;
}
export interface NativeThrReweightArgs extends Poisonable, NativeThrLayout {
  tokenAdvantages: bigint;
  thr: bigint;
  tau: bigint;
  mode: 'thr' | 'thr-only' | 'nthr';
  p: number;
  mask: boolean;
  /** [G], NTHR's eta per group (the API's ReweightPlan). */
  eta: Float64Array;
  out: bigint;
}
export interface NativeAdvantagesArgs extends Poisonable {
  rewards: bigint;
  /** Uniform groups: their size and count (no offsets to upload); ragged ones: groupOffsets. */
  groupSize?: number;
  numGroups?: number;
  groupOffsets?: Int32Array;
  /** opo and reinforce_pp_baseline. */
  responseOffsets?: Int32Array;
  estimator: Estimator;
  std: StdKind;
  eps: number;
  scale: ScaleKind;
  singleton: SingletonPolicy;
  nanRewards: NanRewardPolicy;
  whitenMaskEps: number;
  whitenVariance: StdKind;
  whitenVarianceEps: WhitenVarianceEps;
  outAdvantages: bigint;
  advantagesSize: number;
  outMean: bigint;
  outStd: bigint;
  outDegenerate: bigint;
}

/**
 * gk::PolicyParams (native/cuda/policy.cuh): the keys both addons share (src/backends/policy-native.ts)
 * with device pointers, and the test hook.
 */
export type NativePolicyLossArgs = Poisonable &
  NativePolicyLossArgsOf<bigint, bigint> & {
    /** Test hook: responses per block (a multiple of 8). */
    chunkResponses?: number;
    /** Test hook: the kernel layout, 1 a warp per response, 2 flat (absent: the launcher's choice). */
    path?: number;
    /** Test hook: the flat path's tokens per block (a multiple of 1024). */
    chunkTokens?: number;
  };

/** gk::RejectionCriterion (native/cuda/rejection.cuh): one resolved criterion, its bounds f32 values. */
export interface NativeRejectionCriterion {
  statistic: RejectionStatistic;
  level: RejectionLevel;
  /** −Infinity for k2 and k3. */
  lower: number;
  upper: number;
}
/** gk::RejectionParams (native/cuda/rejection.cuh). */
export interface NativeRolloutRejectionArgs extends Poisonable {
  logprobs: bigint;
  rolloutLogprobs: bigint;
  /** Absent: every token valid. */
  mask?: bigint;
  responseOffsets: Int32Array;
  /** 1 to REJECTION_MAX_CRITERIA, each (statistic, level) once. */
  criteria: NativeRejectionCriterion[];
  /** Test hook: responses per block (a multiple of 8). */
  chunkResponses?: number;
  /** u8 [T]. */
  outMask: bigint;
  /** f32 [REJECTION_STATS.length + criteria·REJECTION_CRITERION_STATS.length]. */
  outStats: bigint;
}

export interface NativeDeviceInfo {
  name: string;
  index: number;
  computeCapability: string;
  multiProcessors: number;
  totalMemoryBytes: number;
  l2CacheBytes: number;
  sharedMemPerBlockOptin: number;
  cudaRuntimeVersion: number;
  cudaDriverVersion: number;
  archs: string;
}

/** One CUDA device, its stream and its job thread (native/addon.cc, native/runtime/cuda_device.h). */
export interface NativeDevice {
  info(): NativeDeviceInfo;
  /**
   * How often the job thread has waited for the device (ops never do; read and synchronize do), and the
   * Scratch bytes the latest op allocated.
   */
  stats(): { streamSyncs: number; lastScratchBytes: number };
  alloc(bytes: bigint | number): bigint;
  free(ptr: bigint): void;
  upload(ptr: bigint, data: ArrayBufferView): void;
  read(ptr: bigint, into: ArrayBufferView): Promise<void>;
  synchronize(): Promise<void>;
  copyProbe(bytes: number): Promise<number>;
  logprobs(args: NativeLogprobsArgs): Promise<void>;
  logprobsBackward(args: NativeLogprobsBackwardArgs): Promise<void>;
  gatherProbs(args: NativeGatherProbsArgs): Promise<void>;
  advantages(args: NativeAdvantagesArgs): Promise<void>;
  expandToTokens(args: NativeExpandToTokensArgs): Promise<void>;
  whiten(args: NativeWhitenArgs): Promise<void>;
  tokenHiddenReward(args: NativeTokenHiddenRewardArgs): Promise<void>;
  thrReweight(args: NativeThrReweightArgs): Promise<void>;
  thrAggregate(args: NativeThrAggregateArgs): Promise<void>;
  thrScore(args: NativeThrScoreArgs): Promise<void>;
  linearLogprobs(args: NativeLinearLogprobsArgs): Promise<void>;
  linearLogprobStates(args: NativeLinearLogprobStatesArgs): Promise<void>;
  linearLogprobsBackward(args: NativeLinearLogprobsBackwardArgs): Promise<void>;
  logprobStates(args: NativeLogprobStatesArgs): Promise<void>;
  mergeLogprobStates(args: NativeMergeLogprobStatesArgs): Promise<void>;
  policyLoss(args: NativePolicyLossArgs): Promise<void>;
  rolloutRejection(args: NativeRolloutRejectionArgs): Promise<void>;
  close(): void;
}

/** A native Error (with `code`) → GrpoKernelsError with the same code, prefixed "cuda " (see addon.ts). */
export const fromNativeError = fromNativeErrorOf('cuda');

/** Runs a native call, converting its error (sync throw or rejection). */
export async function native<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (e) {
    throw fromNativeError(e);
  }
}

/** Same for a synchronous native call. */
export function nativeSync<T>(call: () => T): T {
  try {
    return call();
  } catch (e) {
    throw fromNativeError(e);
  }
}
