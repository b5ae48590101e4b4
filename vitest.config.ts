import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const root = fileURLToPath(new URL('./', import.meta.url));

export default defineConfig({
  // The CLI, the benchmarks and the examples import the library by the package's name (tsconfig.json's
  // `paths`): here, as there, that name is the source.
  resolve: { alias: [{ find: /^grpo-kernels$/, replacement: `${root}src/index.ts` }] },
  test: {
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Tests allocate large logits (V = 151936); two workers keep memory bounded on 2-core CI.
    pool: 'forks',
    maxWorkers: 2,
    // The software Vulkan driver's environment (XDG_RUNTIME_DIR), not the caller shell's.
    setupFiles: ['test/setup-env.ts'],
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['test/**/*.test.ts'],
          exclude: ['test/cuda/emu.test.ts', 'test/cuda/faults.test.ts', 'test/cuda/faults-sweep.test.ts'],
          // dist/ built once, before any file runs (the browser, package and CLI tests use it).
          globalSetup: ['test/build-setup.ts'],
        },
      },
      {
        // The CUDA kernels themselves, compiled for the CPU by scripts/build-emu.mjs and run by the
        // emulator in tools/cuda-emu/ (docs/cuda.md, "Emulated CUDA"): every cuda test on a machine
        // without a GPU. It checks the kernels' logic, not the GPU's behaviour or speed.
        extends: true,
        test: {
          name: 'cuda-emu',
          include: [
            'test/cuda/emu.test.ts',
            'test/cuda/faults.test.ts',
            'test/cuda/faults-sweep.test.ts',
            'test/cuda/ops*.test.ts',
          ],
          globalSetup: ['test/cuda/emu-setup.ts'],
          env: {
            GRPO_KERNELS_NATIVE_PATH: `${root}build/emu/grpo_kernels_native.node`,
            GRPO_KERNELS_CUDA_EMU: '1',
          },
        },
      },
    ],
  },
});
