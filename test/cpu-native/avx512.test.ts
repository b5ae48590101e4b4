/**
 * The logprobs forward's AVX-512 build (native/cpu/logprobs.cc compiled as gk::cpu::avx512; simd.h's
 * 16-lane VW, each holding two of the AVX2 build's 8-lane vectors) gives the AVX2 build's bits: every
 * output, every dtype, with and without the statistics, at every remainder of a segment (lengths
 * around the 8-, 16-, 128- and 4096-element boundaries), with −Inf, NaN and +Inf elements, ignored
 * rows and temperatures that scale hard. It is the same sums in the same order, so the float64 bounds
 * the AVX2 build is tested against (ops.test.ts) carry over unchanged. Skips, saying why, on a CPU
 * without AVX-512F/BW or with a CPU-only-portable build.
 */
import { afterAll, describe, expect, it } from 'vitest';
import type { Context } from '../../src/index.js';
import { makeLogprobsCase } from '../fixtures/logprobs.js';
import { bits, openNativeCpu } from './helpers.js';

const wide = await openNativeCpu('avx2');
const narrow = await openNativeCpu('avx2', undefined, { avx512: false });
afterAll(() => {
  wide.ctx?.dispose();
  narrow.ctx?.dispose();
});

const reason =
  wide.reason ??
  narrow.reason ??
  (wide.ctx!.device.details.logprobsIsa !== 'avx512'
    ? `the logprobs forward's AVX-512 build does not run here (logprobsIsa is ${String(wide.ctx!.device.details.logprobsIsa)}: no AVX-512F/BW)`
    : undefined);
if (reason) console.warn(`test/cpu-native/avx512: skipped: ${reason}`);

const VOCABS = [1, 7, 8, 15, 16, 17, 31, 32, 33, 127, 128, 129, 255, 4095, 4096, 4097, 8200, 32003, 151936];

async function forwardBits(
  ctx: Context,
  logits: Float32Array | Uint16Array,
  rows: number,
  vocab: number,
  dtype: 'f32' | 'f16' | 'bf16',
  targets: Int32Array,
  temperature: number,
  stats: boolean,
): Promise<number[]> {
  const x = ctx.tensor(logits as Float32Array, [rows, vocab], dtype as 'f32');
  const r = await ctx.logprobs(x, targets, { temperature, entropy: stats, sumSquares: stats });
  const out = bits(await r.logprobs.read()).concat(bits(await r.lse.read()));
  if (stats) out.push(...bits(await r.entropy!.read()), ...bits(await r.sumSquares!.read()));
  x.dispose();
  return out;
}

describe.skipIf(reason !== undefined)(
  `logprobs forward: the AVX-512 build vs the AVX2 build${reason ? ` (skipped: ${reason})` : ''}`,
  () => {
    it('the same bits for every dtype, segment remainder, temperature, with and without entropy and Σp²', async () => {
      let seed = 700;
      for (const dtype of ['f32', 'f16', 'bf16'] as const) {
        for (const vocab of VOCABS) {
          const rows = vocab > 10000 ? 3 : 5;
          const c = makeLogprobsCase({
            seed: seed++,
            rows,
            vocab,
            dtype,
            ignoreFraction: 0.2,
            maskFraction: vocab > 2 ? 0.1 : 0,
            // f16 holds ±65504: keep its logits (and their scaled differences) in range
            scale: dtype === 'f16' ? 3 : 8,
          });
          // 1e39: log2(e)/T below 2^-120, the premultiplied form of pass 2's exponent (logprobs.cc).
          for (const temperature of [1, 0.7, 1e-3, 1e39]) {
            for (const stats of [false, true]) {
              const what = `${dtype} V=${vocab} T=${temperature}${stats ? ' +entropy +Σp²' : ''}`;
              const args = [c.logits, rows, vocab, dtype, c.targets, temperature, stats] as const;
              const a = await forwardBits(wide.ctx!, ...args);
              const b = await forwardBits(narrow.ctx!, ...args);
              expect(a, what).toEqual(b);
            }
          }
        }
      }
    });

    it('the same bits with NaN, +Inf and −Inf elements at every position of a 16-lane vector', async () => {
      for (const dtype of ['f32', 'bf16'] as const) {
        const vocab = 300;
        const rows = 24;
        const c = makeLogprobsCase({ seed: 790, rows, vocab, dtype: 'f32', scale: 4 });
        const x = c.logits as Float32Array;
        for (let i = 0; i < rows; i++) {
          // Row i: a special value at column i (each lane position of the first two vectors), a second
          // one later; rows 0-7 NaN, 8-15 +Inf, 16-23 −Inf.
          const v = i < 8 ? Number.NaN : i < 16 ? Number.POSITIVE_INFINITY : Number.NEGATIVE_INFINITY;
          x[i * vocab + i] = v;
          x[i * vocab + 200 + i] = v;
        }
        const logits = dtype === 'f32' ? x : makeBf16(x);
        const targets = Int32Array.from({ length: rows }, (_, i) => (i * 37) % vocab);
        for (const stats of [false, true]) {
          const args = [logits, rows, vocab, dtype, targets, 0.9, stats] as const;
          expect(await forwardBits(wide.ctx!, ...args), `${dtype}, stats ${stats}`).toEqual(
            await forwardBits(narrow.ctx!, ...args),
          );
        }
      }
    });

    it('bf16: rows of negative values only, −0 the max, negative NaNs (the max of the bits as int16)', async () => {
      const vocab = 4200;
      const rows = 6;
      const c = makeLogprobsCase({ seed: 791, rows, vocab, dtype: 'f32', scale: 4 });
      const x = c.logits as Float32Array;
      for (let i = 0; i < x.length; i++) x[i] = -Math.abs(x[i]);
      const logits = makeBf16(x);
      for (let j = 0; j < vocab; j += 3) logits[j] = 0x8000; // row 0: −0 the max
      logits[vocab + 4100] = 0xffc1; // row 1: a negative NaN in the second segment
      for (let j = 0; j < vocab; j++) logits[2 * vocab + j] = j === 17 ? 0xff81 : 0xff80; // −Inf and a NaN
      for (let j = 0; j < vocab; j++) logits[3 * vocab + j] = j % 2 ? 0xff80 : 0x8000; // −Inf and −0
      logits[4 * vocab + 4199] = 0x0000; // row 4: +0 the max, in the short segment
      const targets = Int32Array.from({ length: rows }, (_, i) => (i * 37) % vocab);
      for (const stats of [false, true]) {
        const args = [logits, rows, vocab, 'bf16', targets, 0.9, stats] as const;
        expect(await forwardBits(wide.ctx!, ...args), `stats ${stats}`).toEqual(
          await forwardBits(narrow.ctx!, ...args),
        );
      }
    });
  },
);

/** f32 → bf16 bits by truncation of exact specials and round-to-nearest-even of the rest. */
function makeBf16(x: Float32Array): Uint16Array {
  const u = new Uint32Array(x.buffer.slice(0));
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const b = u[i];
    if (Number.isNaN(x[i])) out[i] = (b >>> 16) | 0x40;
    else out[i] = (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
  }
  return out;
}
