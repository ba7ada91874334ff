/**
 * Shared test helpers: one context per test file, and (from check.ts, which the browser page
 * also uses) a seeded RNG and `expectClose`.
 */
import { createContext } from '../src/gpu/node.js';
import type { GpuContext } from '../src/gpu/context.js';

let shared: Promise<GpuContext> | null = null;

/** The test file's context (Dawn on the machine's adapter; lavapipe in CI). */
export function testContext(): Promise<GpuContext> {
  shared ??= createContext();
  return shared;
}

export { expectClose, randomArray, rng, TOL, type Tolerance } from './check.js';
