import { GrpoKernelsError } from '../../errors.js';
import type { Backend } from '../backend.js';
import type { BackendOptions } from '../registry.js';

/** Creates the webgpu backend. */
export async function createWebGpuBackend(_options: BackendOptions): Promise<Backend> {
  throw new GrpoKernelsError(
    'BACKEND_UNAVAILABLE',
    'webgpu backend: not in this version yet (its WGSL kernels arrive with the WebGPU backend issue)',
  );
}
