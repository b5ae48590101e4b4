/**
 * rolloutRejection's case table (test/cases/rejection.ts) on the cuda backend: a GPU, or the CPU
 * emulator in the vitest project "cuda-emu". js, cpu and webgpu run the same table in
 * test/rejection.cases.test.ts.
 */
import { REJECTION_CASES } from '../cases/rejection.js';
import { openBackends, runCaseTable } from '../cases/runner.js';

const backends = await openBackends(['cuda']);

runCaseTable('rolloutRejection', REJECTION_CASES, backends);
