/**
 * CUDA ops enqueue and return without waiting for the device (issue 12, "Data flow"): the job thread
 * synchronises its stream only in read() and synchronize(). 100 chained ops leave the addon's count of
 * stream synchronisations unchanged, and their results equal the same chain with a wait after every op.
 */
import { describe, expect, it } from 'vitest';
import { loadNativeAddon } from '../../src/backends/cuda/native.js';
import { randomNormal } from '../util/rng.js';
import { probeGpu } from './helpers.js';

const noGpu = (await probeGpu()).ctx === undefined;

describe.skipIf(noGpu)('cuda: the host runs ahead of the device', () => {
  it('100 chained ops: no stream synchronisation until the wait; the same bits as waiting after each', async () => {
    const addon = loadNativeAddon();
    const dev = new addon.CudaDevice!(0);
    try {
      const n = 1000;
      const run = async (waitEachOp: boolean) => {
        const a = dev.alloc(n * 4);
        const b = dev.alloc(n * 4);
        dev.upload(a, Float32Array.from(randomNormal(43, n)));
        await dev.synchronize();
        const before = dev.stats().streamSyncs;
        let [src, dst] = [a, b];
        for (let i = 0; i < 100; i++) {
          await dev.whiten({
            values: src,
            n,
            out: dst,
            maskEps: i % 2 ? 1e-8 : 0,
            variance: 'sample',
            varianceEps: 'add',
            keepMean: i % 3 === 0,
          });
          [src, dst] = [dst, src];
          if (waitEachOp) await dev.synchronize();
        }
        const syncs = dev.stats().streamSyncs - before;
        const out = new Float32Array(n);
        await dev.read(src, out);
        dev.free(a);
        dev.free(b);
        return { out, syncs };
      };
      const queued = await run(false);
      expect(queued.syncs, 'stream synchronisations while queueing').toBe(0);
      const waited = await run(true);
      expect(waited.syncs).toBe(100);
      let first = -1;
      for (let i = 0; i < n && first < 0; i++) if (!Object.is(queued.out[i], waited.out[i])) first = i;
      expect(first, 'first element that differs').toBe(-1);
    } finally {
      dev.close();
    }
  });
});
