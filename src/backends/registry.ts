/**
 * Backend selection. Named backends load lazily (dynamic import), so the cpu path never touches
 * WebGPU or the native addon, and a bundler can ship cpu and webgpu to a browser.
 */
import { GrpoKernelsError } from '../errors.js';
import type { BackendName } from '../tensor.js';
import type { Backend } from './backend.js';
import { createCpuBackend } from './cpu/index.js';

export type BackendChoice = BackendName | 'auto';

export interface BackendOptions {
  /** webgpu: run on this caller's GPUDevice instead of creating one. */
  device?: unknown;
  /** cuda: which device ordinal to use (default 0). */
  deviceIndex?: number;
}

/** Why `auto` passed over a backend. */
export interface SkippedBackend {
  backend: BackendName;
  reason: string;
}

/** `auto` tries these in order. */
export const AUTO_ORDER: readonly BackendName[] = ['cuda', 'webgpu', 'cpu'];

export async function loadBackend(name: BackendName, options: BackendOptions): Promise<Backend> {
  switch (name) {
    case 'cpu':
      return createCpuBackend();
    case 'webgpu': {
      const m = await import('./webgpu/index.js');
      return m.createWebGpuBackend(options);
    }
    case 'cuda': {
      const m = await import('./cuda/index.js');
      return m.createCudaBackend(options);
    }
  }
}

/** Loads `auto`'s first available backend and records why each earlier one was skipped. */
export async function loadAuto(
  options: BackendOptions,
): Promise<{ backend: Backend; skipped: SkippedBackend[] }> {
  const skipped: SkippedBackend[] = [];
  for (const name of AUTO_ORDER) {
    try {
      return { backend: await loadBackend(name, options), skipped };
    } catch (e) {
      skipped.push({ backend: name, reason: e instanceof Error ? e.message : String(e) });
    }
  }
  throw new GrpoKernelsError(
    'BACKEND_UNAVAILABLE',
    `no backend could start: ${skipped.map((s) => `${s.backend}: ${s.reason}`).join('; ')}`,
  );
}
