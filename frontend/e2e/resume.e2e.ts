/**
 * Session resume across an agent crash, with the agent's Redis store (REDIS_URL): the agent is
 * killed with SIGKILL mid-conversation and comes back on the same port and with the same agent id
 * (a container restarted in its pod). The page must get the same session back, with its history,
 * without asking the user, and the conversation must go on.
 */
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AgentProcess, freshOutputDir, requireDist } from './support/agent';
import { expectMediaOnLoopback, launchChromium, observePeers, heardEnergy, peerCount } from './support/browser';
import { connection, sessionId, turns, waitConnected, waitHeardEnergy, waitTurn } from './support/dashboard';
import { freePort } from './support/ports';
import { RedisServer } from './support/redis';
import { speechWav } from './support/speech';
import { pollUntil } from './support/wait';

const SPEECH_ENERGY = 0.002;

let OUT: string;
let redis: RedisServer;
let agent: AgentProcess;
let browser: Browser;
let page: Page;
const timings: Record<string, number> = {};
/** When the page sent each offer / received each `session` event (ms since epoch). */
const offersAt: number[] = [];
const sessionEventsAt: number[] = [];

interface SessionView {
  id: string;
  turns: number;
}

beforeAll(async () => {
  requireDist();
  OUT = freshOutputDir('e2e-resume');
  redis = await RedisServer.start(await freePort());
  agent = new AgentProcess({ port: await freePort(), logDir: OUT, env: { REDIS_URL: redis.url } });
  await agent.start();
  browser = await launchChromium(speechWav(OUT));
  page = await browser.newPage();
  await observePeers(page);
  page.on('websocket', (ws) => {
    ws.on('framesent', (frame) => {
      if (String(frame.payload).startsWith('{"type":"offer"')) offersAt.push(Date.now());
    });
    ws.on('framereceived', (frame) => {
      if (String(frame.payload).startsWith('{"type":"session"')) sessionEventsAt.push(Date.now());
    });
  });
});

afterEach(async () => {
  if (page && agent) await expectMediaOnLoopback(page, agent);
});

afterAll(async () => {
  if (OUT) writeFileSync(resolve(OUT, 'timings.json'), `${JSON.stringify(timings, null, 2)}\n`);
  await browser?.close();
  await agent?.stop();
  await redis?.stop();
});

describe('resume with the Redis store', () => {
  it('keeps the same session and its history when the agent is killed and restarted', async () => {
    await page.goto(agent.url, { waitUntil: 'load', timeout: 15_000 });
    await page.getByRole('button', { name: 'Start conversation' }).click();
    await waitConnected(page, 15_000);
    await waitTurn(page, 'agent', 0, 30_000);
    const before = await sessionId(page);
    expect(before).toBeTruthy();
    await pollUntil(
      'the agent to have stored a turn',
      async () => (await agent.json<SessionView>(`/v2/sessions/${before}`)).turns >= 1,
      { timeoutMs: 10_000 },
    );
    const agentTurns = (await turns(page, 'agent')).length;
    const userTurns = (await turns(page, 'user')).length;

    const peersBefore = await peerCount(page);
    await agent.kill9();
    const killed = Date.now();
    await agent.start();
    timings.agent_up_ms = Date.now() - killed;
    await pollUntil('the page to reattach and get its session back', () => sessionEventsAt.some((at) => at > killed), {
      timeoutMs: 30_000,
    });
    timings.session_event_ms = Date.now() - killed;
    // The stored history came back with the session event; the page merged it without repeating
    // turns (no audio reaches the new agent yet, so no new turn can have come in meanwhile).
    expect((await turns(page, 'user')).length).toBe(userTurns);
    await waitConnected(page, 30_000);
    timings.signaling_back_ms = Date.now() - killed;
    await pollUntil(
      'audio on a fresh peer connection',
      async () => (await peerCount(page)) > peersBefore && (await connection(page)) === 'connected',
      { timeoutMs: 30_000 },
    );
    timings.media_back_ms = Date.now() - killed;

    expect(await sessionId(page)).toBe(before);
    expect(await page.getByTestId('notice-banner').count()).toBe(0);
    const stored = await agent.json<SessionView>(`/v2/sessions/${before}`);
    expect(stored.turns).toBeGreaterThanOrEqual(1);

    // Audio flows again through the new agent process: a new reply, heard.
    const energy = await heardEnergy(page);
    await waitTurn(page, 'agent', agentTurns, 30_000);
    await waitHeardEnergy(page, energy + SPEECH_ENERGY, 30_000);
    timings.next_reply_audio_ms = Date.now() - killed;
    timings.peers_created_after_kill = (await peerCount(page)) - peersBefore;
    timings.offers_after_kill = offersAt.filter((at) => at > killed).length;
    timings.first_offer_after_kill_ms = (offersAt.find((at) => at > killed) ?? NaN) - killed;
    // The restarted agent holds no peer for us: the page negotiated a fresh one instead of
    // showing "connected" over a dead path until ICE gave up.
    expect(timings.peers_created_after_kill).toBe(1);
  });
});
