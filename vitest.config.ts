import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Dawn is a native addon: child processes isolate each file's device cleanly.
    pool: 'forks',
    // At least two files at a time, also on 2 cores (vitest's default there is one): lavapipe
    // compiles a pipeline on the calling thread, so a cold run is mostly one core compiling.
    // On this project's 2-core machine: cold 8.8 -> 7.1 min, warm 48 -> 39 s.
    maxWorkers: Math.max(2, availableParallelism() - 1),
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
