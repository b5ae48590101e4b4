/** The toy GRPO trainer (examples/toy-grpo, `grpo-kernels demo`): a real client of the package's API. */
export {
  type ComparisonOptions,
  type ComparisonResult,
  comparisonConfig,
  type MethodCurves,
  movingAverage,
  runComparison,
  type SummaryRow,
  summarize,
} from './compare.js';
export {
  type EvalPoint,
  evaluate,
  grpoStep,
  METHODS,
  type Method,
  type StepStats,
  type TrainConfig,
  type TrainerContext,
  type TrainResult,
  train,
} from './grpo.js';
export { LinearPolicy, sampleToken } from './policy.js';
export {
  comparisonSvg,
  describeConfig,
  SUMMARY_COLUMNS,
  summaryCells,
  summaryMarkdown,
  type WrittenReport,
  writeReport,
} from './report.js';
export { decode, type PackedBatch, packGroups, type Response } from './rollout.js';
export { DEFAULT_TASK, EOS, type Prompt, score, type TaskConfig, VOCAB } from './task.js';
