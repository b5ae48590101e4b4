/** The temperature suite (test/fixtures/temperature.ts) on cuda (a GPU, or the emulator). */
import { temperatureSuite } from '../fixtures/temperature.js';
import { probeGpu } from './helpers.js';

temperatureSuite('cuda', async () => {
  const g = await probeGpu();
  return g.ctx ?? g.reason ?? 'no cuda context';
});
