/**
 * The case tables of every op (test/cases/*.ts) on the cuda backend: a GPU, or the CPU emulator in the
 * vitest project "cuda-emu". cpu and webgpu run the same tables in test/<family>.cases.test.ts.
 */
import { ADVANTAGES_CASES, EXPAND_CASES, WHITEN_CASES } from '../cases/advantages.js';
import { BACKWARD_CASES, GATHER_CASES, INVARIANCE_CASES, LOGPROBS_CASES } from '../cases/logprobs.js';
import { openBackends, runCaseTable } from '../cases/runner.js';
import { REWEIGHT_CASES, THR_CASES, VOCAB_CASES } from '../cases/thr.js';

const backends = await openBackends(['cuda']);

runCaseTable('logprobs', LOGPROBS_CASES, backends);
runCaseTable('logprobsBackward', BACKWARD_CASES, backends);
runCaseTable('gatherProbs', GATHER_CASES, backends);
runCaseTable('logprobs batch invariance', INVARIANCE_CASES, backends);
runCaseTable('advantages', ADVANTAGES_CASES, backends);
runCaseTable('expandToTokens', EXPAND_CASES, backends);
runCaseTable('whiten', WHITEN_CASES, backends);
runCaseTable('restrictedVocab', VOCAB_CASES, backends);
runCaseTable('tokenHiddenReward', THR_CASES, backends);
runCaseTable('thrReweight', REWEIGHT_CASES, backends);
