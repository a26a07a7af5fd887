/**
 * One agent process and one Chromium with a fake microphone, shared by the tests of a spec file:
 * started before them, stopped after, logs in the spec's output directory.
 */
import { mkdirSync } from 'node:fs';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll } from 'vitest';
import { AgentProcess, requireDist } from './agent';
import { launchChromium } from './browser';
import { freePort } from './ports';
import { speechWav } from './speech';

export interface AgentAndBrowser {
  agent: AgentProcess;
  browser: Browser;
}

/** Registers the spec's beforeAll/afterAll; the fields are set once beforeAll has run. `dist`: the
 * spec loads the built page, so it fails at once with a clear message when there is none. */
export function agentAndBrowser(out: string, options: { dist?: boolean } = {}): AgentAndBrowser {
  const held = {} as AgentAndBrowser;
  beforeAll(async () => {
    if (options.dist) requireDist();
    mkdirSync(out, { recursive: true });
    held.agent = new AgentProcess({ port: await freePort(), logDir: out });
    await held.agent.start();
    held.browser = await launchChromium(speechWav(out));
  });
  afterAll(async () => {
    await held.browser?.close();
    await held.agent?.stop();
  });
  return held;
}

/** The nearest-rank percentile (`p` in 0..100) of `values`; NaN when there are none. */
export function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? NaN;
}
