/**
 * The LM head on the native cpu backend (native/cpu/lmhead.cc), beyond the shared case table
 * (test/lmhead.test.ts runs it on the default build): the case table against the float64 reference on
 * the other builds (AVX2 where the CPU has AVX-512F, and portable); on each of its builds (AVX-512
 * where the CPU has it, AVX2, portable) every op gives the same bits with 1, 2 and 8 threads (8 > the cores here, through cpuTuning.maxThreads); the
 * AVX-512 and AVX2 builds give the same bits (native/cpu/gemm.h: each element one FMA chain); a row's
 * bits do not depend on the batch (alone, reversed, in other chunks, across row blocks of 396); and the
 * memory: the plan at the issue's size is ≤ 5% of the logits it avoids (f32 gradients and gradients in
 * the input dtype), and a run's resident set grows by no more than its plan and its outputs.
 */
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { lmheadScratchBytes } from '../../src/api/lmhead-plan.js';
import { loadNativeAddon } from '../../src/backends/addon.js';
import type { Context, LogprobStates, Tensor } from '../../src/index.js';
import { lmheadCases, shardCuts } from '../cases/lmhead.js';
import { runCaseTable } from '../cases/runner.js';
import { BIG, LOGITS_BF16_BYTES } from '../lmhead/checks.js';
import { gradVector, type HeadInputs, type HeadSpec, makeHead } from '../lmhead/reference.js';
import { bits, type NativeCpu, openNativeCpu } from './helpers.js';

const THREADS = [1, 2, 8] as const;
const BUILDS = [
  { name: 'avx512', path: 'avx2', avx512: true },
  { name: 'avx2', path: 'avx2', avx512: false },
  { name: 'portable', path: 'portable', avx512: false },
] as const;

const opened: Record<string, NativeCpu[]> = {};
for (const b of BUILDS) {
  opened[b.name] = [];
  for (const t of THREADS) {
    const o = await openNativeCpu(b.path, t, { avx512: b.avx512 });
    if (o.ctx && o.ctx.device.details.lmheadIsa !== b.name) {
      opened[b.name].push({
        path: b.name,
        reason: `the LM head's ${b.name} build does not run here (${String(o.ctx.device.details.lmheadIsa)} does)`,
      });
      o.ctx.dispose();
    } else opened[b.name].push(o);
  }
}
afterAll(() => {
  for (const list of Object.values(opened)) for (const o of list) o.ctx?.dispose();
});

/** Every output's bits, by name: a digest of its bytes (outputs are large), disposing it. */
type Digests = Record<string, string>;
async function digest(out: Digests, name: string, t: Tensor | undefined): Promise<void> {
  if (t === undefined) return;
  const d = (await t.read()) as Float32Array;
  t.dispose();
  out[name] = createHash('sha256')
    .update(new Uint8Array(d.buffer, d.byteOffset, d.byteLength))
    .digest('hex');
}

async function stateDigests(out: Digests, name: string, s: LogprobStates): Promise<void> {
  for (const k of ['max', 'sumExp', 'sumExpDelta', 'sumExpSq', 'targetLogit'] as const)
    await digest(out, `${name}.${k}`, s[k]);
}

/**
 * Every op of the family on one input: linearLogprobs (+ entropy, Σp²), linearLogprobStates over 3
 * uneven shards merged, logprobStates of 2 rows' materialised logits, the backward with gradEntropy.
 */
async function everyOp(ctx: Context, x: HeadInputs): Promise<Digests> {
  const T = 0.8;
  const hidden = ctx.tensor(x.hidden, [x.N, x.d], x.dtype);
  const weight = ctx.tensor(x.weight, [x.V, x.d], x.dtype);
  const bias = x.bias ? ctx.tensor(x.bias, [x.V], x.dtype) : undefined;
  const out: Digests = {};
  try {
    const f = await ctx.linearLogprobs(hidden, weight, x.targets, {
      temperature: T,
      entropy: true,
      sumSquares: true,
      bias,
    });
    const lse = await f.lse.read();
    const entropy = await f.entropy!.read();
    for (const [k, t] of Object.entries(f)) await digest(out, `linearLogprobs.${k}`, t);
    const cuts = shardCuts(x.V, 3);
    const states: LogprobStates[] = [];
    for (let i = 0; i < 3; i++) {
      const [v0, v1] = [cuts[i], cuts[i + 1]];
      const w = ctx.tensor(x.weight.slice(v0 * x.d, v1 * x.d), [v1 - v0, x.d], x.dtype);
      const b = x.bias ? ctx.tensor(x.bias.slice(v0, v1), [v1 - v0], x.dtype) : undefined;
      states.push(
        await ctx.linearLogprobStates(hidden, w, x.targets, {
          vocabStart: v0,
          temperature: T,
          entropy: true,
          sumSquares: true,
          bias: b,
        }),
      );
      w.dispose();
      b?.dispose();
    }
    const m = await ctx.mergeLogprobStates(states, x.targets, { entropy: true, sumSquares: true });
    for (const [k, t] of Object.entries(m)) await digest(out, `merged.${k}`, t);
    for (const [i, s] of states.entries()) await stateDigests(out, `states[${i}]`, s);
    // logprobStates of materialised logits (the hidden rows' first 2 × V weights as logits).
    const rows = 2;
    const lg = ctx.tensor(x.weight.slice(0, rows * x.V), [rows, x.V], x.dtype);
    const ls = await ctx.logprobStates(lg, x.targets.subarray(0, rows), {
      temperature: T,
      entropy: true,
      sumSquares: true,
    });
    await stateDigests(out, 'logprobStates', ls);
    lg.dispose();
    const g = await ctx.linearLogprobsBackward(hidden, weight, x.targets, lse, gradVector(91, x.N), {
      temperature: T,
      bias,
      gradEntropy: gradVector(92, x.N, 0.5),
      entropy,
    });
    for (const [k, t] of Object.entries(g)) await digest(out, `backward.${k}`, t);
  } finally {
    for (const t of [hidden, weight, bias]) t?.dispose();
  }
  return out;
}

// Over 396 rows (two forward row blocks, two backward chunks), over 4096 columns (three slices; 16
// backward parts of 576), d not a multiple of a tile's width, ignored rows, a bias.
const SPECS: HeadSpec[] = [
  { N: 450, d: 40, V: 9001, dtype: 'f32', seed: 81, bias: true, ignored: [0, 129, 449] },
  { N: 31, d: 67, V: 5003, dtype: 'bf16', seed: 82, bias: true, ignored: [3] },
];

for (const b of BUILDS) {
  const list = opened[b.name];
  const reason = list.find((o) => o.reason)?.reason;
  describe.skipIf(reason !== undefined)(
    `native cpu LM head, ${b.name} build${reason ? ` (skipped: ${reason})` : ''}`,
    () => {
      it('threads: every op of the family gives the same bits with 1, 2 and 8 threads', async () => {
        for (const spec of SPECS) {
          const x = makeHead(spec);
          const first = await everyOp(list[0].ctx!, x);
          for (let k = 1; k < list.length; k++)
            expect(await everyOp(list[k].ctx!, x), `${spec.dtype}: ${THREADS[k]} threads vs 1`).toEqual(
              first,
            );
        }
      });
    },
  );
}

// The case table on the builds test/lmhead.test.ts does not run (it takes the default one); one table,
// so each case's float64 reference is computed once for both.
const cases = lmheadCases();
for (const b of BUILDS) {
  const list = opened[b.name];
  const defaultBuild = b.name === 'avx512' || (b.name === 'avx2' && opened.avx512.some((o) => o.reason));
  if (defaultBuild || list[1].ctx === undefined) continue;
  runCaseTable(`lmhead, the LM head's ${b.name} build`, cases, [{ name: 'cpu', ctx: list[1].ctx }]);
}

const wide = opened.avx512.find((o) => o.ctx)?.ctx;
const narrow = opened.avx2.find((o) => o.ctx)?.ctx;
describe.skipIf(wide === undefined || narrow === undefined)(
  'native cpu LM head: the AVX-512 and AVX2 builds',
  () => {
    it('give the same bits (12 × 32 and 6 × 16 tiles, the same FMA chains)', async () => {
      for (const spec of SPECS) {
        const x = makeHead(spec);
        expect(await everyOp(wide!, x), spec.dtype).toEqual(await everyOp(narrow!, x));
      }
    });
  },
);

const ctx = opened.avx512.find((o) => o.ctx)?.ctx ?? opened.avx2.find((o) => o.ctx)?.ctx;
describe.skipIf(ctx === undefined)('native cpu LM head: batch invariance and memory', () => {
  it('a row alone, in a reversed batch and in other chunks gives the same bits (forward, states, gradHidden)', async () => {
    const x = makeHead({ N: 450, d: 40, V: 9001, dtype: 'f32', seed: 83, bias: true, ignored: [5, 200] });
    const weight = ctx!.tensor(x.weight as Float32Array, [x.V, x.d], 'f32');
    const bias = ctx!.tensor(x.bias as Float32Array, [x.V], 'f32');
    const g = gradVector(84, x.N);
    const run = async (rows: number[]) => {
      const h = new Float32Array(rows.length * x.d);
      rows.forEach((r, i) => {
        h.set((x.hidden as Float32Array).subarray(r * x.d, (r + 1) * x.d), i * x.d);
      });
      const t = Int32Array.from(rows, (r) => x.targets[r]);
      const hidden = ctx!.tensor(h, [rows.length, x.d], 'f32');
      const f = await ctx!.linearLogprobs(hidden, weight, t, { entropy: true, sumSquares: true, bias });
      const s = await ctx!.linearLogprobStates(hidden, weight, t, { vocabStart: 0, entropy: true, bias });
      const b = await ctx!.linearLogprobsBackward(
        hidden,
        weight,
        t,
        f.lse,
        Float32Array.from(rows, (r) => g[r]),
        {
          bias,
        },
      );
      const cols = [
        f.logprobs,
        f.lse,
        f.entropy!,
        f.sumSquares!,
        s.max,
        s.sumExp,
        s.sumExpDelta!,
        s.targetLogit,
      ];
      const data = await Promise.all(cols.map((c) => c.read()));
      const gh = await b.gradHidden.read();
      for (const c of [...cols, b.gradHidden, b.gradWeight, b.gradBias]) c?.dispose();
      hidden.dispose();
      return rows.map((_, k) => [
        ...data.flatMap((a) => bits(a.subarray(k, k + 1))),
        ...bits(gh.subarray(k * x.d, (k + 1) * x.d)),
      ]);
    };
    try {
      const all = Array.from({ length: x.N }, (_, i) => i);
      const batch = await run(all);
      expect((await run(all.slice().reverse())).reverse(), 'reversed batch').toEqual(batch);
      for (const i of [0, 5, 150, 395, 396, 449])
        expect((await run([i]))[0], `row ${i} alone`).toEqual(batch[i]);
      const chunks = [
        ...(await run(all.slice(0, 7))),
        ...(await run(all.slice(7, 420))),
        ...(await run(all.slice(420))),
      ];
      expect(chunks, 'chunks of 7, 413, 30').toEqual(batch);
    } finally {
      weight.dispose();
      bias.dispose();
    }
  });

  it('memory: the plan at N = 16384, V = 151936, d = 4096 is ≤ 5% of the bf16 logits (this context, 16 threads)', async () => {
    const shape = { rows: BIG.N, vocab: BIG.V, dim: BIG.d };
    for (const dtype of ['bf16', 'f16', 'f32'] as const) {
      const s = await lmheadScratchBytes(ctx!, { ...shape, dtype });
      expect(s.forward + s.backward, dtype).toBeLessThanOrEqual(0.05 * LOGITS_BF16_BYTES);
      // Gradients in the input dtype: + the second pass's f32 accumulators (one block of columns).
      const si = await lmheadScratchBytes(ctx!, { ...shape, dtype, gradDtype: 'input' });
      expect(si.forward + si.backward, `${dtype}, gradDtype input`).toBeLessThanOrEqual(
        0.05 * LOGITS_BF16_BYTES,
      );
      // A bigger machine: the per-thread buffers are the part that grows with it.
      const isa = ctx!.device.details.lmheadIsa as 'avx512' | 'avx2' | 'portable';
      const p16 = loadNativeAddon('cpu').cpuLmheadPlan!({ ...shape, dtype, threads: 16, isa });
      expect(p16.forwardBytes + p16.backwardBytes, `${dtype}, 16 threads`).toBeLessThanOrEqual(
        0.05 * LOGITS_BF16_BYTES,
      );
      expect(
        p16.forwardBytes + p16.backwardInputBytes,
        `${dtype}, 16 threads, gradDtype input`,
      ).toBeLessThanOrEqual(0.05 * LOGITS_BF16_BYTES);
    }
  });

  // The resident set's high-water mark, reset through /proc/self/clear_refs (Linux).
  const procStatus = (() => {
    try {
      return readFileSync('/proc/self/status', 'utf8').includes('VmHWM') ? '/proc/self/status' : undefined;
    } catch {
      return undefined;
    }
  })();
  const kb = (field: string) => {
    const m = readFileSync(procStatus!, 'utf8').match(new RegExp(`${field}:\\s+(\\d+) kB`));
    return Number(m![1]) * 1024;
  };
  it.skipIf(procStatus === undefined)(
    'memory: a forward and a backward at V = 151936 grow the resident set by at most their plan and outputs (RSS)',
    async () => {
      const x = makeHead({ N: 512, d: 96, V: 151936, dtype: 'bf16', seed: 85 });
      const hidden = ctx!.tensor(x.hidden as Uint16Array, [x.N, x.d], 'bf16');
      const weight = ctx!.tensor(x.weight as Uint16Array, [x.V, x.d], 'bf16');
      const plan = await lmheadScratchBytes(ctx!, { rows: x.N, vocab: x.V, dim: x.d, dtype: 'bf16' });
      const logits = x.N * x.V * 2;
      const slack = 4 << 20; // the JS heap and the thread stacks meanwhile
      const peakOf = async <T>(f: () => Promise<T>): Promise<[T, number]> => {
        await ctx!.synchronize();
        writeFileSync('/proc/self/clear_refs', '5');
        const before = kb('VmRSS');
        const r = await f();
        await ctx!.synchronize();
        return [r, kb('VmHWM') - before];
      };
      try {
        const [f, fwdGrowth] = await peakOf(() => ctx!.linearLogprobs(hidden, weight, x.targets));
        expect(fwdGrowth).toBeLessThanOrEqual(plan.forward + 2 * 4 * x.N + slack);
        expect(fwdGrowth).toBeLessThanOrEqual(0.05 * logits);
        const [b, bwdGrowth] = await peakOf(() =>
          ctx!.linearLogprobsBackward(hidden, weight, x.targets, f.lse, gradVector(86, x.N)),
        );
        const grads = 4 * x.d * (x.N + x.V);
        expect(bwdGrowth).toBeLessThanOrEqual(plan.backward + grads + slack);
        for (const t of [b.gradHidden, b.gradWeight]) t.dispose();
        // bf16 gradients: bf16 outputs and the second pass's accumulators, nothing of [V, d] in f32.
        const planInput = await lmheadScratchBytes(ctx!, {
          rows: x.N,
          vocab: x.V,
          dim: x.d,
          dtype: 'bf16',
          gradDtype: 'input',
        });
        const [n, inputGrowth] = await peakOf(() =>
          ctx!.linearLogprobsBackward(hidden, weight, x.targets, f.lse, gradVector(86, x.N), {
            gradDtype: 'input',
          }),
        );
        expect(inputGrowth).toBeLessThanOrEqual(planInput.backward + grads / 2 + slack);
        expect(inputGrowth).toBeLessThan(plan.backward + grads / 2 + 4 * x.V * x.d);
        for (const t of [f.logprobs, f.lse, n.gradHidden, n.gradWeight]) t.dispose();
      } finally {
        hidden.dispose();
        weight.dispose();
      }
    },
  );
});
