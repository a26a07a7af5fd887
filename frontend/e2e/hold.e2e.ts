/**
 * Hold and resume as the page plays it (docs/api.md, "Hold and resume"), heard where the page sends
 * the agent to its speakers (support/ear.ts): an "okay" over a story silences it at once and the
 * story plays on once the agent knows it was no interruption; "wait, what time is it" silences it
 * and it stays silent. The page answers the hold with what its user never heard.
 */
import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Browser, Page, WebSocket as PageSocket } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { AgentProcess, freshOutputDir, requireDist } from './support/agent';
import { expectMediaOnLoopback, launchChromium, observePeers } from './support/browser';
import { waitConnected } from './support/dashboard';
import { Ear, firstLoud, lastLoud, loudTimes } from './support/ear';
import { freePort } from './support/ports';
import { speechWav } from './support/speech';
import { pollUntil } from './support/wait';

const PHRASES = { story: 'please tell me a story', okay: 'okay', interruption: 'wait, what time is it' };
/** Generous for a loaded machine: how fast is a benchmark's question (bench/browser.py), not this test's. */
const TIMEOUT_MS = 20_000;
/** Silent this long at the page's output while the user speaks: the agent held, the page muted its buffer. */
const QUIET_S = 0.25;

let agent: AgentProcess;
let browser: Browser;
let page: Page;
let ear: Ear;
const frames: { at: number; sent: boolean; data: Record<string, unknown> }[] = [];

function watch(socket: PageSocket): void {
  const keep = (sent: boolean) => (payload: { payload: string | Buffer }) => {
    if (typeof payload.payload === 'string') frames.push({ at: Date.now(), sent, data: JSON.parse(payload.payload) });
  };
  socket.on('framereceived', keep(false));
  socket.on('framesent', keep(true));
}

const playback = (state: string): Record<string, unknown>[] =>
  frames.filter((f) => !f.sent && f.data.type === 'playback' && f.data.state === state).map((f) => f.data);

/** The longest run of silent blocks at the page's output within [from, to] (s). */
function longestQuiet(from: number, to: number): number {
  const loud = loudTimes(ear.remote, from, to);
  const edges = [from, ...loud, to];
  return Math.max(...edges.slice(1).map((t, i) => t - (edges[i] ?? t)));
}

beforeAll(async () => {
  requireDist();
  const out = freshOutputDir('hold');
  const wavs = Object.fromEntries(
    Object.entries(PHRASES).map(([name, text]) => {
      const dir = resolve(out, name);
      mkdirSync(dir, { recursive: true });
      return [name, speechWav(dir, text, 0, 0)];
    }),
  );
  agent = new AgentProcess({ port: await freePort(), logDir: out });
  await agent.start();
  browser = await launchChromium(null);
  const context = await browser.newContext({ permissions: ['microphone'] });
  page = await context.newPage();
  page.on('pageerror', (error) => console.error('page error:', error));
  page.on('websocket', watch);
  await observePeers(page);
  ear = new Ear(page);
  await ear.install();
  await page.goto(agent.url, { waitUntil: 'load', timeout: 15_000 });
  await page.getByRole('button', { name: 'Start conversation' }).click();
  await waitConnected(page, 15_000);
  for (const [name, wav] of Object.entries(wavs)) await ear.load(name, wav);
});

afterAll(async () => {
  if (page && agent) await expectMediaOnLoopback(page, agent);
  await browser?.close();
  await agent?.stop();
});

/** Asks for the story and returns once a second of it has played at the page's output. */
async function storyPlaying(): Promise<void> {
  await ear.remoteQuiet(0.6, 90_000); // the story before this one, if any, played out
  const listening = async (): Promise<boolean> =>
    (await page.locator('.app').getAttribute('data-processing')) === 'listening';
  await pollUntil('the agent to be listening', listening, { timeoutMs: TIMEOUT_MS });
  const asked = await ear.say('story');
  const started = await ear.until('the story', () => firstLoud(ear.remote, asked.onset), TIMEOUT_MS);
  const second = Math.round(1 / ear.blockS);
  await ear.until('a second of the story', () => loudTimes(ear.remote, started).length >= second, TIMEOUT_MS);
}

it('silences the page at an "okay" over the story, answers the hold, and plays it on', { timeout: 120_000 }, async () => {
  await storyPlaying();
  const okay = await ear.say('okay');
  await ear.until('the story to play again', () => firstLoud(ear.remote, okay.end + 0.1), TIMEOUT_MS);
  const quiet = longestQuiet(okay.onset, okay.end + 0.1);
  expect(quiet, 'the page went silent while the user spoke').toBeGreaterThanOrEqual(QUIET_S);
  const held = playback('held');
  expect(held.length).toBeGreaterThan(0);
  const turn = held.at(-1)?.turn;
  expect(playback('resumed').map((e) => e.turn)).toContain(turn);
  const answer = frames.find((f) => f.sent && f.data.type === 'held' && f.data.turn === turn);
  expect(answer?.data.unheard_ms, 'the page says what of the story it never played').toEqual(expect.any(Number));
  expect(playback('cut'), 'an okay is no interruption').toEqual([]);
});

it('silences the page at a real interruption and keeps it silent', { timeout: 150_000 }, async () => {
  await storyPlaying();
  const cut = await ear.say('interruption');
  const last = lastLoud(ear.remote, cut.onset - 0.25, cut.end);
  expect(last, 'the story was playing when the user spoke').toBeDefined();
  expect(last ?? Infinity, 'the page fell silent well before the user finished').toBeLessThan(cut.end - QUIET_S);
  await ear.until('the cut', () => playback('cut').length > 0, TIMEOUT_MS);
});
