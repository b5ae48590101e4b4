import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Tests allocate large logits (V = 151936); two workers keep memory bounded on 2-core CI.
    pool: 'forks',
    maxWorkers: 2,
  },
});
