/**
 * The workloads `grpo-kernels bench` times: every op at realistic sizes. Three tiers: `gpu` (logits
 * of a few hundred MB, THR at real hidden sizes), `cpu` (the float64 reference: small N so each
 * case takes seconds) and `quick` (tiny, for smoke tests). Each case says how many bytes it must
 * move (read + written) so the table can report GB/s, and its own work unit (GFLOP/s for THR,
 * responses/s for advantages, tokens/s for the THR vocabulary). Size keys: N rows, V vocabulary,
 * G groups × n responses × L tokens each, R responses, d hidden size, V* the mean restricted
 * vocabulary |V*_g| (measured after setup).
 */
import type { BackendName, Context, Tensor } from '../index.js';
import { f32ToBf16 } from '../index.js';

export type Tier = 'gpu' | 'cpu' | 'quick';
export type OpName =
  | 'logprobs'
  | 'logprobsBackward'
  | 'gatherProbs'
  | 'advantages'
  | 'expandToTokens'
  | 'whiten'
  | 'restrictedVocab'
  | 'tokenHiddenReward'
  | 'thrReweight'
  | 'policyLoss';

export const OP_NAMES: readonly OpName[] = [
  'logprobs',
  'logprobsBackward',
  'gatherProbs',
  'advantages',
  'expandToTokens',
  'whiten',
  'restrictedVocab',
  'tokenHiddenReward',
  'thrReweight',
  'policyLoss',
];

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
}

export interface BenchCase {
  op: OpName;
  sizes: Record<string, number>;
  dtype: 'f32' | 'bf16';
  /** Rough host memory needed to build the inputs, for the fits-in-memory check. */
  hostBytes: number;
  /** Rough device memory the case holds at once (inputs + outputs). */
  deviceBytes: number;
  /** The largest single tensor (WebGPU's maxBufferSize limits one buffer). */
  largestTensorBytes: number;
  setup(ctx: Context): Promise<Prepared>;
}

// ------------------------------------------------------------------ deterministic inputs
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

/** Values roughly N(0, scale²) (sum of 3 uniforms): fast enough for hundreds of MB. */
function randomF32(n: number, seed: number, scale = 1): Float32Array {
  const r = lcg(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (r() + r() + r() - 1.5) * 2 * scale;
  return out;
}

/** bf16 bits of values roughly N(0, scale²), drawn from a 4096-entry table. */
function randomBf16(n: number, seed: number, scale = 1): Uint16Array {
  const table = randomF32(4096, seed ^ 0x5bd1e995, scale);
  const bits = new Uint16Array(4096);
  for (let i = 0; i < 4096; i++) bits[i] = f32ToBf16(table[i]);
  const r = lcg(seed);
  const out = new Uint16Array(n);
  for (let i = 0; i < n; i++) out[i] = bits[(r() * 4096) | 0];
  return out;
}

function randomInts(n: number, seed: number, hi: number): Int32Array {
  const r = lcg(seed);
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) out[i] = (r() * hi) | 0;
  return out;
}

/** Token ids skewed toward small ids (u³·V), so groups repeat tokens as real samples do. */
function zipfishTokens(n: number, seed: number, vocab: number): Int32Array {
  const r = lcg(seed);
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.min(vocab - 1, Math.floor(r() ** 3 * vocab));
  return out;
}

/** Equal groups of equal-length responses. */
function uniformLayout(groups: number, responses: number, tokens: number) {
  const R = groups * responses;
  const responseOffsets = new Int32Array(R + 1);
  for (let i = 0; i <= R; i++) responseOffsets[i] = i * tokens;
  const groupOffsets = new Int32Array(groups + 1);
  for (let g = 0; g <= groups; g++) groupOffsets[g] = g * responses;
  return { responseOffsets, groupOffsets };
}

function logitsTensor(ctx: Context, rows: number, vocab: number, dtype: 'f32' | 'bf16', seed: number) {
  return dtype === 'f32'
    ? ctx.tensor(randomF32(rows * vocab, seed, 3), [rows, vocab], 'f32')
    : ctx.tensor(randomBf16(rows * vocab, seed, 3), [rows, vocab], 'bf16');
}

const bpe = (dtype: 'f32' | 'bf16') => (dtype === 'f32' ? 4 : 2);

// ------------------------------------------------------------------ the cases
function logprobsCase(rows: number, vocab: number, dtype: 'f32' | 'bf16'): BenchCase {
  const logitBytes = rows * vocab * bpe(dtype);
  return {
    op: 'logprobs',
    sizes: { N: rows, V: vocab },
    dtype,
    hostBytes: 2 * logitBytes,
    deviceBytes: logitBytes + 16 * rows,
    largestTensorBytes: logitBytes,
    async setup(ctx) {
      const logits = logitsTensor(ctx, rows, vocab, dtype, 1);
      const targets = ctx.tensor(randomInts(rows, 2, vocab), [rows], 'i32');
      // Logits read once (the op's contract: one pass per row); the per-row outputs are negligible.
      const bytes = logitBytes + rows * 4 + rows * 8;
      return {
        async run() {
          const r = await ctx.logprobs(logits, targets);
          return [r.logprobs, r.lse];
        },
        dispose() {
          logits.dispose();
          targets.dispose();
        },
        bytes,
        work: { amount: bytes / 1e9, unit: 'GB/s' },
      };
    },
  };
}

function backwardCase(rows: number, vocab: number, dtype: 'f32' | 'bf16'): BenchCase {
  const logitBytes = rows * vocab * bpe(dtype);
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

function gatherProbsCase(groups: number, responses: number, tokens: number, vocab: number): BenchCase {
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
      const off = await vocabT.offsets.read();
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

function advantagesCase(responses: number, groupSize: number): BenchCase {
  return {
    op: 'advantages',
    sizes: { R: responses, n: groupSize },
    dtype: 'f32',
    hostBytes: responses * 8,
    deviceBytes: responses * 8,
    largestTensorBytes: responses * 4,
    async setup(ctx) {
      const r = new Float32Array(responses);
      const rand = lcg(8);
      for (let i = 0; i < responses; i++) r[i] = rand() < 0.4 ? 1 : 0;
      const rewards = ctx.tensor(r, [responses], 'f32');
      return {
        async run() {
          const a = await ctx.advantages(rewards, { groupSize, estimator: 'grpo' });
          return [a.advantages, a.mean, a.std, a.degenerate];
        },
        dispose() {
          rewards.dispose();
        },
        bytes: responses * 8,
        work: { amount: responses / 1e6, unit: 'Mresp/s' },
      };
    },
  };
}

function expandCase(responses: number, tokens: number): BenchCase {
  const T = responses * tokens;
  return {
    op: 'expandToTokens',
    sizes: { R: responses, L: tokens },
    dtype: 'f32',
    hostBytes: T * 4,
    deviceBytes: T * 4 + responses * 8,
    largestTensorBytes: T * 4,
    async setup(ctx) {
      const values = ctx.tensor(randomF32(responses, 9), [responses], 'f32');
      const { responseOffsets } = uniformLayout(1, responses, tokens);
      return {
        async run() {
          return [await ctx.expandToTokens(values, responseOffsets)];
        },
        dispose() {
          values.dispose();
        },
        bytes: T * 4 + responses * 8,
        work: { amount: (T * 4 + responses * 8) / 1e9, unit: 'GB/s' },
      };
    },
  };
}

function whitenCase(n: number): BenchCase {
  return {
    op: 'whiten',
    sizes: { n },
    dtype: 'f32',
    hostBytes: n * 8,
    deviceBytes: n * 8,
    largestTensorBytes: n * 4,
    async setup(ctx) {
      const values = ctx.tensor(randomF32(n, 10), [n], 'f32');
      return {
        async run() {
          return [await ctx.whiten(values)];
        },
        dispose() {
          values.dispose();
        },
        bytes: n * 8,
        work: { amount: (n * 8) / 1e9, unit: 'GB/s' },
      };
    },
  };
}

function restrictedVocabCase(groups: number, responses: number, tokens: number, vocab: number): BenchCase {
  const T = groups * responses * tokens;
  return {
    op: 'restrictedVocab',
    sizes: { G: groups, n: responses, L: tokens, V: vocab },
    dtype: 'f32',
    hostBytes: T * 12,
    deviceBytes: T * 12,
    largestTensorBytes: T * 4,
    async setup(ctx) {
      const layout = uniformLayout(groups, responses, tokens);
      const toks = ctx.tensor(zipfishTokens(T, 11, vocab), [T], 'i32');
      return {
        async run() {
          const v = await ctx.restrictedVocab(toks, layout);
          return [v.offsets, v.columns, v.tokenColumn];
        },
        dispose() {
          toks.dispose();
        },
        bytes: T * 8,
        work: { amount: T / 1e6, unit: 'Mtok/s' },
      };
    },
  };
}

/** THR at hidden size d: groups of `responses` responses of `tokens` tokens, half of them correct. */
function thrCase(groups: number, responses: number, tokens: number, d: number, vocab: number): BenchCase {
  const T = groups * responses * tokens;
  return {
    op: 'tokenHiddenReward',
    sizes: { G: groups, n: responses, L: tokens, d },
    dtype: 'f32',
    hostBytes: T * d * 4 * 2 + T * 4 * 1024,
    deviceBytes: T * d * 4 + T * 4 * 1024,
    largestTensorBytes: Math.max(T * d * 4, T * 4 * 1024),
    async setup(ctx) {
      const layout = uniformLayout(groups, responses, tokens);
      const toks = ctx.tensor(zipfishTokens(T, 12, vocab), [T], 'i32');
      const vocabT = await ctx.restrictedVocab(toks, layout);
      const off = await vocabT.offsets.read();
      let probCount = 0;
      let macs = 0;
      let hiddenReads = 0;
      const tPlus = Math.ceil(responses / 2) * tokens;
      for (let g = 0; g < groups; g++) {
        const k = off[g + 1] - off[g];
        probCount += k * responses * tokens;
        // M_g takes |V*|·d·T⁺ multiply-adds, U = H·Mᵀ with its epilogue |V*|·d·T: THR.md's
        // 2·|V*|·d·(T⁺ + T) is the FLOP count of these multiply-adds.
        macs += k * d * (tPlus + responses * tokens);
        hiddenReads += (tPlus + responses * tokens) * d;
      }
      const probs = ctx.tensor(randomF32(probCount, 13, 1e-3).map(Math.abs), [probCount], 'f32');
      const hidden = ctx.tensor(randomF32(T * d, 14), [T, d], 'f32');
      const correct = new Uint8Array(groups * responses);
      for (let r = 0; r < correct.length; r++) correct[r] = r % responses < Math.ceil(responses / 2) ? 1 : 0;
      return {
        async run() {
          const r = await ctx.tokenHiddenReward({ hidden, probs, vocab: vocabT, layout, correct });
          return [r.thr, r.tau];
        },
        dispose() {
          for (const t of [toks, vocabT.offsets, vocabT.columns, vocabT.tokenColumn, probs, hidden])
            t.dispose();
        },
        bytes: hiddenReads * 4 + probCount * 8 + T * 4,
        work: { amount: (2 * macs) / 1e9, unit: 'GFLOP/s' },
        sizes: { 'V*': Math.round(off[groups] / groups) },
      };
    },
  };
}

function reweightCase(groups: number, responses: number, tokens: number): BenchCase {
  const T = groups * responses * tokens;
  return {
    op: 'thrReweight',
    sizes: { G: groups, n: responses, L: tokens },
    dtype: 'f32',
    hostBytes: T * 16,
    deviceBytes: T * 16,
    largestTensorBytes: T * 4,
    async setup(ctx) {
      const layout = uniformLayout(groups, responses, tokens);
      const adv = ctx.tensor(randomF32(T, 15), [T], 'f32');
      const thr = ctx.tensor(randomF32(T, 16), [T], 'f32');
      const tau = ctx.tensor(randomF32(groups, 17, 0.1).map(Math.abs), [groups], 'f32');
      const correct = new Uint8Array(groups * responses);
      for (let r = 0; r < correct.length; r++) correct[r] = r % 2;
      return {
        async run() {
          return [await ctx.thrReweight({ tokenAdvantages: adv, thr, tau, layout, correct, p: 0.1 })];
        },
        dispose() {
          for (const t of [adv, thr, tau]) t.dispose();
        },
        bytes: T * 12,
        work: { amount: (T * 12) / 1e9, unit: 'GB/s' },
      };
    },
  };
}

/**
 * policyLoss on T ≈ responses·meanLength tokens in `responses` ragged responses (lengths 1 to
 * 2·meanLength − 1): ppo with a k3 KL, an entropy bonus and token-level rollout correction, token-mean,
 * no mask (a packed batch has no padding). Bytes: six f32 inputs read and two f32 outputs written per
 * token (the floor; the kernels read each input twice, the second time from cache), the offsets.
 */
function policyLossCase(responses: number, meanLength: number): BenchCase {
  const lengths = new Int32Array(responses);
  const r = lcg(21);
  for (let i = 0; i < responses; i++) lengths[i] = 1 + Math.floor(r() * (2 * meanLength - 1));
  const responseOffsets = new Int32Array(responses + 1);
  for (let i = 0; i < responses; i++) responseOffsets[i + 1] = responseOffsets[i] + lengths[i];
  const T = responseOffsets[responses];
  return {
    op: 'policyLoss',
    sizes: { R: responses, T },
    dtype: 'f32',
    hostBytes: T * 40,
    deviceBytes: T * 32,
    largestTensorBytes: T * 4,
    async setup(ctx) {
      const logprobs = randomF32(T, 22, 0.5).map((x) => -Math.abs(x) - 0.05);
      const shifted = (seed: number, scale: number) => {
        const d = randomF32(T, seed, scale);
        for (let t = 0; t < T; t++) d[t] += logprobs[t];
        return ctx.tensor(d, [T], 'f32');
      };
      const lp = ctx.tensor(logprobs, [T], 'f32');
      const old = shifted(23, 0.1);
      const ref = shifted(24, 0.3);
      const roll = shifted(25, 0.1);
      const adv = ctx.tensor(randomF32(T, 26), [T], 'f32');
      const entropy = ctx.tensor(randomF32(T, 27, 0.5).map(Math.abs), [T], 'f32');
      const layout = { responseOffsets };
      return {
        async run() {
          const out = await ctx.policyLoss(
            {
              logprobs: lp,
              oldLogprobs: old,
              advantages: adv,
              refLogprobs: ref,
              rolloutLogprobs: roll,
              entropy,
              layout,
            },
            { kl: { coef: 0.01 }, entropyCoef: 0.001, rolloutCorrection: { level: 'token' } },
          );
          return [out.loss, out.gradLogprobs, out.gradEntropy!, out.stats];
        },
        dispose() {
          for (const t of [lp, old, ref, roll, adv, entropy]) t.dispose();
        },
        bytes: T * 32 + 4 * (responses + 1),
        work: { amount: T / 1e6, unit: 'Mtok/s' },
      };
    },
  };
}

/** The cases of a tier, in table order. */
export function benchCases(tier: Tier): BenchCase[] {
  const V = [32000, 128256, 151936];
  if (tier === 'quick') {
    return [
      logprobsCase(4, 32000, 'f32'),
      backwardCase(4, 32000, 'f32'),
      gatherProbsCase(1, 4, 4, 32000),
      advantagesCase(1000, 8),
      advantagesCase(10000, 8),
      expandCase(256, 16),
      whitenCase(4096),
      restrictedVocabCase(2, 4, 32, 151936),
      thrCase(1, 4, 8, 896, 151936),
      reweightCase(4, 4, 256),
      policyLossCase(64, 16),
    ];
  }
  const gpu = tier === 'gpu';
  // GPU: logits of 250-310 MB (f32) per case. CPU reference: 8 rows, a few ms to a second each.
  const rows = (v: number) => (gpu ? (v === 32000 ? 2048 : 512) : 8);
  return [
    ...(['f32', 'bf16'] as const).flatMap((dt) => V.map((v) => logprobsCase(rows(v), v, dt))),
    backwardCase(rows(151936), 151936, 'f32'),
    backwardCase(rows(151936), 151936, 'bf16'),
    gpu ? gatherProbsCase(4, 8, 16, 151936) : gatherProbsCase(2, 4, 8, 151936),
    ...[1e3, 1e4, 1e5, 1e6].map((r) => advantagesCase(r, 8)),
    gpu ? expandCase(16384, 256) : expandCase(4096, 256),
    whitenCase(gpu ? 1 << 22 : 1 << 20),
    gpu ? restrictedVocabCase(8, 16, 512, 151936) : restrictedVocabCase(4, 8, 256, 151936),
    gpu ? thrCase(8, 8, 256, 896, 151936) : thrCase(2, 4, 64, 896, 151936),
    gpu ? thrCase(8, 8, 256, 3584, 151936) : thrCase(2, 4, 16, 3584, 151936),
    gpu ? reweightCase(64, 16, 1024) : reweightCase(16, 16, 256),
    // 1M tokens in 64k responses (the size) on a GPU; 64k tokens in 4k on cpu.
    gpu ? policyLossCase(65536, 16) : policyLossCase(4096, 16),
  ];
}

/**
 * Which tier a backend gets: cpu (the float64 reference) and software drivers (lavapipe, whose
 * figures are no speed claim) get the small sizes.
 */
export function tierFor(backend: BackendName, quick: boolean, softwareDriver = false): Tier {
  if (quick) return 'quick';
  return backend === 'cpu' || softwareDriver ? 'cpu' : 'gpu';
}
