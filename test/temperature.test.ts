/** The temperature suite (test/fixtures/temperature.ts) on cpu and webgpu. */
import { type Context, createContext } from '../src/index.js';
import { temperatureSuite } from './fixtures/temperature.js';

async function open(backend: 'cpu' | 'webgpu'): Promise<Context | string> {
  try {
    return await createContext({ backend });
  } catch (e) {
    return (e as Error).message;
  }
}

temperatureSuite('cpu', () => open('cpu'));
temperatureSuite('webgpu', () => open('webgpu'));
