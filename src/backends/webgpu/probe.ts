/// <reference types="@webgpu/types" />
/**
 * Bandwidth probe: seconds per device-to-device copy of `bytes` bytes (median of several timed
 * runs after a warm-up). With 'timestamp-query', each copy sits between two empty compute passes
 * whose timestamps bracket it (copies have no timestamps of their own in WebGPU); otherwise
 * wall clock around onSubmittedWorkDone, with many copies per submit to amortise the latency.
 */
import { GrpoKernelsError } from '../../errors.js';
import { type GpuRuntime, roundUp, Usage } from './runtime.js';

const RUNS = 7;

export async function webgpuCopyProbe(rt: GpuRuntime, bytes: number): Promise<number> {
  rt.check();
  if (!Number.isFinite(bytes) || bytes <= 0) {
    throw new GrpoKernelsError('RANGE', `bytes: expected a positive number, got ${bytes}`, {
      argument: 'bytes',
    });
  }
  const size = roundUp(bytes, 4);
  const [src, dst] = await rt.run('copyProbe', () => [
    rt.createBuffer(size, Usage.COPY_SRC | Usage.COPY_DST, 'probe src'),
    rt.createBuffer(size, Usage.COPY_DST, 'probe dst'),
  ]);
  try {
    return rt.features.has('timestamp-query')
      ? await timed(rt, src, dst, size)
      : await wallClock(rt, src, dst, size);
  } finally {
    rt.destroyBuffer(src);
    rt.destroyBuffer(dst);
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

async function timed(rt: GpuRuntime, src: GPUBuffer, dst: GPUBuffer, size: number): Promise<number> {
  const device = rt.device;
  const querySet = device.createQuerySet({ type: 'timestamp', count: 2 * RUNS });
  const [resolve, staging] = await rt.run('copyProbe', () => [
    rt.createBuffer(16 * RUNS, Usage.QUERY_RESOLVE | Usage.COPY_SRC, 'timestamps'),
    rt.createBuffer(16 * RUNS, Usage.MAP_READ | Usage.COPY_DST, 'timestamps staging'),
  ]);
  try {
    await rt.run('copyProbe', () => {
      const warm = device.createCommandEncoder();
      warm.copyBufferToBuffer(src, 0, dst, 0, size);
      rt.submit(warm);
      const enc = device.createCommandEncoder();
      for (let i = 0; i < RUNS; i++) {
        enc.beginComputePass({ timestampWrites: { querySet, endOfPassWriteIndex: 2 * i } }).end();
        enc.copyBufferToBuffer(src, 0, dst, 0, size);
        enc.beginComputePass({ timestampWrites: { querySet, beginningOfPassWriteIndex: 2 * i + 1 } }).end();
      }
      enc.resolveQuerySet(querySet, 0, 2 * RUNS, resolve, 0);
      enc.copyBufferToBuffer(resolve, 0, staging, 0, 16 * RUNS);
      rt.submit(enc);
    });
    await rt.guard(staging.mapAsync(1));
    const ts = new BigUint64Array(staging.getMappedRange().slice(0));
    staging.unmap();
    const secs: number[] = [];
    for (let i = 0; i < RUNS; i++) secs.push(Number(ts[2 * i + 1] - ts[2 * i]) / 1e9);
    const m = median(secs);
    // Timestamps can be quantised or disabled (zeros): fall back to the wall clock then.
    return m > 0 ? m : wallClock(rt, src, dst, size);
  } finally {
    querySet.destroy();
    rt.destroyBuffer(resolve);
    rt.destroyBuffer(staging);
  }
}

async function wallClock(rt: GpuRuntime, src: GPUBuffer, dst: GPUBuffer, size: number): Promise<number> {
  const perSubmit = Math.max(1, Math.min(64, Math.floor((256 << 20) / size)));
  const once = async () => {
    const t0 = performance.now();
    await rt.run('copyProbe', () => {
      const enc = rt.device.createCommandEncoder();
      for (let i = 0; i < perSubmit; i++) enc.copyBufferToBuffer(src, 0, dst, 0, size);
      rt.submit(enc);
    });
    await rt.synchronize();
    return (performance.now() - t0) / 1e3 / perSubmit;
  };
  await once();
  const secs: number[] = [];
  for (let i = 0; i < RUNS; i++) secs.push(await once());
  return median(secs);
}
