/**
 * The product in a real browser: Debian's Chromium (fake microphone playing a flite WAV) talks to
 * a real agent process (offline STT/LLM/TTS, in-memory store) that also serves the built page.
 * The page reaches the agent through a TCP relay so the test can cut the signaling connection.
 */
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AgentProcess, FRONTEND_DIR, REPO_ROOT, freshOutputDir, requireDist } from './support/agent';
import { axeViolations } from './support/axe';
import { expectMediaOnLoopback, launchChromium, observePeers, heardEnergy, peerCount, peerStats } from './support/browser';
import { clientContract } from './support/contract';
import { connection, sessionId, shownText, turns, waitConnected, waitHeardEnergy, waitTurn } from './support/dashboard';
import { freePort } from './support/ports';
import { TcpRelay } from './support/proxy';
import { speechWav } from './support/speech';
import { pollUntil } from './support/wait';

const OUT = resolve(FRONTEND_DIR, 'test-results/e2e');
const SHOTS = resolve(OUT, 'screenshots');
/** Set VOICEPOOL_DOCS_SCREENSHOTS=1 to refresh the screenshots committed under docs/. */
const DOCS_SHOTS = process.env.VOICEPOOL_DOCS_SCREENSHOTS === '1' ? resolve(REPO_ROOT, 'docs/screenshots') : null;
/** Screenshots the README and docs/frontend.md show: test artifact name -> file under docs/screenshots. */
const DOCS_NAMES: Record<string, string> = { conversation: 'dashboard.png', 'conversation-phone': 'dashboard-phone.png' };

/** Energy (sum of level^2 x seconds) that silence never reaches and one spoken reply clearly does. */
const SPEECH_ENERGY = 0.002;

let agent: AgentProcess;
let relay: TcpRelay;
let browser: Browser;
let context: BrowserContext;
let page: Page;
const timings: Record<string, number> = {};

async function shot(name: string, target: Page = page): Promise<void> {
  const file = resolve(SHOTS, `${name}.png`);
  await target.screenshot({ path: file, fullPage: true });
  const docsName = DOCS_NAMES[name];
  if (DOCS_SHOTS && docsName) copyFileSync(file, resolve(DOCS_SHOTS, docsName));
}

beforeAll(async () => {
  requireDist();
  freshOutputDir('e2e');
  mkdirSync(SHOTS, { recursive: true });
  if (DOCS_SHOTS) mkdirSync(DOCS_SHOTS, { recursive: true });
  const wav = speechWav(OUT);
  agent = new AgentProcess({ port: await freePort(), logDir: OUT });
  await agent.start();
  relay = await TcpRelay.start(agent.port);
  browser = await launchChromium(wav);
  context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  page = await context.newPage();
  page.on('pageerror', (error) => console.error('page error:', error));
  await observePeers(page);
});

afterEach(async () => {
  if (page && agent) await expectMediaOnLoopback(page, agent);
});

afterAll(async () => {
  writeFileSync(resolve(OUT, 'timings.json'), `${JSON.stringify(timings, null, 2)}\n`);
  await browser?.close();
  await relay?.close();
  await agent?.stop();
});

describe('voice conversation in Chromium against a real agent', () => {
  it('serves the app at / and shows the idle dashboard', async () => {
    await page.goto(relay.url, { waitUntil: 'load', timeout: 15_000 });
    await expect.poll(() => connection(page), { timeout: 5000 }).toBe('disconnected');
    expect(await page.getByTestId('connection-status').innerText()).toContain('Not connected');
    expect(await page.getByRole('button', { name: 'Start conversation' }).isEnabled()).toBe(true);
    await shot('idle');
    expect(await axeViolations(page)).toEqual([]);
  });

  it('connects, transcribes the spoken question, replies in text and in audio', async () => {
    const clicked = Date.now();
    await page.getByRole('button', { name: 'Start conversation' }).click();
    await waitConnected(page, 15_000);
    timings.connected_ms = Date.now() - clicked;
    expect(await sessionId(page)).toMatch(/\S+/);
    await shot('connected');

    const energyAtConnect = await heardEnergy(page);
    await waitTurn(page, 'user', 0, 30_000);
    timings.first_transcript_ms = Date.now() - clicked;
    const reply = await waitTurn(page, 'agent', 0, 30_000);
    timings.reply_text_ms = Date.now() - clicked;
    expect(reply.replace(/^agent\s*/i, '').trim().length).toBeGreaterThan(0);
    const energy = await waitHeardEnergy(page, energyAtConnect + SPEECH_ENERGY, 30_000);
    timings.reply_audio_ms = Date.now() - clicked;
    timings.inbound_audio_energy = energy;

    // Loose match: offline pocketsphinx often mishears the session's very first utterance
    // (e.g. "hello but tentative"); the WAV loops, so the question is asked again seconds later.
    const heard = await pollUntil(
      'a user turn that contains "time" among the first two',
      async () => {
        const all = (await turns(page, 'user')).slice(0, 2).map((t) => t.toLowerCase());
        const found = all.find((t) => t.includes('time'));
        // Both turns heard and neither is the question: waiting longer cannot help.
        if (found === undefined && all.length >= 2) throw new Error(`neither of the first two user turns has "time": ${all.join(' | ')}`);
        return found;
      },
      { timeoutMs: 30_000 },
    );
    expect(heard).toContain('time');
    await waitTurn(page, 'agent', 1, 30_000);
  });

  it('shows per-turn latency (metrics events), network figures (getStats) and the mic level (AudioWorklet)', async () => {
    await pollUntil('a voice-to-voice latency figure', async () => /\d/.test((await shownText(page, 'latency-v2v')) ?? ''), {
      timeoutMs: 15_000,
    });
    await pollUntil('an RTT figure', async () => /\d/.test((await shownText(page, 'net-rtt')) ?? ''), {
      timeoutMs: 10_000,
    });
    expect(await page.getByTestId('net-loss').innerText()).toMatch(/\d/);
    // The AudioWorklet meter follows the fake microphone: well up while the WAV speaks.
    await pollUntil(
      'the microphone meter to show speech',
      async () => Number(await page.getByTestId('mic-level').getAttribute('aria-valuenow')) > 40,
      { timeoutMs: 20_000, intervalMs: 50 },
    );
    await shot('conversation');
    expect(await axeViolations(page)).toEqual([]);
  });

  it('fits a phone-width screen without sideways scrolling', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    expect(overflow).toBeLessThanOrEqual(0);
    await shot('conversation-phone');
    expect(await axeViolations(page)).toEqual([]);
    await page.setViewportSize({ width: 1280, height: 860 });
  });

  it('resumes the same session on its own after the signaling connection drops', async () => {
    const before = await sessionId(page);
    const peersBefore = await peerCount(page);
    const userTurns = (await turns(page, 'user')).length;
    const wsBefore = relay.requests.filter((r) => r.startsWith(`GET /ws/v2/${before} `)).length;

    const dropped = Date.now();
    expect(relay.cutAll()).toBeGreaterThan(0);
    // The first retry comes 0.5 s (±20 %) after the drop (docs/frontend.md, "Recovery"), plus a
    // second of slack for a loaded machine.
    await pollUntil(
      'the page to reopen the signaling WebSocket of the same session',
      () => relay.requests.filter((r) => r.startsWith(`GET /ws/v2/${before} `)).length > wsBefore,
      { timeoutMs: 1_600, intervalMs: 50 },
    );
    await waitConnected(page, 15_000);
    timings.ws_drop_recovered_ms = Date.now() - dropped;
    expect(await sessionId(page)).toBe(before);
    const sessions = await agent.json<{ id: string }[]>('/v2/sessions');
    expect(sessions.map((s) => s.id)).toEqual([before]);

    // The conversation goes on: the looping WAV asks again and is heard again.
    const heard = await waitTurn(page, 'user', userTurns, 30_000);
    expect(heard.toLowerCase()).toContain('time');
    // Only the socket dropped: the audio path passed the page's liveness probe (1.5 s, long over
    // by the time the next turn is heard) and was kept, not renegotiated.
    expect(await peerCount(page)).toBe(peersBefore);
  });

  it('starts a new session on its own after the agent is killed and restarted', async () => {
    const before = await sessionId(page);
    const agentTurns = (await turns(page, 'agent')).length;
    await agent.kill9();
    const killed = Date.now();
    await pollUntil('the page to notice the agent is gone', async () => (await connection(page)) !== 'connected', {
      timeoutMs: 20_000,
    });
    await shot('reconnecting');
    // Nothing stale while the link is down: not "Speaking", no Interrupt, no typing.
    expect(await page.getByTestId('processing-status').getAttribute('data-status')).toBe('idle');
    expect(await page.getByRole('button', { name: 'Interrupt' }).count()).toBe(0);
    expect(await page.getByRole('textbox', { name: 'Type a message to the agent' }).isDisabled()).toBe(true);
    await agent.start();
    await waitConnected(page, 30_000);
    timings.agent_restart_recovered_ms = Date.now() - killed;

    const after = await sessionId(page);
    expect(after).not.toBe(before);
    expect(await page.getByTestId('notice-banner').innerText()).toContain('new session');
    const sessions = await agent.json<{ id: string }[]>('/v2/sessions');
    expect(sessions.map((s) => s.id)).toEqual([after]);

    const energyAtConnect = await heardEnergy(page);
    await waitTurn(page, 'agent', agentTurns, 30_000);
    await waitHeardEnergy(page, energyAtConnect + SPEECH_ENERGY, 30_000);
  });

  it('ends cleanly, then reports an unreachable agent with a retry that works', async () => {
    const last = await sessionId(page);
    await page.getByRole('button', { name: 'End conversation' }).click();
    await expect.poll(() => connection(page), { timeout: 5000 }).toBe('disconnected');
    await pollUntil(
      'the agent to drop the ended session',
      async () => !(await agent.json<{ id: string }[]>('/v2/sessions')).some((s) => s.id === last),
      { timeoutMs: 10_000 },
    );
    expect(await peerStats(page)).toBeNull();

    await agent.kill9();
    await page.getByRole('button', { name: 'Start conversation' }).click();
    const banner = page.getByTestId('error-banner');
    await banner.waitFor({ state: 'visible', timeout: 15_000 });
    expect(await banner.innerText()).toContain('Cannot reach the voice agent');
    expect(await connection(page)).toBe('error');
    await shot('error-unreachable');
    expect(await axeViolations(page)).toEqual([]);

    await agent.start();
    await page.getByRole('button', { name: 'Try again' }).click();
    await waitConnected(page, 15_000);
    await page.getByRole('button', { name: 'End conversation' }).click();
  });

  it('explains a blocked microphone', async () => {
    const noMic = await launchChromium(null);
    try {
      const blocked = await noMic.newPage();
      await blocked.goto(relay.url, { waitUntil: 'load', timeout: 15_000 });
      await blocked.getByRole('button', { name: 'Start conversation' }).click();
      const banner = blocked.getByTestId('error-banner');
      await banner.waitFor({ state: 'visible', timeout: 10_000 });
      expect(await banner.innerText()).toContain('Microphone blocked');
      expect(await connection(blocked)).toBe('error');
      await shot('error-mic-blocked', blocked);
    } finally {
      await noMic.close();
    }
  });

  it('the running agent serves the API the typed client was checked against', async () => {
    const live = await agent.json<Parameters<typeof clientContract>[0]>('/openapi.json');
    const snapshot = JSON.parse(readFileSync(resolve(FRONTEND_DIR, 'src/api/openapi.json'), 'utf8'));
    expect(
      clientContract(live),
      'the agent changed the session API; run `npm run api:generate` and `npm run typecheck` in frontend/',
    ).toEqual(clientContract(snapshot));
  });
});
