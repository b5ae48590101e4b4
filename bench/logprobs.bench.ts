/**
 * Benchmark cases of the logprobs family (src/backends/js/logprobs.ts, shaders/logprobs.wgsl,
 * native/cuda/logprobs.cu): logprobs, logprobsBackward, gatherProbs.
 *
 * logprobs reads the logits once (the op's one-pass contract: online max and sums, no [N, V]
 * temporary), so its bytes are the logits plus the per-row outputs. In the reference tier it runs
 * beside two peers on the same logits: the naive materialise-then-gather form (the full [N, V]
 * log_softmax in a Float32Array, as `log_softmax(logits / T, -1).gather(-1, targets)` does) and a plain
 * read of the logits (what one pass costs in this runtime); bench/run.ts also measures the peak
 * memory growth of one call of each in a fresh process, so the one-pass figure can be seen not to
 * grow with N·V while the naive one does.
 */
import type { Context } from 'grpo-kernels';
import {
  type BenchCase,
  bytesPerElement,
  maxRelDiff,
  type Peer,
  randomBf16,
  randomF32,
  randomInts,
  uniformLayout,
  zipfishTokens,
} from './case.js';

function hostLogits(rows: number, vocab: number, dtype: 'f32' | 'bf16', seed: number) {
  return dtype === 'f32' ? randomF32(rows * vocab, seed, 3) : randomBf16(rows * vocab, seed, 3);
}

function logitsTensor(ctx: Context, rows: number, vocab: number, dtype: 'f32' | 'bf16', seed: number) {
  return ctx.tensor(hostLogits(rows, vocab, dtype, seed), [rows, vocab], dtype);
}

// ------------------------------------------------------------------ peers (reference tier)

/**
 * Materialise-then-gather: log_softmax of every row into an [N, V] Float32Array (max pass, Σ exp
 * pass in f64, write pass), then gather the targets. Returns logprobs and lse like the op.
 */
export function naiveLogprobs(
  x: Float32Array,
  rows: number,
  vocab: number,
  targets: Int32Array,
  temperature = 1,
): { logprobs: Float32Array; lse: Float32Array } {
  const logSoftmax = new Float32Array(rows * vocab);
  const lseOut = new Float32Array(rows);
  for (let i = 0; i < rows; i++) {
    const base = i * vocab;
    let m = Number.NEGATIVE_INFINITY;
    for (let j = 0; j < vocab; j++) m = Math.max(m, x[base + j] / temperature);
    let s = 0;
    for (let j = 0; j < vocab; j++) s += Math.exp(x[base + j] / temperature - m);
    const lse = m + Math.log(s);
    for (let j = 0; j < vocab; j++) logSoftmax[base + j] = x[base + j] / temperature - lse;
    lseOut[i] = lse;
  }
  const logprobs = new Float32Array(rows);
  for (let i = 0; i < rows; i++) logprobs[i] = logSoftmax[i * vocab + targets[i]];
  return { logprobs, lse: lseOut };
}

/** Keeps the read probe's sum alive. */
const sink = { sum: 0 };

function logprobsPeers(x: Float32Array, rows: number, vocab: number, targets: Int32Array): Peer[] {
  let last: Float32Array | undefined;
  return [
    {
      name: 'naive',
      description:
        'materialise the [N, V] log_softmax in a Float32Array (max, Σ exp in f64, write), then gather the targets',
      run() {
        last = naiveLogprobs(x, rows, vocab, targets).logprobs;
      },
      async agree(outputs) {
        return maxRelDiff(last!, await outputs[0].read());
      },
    },
    {
      name: 'read probe',
      description: 'a plain read of the logits (Σ of every element): what one pass costs in this runtime',
      run() {
        let s = 0;
        for (let k = 0; k < x.length; k++) s += x[k];
        sink.sum += s;
      },
    },
  ];
}

// ------------------------------------------------------------------ the cases

export interface LogprobsCaseOptions {
  /** Also ask for entropy and Σp² (the loop that keeps both moments). */
  moments?: boolean;
  /** Time the peers beside the op and measure peak memory (reference tier; f32 only). */
  peers?: boolean;
}

export function logprobsCase(
  rows: number,
  vocab: number,
  dtype: 'f32' | 'bf16',
  opts: LogprobsCaseOptions = {},
): BenchCase {
  const logitBytes = rows * vocab * bytesPerElement(dtype);
  const peers = (opts.peers ?? false) && dtype === 'f32';
  const outputs = opts.moments ? 4 : 2;
  return {
    op: 'logprobs',
    variant: opts.moments ? '+entropy +Σp²' : undefined,
    sizes: { N: rows, V: vocab },
    dtype,
    // The host copy, the backend's, and the naive peer's [N, V] temporary.
    hostBytes: (peers ? 3 : 2) * logitBytes,
    deviceBytes: logitBytes + (4 + 4 * outputs) * rows,
    largestTensorBytes: logitBytes,
    peakMemory: peers,
    async setup(ctx) {
      const host = hostLogits(rows, vocab, dtype, 1);
      const logits = ctx.tensor(host, [rows, vocab], dtype);
      const targetsHost = randomInts(rows, 2, vocab);
      const targets = ctx.tensor(targetsHost, [rows], 'i32');
      const options = opts.moments ? { entropy: true, sumSquares: true } : {};
      // Logits read once (the op's contract: one pass per row); the per-row outputs are negligible.
      const bytes = logitBytes + rows * 4 + rows * 4 * outputs;
      return {
        async run() {
          const r = await ctx.logprobs(logits, targets, options);
          return [
            r.logprobs,
            r.lse,
            ...(r.entropy ? [r.entropy] : []),
            ...(r.sumSquares ? [r.sumSquares] : []),
          ];
        },
        dispose() {
          logits.dispose();
          targets.dispose();
        },
        bytes,
        work: { amount: bytes / 1e9, unit: 'GB/s' },
        peers: peers ? logprobsPeers(host as Float32Array, rows, vocab, targetsHost) : undefined,
      };
    },
  };
}

export function backwardCase(rows: number, vocab: number, dtype: 'f32' | 'bf16'): BenchCase {
  const logitBytes = rows * vocab * bytesPerElement(dtype);
  return {
    op: 'logprobsBackward',
    sizes: { N: rows, V: vocab },
    dtype,
    hostBytes: 2 * logitBytes,
    deviceBytes: 2 * logitBytes,
    largestTensorBytes: logitBytes,
    async setup(ctx) {
      const logits = logitsTensor(ctx, rows, vocab, dtype, 3);
      const targets = ctx.tensor(randomInts(rows, 4, vocab), [rows], 'i32');
      const lp = await ctx.logprobs(logits, targets);
      lp.logprobs.dispose();
      const grad = ctx.tensor(randomF32(rows, 5, 0.1), [rows], 'f32');
      const bytes = 2 * logitBytes + rows * 12; // logits read, gradLogits written
      return {
        async run() {
          return [await ctx.logprobsBackward(logits, targets, lp.lse, grad)];
        },
        dispose() {
          for (const t of [logits, targets, lp.lse, grad]) t.dispose();
        },
        bytes,
        work: { amount: bytes / 1e9, unit: 'GB/s' },
      };
    },
  };
}

export function gatherProbsCase(groups: number, responses: number, tokens: number, vocab: number): BenchCase {
  const T = groups * responses * tokens;
  const logitBytes = T * vocab * 4;
  return {
    op: 'gatherProbs',
    sizes: { G: groups, n: responses, L: tokens, V: vocab },
    dtype: 'f32',
    hostBytes: 2 * logitBytes,
    deviceBytes: logitBytes + T * 4 * 64,
    largestTensorBytes: logitBytes,
    async setup(ctx) {
      const layout = uniformLayout(groups, responses, tokens);
      const logits = logitsTensor(ctx, T, vocab, 'f32', 6);
      const toks = ctx.tensor(zipfishTokens(T, 7, vocab), [T], 'i32');
      const lp = await ctx.logprobs(logits, toks);
      lp.logprobs.dispose();
      const vocabT = await ctx.restrictedVocab(toks, layout);
      const off = vocabT.host.offsets;
      let gathered = 0;
      for (let g = 0; g < groups; g++) gathered += (off[g + 1] - off[g]) * responses * tokens;
      const bytes = gathered * 8 + T * 4; // scattered logits read + probs written + lse
      return {
        async run() {
          return [await ctx.gatherProbs(logits, lp.lse, { layout, vocab: vocabT })];
        },
        dispose() {
          for (const t of [logits, toks, lp.lse, vocabT.offsets, vocabT.columns, vocabT.tokenColumn])
            t.dispose();
        },
        bytes,
        work: { amount: bytes / 1e9, unit: 'GB/s' },
        sizes: { 'V*': Math.round(off[groups] / groups) },
      };
    },
  };
}
