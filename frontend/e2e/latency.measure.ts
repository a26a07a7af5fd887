/**
 * Timings of the real product, for docs/frontend.md (not a test: nothing here asserts a target).
 * Each run is a fresh browser context (new page load, new session) against one agent process;
 * times count from the click on "Start conversation". `npm run e2e:measure` (RUNS=5 by default).
 */
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { expect, it } from 'vitest';
import { FRONTEND_DIR } from './support/agent';
import { expectMediaOnLoopback, heardEnergy, observePeers } from './support/browser';
import { shownText, waitConnected, waitHeardEnergy, waitTurn } from './support/dashboard';
import { agentAndBrowser, percentile } from './support/lifecycle';
import { pollUntil } from './support/wait';

const OUT = resolve(FRONTEND_DIR, 'test-results/measure');
const RUNS = Number(process.env.RUNS ?? 5);
const SPEECH_ENERGY = 0.002;

const runs: Record<string, number>[] = [];

const env = agentAndBrowser(OUT);

it(`measures click -> connected -> transcript -> reply over ${RUNS} runs`, { timeout: 60_000 * RUNS }, async () => {
  for (let i = 0; i < RUNS; i += 1) {
    const context = await env.browser.newContext();
    const page = await context.newPage();
    await observePeers(page);
    await page.goto(env.agent.url, { waitUntil: 'load', timeout: 15_000 });
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
    await expectMediaOnLoopback(page, env.agent);
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
