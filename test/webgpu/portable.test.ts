/**
 * Portability: every op family on a device created with WebGPU's DEFAULT limits and no optional
 * feature (no shader-f16, no subgroups), as a browser may hand out. The backend normally asks for
 * the adapter's maximum limits, and Dawn on lavapipe grants far more than the defaults (e.g. more
 * than 8 storage buffers per stage, 32 KiB of workgroup memory), so the other webgpu tests would
 * not see a kernel that needs more. Results are compared with the cpu reference.
 *
 * Tolerances, max relative error over a tensor (as in the per-family webgpu tests): f32
 * accumulation against the float64 reference. logprobs family 1e-5 (one pass over ≤ 1000-element
 * rows), advantages 2e-6, THR 5e-6 of max|THR| (the scores cancel: test/webgpu/thr.test.ts),
 * thrReweight 2^-22 (two f32 roundings where the reference rounds once), the bf16 gradient 2^-7
 * (twice one bf16 ulp: the two sides may round apart at a boundary; test/webgpu/logprobs.test.ts).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { requestAdapter } from '../../src/backends/webgpu/gpu.js';
import { type Context, createContext, decodeFloats, encodeFloats, type Tensor } from '../../src/index.js';
import { expectClose } from '../util/compare.js';
import { randomInts, randomNormal } from '../util/rng.js';
import { cpu, noGpu, requireAdapter } from './setup.js';

requireAdapter();

const device = noGpu ? undefined : await (await requestAdapter()).requestDevice({ label: 'default limits' });
const ctx: Context | undefined = device && (await createContext({ backend: 'webgpu', device }));
afterAll(() => {
  ctx?.dispose();
  device?.destroy();
});

const read = async (t: Tensor | undefined) => Float64Array.from((await t!.read()) as Float32Array);

describe.skipIf(noGpu)('webgpu on a device with default limits and no optional features', () => {
  it('the device really is a default one', () => {
    expect(device!.limits.maxStorageBuffersPerShaderStage).toBe(8);
    expect(device!.features.has('shader-f16')).toBe(false);
    expect(device!.features.has('subgroups')).toBe(false);
  });

  // A rollout of 3 groups (4, 70 and 1 responses: small, large and singleton groups).
  const sizes = [4, 70, 1];
  const R = sizes.reduce((a, b) => a + b, 0);
  const lengths = randomInts(3, R, 0, 6);
  const responseOffsets = new Int32Array(R + 1);
  for (let r = 0; r < R; r++) responseOffsets[r + 1] = responseOffsets[r] + lengths[r];
  const groupOffsets = new Int32Array([0, 4, 74, 75]);
  const layout = { responseOffsets, groupOffsets };
  const T = responseOffsets[R];
  const V = 1009;
  const D = 70;
  const tokens = randomInts(4, T, 0, 60);
  const logitsData = Float32Array.from(randomNormal(5, T * V, 2));
  const hiddenData = Float32Array.from(randomNormal(6, T * D));
  const rewards = Float32Array.from(randomNormal(7, R));
  const correct = Uint8Array.from(randomInts(8, R, 0, 2));

  it('logprobs (f32, bf16), backward (f32; bf16 in place), advantages (small and large groups), whiten, THR chain', async () => {
    const run = async (c: Context) => {
      const out: Record<string, Float64Array> = {};
      for (const dtype of ['f32', 'bf16'] as const) {
        const data = dtype === 'f32' ? logitsData : (encodeFloats('bf16', logitsData) as Uint16Array);
        const logits = c.tensor(data as Float32Array, [T, V], dtype as 'f32');
        const f = await c.logprobs(logits, tokens, { temperature: 0.9, entropy: true, sumSquares: true });
        out[`logprobs ${dtype}`] = await read(f.logprobs);
        out[`entropy ${dtype}`] = await read(f.entropy);
        out[`sumSquares ${dtype}`] = await read(f.sumSquares);
        if (dtype === 'bf16') {
          // In place (logits bound read_write; V odd, so 16-bit words straddle rows). Last use of
          // these logits.
          const g = await c.logprobsBackward(logits, tokens, f.lse, Float32Array.from(randomNormal(9, T)), {
            temperature: 0.9,
            inPlace: true,
          });
          out['gradLogits bf16 inPlace'] = decodeFloats('bf16', (await g.read()) as Uint16Array);
        }
        if (dtype === 'f32') {
          const g = await c.logprobsBackward(logits, tokens, f.lse, Float32Array.from(randomNormal(9, T)), {
            temperature: 0.9,
          });
          out['gradLogits f32'] = await read(g);
          const vocab = await c.restrictedVocab(tokens, layout);
          const probs = await c.gatherProbs(logits, f.lse, { layout, vocab, temperature: 0.9 });
          out.probs = await read(probs);
          const hidden = c.tensor(hiddenData, [T, D]);
          const thr = await c.tokenHiddenReward({ hidden, probs, vocab, layout, correct });
          out.thr = await read(thr.thr);
          out.tau = await read(thr.tau);
          const adv = await c.advantages(rewards, {
            groupOffsets,
            responseOffsets,
            estimator: 'grpo',
            preset: 'verl',
          });
          out.advantages = await read(adv.advantages);
          out.mean = await read(adv.mean);
          out.std = await read(adv.std);
          out.degenerate = Float64Array.from(await adv.degenerate.read());
          const perToken = await c.expandToTokens(adv.advantages, responseOffsets);
          out.whitened = await read(await c.whiten(perToken));
          out.reweighted = await read(
            await c.thrReweight({
              tokenAdvantages: perToken,
              thr: thr.thr,
              tau: thr.tau,
              layout,
              correct,
              p: 0.1,
            }),
          );
          const rpp = await c.advantages(rewards, {
            groupOffsets,
            responseOffsets,
            estimator: 'reinforce_pp_baseline',
          });
          out.rpp = await read(rpp.advantages);
        }
      }
      return out;
    };
    const got = await run(ctx!);
    const want = await run(cpu);
    const rtol = (k: string) =>
      k.startsWith('thr') || k === 'tau'
        ? 5e-6
        : k === 'reweighted'
          ? 2 ** -22
          : ['advantages', 'mean', 'std', 'whitened', 'rpp', 'degenerate'].includes(k)
            ? 2e-6
            : k === 'gradLogits bf16 inPlace'
              ? 2 ** -7
              : 1e-5;
    for (const k of Object.keys(want)) expectClose(got[k], want[k], { rtol: rtol(k), what: k });
  });

  // The LM head: ≤ 8 storage buffers per kernel and 8.7 KB of workgroup memory, so it runs here too.
  // Tolerances: max relative error over a tensor against the float64 reference (f32 sums of d = 72
  // products for the logits; of V = 300 and N = 70 terms for the gradients).
  it('linearLogprobs (f32, bf16 with bias), its backward, 3 sharded states merged', async () => {
    const N = 70;
    const d = 72;
    const V = 300;
    const run = async (c: Context) => {
      const out: Record<string, Float64Array> = {};
      const targets = randomInts(41, N, 0, V);
      for (const dtype of ['f32', 'bf16'] as const) {
        const h = c.tensor(
          encodeFloats(dtype, randomNormal(42, N * d)) as Uint16Array,
          [N, d],
          dtype as 'bf16',
        );
        const w = c.tensor(
          encodeFloats(dtype, randomNormal(43, V * d, 0.2)) as Uint16Array,
          [V, d],
          dtype as 'bf16',
        );
        const bias =
          dtype === 'bf16'
            ? c.tensor(encodeFloats('bf16', randomNormal(44, V, 0.5)) as Uint16Array, [V], 'bf16')
            : undefined;
        const f = await c.linearLogprobs(h, w, targets, { entropy: true, bias });
        out[`logprobs ${dtype}`] = await read(f.logprobs);
        out[`entropy ${dtype}`] = await read(f.entropy);
        const g = await c.linearLogprobsBackward(
          h,
          w,
          targets,
          f.lse,
          Float32Array.from(randomNormal(45, N)),
          {
            bias,
            gradEntropy: Float32Array.from(randomNormal(46, N)),
            entropy: f.entropy,
          },
        );
        out[`gradHidden ${dtype}`] = await read(g.gradHidden);
        out[`gradWeight ${dtype}`] = await read(g.gradWeight);
        for (const t of [f.logprobs, f.lse, f.entropy, g.gradHidden, g.gradWeight, g.gradBias, h, w, bias])
          t?.dispose();
      }
      const h = c.tensor(Float32Array.from(randomNormal(47, N * d)), [N, d]);
      const cuts = [0, 100, 101, V];
      const states = [];
      for (let i = 0; i < 3; i++) {
        const w = c.tensor(Float32Array.from(randomNormal(48 + i, (cuts[i + 1] - cuts[i]) * d, 0.2)), [
          cuts[i + 1] - cuts[i],
          d,
        ]);
        states.push(await c.linearLogprobStates(h, w, targets, { vocabStart: cuts[i], entropy: true }));
        w.dispose();
      }
      const m = await c.mergeLogprobStates(states, targets, { entropy: true });
      out['merged logprobs'] = await read(m.logprobs);
      out['merged entropy'] = await read(m.entropy);
      for (const s of states) for (const t of [s.max, s.sumExp, s.sumExpDelta, s.targetLogit]) t?.dispose();
      for (const t of [m.logprobs, m.lse, m.entropy, h]) t?.dispose();
      return out;
    };
    const got = await run(ctx!);
    const want = await run(cpu);
    // bf16 gradients: the webgpu kernels keep G in f32 (only cuda rounds it), so f32-grade here too.
    for (const k of Object.keys(want))
      expectClose(got[k], want[k], { rtol: k.startsWith('grad') ? 1e-4 : 1e-5, what: k });
  });
});
