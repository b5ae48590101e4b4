/** The temperature suite (test/fixtures/temperature.ts) on js, cpu (native) and webgpu. */
import { type Context, createContext } from '../src/index.js';
import { temperatureSuite } from './fixtures/temperature.js';

async function open(backend: 'js' | 'cpu' | 'webgpu'): Promise<Context | string> {
  try {
    const ctx = await createContext({ backend });
    if (ctx.backend === backend) return ctx;
    // 'cpu' fell back to 'js' (no native addon): say why instead of testing js twice.
    ctx.dispose();
    return ctx.skipped.map((s) => s.reason).join('; ');
  } catch (e) {
    return (e as Error).message;
  }
}

temperatureSuite('js', () => open('js'));
temperatureSuite('cpu', () => open('cpu'));
temperatureSuite('webgpu', () => open('webgpu'));
