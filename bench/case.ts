/**
 * What a benchmark case is, for both runners of bench/: `grpo-kernels bench` (cli/bench.ts, which
 * times the cases of the gpu, cpu and quick tiers on every backend) and `npm run bench:reference`
 * (bench/run.ts: the reference tier on the js backend, against its peers). The cases themselves are
 * in bench/<family>.bench.ts, one file per op family as in src/, shaders/ and native/cuda/; the
 * tiers are listed in bench/index.ts. Also the deterministic input generators they share.
 *
 * Size keys: N rows, V vocabulary, G groups × n responses × L tokens each, R responses, d hidden
 * size, V* the mean restricted vocabulary |V*_g| (measured after setup).
 */
import { type Context, f32ToBf16, type Tensor } from 'grpo-kernels';

/**
 * `gpu`: logits of a few hundred MB, THR at real hidden sizes; `cpu`: the float64 reference and
 * software drivers (small N, so each case takes seconds); `quick`: tiny, for smoke tests;
 * `reference`: the cpu reference against naive formulations of the same math (its peers).
 */
export type Tier = 'gpu' | 'cpu' | 'quick' | 'reference';

export type OpName =
  | 'logprobs'
  | 'logprobsBackward'
  | 'linearLogprobs'
  | 'linearLogprobsBackward'
  | 'gatherProbs'
  | 'advantages'
  | 'expandToTokens'
  | 'whiten'
  | 'restrictedVocab'
  | 'tokenHiddenReward'
  | 'thrReweight'
  | 'policyLoss'
  | 'rolloutRejection';

export const OP_NAMES: readonly OpName[] = [
  'logprobs',
  'logprobsBackward',
  'linearLogprobs',
  'linearLogprobsBackward',
  'gatherProbs',
  'advantages',
  'expandToTokens',
  'whiten',
  'restrictedVocab',
  'tokenHiddenReward',
  'thrReweight',
  'policyLoss',
  'rolloutRejection',
];

/**
 * Another implementation of the same math on host copies of the case's inputs, timed beside the op
 * (the reference tier): e.g. materialise-then-gather for logprobs, the pairwise double sum for THR.
 */
export interface Peer {
  /** Short name for tables ("naive"). */
  name: string;
  /** What it computes and how, one line. */
  description: string;
  /** One run (the runner times the call, unless the peer extrapolates its own time). */
  run(): void;
  /** The time in ms to report for the last run, when the peer computes a subsample and scales. */
  extrapolatedMs?(): number;
  /**
   * max |peer − op| / max |op| over what the last run computed, against the outputs of one run of
   * the op. Absent for a probe that computes no result (a plain read of the inputs).
   */
  agree?(outputs: Tensor[]): Promise<number>;
  /** Warm-ups and timed runs, for a peer of seconds per run (default: the runner's plan). */
  plan?: { warmup: number; reps: number };
}

/** A prepared case: `run` launches the op once and returns its outputs (disposed by the caller). */
export interface Prepared {
  run(): Promise<Tensor[]>;
  dispose(): void;
  /** Bytes the op must move at least (inputs read + outputs written). */
  bytes: number;
  /** The op's own throughput unit: amount per run, and its name per second. */
  work: { amount: number; unit: 'GB/s' | 'GFLOP/s' | 'Mresp/s' | 'Mtok/s' };
  /** Sizes only known after setup (e.g. the mean |V*|). */
  sizes?: Record<string, number>;
  /** The peers timed beside the op (reference tier only). */
  peers?: Peer[];
}

export interface BenchCase {
  op: OpName;
  /** What distinguishes cases of one op and size beyond the dtype (an estimator, extra outputs). */
  variant?: string;
  sizes: Record<string, number>;
  dtype: 'f32' | 'bf16';
  /** Rough host memory needed to build the inputs, for the fits-in-memory check. */
  hostBytes: number;
  /** Rough device memory the case holds at once (inputs + outputs). */
  deviceBytes: number;
  /** The largest single tensor (WebGPU's maxBufferSize limits one buffer). */
  largestTensorBytes: number;
  /** bench/run.ts measures the peak memory growth of one run of the op and of each peer. */
  peakMemory?: boolean;
  setup(ctx: Context): Promise<Prepared>;
}

// ------------------------------------------------------------------ deterministic inputs
export function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

/** Values roughly N(0, scale²) (sum of 3 uniforms): fast enough for hundreds of MB. */
export function randomF32(n: number, seed: number, scale = 1): Float32Array {
  const r = lcg(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (r() + r() + r() - 1.5) * 2 * scale;
  return out;
}

/** bf16 bits of values roughly N(0, scale²), drawn from a 4096-entry table. */
export function randomBf16(n: number, seed: number, scale = 1): Uint16Array {
  const table = randomF32(4096, seed ^ 0x5bd1e995, scale);
  const bits = new Uint16Array(4096);
  for (let i = 0; i < 4096; i++) bits[i] = f32ToBf16(table[i]);
  const r = lcg(seed);
  const out = new Uint16Array(n);
  for (let i = 0; i < n; i++) out[i] = bits[(r() * 4096) | 0];
  return out;
}

export function randomInts(n: number, seed: number, hi: number): Int32Array {
  const r = lcg(seed);
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) out[i] = (r() * hi) | 0;
  return out;
}

/** Token ids skewed toward small ids (u³·V), so groups repeat tokens as real samples do. */
export function zipfishTokens(n: number, seed: number, vocab: number): Int32Array {
  const r = lcg(seed);
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.min(vocab - 1, Math.floor(r() ** 3 * vocab));
  return out;
}

/** Equal groups of equal-length responses. */
export function uniformLayout(groups: number, responses: number, tokens: number) {
  const R = groups * responses;
  const responseOffsets = new Int32Array(R + 1);
  for (let i = 0; i <= R; i++) responseOffsets[i] = i * tokens;
  const groupOffsets = new Int32Array(groups + 1);
  for (let g = 0; g <= groups; g++) groupOffsets[g] = g * responses;
  return { responseOffsets, groupOffsets };
}

export const bytesPerElement = (dtype: 'f32' | 'bf16') => (dtype === 'f32' ? 4 : 2);

/** max |a − b| / max |b| (a peer's agreement with the op); a[i] is compared with b[index[i]] when given. */
export function maxRelDiff(a: ArrayLike<number>, b: ArrayLike<number>, index?: ArrayLike<number>): number {
  let maxAbs = 0;
  let maxDiff = 0;
  for (let i = 0; i < a.length; i++) {
    const j = index === undefined ? i : index[i];
    maxAbs = Math.max(maxAbs, Math.abs(b[j]));
    maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[j]));
  }
  return maxAbs === 0 ? maxDiff : maxDiff / maxAbs;
}
