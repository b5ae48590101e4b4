/**
 * rolloutRejection's case table (test/cases/rejection.ts) on js, cpu and webgpu; the cuda backend runs
 * the same table in test/cuda/ops-rejection-cases.test.ts.
 */
import { REJECTION_CASES } from './cases/rejection.js';
import { openBackends, requireWebGpu, runCaseTable } from './cases/runner.js';

const backends = await openBackends(['js', 'cpu', 'webgpu']);
requireWebGpu(backends);

runCaseTable('rolloutRejection', REJECTION_CASES, backends);
