/**
 * The API fuzz table (test/cases/api-fuzz.ts) on js, cpu and webgpu: adversarial input at the API
 * surface gets a GrpoKernelsError naming the argument, or js's results; never another error, a crash, a
 * hang or a different number. test/cuda/ops-api-fuzz.test.ts runs it on cuda.
 */
import { apiFuzz } from './cases/api-fuzz.js';

await apiFuzz(['js', 'cpu', 'webgpu']);
