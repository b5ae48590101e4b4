/** The lifetime suite (test/fixtures/lifetime.ts) on cuda (a GPU, or the emulator). */
import { lifetimeSuite } from '../fixtures/lifetime.js';
import { probeGpu } from './helpers.js';

lifetimeSuite('cuda', async () => {
  const g = await probeGpu();
  return g.ctx ?? g.reason ?? 'no cuda context';
});
