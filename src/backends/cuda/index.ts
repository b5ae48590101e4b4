import { GrpoKernelsError } from '../../errors.js';
import type { Backend } from '../backend.js';
import type { BackendOptions } from '../registry.js';

/** Creates the cuda backend. */
export async function createCudaBackend(_options: BackendOptions): Promise<Backend> {
  throw new GrpoKernelsError(
    'BACKEND_UNAVAILABLE',
    'cuda backend: not in this version yet (the native addon arrives with the CUDA backend issue)',
  );
}
