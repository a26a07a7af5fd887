/**
 * Timings of the real product, for docs/frontend.md (not a test: nothing here asserts a target).
 * Each run is a fresh browser context (new page load, new session) against one agent process;
 * times count from the click on "Start conversation". `npm run e2e:measure` (RUNS=5 by default).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { AgentProcess, FRONTEND_DIR } from './support/agent';
import { expectMediaOnLoopback, launchChromium, heardEnergy, observePeers } from './support/browser';
import { shownText, waitConnected, waitHeardEnergy, waitTurn } from './support/dashboard';
import { freePort } from './support/ports';
import { speechWav } from './support/speech';
import { pollUntil } from './support/wait';
import type { Browser } from 'playwright-core';

const OUT = resolve(FRONTEND_DIR, 'test-results/measure');
const RUNS = Number(process.env.RUNS ?? 5);
const SPEECH_ENERGY = 0.002;

let agent: AgentProcess;
let browser: Browser;
const runs: Record<string, number>[] = [];

beforeAll(async () => {
  mkdirSync(OUT, { recursive: true });
  agent = new AgentProcess({ port: await freePort(), logDir: OUT });
  await agent.start();
  browser = await launchChromium(speechWav(OUT));
});

afterAll(async () => {
  await browser?.close();
  await agent?.stop();
});

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? NaN;
}

it(`measures click -> connected -> transcript -> reply over ${RUNS} runs`, { timeout: 60_000 * RUNS }, async () => {
  for (let i = 0; i < RUNS; i += 1) {
    const context = await browser.newContext();
    const page = await context.newPage();
    await observePeers(page);
    await page.goto(agent.url, { waitUntil: 'load', timeout: 15_000 });
    const clicked = Date.now();
    await page.getByRole('button', { name: 'Start conversation' }).click();
    await waitConnected(page, 15_000);
    const connected = Date.now() - clicked;
    const energy0 = await heardEnergy(page);
    await waitTurn(page, 'user', 0, 30_000);
    const transcript = Date.now() - clicked;
    await waitTurn(page, 'agent', 0, 30_000);
    const replyText = Date.now() - clicked;
    await waitHeardEnergy(page, energy0 + SPEECH_ENERGY, 30_000);
    const replyAudio = Date.now() - clicked;
    const v2v = await pollUntil(
      'the agent\'s voice-to-voice figure',
      async () => {
        const match = /([\d.]+)\s*(ms|s)/.exec((await shownText(page, 'latency-v2v')) ?? '');
        return match?.[1] ? Number(match[1]) * (match[2] === 's' ? 1000 : 1) : undefined;
      },
      { timeoutMs: 20_000 },
    );
    await expectMediaOnLoopback(page, agent);
    runs.push({ connected, transcript, replyText, replyAudio, agentVoiceToVoice: v2v });
    await page.getByRole('button', { name: 'End conversation' }).click();
    await context.close();
  }
  const keys = Object.keys(runs[0] ?? {});
  const summary = Object.fromEntries(
    keys.map((k) => {
      const values = runs.map((r) => r[k] ?? NaN);
      return [k, { p50: percentile(values, 50), min: Math.min(...values), max: Math.max(...values) }];
    }),
  );
  writeFileSync(resolve(OUT, 'latency.json'), `${JSON.stringify({ runs, summary }, null, 2)}\n`);
  console.warn(JSON.stringify(summary));
  expect(runs).toHaveLength(RUNS);
});
