/**
 * The examples are users of the public API: they must run. examples/quickstart.ts is the README's
 * quick start; it runs here on cpu, and on webgpu when an adapter exists.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { createContext } from '../src/index.js';

function runExample(script: string, ...args: string[]) {
  return spawnSync(process.execPath, ['--import', 'tsx', script, ...args], {
    encoding: 'utf8',
    timeout: 120_000,
  });
}

const webgpuReason = await createContext({ backend: 'webgpu' }).then(
  (ctx) => {
    ctx.dispose();
    return undefined;
  },
  (e: unknown) => (e instanceof Error ? e.message : String(e)),
);
if (webgpuReason !== undefined) console.warn(`examples on webgpu skipped: ${webgpuReason}`);

describe('examples/quickstart.ts', () => {
  for (const backend of ['cpu', 'webgpu'] as const) {
    it.skipIf(backend === 'webgpu' && webgpuReason !== undefined)(
      `runs every op family on ${backend}`,
      () => {
        const r = runExample('examples/quickstart.ts', backend);
        expect(
          r.stderr.split('\n').filter((l) => l && !l.startsWith('Warning: ')),
          'stderr',
        ).toEqual([]);
        expect(r.status).toBe(0);
        expect(r.stdout).toContain(`backend: ${backend}`);
        for (const word of ['logprobs', 'advantages', 'tau', 'gradLogits bf16 [ 32, 151936 ]']) {
          expect(r.stdout).toContain(word);
        }
      },
    );
  }
});
