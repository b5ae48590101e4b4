/**
 * The native cpu backend's side of the addon (native/addon_cpu.cc): one interface per op, mirroring the
 * params structs of native/cpu/kernels.h (native/ops_cpu.cc fills each through native/args.h, which
 * refuses a missing required key, a key of the wrong type or array type, and an unknown key, and checks
 * every array's length against the shape). Host memory travels as typed arrays, which the job keeps
 * alive until it settles; enums as their TypeScript names.
 */
import { fromNativeErrorOf } from '../addon.js';
import type {
  Estimator,
  NanRewardPolicy,
  RejectionLevel,
  RejectionStatistic,
  ReweightMode,
  ScaleKind,
  SingletonPolicy,
  StdKind,
  ThrPrecision,
  WhitenVarianceEps,
} from '../backend.js';
import type { NativePolicyLossArgsOf } from '../policy-native.js';

type FloatDTypeName = 'f32' | 'f16' | 'bf16';
/** f32 logits or hidden states, or f16/bf16 bits. */
type FloatArray = Float32Array | Uint16Array;

export interface NativeCpuLogprobsArgs {
  logits: FloatArray;
  dtype: FloatDTypeName;
  targets: Int32Array;
  rows: number;
  vocab: number;
  temperature: number;
  ignoreIndex: number;
  outLogprobs: Float32Array;
  outLse: Float32Array;
  outEntropy?: Float32Array;
  outSumSquares?: Float32Array;
}
export interface NativeCpuLogprobsBackwardArgs {
  logits: FloatArray;
  dtype: FloatDTypeName;
  targets: Int32Array;
  lse: Float32Array;
  gradLogprobs: Float32Array;
  gradEntropy?: Float32Array;
  entropy?: Float32Array;
  rows: number;
  vocab: number;
  temperature: number;
  ignoreIndex: number;
  /** The logits' own array for in place. */
  outGradLogits: FloatArray;
}
export interface NativeCpuGatherProbsArgs {
  logits: FloatArray;
  dtype: FloatDTypeName;
  lse: Float32Array;
  numTokens: number;
  vocab: number;
  temperature: number;
  columns: Int32Array;
  groupTokenOffsets: Int32Array;
  vocabOffsets: Int32Array;
  probsOffsets: Float64Array;
  outProbs: Float32Array;
}
export interface NativeCpuAdvantagesArgs {
  rewards: Float32Array;
  groupOffsets: Int32Array;
  /** opo and reinforce_pp_baseline. */
  responseOffsets?: Int32Array;
  estimator: Estimator;
  std: StdKind;
  eps: number;
  scale: ScaleKind;
  singleton: SingletonPolicy;
  /** 'unscorable' (TRL): NaN rewards left out of every statistic, their advantages 0, then nan_to_num. */
  nanRewards: NanRewardPolicy;
  whitenMaskEps: number;
  whitenVariance: StdKind;
  whitenVarianceEps: WhitenVarianceEps;
  outAdvantages: Float32Array;
  outMean: Float32Array;
  outStd: Float32Array;
  outDegenerate: Uint8Array;
}
export interface NativeCpuExpandToTokensArgs {
  values: Float32Array;
  responseOffsets: Int32Array;
  out: Float32Array;
}
export interface NativeCpuWhitenArgs {
  values: Float32Array;
  mask?: Uint8Array;
  maskEps: number;
  variance: StdKind;
  varianceEps: WhitenVarianceEps;
  keepMean: boolean;
  out: Float32Array;
}
interface NativeCpuThrLayout {
  responseOffsets: Int32Array;
  groupOffsets: Int32Array;
  correct: Uint8Array;
  degenerate: Uint8Array;
}
export interface NativeCpuTokenHiddenRewardArgs extends NativeCpuThrLayout {
  hidden: FloatArray;
  hiddenDtype: FloatDTypeName;
  dim: number;
  probs: Float32Array;
  probsOffsets: Float64Array;
  vocabOffsets: Int32Array;
  tokenColumn: Int32Array;
  /** The API's plan (ThrPlan, src/api/thr-plan.ts): group g's correct tokens are
   * correctTokens[correctStart[g]..correctStart[g+1]); their weights (1/|y_r| or 1, so they carry the
   * weighting) rounded once to f32. */
  correctStart: Int32Array;
  correctTokens: Int32Array;
  correctWeights: Float32Array;
  beta: number;
  /** cuda's choice of product arithmetic, accepted and ignored (native/cpu/thr.cc states its own). */
  precision: ThrPrecision;
  outThr: Float32Array;
  outTau: Float32Array;
}
/** thrAggregate: tokenHiddenReward's inputs less beta, the stacked aggregate [ΣK_g, dim] as output. */
export interface NativeCpuThrAggregateArgs
  extends Omit<NativeCpuTokenHiddenRewardArgs, 'beta' | 'outThr' | 'outTau'> {
  aggregate: Float32Array;
}
/** thrScore: tokenHiddenReward's arguments and the aggregate as input. */
export interface NativeCpuThrScoreArgs extends NativeCpuTokenHiddenRewardArgs {
  aggregate: Float32Array;
}
export interface NativeCpuThrReweightArgs extends NativeCpuThrLayout {
  tokenAdvantages: Float32Array;
  thr: Float32Array;
  tau: Float32Array;
  mode: ReweightMode;
  p: number;
  mask: boolean;
  /** [G], NTHR's eta per group (the API's ReweightPlan). */
  eta: Float64Array;
  out: Float32Array;
}

/** The LM head's arguments (native/cpu/lmhead.h, LinearHead): hidden [rows, dim], weight [vocab, dim]. */
interface NativeCpuLinearHead {
  hidden: FloatArray;
  weight: FloatArray;
  /** [vocab], the weight's dtype. */
  bias?: FloatArray;
  dtype: FloatDTypeName;
  rows: number;
  dim: number;
  vocab: number;
}
/** The logprobs outputs, f32 [rows] each (LogprobsOut). */
interface NativeCpuLogprobsOut {
  outLogprobs: Float32Array;
  outLse: Float32Array;
  outEntropy?: Float32Array;
  outSumSquares?: Float32Array;
}
/** The states' outputs, f32 [rows] each (StatesOut): Σe^d·d with entropy, Σe^{2d} with Σp². */
interface NativeCpuStatesOut {
  outMax: Float32Array;
  outSumExp: Float32Array;
  outSumExpDelta?: Float32Array;
  outSumExpSq?: Float32Array;
  outTargetLogit: Float32Array;
}
export interface NativeCpuLinearLogprobsArgs extends NativeCpuLinearHead, NativeCpuLogprobsOut {
  targets: Int32Array;
  temperature: number;
  ignoreIndex: number;
}
export interface NativeCpuLinearLogprobStatesArgs extends NativeCpuLinearHead, NativeCpuStatesOut {
  targets: Int32Array;
  vocabStart: number;
  temperature: number;
  ignoreIndex: number;
}
export interface NativeCpuLogprobStatesArgs extends NativeCpuStatesOut {
  logits: FloatArray;
  dtype: FloatDTypeName;
  targets: Int32Array;
  rows: number;
  vocab: number;
  vocabStart: number;
  temperature: number;
  ignoreIndex: number;
}
/** One shard's state (StatesIn): f32 [rows] each, columns [vocabStart, vocabEnd). */
export interface NativeCpuStateArrays {
  max: Float32Array;
  sumExp: Float32Array;
  sumExpDelta?: Float32Array;
  sumExpSq?: Float32Array;
  targetLogit: Float32Array;
  vocabStart: number;
  vocabEnd: number;
}
export interface NativeCpuMergeLogprobStatesArgs extends NativeCpuLogprobsOut {
  /** In vocabulary order, tiling [0, vocab). */
  states: NativeCpuStateArrays[];
  targets: Int32Array;
  rows: number;
  vocab: number;
  temperature: number;
  ignoreIndex: number;
}
export interface NativeCpuLinearLogprobsBackwardArgs extends NativeCpuLinearHead {
  targets: Int32Array;
  lse: Float32Array;
  gradLogprobs: Float32Array;
  gradEntropy?: Float32Array;
  entropy?: Float32Array;
  temperature: number;
  ignoreIndex: number;
  vocabStart: number;
  targetLimit: number;
  /** The gradients' dtype: 'f32', or the head's (gradDtype 'input'); the out arrays are of it. */
  gradDtype: FloatDTypeName;
  outGradHidden: FloatArray;
  outGradWeight: FloatArray;
  /** With bias. */
  outGradBias?: FloatArray;
  /** Test hook: columns per block of the input-dtype gradWeight pass (absent: the plan's). */
  accCols?: number;
}
/** gk::cpu::PolicyParams (native/cpu/kernels.h): the keys both addons share (src/backends/policy-native.ts). */
export type NativeCpuPolicyLossArgs = NativePolicyLossArgsOf<Float32Array, Uint8Array>;
/** One criterion of rolloutRejection (gk::cpu::RejectionCriterion): f32 bounds, lower −Infinity for k2, k3. */
export interface NativeCpuRejectionCriterion {
  statistic: RejectionStatistic;
  level: RejectionLevel;
  lower: number;
  upper: number;
}
/** gk::cpu::RolloutRejectionParams (native/cpu/kernels.h): T = responseOffsets[R]. */
export interface NativeCpuRolloutRejectionArgs {
  logprobs: Float32Array;
  rolloutLogprobs: Float32Array;
  /** Nonzero = valid; absent: every token valid. */
  mask?: Uint8Array;
  responseOffsets: Int32Array;
  /** 1 to REJECTION_MAX_CRITERIA. */
  criteria: NativeCpuRejectionCriterion[];
  /** u8 [T]. */
  outMask: Uint8Array;
  /** f32 [REJECTION_STATS.length + criteria·REJECTION_CRITERION_STATS.length]. */
  outStats: Float32Array;
}
/** cpuLmheadPlan's argument: a shape, and the threads and LM-head build of a device (info()). */
export interface NativeCpuLmheadPlanArgs {
  rows: number;
  vocab: number;
  dim: number;
  dtype: FloatDTypeName;
  threads: number;
  isa: NativeCpuInfo['lmheadIsa'];
}

export interface NativeCpuDeviceOptions {
  /** Compute threads, 1 ≤ threads ≤ 1024. */
  threads: number;
  /** Force the portable kernels. */
  portable: boolean;
  /** Allow the LM head's AVX-512 build where the CPU has AVX-512F (false: its AVX2 build). */
  avx512: boolean;
}

export interface NativeCpuInfo {
  /** The kernels in use: 'avx2' (AVX2 + FMA + F16C) or 'portable'. */
  isa: 'avx2' | 'portable';
  /** The LM head's build: 'avx512' (its GEMM at 16 lanes) where the CPU has AVX-512F and BW, else isa. */
  lmheadIsa: 'avx512' | 'avx2' | 'portable';
  /** The logprobs forward's build: 'avx512' (16-lane sums, the AVX2 build's bits) where lmheadIsa is, else isa. */
  logprobsIsa: 'avx512' | 'avx2' | 'portable';
  avx2Supported: boolean;
  avx2Compiled: boolean;
  threads: number;
  cores: number;
}
export interface NativeCpuBuildInfo {
  avx2Compiled: boolean;
  avx2Supported: boolean;
  cores: number;
}

/** One pool of compute threads and its job thread (native/addon_cpu.cc). Ops run in call order. */
export interface NativeCpuDevice {
  info(): NativeCpuInfo;
  /** Resolves after every op queued before it. */
  synchronize(): Promise<void>;
  /** Seconds per copy of `bytes` bytes over the pool (median). */
  copyProbe(bytes: number): Promise<number>;
  /** Seconds per streaming read of the array's bytes over the pool (median). */
  readProbe(data: ArrayBufferView): Promise<number>;
  /** The pool's f32 multiply-add peak, FLOP/s (median): the yardstick of THR's products. */
  fmaProbe(): Promise<number>;
  logprobs(args: NativeCpuLogprobsArgs): Promise<void>;
  logprobsBackward(args: NativeCpuLogprobsBackwardArgs): Promise<void>;
  gatherProbs(args: NativeCpuGatherProbsArgs): Promise<void>;
  advantages(args: NativeCpuAdvantagesArgs): Promise<void>;
  expandToTokens(args: NativeCpuExpandToTokensArgs): Promise<void>;
  whiten(args: NativeCpuWhitenArgs): Promise<void>;
  tokenHiddenReward(args: NativeCpuTokenHiddenRewardArgs): Promise<void>;
  thrAggregate(args: NativeCpuThrAggregateArgs): Promise<void>;
  thrScore(args: NativeCpuThrScoreArgs): Promise<void>;
  thrReweight(args: NativeCpuThrReweightArgs): Promise<void>;
  linearLogprobs(args: NativeCpuLinearLogprobsArgs): Promise<void>;
  linearLogprobStates(args: NativeCpuLinearLogprobStatesArgs): Promise<void>;
  logprobStates(args: NativeCpuLogprobStatesArgs): Promise<void>;
  mergeLogprobStates(args: NativeCpuMergeLogprobStatesArgs): Promise<void>;
  linearLogprobsBackward(args: NativeCpuLinearLogprobsBackwardArgs): Promise<void>;
  policyLoss(args: NativeCpuPolicyLossArgs): Promise<void>;
  rolloutRejection(args: NativeCpuRolloutRejectionArgs): Promise<void>;
  /** fmaProbe at the LM head's vector width (16 lanes with its AVX-512 build), FLOP/s. */
  lmheadFmaProbe(): Promise<number>;
  close(): void;
}

/** A native Error → GrpoKernelsError (prefix "cpu "; kernel RANGE faults keep their argument's name). */
export const fromNativeError = fromNativeErrorOf('cpu');

/** Runs a native call, converting its error (sync throw or rejection). */
export async function native<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (e) {
    throw fromNativeError(e);
  }
}
