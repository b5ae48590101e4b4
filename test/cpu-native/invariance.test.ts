/**
 * Determinism of the native cpu backend (native/cpu/*.cc: work split in fixed blocks): on each code
 * path, every op gives the same bits with 1, 2 and 8 threads (8 > the cores here, through the test hook
 * cpuTuning.maxThreads), and a row's (a group's) bits do not depend on the batch: a row alone, the same
 * row inside a batch at another position, and the batch chunked differently agree bit for bit.
 */
import { afterAll, describe, expect, it } from 'vitest';
import type { HostArray } from '../../src/dtypes.js';
import type { Context } from '../../src/index.js';
import { expectSameBits } from '../cases/check.js';
import { makeAdvantagesCase, raggedGroupSizes, readAdvantages } from '../fixtures/advantages.js';
import { makeLogprobsCase } from '../fixtures/logprobs.js';
import { makeThrCase, randomGroups, runThr, spliceCase } from '../fixtures/thr.js';
import { randomNormal } from '../util/rng.js';
import { bits, type NativeCpu, openNativeCpu } from './helpers.js';

const THREADS = [1, 2, 8] as const;
const opened: Record<string, NativeCpu[]> = {};
for (const path of ['avx2', 'portable'] as const) {
  opened[path] = [];
  for (const t of THREADS) opened[path].push(await openNativeCpu(path, t));
}
afterAll(() => {
  for (const list of Object.values(opened)) for (const o of list) o.ctx?.dispose();
});

/** Runs `f` on every thread count and expects the same bits from each, output by output. */
async function sameOnEveryCount(list: NativeCpu[], f: (ctx: Context) => Promise<HostArray[]>): Promise<void> {
  const results: HostArray[][] = [];
  for (const o of list) results.push(await f(o.ctx!));
  for (let k = 1; k < results.length; k++) {
    expect(results[k].length).toBe(results[0].length);
    for (const [i, r] of results[k].entries())
      expectSameBits(r, results[0][i], `output ${i}, ${THREADS[k]} threads vs ${THREADS[0]}`);
  }
}

for (const path of ['avx2', 'portable'] as const) {
  const list = opened[path];
  const reason = list.find((o) => o.reason)?.reason;
  describe.skipIf(reason !== undefined)(
    `native cpu, ${path} kernels${reason ? ` (skipped: ${reason})` : ''}`,
    () => {
      it('threads: logprobs (+ entropy, Σp²) and the backward, f32 and bf16, V = 151936', async () => {
        for (const dtype of ['f32', 'bf16'] as const) {
          const c = makeLogprobsCase({
            seed: 61,
            rows: 6,
            vocab: 151936,
            dtype,
            ignoreFraction: 0.2,
            maskFraction: 0.05,
          });
          await sameOnEveryCount(list, async (ctx) => {
            const x = ctx.tensor(c.logits as Float32Array, [c.rows, c.vocab], dtype as 'f32');
            const r = await ctx.logprobs(x, c.targets, { temperature: 0.9, entropy: true, sumSquares: true });
            const g = await ctx.logprobsBackward(
              x,
              c.targets,
              r.lse,
              Float32Array.from(randomNormal(62, c.rows)),
              {
                temperature: 0.9,
                gradEntropy: Float32Array.from(randomNormal(63, c.rows)),
                entropy: r.entropy,
              },
            );
            return [
              await r.logprobs.read(),
              await r.lse.read(),
              await r.entropy!.read(),
              await r.sumSquares!.read(),
              await g.read(),
            ];
          });
        }
      });

      it('threads: advantages (every estimator), whiten, THR (small groups and one on the pool)', async () => {
        const c = makeAdvantagesCase({
          seed: 64,
          groupSizes: raggedGroupSizes(65, 300000, 16),
          rewards: 'offset',
        });
        await sameOnEveryCount(list, async (ctx) => {
          const out: HostArray[] = [];
          for (const estimator of ['grpo', 'rloo', 'opo', 'gpg', 'reinforce_pp_baseline'] as const) {
            const a = await readAdvantages(ctx, c.rewards, {
              groupOffsets: c.groupOffsets,
              responseOffsets: c.responseOffsets,
              estimator,
              ...(estimator === 'grpo' ? { scale: 'batch' as const } : {}),
            });
            out.push(a.adv, a.mean, a.std);
          }
          out.push(await (await ctx.whiten(c.rewards)).read());
          return out;
        });
        const groups = [
          ...randomGroups(66, 10, 6, 30),
          Array.from({ length: 8 }, (_, i) => ({ length: 120 + i, correct: i < 3 })),
        ];
        const t = makeThrCase({ seed: 67, groups, dim: 96, vocabSize: 3000, dtype: 'bf16' });
        await sameOnEveryCount(list, async (ctx) => {
          const r = await runThr(ctx, t);
          return [r.thr, r.tau];
        });
      });

      it("threads: THR halves (thrAggregate, thrScore) give tokenHiddenReward's bits, small groups and one on the pool", async () => {
        const groups = [
          ...randomGroups(68, 6, 6, 30),
          Array.from({ length: 8 }, (_, i) => ({ length: 120 + i, correct: i < 3 })),
          Array.from({ length: 4 }, () => ({ length: 5, correct: false })),
        ];
        const t = makeThrCase({ seed: 69, groups, dim: 96, vocabSize: 3000, dtype: 'bf16' });
        await sameOnEveryCount(list, async (ctx) => {
          const whole = await runThr(ctx, t);
          const vocab = await ctx.restrictedVocab(t.tokens, t.layout);
          const hidden = ctx.tensor(t.hidden as Uint16Array, [t.numTokens, t.dim], 'bf16');
          const base = { hidden, probs: t.probs, vocab, layout: t.layout, correct: t.correct };
          const aggregate = await ctx.thrAggregate(base);
          const halves = await ctx.thrScore({ ...base, aggregate });
          const out = [await aggregate.read(), await halves.thr.read(), await halves.tau.read()];
          for (const x of [
            hidden,
            aggregate,
            halves.thr,
            halves.tau,
            vocab.offsets,
            vocab.columns,
            vocab.tokenColumn,
          ])
            x.dispose();
          expectSameBits(out[1], whole.thr, 'thrScore thr vs tokenHiddenReward');
          expectSameBits(out[2], whole.tau, 'thrScore tau vs tokenHiddenReward');
          return out;
        });
      });

      it('batch invariance: a row alone, at another position, and in other chunks gives the same bits', async () => {
        const ctx = list[1].ctx!;
        for (const [vocab, dtype] of [
          [151936, 'f32'],
          [4099, 'bf16'],
          [7, 'f16'],
        ] as const) {
          const c = makeLogprobsCase({ seed: 68, rows: 9, vocab, dtype, maskFraction: 0.05 });
          const row = (i: number) => (c.logits as Uint16Array).subarray(i * vocab, (i + 1) * vocab);
          const run = async (rows: number[]) => {
            const n = rows.length;
            const data = new (c.logits.constructor as Uint16ArrayConstructor)(n * vocab);
            for (const [k, r] of rows.entries()) data.set(row(r), k * vocab);
            const r = await ctx.logprobs(
              ctx.tensor(data as unknown as Float32Array, [n, vocab], dtype as 'f32'),
              Int32Array.from(rows, (i) => c.targets[i]),
              { entropy: true, sumSquares: true, temperature: 0.6 },
            );
            const [lp, lse, h, sq] = await Promise.all([
              r.logprobs.read(),
              r.lse.read(),
              r.entropy!.read(),
              r.sumSquares!.read(),
            ]);
            return rows.map((_, k) => [lp, lse, h, sq].flatMap((a) => bits(a.subarray(k, k + 1))));
          };
          const batch = await run([0, 1, 2, 3, 4, 5, 6, 7, 8]);
          const reversed = (await run([8, 7, 6, 5, 4, 3, 2, 1, 0])).reverse();
          expect(reversed, `V = ${vocab}: reversed batch`).toEqual(batch);
          for (const i of [0, 4, 8])
            expect((await run([i]))[0], `V = ${vocab}: row ${i} alone`).toEqual(batch[i]);
          const chunks = [...(await run([0, 1])), ...(await run([2, 3, 4, 5, 6])), ...(await run([7, 8]))];
          expect(chunks, `V = ${vocab}: chunks of 2, 5, 2`).toEqual(batch);
        }
      });

      it('batch invariance: a THR group alone and spliced into another batch gives the same bits', async () => {
        const ctx = list[1].ctx!;
        const shape = Array.from({ length: 6 }, (_, i) => ({ length: 60 + 7 * i, correct: i % 2 === 1 }));
        const probe = makeThrCase({ seed: 69, groups: [shape], dim: 53, vocabSize: 900 });
        const others = randomGroups(71, 6, 5, 20);
        const alone = await runThr(ctx, probe);
        for (const at of [0, 3, 6]) {
          const groups = [...others.slice(0, at), shape, ...others.slice(at)];
          const host = makeThrCase({ seed: 70 + at, groups, dim: 53, vocabSize: 900 });
          const spliced = spliceCase(probe, host, at);
          const r = await runThr(ctx, spliced);
          const t0 = spliced.layout.responseOffsets[spliced.layout.groupOffsets[at]];
          expectSameBits(r.thr.subarray(t0, t0 + probe.numTokens), alone.thr, `group at ${at}`);
          expectSameBits(r.tau.subarray(at, at + 1), alone.tau, `tau at ${at}`);
        }
      });
    },
  );
}
