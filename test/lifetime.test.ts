/** The lifetime suite (test/fixtures/lifetime.ts) on cpu and webgpu. */
import { afterAll } from 'vitest';
import { type Context, createContext } from '../src/index.js';
import { lifetimeSuite } from './fixtures/lifetime.js';

async function open(backend: 'cpu' | 'webgpu'): Promise<Context | string> {
  try {
    return await createContext({ backend });
  } catch (e) {
    return (e as Error).message;
  }
}

const contexts = { cpu: await open('cpu'), webgpu: await open('webgpu') };
afterAll(() => {
  for (const c of Object.values(contexts)) if (typeof c !== 'string') c.dispose();
});

lifetimeSuite('cpu', async () => contexts.cpu);
lifetimeSuite('webgpu', async () => contexts.webgpu);
