/**
 * Every op of the cuda backend against the cpu reference (float64), on the shapes the webgpu tests use:
 * a real vocabulary (151936), an odd one, N = 1 (split vocabulary), f16/bf16, ragged and singleton
 * groups, THR groups of several sizes with d not a multiple of the tile, poisoned outputs, determinism
 * and the device error paths. Needs a GPU: elsewhere every test skips with the reason printed.
 *
 * Tolerances (max relative error over the tensor, src/test/util/compare.ts):
 * - logprobs family: inputs are exact in both backends (the same f16/bf16 bits), so the only error is
 *   the kernel's f32 accumulation over V terms: 2e-5 for logprobs/lse, 1e-4 for entropy, Σp² and
 *   probabilities (a difference of two O(1) terms); gradients in f16/bf16 are compared after both are
 *   rounded to the output dtype, so one unit in the last place: 2^-10 (f16), 2^-7 (bf16).
 * - advantages: f32 two-pass statistics over ≤ 1e4 elements: 1e-5.
 * - THR: tensor cores with TF32 inputs (10-bit mantissa, unit roundoff 2^-11 ≈ 4.9e-4); q, h and M are
 *   each rounded once, so about 3 roundings per product: 3e-3 relative to max |THR|.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { logprobsTuning } from '../../src/backends/cuda/logprobs.js';
import { loadNativeAddon } from '../../src/backends/cuda/native.js';
import {
  type Context,
  decodeFloats,
  encodeFloats,
  type FloatDType,
  GrpoKernelsError,
  setOutputPoison,
  type Tensor,
} from '../../src/index.js';
import { expectClose, expectNoPoison, POISON_F32 } from '../util/compare.js';
import { randomInts, randomNormal, rng } from '../util/rng.js';
import { cpuContext, probeGpu } from './helpers.js';

const gpu = await probeGpu();
const noGpu = gpu.ctx === undefined;
const cuda = gpu.ctx as Context;
const cpu = await cpuContext();

afterEach(() => {
  setOutputPoison(undefined);
  logprobsTuning.splits = 0;
});

async function read(t: Tensor | undefined): Promise<Float64Array> {
  if (t === undefined) throw new Error('missing output');
  const a = await t.read();
  return Float64Array.from(a as ArrayLike<number>);
}

function logitsData(seed: number, n: number, v: number, dtype: FloatDType) {
  return encodeFloats(dtype, randomNormal(seed, n * v, 3));
}

function both<D extends FloatDType>(data: Float32Array | Uint16Array, shape: number[], dtype: D) {
  return {
    gpu: cuda.tensor(data as never, shape, dtype) as Tensor<D>,
    cpu: cpu.tensor(data as never, shape, dtype) as Tensor<D>,
  };
}

/** Targets in [0, V) with every 7th row ignored. */
function targetsFor(seed: number, n: number, v: number, ignore = -100): Int32Array {
  const t = randomInts(seed, n, 0, v);
  for (let i = 3; i < n; i += 7) t[i] = ignore;
  return t;
}

describe.skipIf(noGpu)('cuda logprobs vs cpu', () => {
  const cases: { n: number; v: number; dtype: FloatDType; temperature: number; splits?: number }[] = [
    { n: 1, v: 151936, dtype: 'bf16', temperature: 1 }, // one row: vocabulary split across blocks
    { n: 37, v: 151936, dtype: 'f16', temperature: 0.7 },
    { n: 16, v: 151936, dtype: 'f32', temperature: 1 },
    { n: 64, v: 32003, dtype: 'bf16', temperature: 1.3 }, // odd V: misaligned rows, scalar heads/tails
    { n: 600, v: 4099, dtype: 'f16', temperature: 1 }, // enough rows: no split
    { n: 5, v: 1, dtype: 'f32', temperature: 1 },
    { n: 8, v: 151936, dtype: 'bf16', temperature: 1, splits: 7 }, // forced split count
  ];
  for (const c of cases) {
    it(`[${c.n}, ${c.v}] ${c.dtype} T=${c.temperature}${c.splits ? ` splits=${c.splits}` : ''}`, async () => {
      logprobsTuning.splits = c.splits ?? 0;
      const x = both(logitsData(c.n * 31 + c.v, c.n, c.v, c.dtype), [c.n, c.v], c.dtype);
      const targets = targetsFor(c.n + 5, c.n, c.v);
      const opts = { temperature: c.temperature, entropy: true, sumSquares: true };
      const g = await cuda.logprobs(x.gpu, targets, opts);
      const r = await cpu.logprobs(x.cpu, targets, opts);
      expectClose(await read(g.logprobs), await read(r.logprobs), { rtol: 2e-5, what: 'logprobs' });
      expectClose(await read(g.lse), await read(r.lse), { rtol: 2e-5, what: 'lse' });
      expectClose(await read(g.entropy), await read(r.entropy), { rtol: 1e-4, floor: 1e-3, what: 'entropy' });
      expectClose(await read(g.sumSquares), await read(r.sumSquares), {
        rtol: 1e-4,
        floor: 1e-3,
        what: 'Σp²',
      });
      const lp = await read(g.logprobs);
      for (let i = 3; i < c.n; i += 7) expect(lp[i], `ignored row ${i}`).toBe(0);
    });
  }

  it('split and unsplit forwards agree; the same inputs give the same bits', async () => {
    const x = both(logitsData(9, 4, 151936, 'bf16'), [4, 151936], 'bf16');
    const t = targetsFor(1, 4, 151936);
    logprobsTuning.splits = 1;
    const a = await read((await cuda.logprobs(x.gpu, t)).logprobs);
    logprobsTuning.splits = 0;
    const b = await read((await cuda.logprobs(x.gpu, t)).logprobs);
    const c = await read((await cuda.logprobs(x.gpu, t)).logprobs);
    expectClose(b, a, { rtol: 2e-5, what: 'split vs unsplit' });
    expect(Array.from(c)).toEqual(Array.from(b));
  });

  it('poisoned outputs are all written', async () => {
    setOutputPoison(POISON_F32);
    const x = both(logitsData(3, 50, 32003, 'f16'), [50, 32003], 'f16');
    const g = await cuda.logprobs(x.gpu, targetsFor(2, 50, 32003), { entropy: true, sumSquares: true });
    for (const [k, t] of Object.entries(g)) expectNoPoison(await read(t as Tensor), k);
  });

  it('an all −Inf row is a RANGE error naming the row', async () => {
    const v = 1000;
    const data = new Float32Array(3 * v).fill(0.5);
    data.fill(Number.NEGATIVE_INFINITY, v, 2 * v);
    const x = cuda.tensor(data, [3, v], 'f32');
    await expect(cuda.logprobs(x, new Int32Array([1, 2, 3]))).rejects.toMatchObject({
      code: 'RANGE',
      message: expect.stringMatching(/row 1/),
    });
  });

  it('NaN in a row gives NaN in that row only', async () => {
    const v = 5000;
    const data = Float32Array.from(randomNormal(4, 2 * v));
    data[v + 17] = Number.NaN;
    const g = await cuda.logprobs(cuda.tensor(data, [2, v], 'f32'), new Int32Array([0, 0]), {
      entropy: true,
    });
    const lp = await read(g.logprobs);
    expect(Number.isFinite(lp[0])).toBe(true);
    expect(Number.isNaN(lp[1])).toBe(true);
  });
});

describe.skipIf(noGpu)('cuda logprobsBackward and gatherProbs vs cpu', () => {
  const tol: Record<FloatDType, number> = { f32: 1e-5, f16: 2 ** -10, bf16: 2 ** -7 };
  for (const [n, v, dtype] of [
    [16, 151936, 'bf16'],
    [33, 32003, 'f16'],
    [7, 4099, 'f32'],
  ] as const) {
    it(`backward [${n}, ${v}] ${dtype} with the entropy term`, async () => {
      const x = both(logitsData(n + v, n, v, dtype), [n, v], dtype);
      const t = targetsFor(n, n, v);
      const opts = { temperature: 0.9, entropy: true };
      const fg = await cuda.logprobs(x.gpu, t, opts);
      const fc = await cpu.logprobs(x.cpu, t, opts);
      const glp = Float32Array.from(randomNormal(5, n));
      const gent = Float32Array.from(randomNormal(6, n));
      const gg = await cuda.logprobsBackward(x.gpu, t, fg.lse, glp, {
        temperature: 0.9,
        gradEntropy: gent,
        entropy: fg.entropy,
      });
      const gc = await cpu.logprobsBackward(x.cpu, t, fc.lse, glp, {
        temperature: 0.9,
        gradEntropy: gent,
        entropy: fc.entropy,
      });
      expect(gg.dtype).toBe(dtype);
      const dec = (a: Float32Array | Uint16Array) => decodeFloats(dtype, a);
      expectClose(dec(await gg.read()), dec(await gc.read()), { rtol: tol[dtype], what: 'gradLogits' });
    });
  }

  it('gatherProbs on ragged groups matches', async () => {
    const { layout, tokens } = thrLayout(11, [3, 1, 6, 2], 40, 300);
    const T = tokens.length;
    const V = 300;
    const x = both(logitsData(12, T, V, 'bf16'), [T, V], 'bf16');
    const lseG = (await cuda.logprobs(x.gpu, tokens)).lse;
    const lseC = (await cpu.logprobs(x.cpu, tokens)).lse;
    const vg = await cuda.restrictedVocab(tokens, layout);
    const vc = await cpu.restrictedVocab(tokens, layout);
    expect(Array.from(await vg.columns.read())).toEqual(Array.from(await vc.columns.read()));
    setOutputPoison(POISON_F32);
    const pg = await cuda.gatherProbs(x.gpu, lseG, { layout, vocab: vg });
    const pc = await cpu.gatherProbs(x.cpu, lseC, { layout, vocab: vc });
    expectNoPoison(await read(pg), 'probs');
    expectClose(await read(pg), await read(pc), { rtol: 1e-4, what: 'probs' });
  });
});

// ---------------------------------------------------------------------------- advantages
/** Ragged groups (sizes cycling through `sizes`) with random lengths (some empty). */
function ragged(seed: number, groups: number, sizes: number[]) {
  const r = rng(seed);
  const go = new Int32Array(groups + 1);
  for (let g = 0; g < groups; g++) go[g + 1] = go[g] + sizes[g % sizes.length];
  const R = go[groups];
  const ro = new Int32Array(R + 1);
  for (let i = 0; i < R; i++) ro[i + 1] = ro[i] + (r() < 0.1 ? 0 : 1 + Math.floor(r() * 30));
  const rewards = new Float32Array(R);
  for (let i = 0; i < R; i++) rewards[i] = r() < 0.5 ? 1 : r() < 0.5 ? 0 : r();
  // One zero-variance group.
  rewards.fill(0.25, go[1], go[2]);
  return { go, ro, rewards };
}

describe.skipIf(noGpu)('cuda advantages vs cpu', () => {
  const estimators = [
    'grpo',
    'dr_grpo',
    'rloo',
    'opo',
    'grpo_passk',
    'gpg',
    'reinforce_pp_baseline',
  ] as const;
  const { go, ro, rewards } = ragged(21, 500, [8, 1, 5, 16, 3, 64]);
  for (const estimator of estimators) {
    for (const preset of [undefined, 'verl', 'trl', 'openrlhf'] as const) {
      it(`${estimator}${preset ? ` preset ${preset}` : ''}`, async () => {
        // grpo_passk needs n ≥ 2: drop the singletons' sizes for it.
        const g = estimator === 'grpo_passk' ? ragged(22, 300, [8, 5, 16, 3]) : { go, ro, rewards };
        const opts = { groupOffsets: g.go, responseOffsets: g.ro, estimator, preset };
        setOutputPoison(POISON_F32);
        const a = await cuda.advantages(g.rewards, opts);
        setOutputPoison(undefined);
        const b = await cpu.advantages(g.rewards, opts);
        expectNoPoison(await read(a.advantages), 'advantages');
        expectClose(await read(a.advantages), await read(b.advantages), { rtol: 1e-5, what: 'advantages' });
        expectClose(await read(a.mean), await read(b.mean), { rtol: 1e-5, what: 'mean' });
        expectClose(await read(a.std), await read(b.std), { rtol: 1e-5, what: 'std' });
        expect(Array.from(await a.degenerate.read())).toEqual(Array.from(await b.degenerate.read()));
      });
    }
  }

  it('scale batch and population std', async () => {
    const opts = {
      groupOffsets: go,
      estimator: 'grpo' as const,
      scale: 'batch' as const,
      std: 'population' as const,
    };
    const a = await cuda.advantages(rewards, opts);
    const b = await cpu.advantages(rewards, opts);
    expectClose(await read(a.advantages), await read(b.advantages), { rtol: 1e-5, what: 'advantages' });
    expectClose(await read(a.std), await read(b.std), { rtol: 1e-5, what: 'std' });
  });

  it('expandToTokens and whiten (masked, verl and openrlhf conventions)', async () => {
    const values = Float32Array.from(randomNormal(3, ro.length - 1));
    const e1 = await cuda.expandToTokens(values, ro);
    const e2 = await cpu.expandToTokens(values, ro);
    expect(Array.from(await e1.read())).toEqual(Array.from(await e2.read()));
    const x = Float32Array.from(randomNormal(4, 10007, 2, 1));
    const mask = Uint8Array.from(randomInts(5, 10007, 0, 2));
    for (const preset of [undefined, 'verl', 'openrlhf'] as const) {
      const w1 = await cuda.whiten(x, { mask, preset });
      const w2 = await cpu.whiten(x, { mask, preset });
      expectClose(await read(w1), await read(w2), { rtol: 1e-5, what: `whiten ${preset ?? 'default'}` });
    }
  });

  it('1M responses in 64k groups: deterministic', async () => {
    const G = 65536;
    const go2 = new Int32Array(G + 1);
    for (let g = 0; g < G; g++) go2[g + 1] = go2[g] + 16;
    const r2 = Float32Array.from(randomNormal(8, G * 16));
    const a = await read((await cuda.advantages(r2, { groupOffsets: go2 })).advantages);
    const b = await read((await cuda.advantages(r2, { groupOffsets: go2 })).advantages);
    expect(a.every((v, i) => Object.is(v, b[i]))).toBe(true);
  });
});

// ----------------------------------------------------------------------------------- THR
/** A THR layout: groups with the given response counts, lengths 0..maxLen, tokens in [0, V). */
function thrLayout(seed: number, groupSizes: number[], maxLen: number, V: number) {
  const r = rng(seed);
  const go = new Int32Array(groupSizes.length + 1);
  groupSizes.forEach((n, g) => {
    go[g + 1] = go[g] + n;
  });
  const R = go[groupSizes.length];
  const ro = new Int32Array(R + 1);
  for (let i = 0; i < R; i++) ro[i + 1] = ro[i] + (r() < 0.1 ? 0 : 1 + Math.floor(r() * maxLen));
  const tokens = randomInts(seed + 1, ro[R], 0, Math.min(V, 60));
  const correct = new Uint8Array(R);
  for (let i = 0; i < R; i++) correct[i] = r() < 0.5 ? 1 : 0;
  // Make every group of ≥ 2 responses mixed (one correct, one incorrect, both with tokens if possible).
  for (let g = 0; g < groupSizes.length; g++)
    if (go[g + 1] - go[g] >= 2) {
      correct[go[g]] = 1;
      correct[go[g] + 1] = 0;
    }
  return { layout: { responseOffsets: ro, groupOffsets: go }, tokens, correct };
}

describe.skipIf(noGpu)('cuda THR vs cpu', () => {
  for (const [sizes, d, dtype] of [
    [[4, 1, 8, 2, 16], 100, 'f32'],
    [[3, 5, 2], 64, 'bf16'],
    [[12, 7], 257, 'f16'],
  ] as const) {
    it(`groups ${sizes.join('/')} d=${d} ${dtype}`, async () => {
      const V = 97;
      const { layout, tokens, correct } = thrLayout(d, [...sizes], 50, V);
      const T = tokens.length;
      const logits = both(logitsData(1, T, V, 'f32'), [T, V], 'f32');
      const hidden = both(encodeFloats(dtype, randomNormal(2, T * d, 0.5)), [T, d], dtype);
      const lseG = (await cuda.logprobs(logits.gpu, tokens)).lse;
      const lseC = (await cpu.logprobs(logits.cpu, tokens)).lse;
      const vg = await cuda.restrictedVocab(tokens, layout);
      const vc = await cpu.restrictedVocab(tokens, layout);
      const pg = await cuda.gatherProbs(logits.gpu, lseG, { layout, vocab: vg });
      const pc = await cpu.gatherProbs(logits.cpu, lseC, { layout, vocab: vc });
      for (const weighting of ['length', 'none'] as const) {
        setOutputPoison(POISON_F32);
        const g = await cuda.tokenHiddenReward({
          hidden: hidden.gpu,
          probs: pg,
          vocab: vg,
          layout,
          correct,
          weighting,
        });
        setOutputPoison(undefined);
        const c = await cpu.tokenHiddenReward({
          hidden: hidden.cpu,
          probs: pc,
          vocab: vc,
          layout,
          correct,
          weighting,
        });
        expectNoPoison(await read(g.thr), 'thr');
        expectClose(await read(g.thr), await read(c.thr), { rtol: 3e-3, what: `thr ${weighting}` });
        expectClose(await read(g.tau), await read(c.tau), { rtol: 3e-3, what: `tau ${weighting}` });
        const again = await cuda.tokenHiddenReward({
          hidden: hidden.gpu,
          probs: pg,
          vocab: vg,
          layout,
          correct,
          weighting,
        });
        expect(Array.from(await again.thr.read())).toEqual(Array.from(await g.thr.read()));

        const adv = Float32Array.from(randomNormal(3, T));
        for (const [mode, extra] of [
          ['thr', { p: 0.1 }],
          ['thr', { p: -0.1, mask: false }],
          ['thr-only', {}],
          ['nthr', {}],
          ['nthr', { eta: 0.3 }],
        ] as const) {
          // The same THR and tau on both sides, so the comparison isolates thrReweight.
          const thrHost = await g.thr.read();
          const tauHost = await g.tau.read();
          const o = { tokenAdvantages: adv, layout, correct, mode, ...extra };
          const rg = await cuda.thrReweight({ ...o, thr: thrHost, tau: tauHost });
          const rc = await cpu.thrReweight({ ...o, thr: thrHost, tau: tauHost });
          const a = await rg.read();
          const b = await rc.read();
          expect(
            Array.from(a).every((v, i) => Object.is(v, b[i]) || (Number.isNaN(v) && Number.isNaN(b[i]))),
            `thrReweight ${mode} ${JSON.stringify(extra)}: bit-exact`,
          ).toBe(true);
        }
      }
    });
  }
});

// ------------------------------------------------------------------------------- device errors
describe.skipIf(noGpu)('cuda device errors', () => {
  it('an allocation larger than the device is OUT_OF_MEMORY, and the context keeps working', async () => {
    const addon = loadNativeAddon();
    const dev = new addon.CudaDevice!(0);
    try {
      expect(() => dev.alloc(1n << 50n)).toThrow(expect.objectContaining({ code: 'OUT_OF_MEMORY' }));
      const p = dev.alloc(1024n);
      await dev.synchronize();
      dev.free(p);
    } finally {
      dev.close();
    }
    const x = await cuda.logprobs(cuda.tensor(new Float32Array(8), [2, 4], 'f32'), new Int32Array([0, 1]));
    expect(Array.from(await x.logprobs.read())).toEqual([
      Math.fround(-Math.log(4)),
      Math.fround(-Math.log(4)),
    ]);
  });

  it('fromDevicePointer wraps without taking ownership', async () => {
    const src = cuda.tensor(Float32Array.from([1, 2, 3, 4]), [4], 'f32');
    const ptr = (src.storage as unknown as { ptr: bigint }).ptr;
    const view = cuda.fromDevicePointer(ptr, [2, 2], 'f32');
    expect(Array.from(await view.read())).toEqual([1, 2, 3, 4]);
    view.dispose(); // must not free src
    expect(Array.from(await src.read())).toEqual([1, 2, 3, 4]);
    expect(() => cuda.fromDevicePointer(ptr + 1n, [1], 'f32')).toThrow(GrpoKernelsError);
  });
});
