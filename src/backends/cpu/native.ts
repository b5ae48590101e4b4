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
  ReweightMode,
  ScaleKind,
  SingletonPolicy,
  StdKind,
  ThrPrecision,
  WhitenVarianceEps,
} from '../backend.js';

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

export interface NativeCpuInfo {
  /** The kernels in use: 'avx2' (AVX2 + FMA + F16C) or 'portable'. */
  isa: 'avx2' | 'portable';
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
  thrReweight(args: NativeCpuThrReweightArgs): Promise<void>;
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
