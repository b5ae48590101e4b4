/**
 * policyLoss's case table (test/cases/policy.ts) on the cuda backend: a GPU, or the CPU emulator in
 * the vitest project "cuda-emu". cpu and webgpu run the same table in test/policy.cases.test.ts.
 */
import { POLICY_CASES } from '../cases/policy.js';
import { openBackends, runCaseTable } from '../cases/runner.js';

const backends = await openBackends(['cuda']);

runCaseTable('policyLoss', POLICY_CASES, backends);
