import { defineConfig } from 'vitest/config';

// Browser end to end: real agent process, real Chromium. One file, steps in order, no parallelism
// (the steps share one agent and one page, and the machine has 2 cores). VOICEPOOL_MEASURE=1 runs
// the timing runs (e2e/*.measure.ts) instead of the tests.
const measure = process.env.VOICEPOOL_MEASURE === '1';

export default defineConfig({
  test: {
    environment: 'node',
    include: measure ? ['e2e/**/*.measure.ts'] : ['e2e/**/*.e2e.ts'],
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
