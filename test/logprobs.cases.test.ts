/**
 * The logprobs family's case tables (test/cases/logprobs.ts) on cpu and webgpu; the cuda backend runs
 * the same tables in test/cuda/ops-cases.test.ts.
 */
import { BACKWARD_CASES, GATHER_CASES, INVARIANCE_CASES, LOGPROBS_CASES } from './cases/logprobs.js';
import { openBackends, requireWebGpu, runCaseTable } from './cases/runner.js';

const backends = await openBackends(['js', 'cpu', 'webgpu']);
requireWebGpu(backends);

runCaseTable('logprobs', LOGPROBS_CASES, backends);
runCaseTable('logprobsBackward', BACKWARD_CASES, backends);
runCaseTable('gatherProbs', GATHER_CASES, backends);
runCaseTable('logprobs batch invariance', INVARIANCE_CASES, backends);
