/**
 * The advantages family's case tables (test/cases/advantages.ts) on cpu and webgpu; the cuda backend
 * runs the same tables in test/cuda/ops-cases.test.ts.
 */
import { ADVANTAGES_CASES, EXPAND_CASES, WHITEN_CASES } from './cases/advantages.js';
import { openBackends, requireWebGpu, runCaseTable } from './cases/runner.js';

const backends = await openBackends(['js', 'cpu', 'webgpu']);
requireWebGpu(backends);

runCaseTable('advantages', ADVANTAGES_CASES, backends);
runCaseTable('expandToTokens', EXPAND_CASES, backends);
runCaseTable('whiten', WHITEN_CASES, backends);
