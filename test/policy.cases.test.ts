/**
 * policyLoss's case table (test/cases/policy.ts) on cpu and webgpu; the cuda backend runs the same
 * table in test/cuda/ops-policy-cases.test.ts.
 */
import { POLICY_CASES } from './cases/policy.js';
import { openBackends, requireWebGpu, runCaseTable } from './cases/runner.js';

const backends = await openBackends(['js', 'cpu', 'webgpu']);
requireWebGpu(backends);

runCaseTable('policyLoss', POLICY_CASES, backends);
