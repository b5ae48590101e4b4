/**
 * NaN rewards under the advantages' trl preset (test/cases/advantages-nan.ts) on cpu and webgpu; the
 * cuda backend runs the same table in test/cuda/ops-advantages-nan-cases.test.ts.
 */
import { ADVANTAGES_NAN_CASES } from './cases/advantages-nan.js';
import { openBackends, requireWebGpu, runCaseTable } from './cases/runner.js';

const backends = await openBackends(['js', 'cpu', 'webgpu']);
requireWebGpu(backends);

runCaseTable('advantages, NaN rewards', ADVANTAGES_NAN_CASES, backends);
