/**
 * Global setup of the vitest project "cuda-emu" (vitest.config.ts): builds the CUDA emulator addon
 * (scripts/build-emu.mjs; incremental, silent when up to date) before test/cuda/ops.test.ts runs the
 * real kernels on it. Without the CUDA toolkit's headers the build records why, and the tests skip
 * with that reason (test/cuda/helpers.ts).
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export default function setup(): void {
  const root = fileURLToPath(new URL('../../', import.meta.url));
  spawnSync(process.execPath, ['scripts/build-emu.mjs', '--quiet'], { cwd: root, stdio: 'inherit' });
}
