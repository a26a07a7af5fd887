/**
 * The built app hosted apart from the agent (docs/frontend.md, "Hosting the app elsewhere"): a
 * plain static server on one origin serves dist/ with the agent's URL set at load time in
 * index.html, the agent runs on another origin with that page's origin in VOICE_CORS_ORIGINS.
 * A full voice turn works across the two origins; a page from an origin the agent does not list
 * is refused by the browser, and the page says what to change.
 */
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AgentProcess, DIST_DIR, FRONTEND_DIR, freshOutputDir, requireDist } from './support/agent';
import { expectMediaOnLoopback, heardEnergy, launchChromium, observePeers } from './support/browser';
import { connection, sessionId, waitConnected, waitHeardEnergy, waitTurn } from './support/dashboard';
import { freePort } from './support/ports';
import { speechWav } from './support/speech';
import { StaticSite } from './support/static';

const OUT = resolve(FRONTEND_DIR, 'test-results/e2e-static');
const EMPTY_TAG = '<meta name="voicepool-agent-url" content="" />';
/** Energy (sum of level^2 x seconds) that silence never reaches and one spoken reply clearly does. */
const SPEECH_ENERGY = 0.002;

let agent: AgentProcess;
let allowed: StaticSite;
let other: StaticSite;
let browser: Browser;
const pages: Page[] = [];

/** dist/ as a deployer publishes it: index.html's agent tag filled in, as the docs show. */
function publish(agentUrl: string): string {
  const site = resolve(OUT, 'site');
  cpSync(DIST_DIR, site, { recursive: true });
  const index = resolve(site, 'index.html');
  const html = readFileSync(index, 'utf8');
  if (!html.includes(EMPTY_TAG)) throw new Error(`dist/index.html has no ${EMPTY_TAG}: rebuild the app`);
  writeFileSync(index, html.replace(EMPTY_TAG, `<meta name="voicepool-agent-url" content="${agentUrl}" />`));
  return site;
}

async function openPage(url: string): Promise<Page> {
  const page = await browser.newPage();
  pages.push(page);
  page.on('pageerror', (error) => console.error('page error:', error));
  await observePeers(page);
  await page.goto(url, { waitUntil: 'load', timeout: 15_000 });
  return page;
}

async function sessionsAtAgent(): Promise<string[]> {
  return (await agent.json<{ id: string }[]>('/v2/sessions')).map((s) => s.id);
}

beforeAll(async () => {
  requireDist();
  freshOutputDir('e2e-static');
  const wav = speechWav(OUT);
  const agentPort = await freePort();
  const site = publish(`http://127.0.0.1:${agentPort}`);
  allowed = await StaticSite.start(site);
  other = await StaticSite.start(site);
  // The agent does not serve the page here: only the static server does.
  agent = new AgentProcess({
    port: agentPort,
    logDir: OUT,
    env: { VOICE_WEB_DIR: resolve(OUT, 'no-web-dir'), VOICE_CORS_ORIGINS: allowed.url },
  });
  await agent.start();
  browser = await launchChromium(wav);
});

afterEach(async () => {
  for (const page of pages) await expectMediaOnLoopback(page, agent);
});

afterAll(async () => {
  await browser?.close();
  await agent?.stop();
  await allowed?.close();
  await other?.close();
});

describe('the built app on a static host, the agent on another origin', () => {
  it('holds a full voice turn across the two origins', async () => {
    const page = await openPage(allowed.url);
    expect(allowed.served.filter((p) => p === '/' || p.startsWith('/assets/')).length).toBeGreaterThan(1);
    await page.getByRole('button', { name: 'Start conversation' }).click();
    await waitConnected(page, 15_000);
    const id = await sessionId(page);
    expect(await sessionsAtAgent()).toEqual([id]);

    const energyAtConnect = await heardEnergy(page);
    const heard = await waitTurn(page, 'user', 0, 30_000);
    expect(heard.length).toBeGreaterThan(0);
    const reply = await waitTurn(page, 'agent', 0, 30_000);
    expect(reply.replace(/^agent\s*/i, '').trim().length).toBeGreaterThan(0);
    await waitHeardEnergy(page, energyAtConnect + SPEECH_ENERGY, 30_000);

    await page.getByRole('button', { name: 'End conversation' }).click();
    await expect.poll(() => connection(page), { timeout: 5000 }).toBe('disconnected');
  });

  it('is refused from an origin the agent does not allow, and the page says which origin to add', async () => {
    const before = await sessionsAtAgent();
    const page = await openPage(other.url);
    await page.getByRole('button', { name: 'Start conversation' }).click();
    const banner = page.getByTestId('error-banner');
    await banner.waitFor({ state: 'visible', timeout: 15_000 });
    const text = await banner.innerText();
    expect(text).toContain(`Cannot reach the voice agent at ${agent.url}`);
    expect(text).toContain(`VOICE_CORS_ORIGINS allows this page's origin (${other.url})`);
    expect(await connection(page)).toBe('error');
    // The preflight was refused, so the browser never sent the POST: no session was made.
    expect(await sessionsAtAgent()).toEqual(before);
  });

  it('says so on the page when the agent URL it was given is not a URL', async () => {
    const site = resolve(OUT, 'misconfigured');
    cpSync(DIST_DIR, site, { recursive: true });
    const index = resolve(site, 'index.html');
    writeFileSync(index, readFileSync(index, 'utf8').replace(EMPTY_TAG, '<meta name="voicepool-agent-url" content="agent.example.com" />'));
    const wrong = await StaticSite.start(site);
    try {
      const page = await openPage(wrong.url);
      const alert = page.getByTestId('config-error');
      await alert.waitFor({ state: 'visible', timeout: 10_000 });
      expect(await alert.innerText()).toContain('<meta name="voicepool-agent-url"> in index.html is not an absolute URL');
    } finally {
      await wrong.close();
    }
  });
});
