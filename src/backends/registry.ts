/**
 * Backend selection. Named backends load lazily (dynamic import), so the js path never touches
 * WebGPU or the native addon, and a bundler can ship js and webgpu to a browser.
 */
import { GrpoKernelsError } from '../errors.js';
import type { BackendName } from '../tensor.js';
import type { Backend, BackendOptions } from './backend.js';
import { createJsBackend } from './js/index.js';

export type BackendChoice = BackendName | 'auto';

/** Why `auto` (or `cpu`, falling back to `js`) passed over a backend. */
export interface SkippedBackend {
  backend: BackendName;
  reason: string;
}

/** `auto` tries these in order. */
export const AUTO_ORDER: readonly BackendName[] = ['cuda', 'webgpu', 'cpu', 'js'];

/** The native addon needs Node: in a browser, say so instead of fetching modules that import node:fs. */
function requireNode(name: 'cuda' | 'cpu'): void {
  const node = (globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node;
  if (typeof node !== 'string') {
    throw new GrpoKernelsError(
      'BACKEND_UNAVAILABLE',
      `${name} backend: needs Node.js (a native addon); not available here`,
    );
  }
}

export async function loadBackend(name: BackendName, options: BackendOptions): Promise<Backend> {
  switch (name) {
    case 'js':
      return createJsBackend();
    case 'cpu': {
      requireNode('cpu');
      const m = await import('./cpu/index.js');
      return m.createCpuBackend(options);
    }
    case 'webgpu': {
      const m = await import('./webgpu/index.js');
      return m.createWebGpuBackend(options);
    }
    case 'cuda': {
      requireNode('cuda');
      const m = await import('./cuda/index.js');
      return m.createCudaBackend(options);
    }
  }
}

/**
 * `cpu` by name: the native backend, or, when it cannot start (no addon, a build without the cpu
 * kernels, a browser), the js backend with the reason recorded. A bad option (threads) is still an error.
 */
export async function loadCpu(
  options: BackendOptions,
): Promise<{ backend: Backend; skipped: SkippedBackend[] }> {
  try {
    return { backend: await loadBackend('cpu', options), skipped: [] };
  } catch (e) {
    if (!(e instanceof GrpoKernelsError) || e.code !== 'BACKEND_UNAVAILABLE') throw e;
    return { backend: await loadBackend('js', options), skipped: [{ backend: 'cpu', reason: e.message }] };
  }
}

/** Loads `auto`'s first available backend and records why each earlier one was skipped. */
export async function loadAuto(
  options: BackendOptions,
): Promise<{ backend: Backend; skipped: SkippedBackend[] }> {
  const skipped: SkippedBackend[] = [];
  for (const name of AUTO_ORDER) {
    try {
      const backend = await loadBackend(name, options);
      // A software adapter (lavapipe, SwiftShader, WARP) emulates a GPU on the CPU: picking it
      // silently would make `auto` slow and add f32 rounding for nothing. Asking for 'webgpu' by
      // name still uses it (that is how CI tests the WGSL kernels).
      if (backend.device.details.software === true) {
        backend.dispose();
        skipped.push({
          backend: name,
          reason: `only a software adapter (${backend.device.name}): a CPU emulation, not a GPU`,
        });
        continue;
      }
      return { backend, skipped };
    } catch (e) {
      skipped.push({ backend: name, reason: e instanceof Error ? e.message : String(e) });
    }
  }
  throw new GrpoKernelsError(
    'BACKEND_UNAVAILABLE',
    `no backend could start: ${skipped.map((s) => `${s.backend}: ${s.reason}`).join('; ')}`,
  );
}
