/**
 * The LM-head family (linearLogprobs, linearLogprobsBackward, logprobStates / linearLogprobStates /
 * mergeLogprobStates, thrAggregate / thrScore) on cpu and webgpu: the case table of test/lmhead/cases.ts
 * against its float64 reference, and the checks that are not per-element: finite differences of the
 * float64 objective (which validate the reference and the cpu backend's gradients), bad input, the
 * memory bound, THR's two halves against tokenHiddenReward. The cuda twin: test/cuda/ops-lmhead.test.ts.
 */
import { describe } from 'vitest';
import { lmheadCases } from './lmhead/cases.js';
import { lmheadChecks } from './lmhead/checks.js';
import { openBackends, requireWebGpu, runCaseTable } from './lmhead/harness.js';

const backends = await openBackends(['cpu', 'webgpu']);
requireWebGpu(backends);
runCaseTable('lmhead', lmheadCases(), backends);
describe('lmhead checks', () => lmheadChecks(backends));
