/// <reference types="@webgpu/types" />
/**
 * The flag words of the kernels that check values only the device holds (shaders/logprobs.wgsl,
 * shaders/lmhead.wgsl): [FLAG_NEG_INF_ROW, FLAG_TARGET_ROW, FLAG_TARGET_VALUE, unused], a row word
 * holding the lowest bad row (atomicMin) or NO_ROW. An op copies them to a staging buffer after its
 * kernels and registers a check that the next wait runs: it never waits itself (docs/DESIGN.md,
 * "Host metadata, device values, and errors from the device").
 */
import { allNegInfRow, badTarget, type GrpoKernelsError } from '../../errors.js';
import { type GpuRuntime, MAX_PENDING_CHECKS, Usage } from './runtime.js';

export const NO_ROW = 0xffffffff;
export const FLAG_INIT = new Uint32Array([NO_ROW, NO_ROW, 0, 0]);

export interface Flags {
  flag: GPUBuffer;
  staging: GPUBuffer;
}

/**
 * A fresh flag buffer (inside rt.run), made by `storage` (default rt.storageBuffer: the caller
 * destroys it), and the staging buffer its words are copied to (the check maps and frees it).
 */
export function flagBuffers(
  rt: GpuRuntime,
  storage: (bytes: number, label: string) => GPUBuffer = (bytes, label) => rt.storageBuffer(bytes, label),
): Flags {
  const flag = storage(FLAG_INIT.byteLength, 'flag');
  rt.writeBuffer(flag, 0, FLAG_INIT);
  const staging = rt.createBuffer(FLAG_INIT.byteLength, Usage.MAP_READ | Usage.COPY_DST, 'flag staging');
  return { flag, staging };
}

/**
 * Copies the flag words to staging at the end of `enc`, submits it, and registers the check for the
 * next wait: a bad target or an all −Inf row becomes the RANGE error the cpu backend and the API's
 * host check throw.
 */
export function submitWithFlags(
  rt: GpuRuntime,
  enc: GPUCommandEncoder,
  { flag, staging }: Flags,
  vocab: number,
  ignoreIndex: number,
): void {
  enc.copyBufferToBuffer(flag, 0, staging, 0, FLAG_INIT.byteLength);
  rt.submit(enc);
  rt.deferCheck({
    staging,
    bytes: FLAG_INIT.byteLength,
    report(w) {
      try {
        if (w[1] !== NO_ROW) badTarget(w[1], w[2] | 0, vocab, ignoreIndex);
        if (w[0] !== NO_ROW) allNegInfRow(w[0]);
      } catch (e) {
        return e as GrpoKernelsError;
      }
      return undefined;
    },
  });
}

/** An op that checks device values waits first when too many checks are already in flight. */
export async function roomForCheck(rt: GpuRuntime): Promise<void> {
  if (rt.pendingChecks >= MAX_PENDING_CHECKS) await rt.drainChecks();
}
