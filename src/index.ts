export type { AdvantagesOptions, WhitenOptions } from './api/advantages.js';
export type {
  LinearLogprobStatesOptions,
  LinearLogprobsBackwardOptions,
  LinearLogprobsGradDtype,
  LinearLogprobsOptions,
  LogprobStatesOptions,
  MergeLogprobStatesOptions,
} from './api/lmhead.js';
export { type LmheadShape, lmheadScratchBytes } from './api/lmhead-plan.js';
export type { GatherProbsOptions, LogprobsBackwardOptions, LogprobsOptions } from './api/logprobs.js';
export {
  type PolicyKlOptions,
  type PolicyLossInputs,
  type PolicyLossOptions,
  type PolicyRolloutOptions,
  readPolicyStats,
} from './api/policy.js';
export {
  type RejectionCriterion,
  type RejectionStats,
  type RolloutRejectionInputs,
  type RolloutRejectionOptions,
  readRejectionStats,
} from './api/rejection.js';
export type {
  ThrAggregateOptions,
  ThrReweightOptions,
  ThrScoreOptions,
  TokenHiddenRewardOptions,
} from './api/thr.js';
export type { TensorLike } from './api/validate.js';
export type {
  AdvantagesResult,
  Aggregation,
  Backend,
  BackendOptions,
  DeviceInfo,
  Estimator,
  KlEstimator,
  LinearLogprobsGrads,
  LogprobStates,
  LogprobsResult,
  PolicyLossKind,
  PolicyLossResult,
  PolicyStatName,
  Preset,
  RejectionCriterionStatName,
  RejectionLevel,
  RejectionStatistic,
  RejectionStatName,
  RestrictedVocab,
  ReweightMode,
  RolloutLevel,
  RolloutMode,
  RolloutRejectionResult,
  ScaleKind,
  SingletonPolicy,
  StdKind,
  ThrPrecision,
  ThrResult,
  Weighting,
} from './backends/backend.js';
export {
  AGGREGATIONS,
  ESTIMATORS,
  KL_ESTIMATORS,
  POLICY_LOSSES,
  POLICY_STATS,
  PRESETS,
  REJECTION_CRITERION_STATS,
  REJECTION_LEVELS,
  REJECTION_STATISTICS,
  REJECTION_STATS,
  ROLLOUT_LEVELS,
  ROLLOUT_MODES,
  SCALE_KINDS,
  SINGLETON_POLICIES,
  STD_KINDS,
} from './backends/backend.js';
export { AUTO_ORDER, type BackendChoice, type SkippedBackend } from './backends/registry.js';
export { Context, type CreateContextOptions, createContext } from './context.js';
export { setOutputPoison } from './debug.js';
export {
  bf16ToF32,
  type DType,
  decodeFloats,
  encodeFloats,
  type FloatDType,
  f16ToF32,
  f32ToBf16,
  f32ToF16,
  type HostArray,
} from './dtypes.js';
export { type ErrorCode, GrpoKernelsError } from './errors.js';
export {
  groupOffsetsFromSize,
  type Layout,
  type Packing,
  pack,
  packMask,
  resolveLayout,
  unpack,
  validateOffsets,
} from './layout.js';
export { type BackendName, Tensor } from './tensor.js';
