/** The lifetime suite (test/fixtures/lifetime.ts) on js, cpu (native) and webgpu. */
import { afterAll } from 'vitest';
import { type Context, createContext } from '../src/index.js';
import { lifetimeSuite } from './fixtures/lifetime.js';

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

const contexts = { js: await open('js'), cpu: await open('cpu'), webgpu: await open('webgpu') };
afterAll(() => {
  for (const c of Object.values(contexts)) if (typeof c !== 'string') c.dispose();
});

lifetimeSuite('js', async () => contexts.js);
lifetimeSuite('cpu', async () => contexts.cpu);
lifetimeSuite('webgpu', async () => contexts.webgpu);
