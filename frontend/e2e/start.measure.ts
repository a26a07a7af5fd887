/**
 * Click to connected, as the page lives it (not a test: nothing here asserts a target). Each run is
 * a fresh browser context against one agent process: the page loads, sits idle as a visitor
 * reading it would, then "Start conversation" is clicked. Times are read inside the page on
 * performance.now(), from the click event to the dashboard showing Connected, with the steps
 * between (microphone, session request, socket open, peer connected) so a change shows where it
 * saved. `npm run e2e:start` (build first: `npm run build`; RUNS=20 by default); figures in
 * test-results/measure/start.json, or at START_OUT (`python -m bench.browser` reads them there).
 */
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { expect, it } from 'vitest';
import { FRONTEND_DIR } from './support/agent';
import { expectMediaOnLoopback, observePeers } from './support/browser';
import { waitConnected } from './support/dashboard';
import { agentAndBrowser, percentile } from './support/lifecycle';
import { pollUntil } from './support/wait';

const OUT = resolve(FRONTEND_DIR, 'test-results/measure');
const RUNS = Number(process.env.RUNS ?? 20);
/** How long the page sits before the click: a visitor reads it first. */
const IDLE_MS = Number(process.env.IDLE_MS ?? 1500);
/** GRANTED=1: a returning visitor, who allowed the microphone before (the browser does not ask again). */
const GRANTED = process.env.GRANTED === '1';
/** SPARE=0: the browser's peer takes no transceiver, so nothing is prepared while idle (the before). */
const SPARE = process.env.SPARE !== '0';

// Marks on the page's clock: the click, each step the app takes, and the dashboard's Connected.
const TIMELINE = `
(() => {
  const marks = {};
  const mark = (name) => { if (!(name in marks)) marks[name] = performance.now(); };
  Object.defineProperty(window, '__startMarks', { value: marks });
  document.addEventListener('click', (e) => {
    if (e.target instanceof Element && e.target.closest('[data-testid="toggle"]')) mark('click');
  }, true);
  const gum = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = async (c) => { mark('micAsked'); const s = await gum(c); mark('micOpen'); return s; };
  const nativeFetch = window.fetch.bind(window);
  window.fetch = async (input, init) => {
    const post = (init?.method ?? 'GET') === 'POST';
    if (post) mark('sessionAsked');
    const r = await nativeFetch(input, init);
    if (post) mark('sessionReady');
    return r;
  };
  const NativeWS = window.WebSocket;
  window.WebSocket = class extends NativeWS {
    constructor(...a) {
      super(...a);
      mark('socketAsked');
      this.addEventListener('open', () => mark('socketOpen'));
      this.addEventListener('message', (e) => { if (String(e.data).includes('"type": "answer"') || String(e.data).includes('"type":"answer"')) mark('answer'); });
    }
    send(data) {
      if (String(data).includes('"type":"offer"')) mark('offerSent');
      super.send(data);
    }
  };
  const NativePC = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends NativePC {
    constructor(...a) {
      super(...a);
      mark('peerMade');
      this.addEventListener('iceconnectionstatechange', () => { if (this.iceConnectionState === 'connected') mark('iceConnected'); });
      this.addEventListener('connectionstatechange', () => { if (this.connectionState === 'connected') mark('peerConnected'); });
    }
  };
  new MutationObserver(() => {
    if (document.querySelector('.app')?.getAttribute('data-connection') === 'connected') mark('connected');
  }).observe(document, { subtree: true, attributes: true, attributeFilter: ['data-connection'] });
})();
`;

type Marks = Record<string, number>;


const env = agentAndBrowser(OUT);

it(`measures click -> connected over ${RUNS} page loads`, { timeout: 30_000 * RUNS }, async () => {
  const runs: Record<string, number>[] = [];
  for (let i = 0; i < RUNS; i += 1) {
    const context = await env.browser.newContext(GRANTED ? { permissions: ['microphone'] } : {});
    const page = await context.newPage();
    await observePeers(page);
    await page.addInitScript({ content: TIMELINE });
    if (!SPARE) await page.addInitScript({ content: 'RTCPeerConnection.prototype.addTransceiver = undefined;' });
    await page.goto(env.agent.url, { waitUntil: 'load', timeout: 15_000 });
    await page.waitForTimeout(IDLE_MS);
    const clicked = Date.now();
    await page.getByRole('button', { name: 'Start conversation' }).click();
    await waitConnected(page, 15_000);
    const outside = Date.now() - clicked;
    const marks = await pollUntil(
      'the page to mark Connected',
      async () => {
        const m = await page.evaluate(() => (window as unknown as { __startMarks: Marks }).__startMarks);
        return m.connected !== undefined && m.click !== undefined ? m : undefined;
      },
      { timeoutMs: 5000 },
    );
    const click = marks.click ?? NaN;
    const run: Record<string, number> = { clickToConnected: (marks.connected ?? NaN) - click, playwright: outside };
    for (const [name, t] of Object.entries(marks)) if (name !== 'click') run[name] = Math.round((t - click) * 10) / 10;
    await expectMediaOnLoopback(page, env.agent);
    runs.push(run);
    await page.getByRole('button', { name: 'End conversation' }).click();
    await context.close();
  }
  const keys = [...new Set(runs.flatMap((r) => Object.keys(r)))];
  const summary = Object.fromEntries(
    keys.map((k) => {
      const values = runs.map((r) => r[k]).filter((v): v is number => v !== undefined && Number.isFinite(v));
      return [k, { n: values.length, p50: percentile(values, 50), p95: percentile(values, 95), min: Math.min(...values), max: Math.max(...values) }];
    }),
  );
  const file = process.env.START_OUT ?? resolve(OUT, `start${SPARE ? '' : '-nospare'}${GRANTED ? '-granted' : ''}.json`);
  writeFileSync(file, `${JSON.stringify({ idleMs: IDLE_MS, spare: SPARE, granted: GRANTED, runs, summary }, null, 2)}\n`);
  console.warn(JSON.stringify(summary));
  expect(runs).toHaveLength(RUNS);
});
