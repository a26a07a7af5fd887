import { defineConfig } from 'vitest/config';

// Browser end to end: real agent process, real Chromium. One file, steps in order, no parallelism
// (the steps share one agent and one page, and the machine has 2 cores).
export default defineConfig({
  test: {
    environment: 'node',
    include: ['e2e/**/*.e2e.ts'],
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ['default'],
  },
});
