/**
 * The examples are users of the public API: they must run. examples/quickstart.ts is the README's
 * quick start; it runs here on cpu, and on webgpu when an adapter exists, also when the tests are
 * started from a shell without XDG_RUNTIME_DIR.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { createContext } from '../src/index.js';

const root = fileURLToPath(new URL('../', import.meta.url));

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
  for (const backend of ['js', 'cpu', 'webgpu'] as const) {
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
        for (const word of [
          'logprobs',
          'advantages',
          'tau',
          'policyLoss',
          'clip fraction 0',
          'rolloutRejection masked fraction',
          'gradLogits bf16 [ 32, 151936 ]',
        ]) {
          expect(r.stdout).toContain(word);
        }
      },
    );
  }
});

/**
 * A shell without XDG_RUNTIME_DIR (su, sudo, ssh without a session, cron, a CI runner), where Mesa's
 * device-select layer asks libwayland for a display (WAYLAND_DISPLAY is set; Mesa 22's layer asks
 * regardless): libwayland prints "error: XDG_RUNTIME_DIR is invalid or not set in the environment."
 * The layer ships with the lavapipe that scripts/setup-vulkan.sh extracts; it is made visible to the
 * Vulkan loader here as a system's Mesa install would (XDG_DATA_DIRS, LD_LIBRARY_PATH).
 */
function hostileShell(): { env: NodeJS.ProcessEnv } | { skip: string } {
  const icd = process.env.VK_ICD_FILENAMES?.split(':')[0] ?? join(root, '.cache', 'vulkan', 'lvp_icd.json');
  if (!existsSync(icd)) return { skip: `no lavapipe ICD at ${icd} (scripts/setup-vulkan.sh makes one)` };
  const lib: string = JSON.parse(readFileSync(icd, 'utf8')).ICD.library_path;
  const usr = lib.slice(0, lib.lastIndexOf('/lib/'));
  const share = join(usr, 'share');
  if (!existsSync(join(share, 'vulkan', 'implicit_layer.d', 'VkLayer_MESA_device_select.json')))
    return { skip: `no Mesa device-select layer beside ${lib}` };
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    VK_ICD_FILENAMES: icd,
    XDG_DATA_DIRS: `${share}:${process.env.XDG_DATA_DIRS ?? '/usr/local/share:/usr/share'}`,
    LD_LIBRARY_PATH: [dirname(lib), process.env.LD_LIBRARY_PATH].filter(Boolean).join(':'),
    WAYLAND_DISPLAY: 'wayland-0',
    GRPO_KERNELS_NESTED_EXAMPLES: '1',
  };
  delete env.XDG_RUNTIME_DIR;
  return { env };
}

const XDG_ERROR = /XDG_RUNTIME_DIR is invalid or not set/;

/**
 * Started directly in that shell, the example prints the error (wherever the layer is found);
 * started through the tests, as `env -u XDG_RUNTIME_DIR npx vitest run test/examples.test.ts`, the
 * package's setup (test/setup-env.ts) has set a private XDG_RUNTIME_DIR and stderr is clean.
 */
describe('examples on webgpu from a shell without XDG_RUNTIME_DIR', () => {
  const hostile = webgpuReason === undefined ? hostileShell() : { skip: `no webgpu: ${webgpuReason}` };
  const nested = process.env.GRPO_KERNELS_NESTED_EXAMPLES !== undefined;
  if ('skip' in hostile) console.warn(`XDG_RUNTIME_DIR case skipped: ${hostile.skip}`);
  const skip = 'skip' in hostile || nested;

  it.skipIf(skip)('npx vitest run test/examples.test.ts passes with a clean stderr', () => {
    if ('skip' in hostile) return;
    const r = spawnSync(
      process.execPath,
      [
        join(root, 'node_modules', 'vitest', 'vitest.mjs'),
        'run',
        'test/examples.test.ts',
        '-t',
        'runs every op family on webgpu',
      ],
      { cwd: root, encoding: 'utf8', timeout: 100_000, env: { ...hostile.env, CI: 'true' } },
    );
    const out = `${r.stdout}\n${r.stderr}`;
    expect(out).not.toMatch(XDG_ERROR);
    expect(out, out).toMatch(/1 passed/);
    expect(r.status, out).toBe(0);
  });
});
