/**
 * NaN rewards under the advantages' trl preset (test/cases/advantages-nan.ts) on the cuda backend (a
 * GPU, or the CPU emulator in the vitest project "cuda-emu").
 */
import { ADVANTAGES_NAN_CASES } from '../cases/advantages-nan.js';
import { openBackends, runCaseTable } from '../cases/runner.js';

const backends = await openBackends(['cuda']);

runCaseTable('advantages, NaN rewards', ADVANTAGES_NAN_CASES, backends);
