/**
 * The THR family on CUDA: argument plumbing to native/cuda/thr.cu. (restrictedVocab is a host op of
 * the API, src/api/vocab.ts.)
 */
import type { Tensor } from '../../tensor.js';
import type {
  ThrAggregateArgs,
  ThrResult,
  ThrReweightArgs,
  ThrScoreArgs,
  TokenHiddenRewardArgs,
} from '../backend.js';
import { reweightHostArgs, thrHostArgs } from '../thr-native.js';
import { native } from './native.js';
import { type CudaMemory, ptrOf, withOutputs, withPoison } from './storage.js';

/** The scores' tiles (ThrParams::path in native/cuda/thr.cuh). */
export type ThrPath =
  | 'auto'
  | 'mma'
  | 'wgmma'
  | 'wgmma-truncate'
  | 'wgmma-m'
  | 'tma'
  | 'tma-wide'
  | 'tma-rounded'
  | 'tma-wide-rounded'
  | 'tma-m'
  | 'tma-wide-m'
  | 'tma-wide-m-wide';
const THR_PATH_CODES: Record<Exclude<ThrPath, 'auto'>, number> = {
  mma: 1,
  wgmma: 2,
  'wgmma-truncate': 3,
  'wgmma-m': 4,
  tma: 5,
  'tma-wide': 6,
  'tma-rounded': 7,
  'tma-wide-rounded': 8,
  'tma-m': 9,
  'tma-wide-m': 10,
  'tma-wide-m-wide': 11,
};

/**
 * Test hooks.
 * - mBudgetBytes: the scratch budget for the M_g of one batch of groups, in bytes (0 = the launcher's
 *   default, 256 MiB). A small budget forces one batch per group, exercising the batching path.
 * - smallTiles: run the small tile configuration (native/cuda/thr.cu, "Configurations": 64 × 128 M
 *   tiles, 2-stage pipelines; what a GPU with 99 KiB of shared memory per block runs) on any device.
 * - path: the scores' tiles; 'wgmma' takes thr_scores_wgmma_kernel (Hopper's warpgroup MMAs) wherever it
 *   applies (f32 hidden states with 16-byte aligned rows, a 9.0 device, a build with sm_90a; the emulator's
 *   device is one) and mma.sync elsewhere; 'auto' does the same (verified and measured on an H200;
 *   bench/RESULTS.md), 'mma' takes mma.sync everywhere. 'wgmma-truncate': the wgmma scores on operands
 *   with their low 13 bits dropped, as the tensor cores read f32, instead of rounded (no preparing pass
 *   in 'tf32'; 1.21x faster there on an H200, but a biased rounding). 'wgmma-m': the wgmma scores and M_g on wgmma too
 *   (thr_m_wgmma_kernel; the large tile configuration; slower on an H200). 'tma': M_g on wgmma and the
 *   scores on truncated operands, in 'tf32' fed by TMA to warp-specialised tiles (thr_scores_tma_kernel;
 *   'f32' takes the wgmma scores' truncated form; slower on an H200). 'tma-wide': the same with blocks of
 *   128 tokens × 256 V* columns in 'tf32' (each landed hidden tile serves twice the MMAs; 'tma''s bits).
 *   'tma-rounded', 'tma-wide-rounded': M_g on mma.sync as 'auto', and in 'tf32' the TMA-fed scores
 *   (128 or 256 columns) on tf32-rounded copies of the hidden rows and of M_g (thr_round_kernel): the
 *   bits of 'auto' with the rounding taken out of the MMA loop; 'f32' runs as 'auto'. Waiting for a GPU.
 *   'tma-m': 'tma-rounded''s scores and, in 'tf32', M_g as a TMA-fed wgmma GEMM on transposed, rounded
 *   copies of its operands (thr_mt_kernel, thr_m_tma_kernel; bits of its own). Waiting for a GPU.
 *   'tma-wide-m': 'tma-m' with 'tma-wide-rounded''s 256-column scores blocks ('tma-m''s bits on any
 *   device). 'tma-wide-m-wide': 'tma-wide-m' with M_g's GEMM in 128 × 256 tiles too (its bits on any
 *   device). Waiting for a GPU.
 */
export const thrTuning: { mBudgetBytes: number; smallTiles: boolean; path: ThrPath } = {
  mBudgetBytes: 0,
  smallTiles: false,
  path: 'auto',
};

/** The arguments tokenHiddenReward, thrAggregate and thrScore share (the test hooks too: the same kernels). */
function thrArgs(a: Omit<TokenHiddenRewardArgs, 'beta'>) {
  return {
    ...thrHostArgs(a),
    hidden: ptrOf(a.hidden),
    probs: ptrOf(a.probs),
    tokenColumn: ptrOf(a.vocab.tokenColumn),
    mBudgetBytes: thrTuning.mBudgetBytes > 0 ? thrTuning.mBudgetBytes : undefined,
    smallTiles: thrTuning.smallTiles ? true : undefined,
    path: thrTuning.path === 'auto' ? undefined : THR_PATH_CODES[thrTuning.path],
  };
}

/** THR's aggregate M_g, stacked [ΣK_g, d] f32 (thr.cu, ThrStep::Aggregate). */
export function cudaThrAggregate(mem: CudaMemory, a: ThrAggregateArgs): Promise<Tensor<'f32'>> {
  const rows = a.vocab.hostOffsets[a.layout.numGroups];
  return withOutputs(mem, async (out) => {
    const aggregate = out.empty('f32', [rows, a.dim]);
    await native(() => mem.device.thrAggregate(withPoison({ ...thrArgs(a), aggregate: ptrOf(aggregate) })));
    return aggregate;
  });
}

/** THR and tau from an aggregate (thr.cu, ThrStep::Score). */
export function cudaThrScore(mem: CudaMemory, a: ThrScoreArgs): Promise<ThrResult> {
  const { layout } = a;
  return withOutputs(mem, async (out) => {
    const thr = out.empty('f32', [layout.numTokens]);
    const tau = out.empty('f32', [layout.numGroups]);
    await native(() =>
      mem.device.thrScore(
        withPoison({
          ...thrArgs(a),
          beta: a.beta,
          aggregate: ptrOf(a.aggregate),
          outThr: ptrOf(thr),
          outTau: ptrOf(tau),
        }),
      ),
    );
    return { thr, tau };
  });
}

export function cudaTokenHiddenReward(mem: CudaMemory, a: TokenHiddenRewardArgs): Promise<ThrResult> {
  const { layout } = a;
  return withOutputs(mem, async (out) => {
    const thr = out.empty('f32', [layout.numTokens]);
    const tau = out.empty('f32', [layout.numGroups]);
    await native(() =>
      mem.device.tokenHiddenReward(
        withPoison({
          ...thrArgs(a),
          beta: a.beta,
          outThr: ptrOf(thr),
          outTau: ptrOf(tau),
        }),
      ),
    );
    return { thr, tau };
  });
}

export function cudaThrReweight(mem: CudaMemory, a: ThrReweightArgs): Promise<Tensor<'f32'>> {
  const { layout } = a;
  return withOutputs(mem, async (outputs) => {
    const out = outputs.empty('f32', [layout.numTokens]);
    await native(() =>
      mem.device.thrReweight(
        withPoison({
          ...reweightHostArgs(a),
          tokenAdvantages: ptrOf(a.tokenAdvantages),
          thr: ptrOf(a.thr),
          tau: ptrOf(a.tau),
          out: ptrOf(out),
        }),
      ),
    );
    return out;
  });
}
