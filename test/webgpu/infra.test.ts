/**
 * The webgpu backend's infrastructure: uniform layouts against the WGSL structs, row chunking,
 * buffers and their accounting, poison, fromGPUBuffer, a caller's device, device loss, limits
 * errors, and copyProbe.
 */
import { describe, expect, it } from 'vitest';
import { planRowChunks } from '../../src/backends/webgpu/chunking.js';
import { createWebGpuBackend, UNIFORM_LAYOUTS, type WebGpuBackend } from '../../src/backends/webgpu/index.js';
import { Usage } from '../../src/backends/webgpu/runtime.js';
import { loadShaderText, PipelineCache } from '../../src/backends/webgpu/shaders.js';
import { outputTensor } from '../../src/backends/webgpu/storage.js';
import { parseWgslStruct } from '../../src/backends/webgpu/uniforms.js';
import { Context } from '../../src/context.js';
import { setOutputPoison } from '../../src/debug.js';
import { GrpoKernelsError } from '../../src/errors.js';
import { POISON_F32 } from '../util/compare.js';
import { randomInts, randomNormal } from '../util/rng.js';
import { gpu, noGpu, requireAdapter } from './setup.js';

requireAdapter();

async function rejects(p: Promise<unknown>, code: string): Promise<GrpoKernelsError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e, `expected a rejection with ${code}`).toBeInstanceOf(GrpoKernelsError);
  expect((e as GrpoKernelsError).code).toBe(code);
  return e as GrpoKernelsError;
}

describe('webgpu uniform layouts match their WGSL structs', () => {
  for (const layout of UNIFORM_LAYOUTS) {
    it(`${layout.file}: struct ${layout.name}`, async () => {
      const fields = parseWgslStruct(await loadShaderText(layout.file), layout.name);
      expect(fields.map((f) => [f.name, f.type, f.offset])).toEqual(
        layout.fields.map(([k, t]) => [k, t, layout.offsets[k]]),
      );
      expect(layout.size % 16).toBe(0);
      expect(layout.size).toBeGreaterThanOrEqual(4 * fields.length);
    });
  }

  it('every module variant assembles (sections exist; enables lead)', async () => {
    const src = await PipelineCache.source({
      file: 'logprobs.wgsl',
      sections: ['x_f16_native', 'y_f16', 'reduce_subgroup'],
      f16: true,
      subgroups: true,
    });
    expect(src.startsWith('enable f16;\nenable subgroups;')).toBe(true);
    await expect(PipelineCache.source({ file: 'logprobs.wgsl', sections: ['nope'] })).rejects.toThrow(/nope/);
  });
});

describe('row chunking', () => {
  const limits = { maxStorageBufferBindingSize: 1 << 16, minStorageBufferOffsetAlignment: 256 };

  it('covers every row once, windows aligned and within one binding, granule for half words', () => {
    for (const [v, eb] of [
      [1001, 2],
      [1001, 4],
      [4096, 4],
      [3, 2],
    ]) {
      const m = { rowBytes: v * eb, elemBytes: eb, bufferBytes: Math.ceil((50 * v * eb) / 4) * 4 };
      for (const maxRows of [Number.POSITIVE_INFINITY, 5, 1]) {
        const chunks = planRowChunks(50, [m], limits, maxRows);
        let next = 0;
        for (const c of chunks) {
          expect(c.row0).toBe(next);
          next += c.rows;
          const w = c.windows[0];
          expect(w.offset % 256).toBe(0);
          expect(w.size % 4).toBe(0);
          expect(w.size).toBeLessThanOrEqual(limits.maxStorageBufferBindingSize);
          expect(w.offset + w.base * eb).toBe(c.row0 * m.rowBytes);
          expect(w.offset + w.size).toBeGreaterThanOrEqual(
            Math.min(m.bufferBytes, (c.row0 + c.rows) * m.rowBytes),
          );
          expect(w.offset + w.size).toBeLessThanOrEqual(m.bufferBytes);
          expect((c.row0 * m.rowBytes) % 4, 'chunks start on a word').toBe(0);
        }
        expect(next).toBe(50);
      }
    }
  });

  it('a row larger than one binding is a SHAPE error naming the tensor', () => {
    expect(() =>
      planRowChunks(2, [{ rowBytes: 1 << 17, elemBytes: 4, bufferBytes: 1 << 18 }], limits),
    ).toThrow(/logits: one row/);
  });

  it('a cap below the granule gives chunks of one granule (found by the invariance fuzzer: maxChunkRows 1 on odd 2-byte rows)', () => {
    const m = { rowBytes: 6, elemBytes: 2, bufferBytes: 52 };
    const chunks = planRowChunks(17, [m], limits, 1);
    expect(chunks.map((c) => c.rows)).toEqual([...Array(8).fill(2), 1]);
  });

  it('rows that fit one at a time but not a granule at a time: the SHAPE error states the true bound', () => {
    // 2-byte rows of an odd count pair up to whole words, so a binding must hold two of them.
    const most = (limits.maxStorageBufferBindingSize - 256) / 2;
    const m = (rowBytes: number) => ({ rowBytes, elemBytes: 2, bufferBytes: 4 * rowBytes });
    expect(planRowChunks(3, [m(most - 2)], limits).map((c) => c.rows)).toEqual([2, 1]);
    expect(() => planRowChunks(3, [m(most + 2)], limits)).toThrow(
      new RegExp(
        `one row is ${most + 2} bytes.*at most ${most} bytes \\(a binding holds rows in groups of 2`,
      ),
    );
  });
});

describe.skipIf(noGpu)('webgpu infrastructure', () => {
  // Read lazily: the describe body runs (to collect tests) even when it is skipped.
  const b = gpu?.backend as WebGpuBackend;
  const ctx = gpu?.ctx as Context;

  it('describes the device: adapter, limits, features', () => {
    expect(ctx.backend).toBe('webgpu');
    expect(b.device.name.length).toBeGreaterThan(0);
    expect(b.device.details.maxStorageBufferBindingSize).toBeGreaterThanOrEqual(128 << 20);
    expect(typeof b.device.details.features).toBe('string');
    expect(typeof b.device.details.software).toBe('boolean');
    console.log(`webgpu device: ${b.device.name}; features ${b.device.details.features}`);
  });

  it('tensors round-trip in every dtype, odd lengths padded to words', async () => {
    const f = Float32Array.from(randomNormal(1, 7));
    expect(await ctx.tensor(f).read()).toEqual(f);
    const h = new Uint16Array([1, 2, 3, 0xffff, 5]);
    expect(await ctx.tensor(h, [5], 'bf16').read()).toEqual(h);
    expect(await ctx.tensor(h, [5], 'f16').read()).toEqual(h);
    const i = randomInts(2, 9, -5, 5);
    expect(await ctx.tensor(i).read()).toEqual(i);
    const u = new Uint8Array([1, 2, 3]);
    expect(await ctx.tensor(u).read()).toEqual(u);
    expect(await ctx.tensor(new Float32Array(0)).read()).toEqual(new Float32Array(0));
  });

  it('poisons fresh outputs when the poison hook is set', async () => {
    setOutputPoison(POISON_F32);
    try {
      const t = await b.runtime.run('test', () => outputTensor(b.runtime, 'f32', [5]));
      expect(Array.from(await t.read())).toEqual(new Array(5).fill(Math.fround(POISON_F32)));
      const u = await b.runtime.run('test', () => outputTensor(b.runtime, 'u8', [3]));
      expect(Array.from(await u.read())).toEqual([0xab, 0xab, 0xab]);
      const hb = await b.runtime.run('test', () => outputTensor(b.runtime, 'bf16', [3]));
      expect(Array.from(await hb.read())).toEqual([0x7e01, 0x7e01, 0x7e01]);
      for (const x of [t, u, hb]) x.dispose();
    } finally {
      setOutputPoison(undefined);
    }
  });

  it('1000 logprobs calls with dispose leave live GPU bytes where they were', async () => {
    const n = 4;
    const v = 64;
    const logits = ctx.tensor(Float32Array.from(randomNormal(3, n * v)), [n, v]);
    const targets = ctx.tensor(randomInts(4, n, 0, v));
    const warm = await ctx.logprobs(logits, targets, { entropy: true });
    for (const t of Object.values(warm)) t.dispose();
    await ctx.synchronize(); // frees the flag buffers of the ops' device checks
    const before = b.runtime.liveBytes;
    for (let i = 0; i < 1000; i++) {
      const r = await ctx.logprobs(logits, targets, { entropy: true, sumSquares: i % 2 === 0 });
      for (const t of Object.values(r)) t.dispose();
    }
    await ctx.synchronize();
    expect(b.runtime.liveBytes).toBe(before);
    logits.dispose();
    targets.dispose();
    expect(b.runtime.liveBytes).toBe(before - n * v * 4 - n * 4);
  });

  it('fromGPUBuffer wraps a caller buffer without copying; dispose leaves it alive', async () => {
    const dev = b.runtime.device;
    const n = 3;
    const v = 100;
    const x = Float32Array.from(randomNormal(8, n * v));
    const buffer = dev.createBuffer({
      size: x.byteLength,
      usage: Usage.STORAGE | Usage.COPY_SRC | Usage.COPY_DST,
    });
    dev.queue.writeBuffer(buffer, 0, x);
    const live = b.runtime.liveBytes;
    const t = ctx.fromGPUBuffer(buffer, [n, v], 'f32');
    expect(b.runtime.liveBytes).toBe(live);
    const r1 = await ctx.logprobs(t, new Int32Array([0, 5, 99]));
    const r2 = await ctx.logprobs(ctx.tensor(x, [n, v]), new Int32Array([0, 5, 99]));
    expect(await r1.logprobs.read()).toEqual(await r2.logprobs.read());
    t.dispose();
    const again = ctx.fromGPUBuffer(buffer, [n * v], 'f32');
    expect(await again.read()).toEqual(x);
    buffer.destroy();
    await rejects(
      Promise.resolve().then(() => ctx.fromGPUBuffer(buffer, [n * v + 1], 'f32')),
      'SHAPE',
    );
    const mapOnly = dev.createBuffer({ size: 16, usage: Usage.MAP_READ | Usage.COPY_DST });
    await rejects(
      Promise.resolve().then(() => ctx.fromGPUBuffer(mapOnly, [4], 'f32')),
      'DTYPE',
    );
    mapOnly.destroy();
  });

  it("runs on a caller's GPUDevice and does not destroy it on dispose", async () => {
    const other = await createWebGpuBackend({ device: b.runtime.device });
    const c2 = new Context(other);
    const r = await c2.logprobs(c2.tensor(new Float32Array([0, 0]), [1, 2]), new Int32Array([1]));
    expect((await r.logprobs.read())[0]).toBeCloseTo(-Math.log(2), 6);
    expect(other.device.details.callerDevice).toBe(true);
    other.dispose();
    const t = ctx.tensor(new Float32Array([1, 2]));
    expect(await t.read()).toEqual(new Float32Array([1, 2]));
    await rejects(c2.synchronize(), 'DEVICE_LOST');
  });

  it('device loss: later calls reject with DEVICE_LOST instead of hanging', async () => {
    const own = await createWebGpuBackend();
    const c2 = new Context(own);
    const lg = c2.tensor(new Float32Array(8), [2, 4]);
    own.runtime.device.destroy();
    await own.runtime.device.lost;
    await rejects(c2.logprobs(lg, new Int32Array([0, 1])), 'DEVICE_LOST');
    await rejects(lg.read(), 'DEVICE_LOST');
    await rejects(c2.synchronize(), 'DEVICE_LOST');
    own.dispose();
  });

  it('a buffer above maxBufferSize is OUT_OF_MEMORY before any allocation', () => {
    const max = b.runtime.limits.maxBufferSize;
    expect(() => b.runtime.createBuffer(max + 8, Usage.STORAGE)).toThrow(GrpoKernelsError);
    try {
      b.runtime.createBuffer(max + 8, Usage.STORAGE);
    } catch (e) {
      expect((e as GrpoKernelsError).code).toBe('OUT_OF_MEMORY');
      expect((e as GrpoKernelsError).message).toContain('maxBufferSize');
    }
  });

  it('synchronize and copyProbe work (seconds per copy, positive)', async () => {
    await ctx.synchronize();
    const s = await ctx.copyProbe(1 << 20);
    expect(s).toBeGreaterThan(0);
    expect(Number.isFinite(s)).toBe(true);
  });
});
