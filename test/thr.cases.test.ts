/**
 * The THR family's case tables (test/cases/thr.ts) on cpu and webgpu; the cuda backend runs the same
 * tables in test/cuda/ops-cases.test.ts.
 */
import { openBackends, requireWebGpu, runCaseTable } from './cases/runner.js';
import { REWEIGHT_CASES, THR_CASES, VOCAB_CASES } from './cases/thr.js';

const backends = await openBackends(['js', 'cpu', 'webgpu']);
requireWebGpu(backends);

runCaseTable('restrictedVocab', VOCAB_CASES, backends);
runCaseTable('tokenHiddenReward', THR_CASES, backends);
runCaseTable('thrReweight', REWEIGHT_CASES, backends);
