/**
 * Core pieces every op builds on: dtype conversions, layout helpers, tensors, contexts, backend
 * selection and the error type. References are computed here in float64 from first principles.
 */
import { describe, expect, it } from 'vitest';
import {
  bf16ToF32,
  createContext,
  f16ToF32,
  f32ToBf16,
  f32ToF16,
  GrpoKernelsError,
  groupOffsetsFromSize,
  pack,
  packMask,
  resolveLayout,
  unpack,
  validateOffsets,
} from '../src/index.js';
import { randomInts, randomNormal, rng } from './util/rng.js';

function expectError(fn: () => unknown, code: string, argument?: string): void {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(GrpoKernelsError);
    expect((e as GrpoKernelsError).code).toBe(code);
    if (argument !== undefined) expect((e as GrpoKernelsError).message).toContain(argument);
    return;
  }
  throw new Error(`expected a GrpoKernelsError ${code}, nothing was thrown`);
}

async function expectRejects(p: Promise<unknown>, code: string, argument?: string): Promise<void> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e, `expected a rejection with ${code}`).toBeInstanceOf(GrpoKernelsError);
  expect((e as GrpoKernelsError).code).toBe(code);
  if (argument !== undefined) expect((e as GrpoKernelsError).message).toContain(argument);
}

describe('f16 and bf16 conversions', () => {
  // Reference: decode by the IEEE definition in float64, written out independently of src/dtypes.ts.
  function f16Ref(bits: number): number {
    const s = bits >> 15 ? -1 : 1;
    const e = (bits >> 10) & 31;
    const m = bits & 1023;
    if (e === 31) return m ? Number.NaN : s * Number.POSITIVE_INFINITY;
    return e === 0 ? s * m * 2 ** -24 : s * 2 ** (e - 15) * (1 + m / 1024);
  }

  it('decodes every f16 bit pattern exactly and round-trips it', () => {
    for (let b = 0; b < 65536; b++) {
      const v = f16ToF32(b);
      const r = f16Ref(b);
      if (Number.isNaN(r)) {
        expect(Number.isNaN(v)).toBe(true);
        continue;
      }
      expect(v).toBe(r);
      // -0 and +0 round-trip to themselves.
      expect(f32ToF16(v)).toBe(b);
    }
  });

  it('rounds to the nearest f16 (ties to even) and overflows to ±Inf', () => {
    const table = new Float64Array(0x7c00);
    for (let b = 0; b < 0x7c00; b++) table[b] = f16Ref(b);
    const values = randomNormal(11, 20000, 3000);
    for (const x of values) {
      const f = Math.fround(x);
      const got = f16ToF32(f32ToF16(f));
      // Brute force over the table of finite f16 magnitudes (bits 0..0x7bff increase monotonically):
      // the nearest entry, ties to the even bit pattern.
      const a = Math.abs(f);
      let lo = 0;
      let hi = 0x7bff;
      while (hi - lo > 1) {
        const mid = (lo + hi) >> 1;
        if (table[mid] <= a) lo = mid;
        else hi = mid;
      }
      const dLo = a - table[lo];
      const dHi = table[hi] - a;
      const pick = dLo < dHi || (dLo === dHi && (lo & 1) === 0) ? lo : hi;
      const best = (f < 0 ? -1 : 1) * table[pick];
      if (Math.abs(f) >= 65520) expect(Math.abs(got)).toBe(Number.POSITIVE_INFINITY);
      else expect(got).toBe(best);
    }
    expect(f16ToF32(f32ToF16(Number.NEGATIVE_INFINITY))).toBe(Number.NEGATIVE_INFINITY);
    expect(Number.isNaN(f16ToF32(f32ToF16(Number.NaN)))).toBe(true);
  });

  it('decodes bf16 as the top half of an f32 and rounds to nearest even', () => {
    const f = new Float32Array(1);
    const u = new Uint32Array(f.buffer);
    const r = rng(5);
    for (let i = 0; i < 20000; i++) {
      u[0] = Math.floor(r() * 2 ** 32);
      if (Number.isNaN(f[0])) {
        expect(Number.isNaN(bf16ToF32(f32ToBf16(f[0])))).toBe(true);
        continue;
      }
      const hi = u[0] >>> 16;
      const lo = u[0] & 0xffff;
      const down = hi;
      const up = (hi + 1) & 0xffff;
      const expected = lo > 0x8000 || (lo === 0x8000 && (hi & 1) === 1) ? up : down;
      expect(f32ToBf16(f[0])).toBe(expected);
      expect(bf16ToF32(expected)).toBe(new Float32Array(new Uint32Array([expected << 16]).buffer)[0]);
    }
  });
});

describe('layout helpers', () => {
  it('validates offsets and names the argument', () => {
    expect(validateOffsets('o', new Int32Array([0, 2, 2, 5]), 5)).toBeInstanceOf(Int32Array);
    expectError(
      () => validateOffsets('o', new Int32Array([0, 3, 2]), 3),
      'LAYOUT',
      'o: expected non-decreasing',
    );
    expectError(() => validateOffsets('o', new Int32Array([1, 3]), 3), 'LAYOUT', 'start at 0');
    expectError(() => validateOffsets('o', new Int32Array([0, 3]), 4), 'LAYOUT', 'equal 4');
    expectError(() => validateOffsets('o', new Int32Array([]), 0), 'LAYOUT');
    expectError(() => validateOffsets('o', [0, 1] as unknown, 1), 'DTYPE', 'Int32Array');
  });

  it('names the first decrease wherever it falls (the scan takes four offsets per step)', () => {
    for (const n of [2, 3, 4, 5, 8, 9, 13, 64]) {
      for (let i = 1; i < n; i++) {
        // 0, 10, 20, … with offsets[i] one below offsets[i − 1], and a later decrease too.
        const o = Int32Array.from({ length: n }, (_, k) => k * 10);
        o[i] = o[i - 1] - 1;
        if (i + 2 < n) o[i + 2] = 0;
        expectError(
          () => validateOffsets('o', o),
          'LAYOUT',
          `o: expected non-decreasing offsets, but [${i - 1}] = ${o[i - 1]} > [${i}] = ${o[i]}`,
        );
      }
    }
    const big = Int32Array.from({ length: (1 << 20) + 1 }, (_, k) => k * 3);
    expect(validateOffsets('o', big, 3 << 20)).toBe(big);
  });

  it('resolves a ragged layout with empty responses and singleton groups', () => {
    const responseOffsets = new Int32Array([0, 3, 3, 7, 8, 8]);
    const groupOffsets = new Int32Array([0, 2, 3, 5]);
    const l = resolveLayout({ responseOffsets, groupOffsets }, 8);
    expect(l.numResponses).toBe(5);
    expect(l.numGroups).toBe(3);
    expect(l.numTokens).toBe(8);
    expect([...l.groupTokenOffsets]).toEqual([0, 3, 7, 8]);
    // A group with more responses than exist.
    expectError(
      () => resolveLayout({ responseOffsets, groupOffsets: new Int32Array([0, 2, 6]) }, 8),
      'LAYOUT',
      'layout.groupOffsets',
    );
    expectError(
      () => resolveLayout({ responseOffsets, groupOffsets }, 9),
      'LAYOUT',
      'layout.responseOffsets',
    );
    expectError(() => resolveLayout(null), 'LAYOUT', 'layout');
  });

  it('builds fixed-size groups', () => {
    expect([...groupOffsetsFromSize(6, 3)]).toEqual([0, 3, 6]);
    expectError(() => groupOffsetsFromSize(7, 3), 'LAYOUT', 'groupSize');
    expectError(() => groupOffsetsFromSize(6, 0), 'RANGE', 'groupSize');
  });

  it('packs a padded mask (left and right padding, gaps) and unpacks it back', () => {
    const [r, t] = [9, 13];
    const bits = randomInts(3, r * t, 0, 2);
    bits.fill(0, 0, t); // an empty response
    const mask = Uint8Array.from(bits);
    const p = packMask(mask, [r, t]);
    let n = 0;
    for (let row = 0; row < r; row++) {
      for (let j = 0; j < t; j++) if (mask[row * t + j]) n++;
      expect(p.responseOffsets[row + 1]).toBe(n);
    }
    const values = Float32Array.from(randomNormal(4, r * t));
    const packed = pack(values, p);
    expect(packed.length).toBe(n);
    const back = unpack(packed, p, -1);
    for (let i = 0; i < r * t; i++) expect(back[i]).toBe(mask[i] ? values[i] : -1);
    expectError(() => packMask(mask, [r, t + 1]), 'SHAPE', 'mask');
    expectError(() => pack(new Float32Array(3), p), 'SHAPE', 'values');
    expectError(() => unpack(new Float32Array(n + 1), p), 'SHAPE', 'packed');
  });
});

describe('contexts and tensors', () => {
  it('uploads, reads back a copy, and disposes', async () => {
    const ctx = await createContext({ backend: 'js' });
    expect(ctx.backend).toBe('js');
    const data = Float32Array.from(randomNormal(1, 12));
    const t = ctx.tensor(data, [3, 4]);
    expect(t.shape).toEqual([3, 4]);
    expect(t.dtype).toBe('f32');
    data[0] = 123; // the tensor holds its own copy
    const back = await t.read();
    expect(back[0]).not.toBe(123);
    back[1] = 456; // read() returns a copy too
    expect((await t.read())[1]).not.toBe(456);
    t.dispose();
    expect(t.disposed).toBe(true);
    await expect(t.read()).rejects.toThrow(GrpoKernelsError); // a promise that rejects, never a sync throw
    t.dispose(); // harmless twice
    {
      using u = ctx.tensor(new Int32Array([1, 2, 3]));
      expect(u.dtype).toBe('i32');
    }
    ctx.dispose();
  });

  it('rejects bad tensor arguments with typed errors', async () => {
    const ctx = await createContext({ backend: 'js' });
    expectError(() => ctx.tensor(new Float32Array(6), [4, 2]), 'SHAPE', 'shape');
    expectError(() => ctx.tensor(new Uint16Array(4)), 'DTYPE', 'dtype');
    expectError(() => ctx.tensor(new Float32Array(4) as unknown as Int32Array, [4], 'i32'), 'DTYPE', 'data');
    expectError(() => ctx.tensor([1, 2] as unknown as Float32Array), 'DTYPE', 'data');
    expectError(() => ctx.tensor(new Float32Array(4), [2, -2]), 'SHAPE', 'shape');
    expect(ctx.tensor(new Uint16Array(4), [2, 2], 'bf16').dtype).toBe('bf16');
    expectError(() => ctx.fromGPUBuffer({}, [1], 'f32'), 'BACKEND_UNAVAILABLE', 'fromGPUBuffer');
    expectError(() => ctx.fromDevicePointer(0n, [1], 'f32'), 'BACKEND_UNAVAILABLE', 'fromDevicePointer');
  });

  it("'auto' falls back to cpu (then js) and records why it skipped the others", async () => {
    const ctx = await createContext({ backend: 'auto' });
    const order = ctx.skipped.map((s) => s.backend);
    expect(ctx.backend).toBe(['cuda', 'webgpu', 'cpu', 'js'].find((b) => !order.includes(b as never)));
    for (const s of ctx.skipped) {
      expect(s.reason.length).toBeGreaterThan(10);
      console.info(`auto skipped ${s.backend}: ${s.reason}`);
    }
    ctx.dispose();
  });

  it('rejects an unknown backend name', async () => {
    await expectRejects(createContext({ backend: 'tpu' as never }), 'BACKEND_UNAVAILABLE', 'backend');
  });

  it('rejects options that are not an object, or hold an unknown key (DTYPE naming options)', async () => {
    for (const o of [null, 5, 'js']) await expectRejects(createContext(o as never), 'DTYPE', 'options');
    await expectRejects(createContext({ backend: 'js', thread: 2 } as never), 'DTYPE', 'options.thread');
  });

  it('measures its copy bandwidth', async () => {
    const ctx = await createContext({ backend: 'js' });
    const s = await ctx.copyProbe(1 << 20);
    expect(s).toBeGreaterThan(0);
    await ctx.synchronize();
  });

  it('copyProbe takes a positive integer byte count (the API checks it for every backend)', async () => {
    const ctx = await createContext({ backend: 'js' });
    await expectRejects(ctx.copyProbe('8' as never), 'DTYPE', 'bytes');
    for (const b of [Number.NaN, -1, 0, 1.5, Number.POSITIVE_INFINITY, 2 ** 60])
      await expectRejects(ctx.copyProbe(b), 'RANGE', 'bytes');
    // More than the host can allocate: OUT_OF_MEMORY, not a RangeError of the typed array.
    await expectRejects(ctx.copyProbe(2 ** 52), 'OUT_OF_MEMORY');
    ctx.dispose();
  });

  it('rejects a misspelt option instead of ignoring it (DTYPE naming options.<key>)', async () => {
    const ctx = await createContext({ backend: 'js' });
    const logits = ctx.tensor(Float32Array.from(randomNormal(9, 12)), [3, 4]);
    const targets = new Int32Array([0, 1, 2]);
    const lse = new Float32Array(3);
    const layout = { responseOffsets: new Int32Array([0, 2, 3]), groupOffsets: new Int32Array([0, 2]) };
    const rewards = Float32Array.from(randomNormal(10, 2));
    const calls: [string, () => Promise<unknown>][] = [
      ['logprobs', () => ctx.logprobs(logits, targets, { temprature: 2 } as never)],
      ['logprobsBackward', () => ctx.logprobsBackward(logits, targets, lse, lse, { temprature: 2 } as never)],
      ['advantages', () => ctx.advantages(rewards, { groupSize: 2, estimater: 'rloo' } as never)],
      ['whiten', () => ctx.whiten(rewards, { keep_mean: true } as never)],
      ['thrReweight', () => ctx.thrReweight({ layout, pp: 0.1 } as never)],
    ];
    for (const [op, call] of calls) {
      const e = await call().then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(e, op).toBeInstanceOf(GrpoKernelsError);
      expect((e as GrpoKernelsError).code, op).toBe('DTYPE');
      expect((e as GrpoKernelsError).message, op).toMatch(/^options\.\w+: unknown option; expected one of /);
    }
    ctx.dispose();
  });
});

describe('bad input found by fuzzing every op (2026-11-28): a typed error naming the argument', () => {
  async function expectArg(p: Promise<unknown>, code: string, argument: string): Promise<void> {
    const e = await p.then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(e, `expected a rejection with ${code} naming ${argument}`).toBeInstanceOf(GrpoKernelsError);
    expect(e).toMatchObject({ code, argument });
    expect((e as Error).message.startsWith(argument)).toBe(true);
  }

  it('options that are arrays, Maps or Dates are not read as {}', async () => {
    const ctx = await createContext({ backend: 'js' });
    const logits = ctx.tensor(Float32Array.from(randomNormal(60, 6)), [2, 3]);
    for (const o of [[], new Map(), new Date()])
      await expectArg(ctx.logprobs(logits, new Int32Array([0, 1]), o as never), 'DTYPE', 'options');
    ctx.dispose();
  });

  it('a tensor of a disposed context names the argument it was passed as', async () => {
    const ctx = await createContext({ backend: 'js' });
    const other = await createContext({ backend: 'js' });
    const x = other.tensor(new Float32Array(6), [2, 3]);
    other.dispose();
    await expectArg(ctx.logprobs(x, new Int32Array([0, 1])), 'BACKEND_UNAVAILABLE', 'logits');
    ctx.dispose();
  });

  it('numbers the kernels take as f32 must be 0 or f32 normal numbers', async () => {
    const ctx = await createContext({ backend: 'js' });
    const inputs = {
      logprobs: new Float32Array([-1, -2]),
      oldLogprobs: new Float32Array([-1.1, -2]),
      advantages: new Float32Array([1, 1]),
      layout: { responseOffsets: new Int32Array([0, 2]) },
    };
    for (const [k, v] of [
      ['delta', 5e-324],
      ['logRatioClamp', 1e-40],
      ['clipHigh', 1e39],
    ] as const)
      await expectArg(ctx.policyLoss(inputs, { [k]: v }), 'RANGE', k);
    const layout = { responseOffsets: new Int32Array([0, 1, 2]), groupOffsets: new Int32Array([0, 2]) };
    const vocab = await ctx.restrictedVocab(new Int32Array([3, 5]), layout);
    const args = {
      hidden: ctx.tensor(new Float32Array([1, 0, 0, 1]), [2, 2]),
      probs: new Float32Array(4).fill(0.25),
      vocab,
      layout,
      correct: new Uint8Array([1, 0]),
    };
    await expectArg(ctx.tokenHiddenReward({ ...args, beta: 1e40 }), 'RANGE', 'beta');
    await expectArg(ctx.advantages(new Float32Array(4), { groupSize: '2' as never }), 'DTYPE', 'groupSize');
    ctx.dispose();
  });

  it('policyLoss names the odd tensor out against the layout; readPolicyStats checks its argument', async () => {
    const ctx = await createContext({ backend: 'js' });
    const T = 5;
    const f = (seed: number) => Float32Array.from(randomNormal(seed, T));
    const inputs = {
      logprobs: f(61).subarray(1),
      oldLogprobs: f(62),
      advantages: f(63),
      layout: { responseOffsets: new Int32Array([0, 2, T]) },
    };
    await expectArg(ctx.policyLoss(inputs), 'SHAPE', 'logprobs');
    const r = await ctx.policyLoss({ ...inputs, logprobs: f(61) });
    const { readPolicyStats } = await import('../src/index.js');
    await expectArg(readPolicyStats(new Float32Array(13) as never), 'DTYPE', 'stats');
    await expectArg(readPolicyStats(r.gradLogprobs), 'SHAPE', 'stats');
    expect(Object.keys(await readPolicyStats(r.stats)).length).toBe(13);
    ctx.dispose();
  });

  it('the LM head and its states: V ≤ 2^31 − 1, and a state field is named with its state', async () => {
    const ctx = await createContext({ backend: 'js' });
    const hidden = ctx.tensor(new Float32Array(0), [1, 0]);
    const huge = ctx.tensor(new Float32Array(0), [2 ** 31, 0]);
    await expectArg(ctx.linearLogprobs(hidden, huge, new Int32Array([0])), 'SHAPE', 'weight');
    await expectArg(
      ctx.logprobsBackward(
        ctx.tensor(new Float32Array(0), [0, 2 ** 32 + 1]),
        new Int32Array(0),
        new Float32Array(0),
        new Float32Array(0),
      ),
      'SHAPE',
      'logits',
    );
    const logits = ctx.tensor(Float32Array.from(randomNormal(64, 8)), [2, 4]);
    const s = await ctx.logprobStates(logits, new Int32Array([0, 3]));
    await expectArg(
      ctx.mergeLogprobStates([{ ...s, temperature: Number.NaN }], new Int32Array([0, 3])),
      'RANGE',
      'states[0].temperature',
    );
    const { temperature: _t, ...noTemperature } = s;
    await expectArg(
      ctx.mergeLogprobStates([noTemperature as never], new Int32Array([0, 3])),
      'DTYPE',
      'states[0].temperature',
    );
    await expectArg(
      ctx.mergeLogprobStates([{ ...s, vocabStart: 1e40 }], new Int32Array([0, 3])),
      'RANGE',
      'states[0].vocabStart',
    );
    const { lmheadScratchBytes } = await import('../src/index.js');
    await expectArg(lmheadScratchBytes(ctx, null as never), 'DTYPE', 'shape');
    await expectArg(
      lmheadScratchBytes(ctx, { rows: Number.NaN, vocab: 3, dim: 2, dtype: 'f32' }),
      'RANGE',
      'shape.rows',
    );
    await expectArg(
      lmheadScratchBytes(ctx, { rows: 1, vocab: 3, dim: 2, dtype: 'f64' as never }),
      'RANGE',
      'shape.dtype',
    );
    ctx.dispose();
  });
});
