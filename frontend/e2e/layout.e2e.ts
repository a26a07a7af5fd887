/**
 * The dashboard's layout at desktop and phone widths, checked on boxes the browser computed rather
 * than on pixels (no snapshot to drift with fonts), and the heard figure on a real call: the page
 * times a spoken turn itself, shows it, and reports it to the agent (docs/frontend.md).
 */
import { resolve } from 'node:path';
import type { Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { FRONTEND_DIR } from './support/agent';
import { parseShownMs, shownText, waitConnected, waitTurn } from './support/dashboard';
import { agentAndBrowser } from './support/lifecycle';
import { pollUntil } from './support/wait';

const OUT = resolve(FRONTEND_DIR, 'test-results/layout');
const DESKTOP = { width: 1280, height: 860 };
const PHONE = { width: 375, height: 740 };


const env = agentAndBrowser(OUT, { dist: true });

async function open(viewport: { width: number; height: number }): Promise<Page> {
  const context = await env.browser.newContext({ viewport });
  const page = await context.newPage();
  await page.goto(env.agent.url, { waitUntil: 'load', timeout: 15_000 });
  await page.getByRole('button', { name: 'Start conversation' }).waitFor({ timeout: 10_000 });
  return page;
}

type Box = { x: number; y: number; width: number; height: number };

async function box(page: Page, selector: string): Promise<Box> {
  const found = await page.locator(selector).first().boundingBox();
  if (!found) throw new Error(`${selector} is not laid out`);
  return found;
}

/** Room the message box leaves for text, and the width its placeholder needs in the font it is drawn in. */
async function placeholderFit(page: Page): Promise<{ room: number; needed: number; text: string }> {
  return page.locator('.composer input').evaluate((input: HTMLInputElement) => {
    const style = getComputedStyle(input);
    const context = document.createElement('canvas').getContext('2d');
    if (!context) throw new Error('no canvas');
    context.font = style.font;
    const room = input.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    return { room, needed: context.measureText(input.placeholder).width, text: input.placeholder };
  });
}

/** Nothing wider than the window (a sideways scroll on a phone). */
async function overflowX(page: Page): Promise<number> {
  return page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
}

describe('layout', () => {
  it('desktop, idle: Turn latency sits right under the call panel, no empty band between', async () => {
    const page = await open(DESKTOP);
    const call = await box(page, '.call');
    const side = await box(page, '.side');
    const conversation = await box(page, '.conversation-panel');
    const gap = parseFloat(await page.locator('.layout').evaluate((el) => getComputedStyle(el).rowGap));
    expect(side.x).toBeCloseTo(call.x, 0); // the side panels stack under the call panel ...
    expect(side.y - (call.y + call.height)).toBeLessThanOrEqual(gap + 1); // ... with only the grid's gap
    expect(conversation.x).toBeGreaterThan(call.x + call.width); // and the conversation beside them
    expect(await overflowX(page)).toBeLessThanOrEqual(0);
    const fit = await placeholderFit(page);
    expect(fit.needed, fit.text).toBeLessThanOrEqual(fit.room);
    await page.screenshot({ path: resolve(OUT, 'idle-desktop.png'), fullPage: true });
    await page.context().close();
  });

  it('phone, idle: one column, the whole placeholder shows, nothing wider than the screen', async () => {
    const page = await open(PHONE);
    const fit = await placeholderFit(page);
    expect(fit.text).toBe('Start the conversation to type');
    expect(fit.needed, fit.text).toBeLessThanOrEqual(fit.room);
    const send = await box(page, '.composer button');
    const input = await box(page, '.composer input');
    expect(send.x).toBeGreaterThanOrEqual(input.x + input.width); // on the same line, after the box
    expect(send.x + send.width).toBeLessThanOrEqual(PHONE.width);
    await expect(page.getByRole('button', { name: 'Send' }).count()).resolves.toBe(1); // named, though icon-only
    const call = await box(page, '.call');
    const conversation = await box(page, '.conversation-panel');
    expect(conversation.y).toBeGreaterThanOrEqual(call.y + call.height);
    expect(await overflowX(page)).toBeLessThanOrEqual(0);
    await page.screenshot({ path: resolve(OUT, 'idle-phone.png'), fullPage: true });
    await page.context().close();
  });
});

describe('the heard figure', () => {
  it('a spoken turn is timed in the page, shown first in Turn latency, and reported to the agent', { timeout: 90_000 }, async () => {
    const page = await open(DESKTOP);
    await page.getByRole('button', { name: 'Start conversation' }).click();
    await waitConnected(page, 15_000);
    await waitTurn(page, 'agent', 0, 45_000);
    const heard = await pollUntil(
      'the heard figure on the dashboard',
      async () => parseShownMs(await shownText(page, 'latency-heard')),
      { timeoutMs: 20_000 },
    );
    // At least the shortest pause the agent waits before a finished sentence ends the turn (200 ms,
    // VOICE_TURN_MIN_SILENCE_MS in docs/configuration.md) and within what the agent takes (docs/api.md, Client metrics).
    expect(heard).toBeGreaterThan(200);
    expect(heard).toBeLessThanOrEqual(30_000);
    const reported = await pollUntil(
      'the agent to record the page\'s report',
      async () => {
        const text = await (await fetch(`${env.agent.url}/metrics`)).text();
        const count = /^voice_client_voice_to_voice_seconds_count\{[^}]*\} (\S+)$/m.exec(text)?.[1];
        return count !== undefined && Number(count) >= 1 ? Number(count) : undefined;
      },
      { timeoutMs: 10_000 },
    );
    expect(reported).toBeGreaterThanOrEqual(1);
    await page.screenshot({ path: resolve(OUT, 'heard-desktop.png'), fullPage: true });
    await page.getByRole('button', { name: 'End conversation' }).click();
    await page.context().close();
  });
});
