#!/usr/bin/env node
// The GPU-verification issue's goal sizes on one backend, timed side by side with a device-to-device
// copy of the same bytes (ctx.copyProbe) in the same process. Runs from the built package (dist/).
//
//   node scripts/gpu/goals.mjs --backend cuda|webgpu [--rows 16384] [--vocab 151936] [--only a,b] [--reps 10] [--adv-reps 50]
//     [--lm-rows 8192] [--lm-dim 4096] [--lm-vocab 151936]
//     [--policy-path flat|warp]
//
// Prints one JSON line per case: {backend, case, sizes, ms_median, ms_p10, ms_p90, bytes, gbps,
// copy_gbps, fraction}. Times are host-timed (launch to settled promise, after ctx.synchronize), so
// sub-100 µs cases also carry the job round trip; GPU-side kernel times come from ncu (run.sh).
// Cases: copy, logprobs (plain, +entropy, +entropy+Σp²), logprobsBackward (bf16), THR (one group of
// 8 responses × 2048 tokens, |V*| = 4096, d = 3584, f32 hidden), advantages (2^20 responses in 65536
// ragged groups), policyLoss (2^16 and 2^20 ragged responses: ~1M and ~16.8M tokens), lmhead
// (linearLogprobs with and without entropy, linearLogprobsBackward; bf16 N 8192, d 4096, V 151936;
// --lm-rows, --lm-dim, --lm-vocab). --thr-tokens, --thr-vocab, --thr-d, --groups shrink them for a dry
// run.
// policyTuning: the policyLoss layout test hook (native/cuda/policy.cu: 'flat' or 'warp'; default the
// automatic choice), set by --policy-path.
import { policyTuning } from '../../dist/backends/cuda/policy.js';
import { createContext, f32ToBf16 } from '../../dist/index.js';

const args = process.argv.slice(2);
// The last occurrence of a flag wins (run.sh's dry run appends tiny sizes to the goal-size commands).
const opt = (name, dflt) => {
  const i = args.lastIndexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const backend = opt('backend', 'cuda');
let rows = Number(opt('rows', 16384));
const vocab = Number(opt('vocab', 151936));
const reps = Number(opt('reps', 10));
const only = opt('only', '')
  .split(',')
  .filter((s) => s !== '');
const want = (c) => only.length === 0 || only.includes(c);
if (opt('policy-path', '') !== '') policyTuning.path = opt('policy-path', '');

function lcg(seed) {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
}
const gauss = (r) => (r() + r() + r() - 1.5) * 2;

/** bf16 bits ~N(0, scale²): a 2^20-entry random table, each row a slice at a random start. */
function bf16Logits(n, v, seed, scale = 3) {
  const r = lcg(seed);
  const tableLen = 1 << 20;
  const table = new Uint16Array(tableLen + v);
  for (let i = 0; i < table.length; i++) table[i] = f32ToBf16(scale * gauss(r));
  const out = new Uint16Array(n * v);
  for (let i = 0; i < n; i++) {
    const s = (r() * tableLen) | 0;
    out.set(table.subarray(s, s + v), i * v);
  }
  return out;
}

async function time(ctx, run, n = reps) {
  for (let i = 0; i < 2; i++) for (const t of await run()) t.dispose();
  await ctx.synchronize();
  const ms = [];
  const submit = [];
  for (let i = 0; i < n; i++) {
    await ctx.synchronize();
    const t0 = performance.now();
    const outs = await run();
    submit.push(performance.now() - t0);
    await ctx.synchronize();
    ms.push(performance.now() - t0);
    for (const t of outs) t.dispose();
  }
  const q = (a, p) => a.sort((x, y) => x - y)[Math.min(a.length - 1, Math.round(p * (a.length - 1)))];
  // ms_submit: until the op's promise settled (the host's share: validation, arguments, launches).
  return { ms_median: q(ms, 0.5), ms_p10: q(ms, 0.1), ms_p90: q(ms, 0.9), ms_submit: q(submit, 0.5) };
}

const copyCache = new Map();
/** Copy GB/s at `bytes` of traffic (b read + b written, b = bytes / 2). */
async function copyGbps(ctx, bytes) {
  const b = Math.max(16, Math.round(bytes / 2));
  if (!copyCache.has(b)) copyCache.set(b, (2 * b) / (await ctx.copyProbe(b)) / 1e9);
  return copyCache.get(b);
}

async function report(ctx, name, sizes, t, bytes, extra = {}) {
  const gbps = bytes ? bytes / (t.ms_median * 1e6) : null;
  const copy = bytes ? await copyGbps(ctx, bytes) : null;
  const row = {
    backend,
    case: name,
    sizes,
    ...t,
    bytes,
    gbps,
    copy_gbps: copy,
    fraction: gbps && gbps / copy,
    ...extra,
  };
  console.log(JSON.stringify(row));
}

async function main() {
  const ctx = await createContext({ backend });
  console.error(`[goals] ${backend}: ${JSON.stringify(ctx.device)}`);

  if (want('logprobs') || want('backward')) {
    let logits;
    let targets;
    for (;;) {
      try {
        const host = bf16Logits(rows, vocab, 1);
        logits = ctx.tensor(host, [rows, vocab], 'bf16');
        const tr = lcg(2);
        targets = ctx.tensor(
          Int32Array.from({ length: rows }, () => (tr() * vocab) | 0),
          [rows],
          'i32',
        );
        for (const t of Object.values(await ctx.logprobs(logits, targets))) t.dispose();
        break;
      } catch (e) {
        if (rows <= 512) throw e;
        console.error(`[goals] ${rows} rows do not fit (${e.message}); halving`);
        logits?.dispose();
        rows = Math.floor(rows / 2);
      }
    }
    const sizes = { N: rows, V: vocab, dtype: 'bf16' };
    const logitBytes = rows * vocab * 2;
    if (want('logprobs')) {
      for (const [name, o] of [
        ['logprobs', {}],
        ['logprobs+entropy', { entropy: true }],
        ['logprobs+entropy+sumSquares', { entropy: true, sumSquares: true }],
      ]) {
        const t = await time(ctx, async () => Object.values(await ctx.logprobs(logits, targets, o)));
        await report(ctx, name, sizes, t, logitBytes + rows * 4 * (3 + Object.keys(o).length));
      }
    }
    if (want('backward')) {
      const lp = await ctx.logprobs(logits, targets);
      lp.logprobs.dispose();
      const gr = lcg(5);
      const grad = ctx.tensor(
        Float32Array.from({ length: rows }, () => 0.1 * gauss(gr)),
        [rows],
        'f32',
      );
      const t = await time(ctx, async () => [await ctx.logprobsBackward(logits, targets, lp.lse, grad)]);
      // the logits read once and the gradient (bf16) written once
      await report(ctx, 'logprobsBackward', sizes, t, 2 * logitBytes + rows * 12);
      lp.lse.dispose();
      grad.dispose();
    }
    logits.dispose();
    targets.dispose();
  }

  if (want('thr')) {
    const n = 8;
    const L = Number(opt('thr-tokens', 2048));
    const K = Number(opt('thr-vocab', 4096));
    const d = Number(opt('thr-d', 3584));
    const T = n * L;
    const r = lcg(12);
    // Token ids: a permutation of K distinct ids first (so |V*| = K exactly), then draws among them.
    const ids = Array.from({ length: K }, (_, i) => (i * 37) % vocab);
    const tok = new Int32Array(T);
    for (let i = 0; i < T; i++) tok[i] = i < K ? ids[i] : ids[(r() * K) | 0];
    const responseOffsets = Int32Array.from({ length: n + 1 }, (_, i) => i * L);
    const layout = { responseOffsets, groupOffsets: Int32Array.from([0, n]) };
    const toks = ctx.tensor(tok, [T], 'i32');
    const vocabT = await ctx.restrictedVocab(toks, layout);
    const off = await vocabT.offsets.read();
    const k = off[1] - off[0];
    const probsHost = new Float32Array(T * k);
    for (let i = 0; i < probsHost.length; i++) probsHost[i] = r() / k;
    const probs = ctx.tensor(probsHost, [T * k], 'f32');
    const hh = new Float32Array(T * d);
    for (let i = 0; i < hh.length; i++) hh[i] = gauss(r);
    const hidden = ctx.tensor(hh, [T, d], 'f32');
    // Host flags, like the layout (src/api/thr.ts: the API plans the correct tokens on the host).
    const correct = Uint8Array.from({ length: n }, (_, i) => (i < n / 2 ? 1 : 0));
    const tPlus = (n / 2) * L;
    const flops = 2 * k * d * (tPlus + T);
    const t = await time(ctx, async () => {
      const res = await ctx.tokenHiddenReward({ hidden, probs, vocab: vocabT, layout, correct });
      return [res.thr, res.tau];
    });
    await report(ctx, 'tokenHiddenReward', { T, 'V*': k, d, 'T+': tPlus, hidden: 'f32' }, t, null, {
      tflops: flops / (t.ms_median * 1e9),
    });
    for (const x of [toks, vocabT.offsets, vocabT.columns, vocabT.tokenColumn, probs, hidden]) x.dispose();
  }

  if (want('lmhead')) {
    // Issue 16's LM head (bf16 hidden [N, d], weight [V, d]): the forward and the backward through the
    // API, FLOPs of useful work 2·N·d·V and 4·N·d·V.
    const N = Number(opt('lm-rows', 8192));
    const d = Number(opt('lm-dim', 4096));
    const V = Number(opt('lm-vocab', vocab));
    const r = lcg(21);
    const hidden = ctx.tensor(bf16Logits(N, d, 22, 1), [N, d], 'bf16');
    const weight = ctx.tensor(bf16Logits(V, d, 23, 1 / Math.sqrt(d)), [V, d], 'bf16');
    const targets = ctx.tensor(
      Int32Array.from({ length: N }, () => (r() * V) | 0),
      [N],
      'i32',
    );
    const sizes = { N, d, V, dtype: 'bf16' };
    const gemm = 2 * N * d * V;
    for (const [name, o] of [
      ['linearLogprobs', {}],
      ['linearLogprobs+entropy', { entropy: true }],
    ]) {
      const t = await time(ctx, async () =>
        Object.values(await ctx.linearLogprobs(hidden, weight, targets, o)),
      );
      await report(ctx, name, sizes, t, null, { tflops: gemm / (t.ms_median * 1e9) });
    }
    const fwd = await ctx.linearLogprobs(hidden, weight, targets);
    fwd.logprobs.dispose();
    const grad = ctx.tensor(
      Float32Array.from({ length: N }, () => 0.1 * gauss(r)),
      [N],
      'f32',
    );
    const t = await time(ctx, async () =>
      Object.values(await ctx.linearLogprobsBackward(hidden, weight, targets, fwd.lse, grad)),
    );
    await report(ctx, 'linearLogprobsBackward', sizes, t, null, { tflops: (2 * gemm) / (t.ms_median * 1e9) });
    for (const x of [hidden, weight, targets, fwd.lse, grad]) x.dispose();
  }

  if (want('advantages')) {
    const G = Number(opt('groups', 65536));
    const R = G * 16;
    const r = lcg(8);
    // ragged sizes 1..31 (mean 16), the last group absorbing the remainder
    const go = new Int32Array(G + 1);
    for (let g = 0; g < G; g++) go[g + 1] = Math.min(R, go[g] + 1 + ((r() * 31) | 0));
    go[G] = R;
    for (let g = G - 1; g > 0 && go[g] > go[g + 1] - 1; g--) go[g] = go[g + 1] - 1;
    const rewards = ctx.tensor(
      Float32Array.from({ length: R }, () => (r() < 0.4 ? 1 : 0) + 0.1 * gauss(r)),
      [R],
      'f32',
    );
    const t = await time(
      ctx,
      async () => {
        const a = await ctx.advantages(rewards, { groupOffsets: go, estimator: 'grpo' });
        return [a.advantages, a.mean, a.std, a.degenerate];
      },
      Number(opt('adv-reps', 50)),
    );
    await report(ctx, 'advantages', { R, G, ragged: '1..31' }, t, null);
    rewards.dispose();
  }

  // policyLoss as bench/policy.bench.ts times it (ppo, k3 KL, entropy bonus, token-level rollout
  // correction, token-mean) on 2^16 ragged responses of 1..31 tokens (T ≈ 1M, issue 15's size) and on
  // 2^20 (T ≈ 16.8M); --groups G makes them G and 16·G. Bytes: six f32 inputs read and two f32 outputs
  // written per token.
  for (const R of want('policy') ? [1, 16].map((k) => k * Number(opt('groups', 65536))) : []) {
    const r = lcg(21);
    const responseOffsets = new Int32Array(R + 1);
    for (let i = 0; i < R; i++) responseOffsets[i + 1] = responseOffsets[i] + 1 + ((r() * 31) | 0);
    const T = responseOffsets[R];
    const lpHost = Float32Array.from({ length: T }, () => -Math.abs(0.5 * gauss(r)) - 0.05);
    const near = (scale) =>
      ctx.tensor(
        lpHost.map((x) => x + scale * gauss(r)),
        [T],
        'f32',
      );
    const lp = ctx.tensor(lpHost, [T], 'f32');
    const old = near(0.1);
    const ref = near(0.3);
    const roll = near(0.1);
    const adv = ctx.tensor(
      Float32Array.from({ length: T }, () => gauss(r)),
      [T],
      'f32',
    );
    const entropy = ctx.tensor(
      Float32Array.from({ length: T }, () => Math.abs(0.5 * gauss(r))),
      [T],
      'f32',
    );
    const layout = { responseOffsets };
    const t = await time(ctx, async () => {
      const o = await ctx.policyLoss(
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
      return [o.loss, o.gradLogprobs, o.gradEntropy, o.stats];
    });
    await report(ctx, 'policyLoss', { R, T }, t, T * 32 + 4 * (R + 1));
    for (const x of [lp, old, ref, roll, adv, entropy]) x.dispose();
  }

  if (want('copy')) {
    const b = rows * vocab * 2;
    const s = await ctx.copyProbe(b);
    console.log(
      JSON.stringify({ backend, case: 'copy', bytes: 2 * b, ms_median: s * 1e3, gbps: (2 * b) / s / 1e9 }),
    );
  }
  ctx.dispose();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
