/** Reads the dashboard the way a person would: through what it renders (roles, test ids). */
import type { Page } from 'playwright-core';
import { heardEnergy } from './browser';
import { pollUntil } from './wait';

export type Role = 'user' | 'agent';

export async function connection(page: Page): Promise<string | null> {
  return page.locator('.app').getAttribute('data-connection');
}

export async function sessionId(page: Page): Promise<string | null> {
  const id = page.getByTestId('session-id');
  return (await id.count()) > 0 ? id.innerText() : null;
}

/** The text under a test id as rendered now, undefined while it is not: a poll's probe never waits itself. */
export async function shownText(page: Page, testId: string): Promise<string | undefined> {
  return (await page.getByTestId(testId).allInnerTexts())[0];
}

/** A duration as the dashboard prints it (src/pages/statusInfo.ts, formatMs), in ms; undefined for '--'. */
export function parseShownMs(text: string | undefined): number | undefined {
  const match = /^(\d+) ms$|^([\d.]+) s$/.exec(text ?? '');
  if (!match) return undefined;
  return match[1] !== undefined ? Number(match[1]) : Math.round(Number(match[2]) * 1000);
}

/** Turn latency's heard figures as shown: how many turns it counts, and the last one (ms). */
export interface ShownHeard {
  turns: number;
  ms: number | undefined;
}

/**
 * The heard figure the dashboard shows now (Turn latency: the last one, in ms) and how many turns
 * it has counted ("Median heard, N turns"), so a reader can tell a new figure from the last one.
 */
export async function shownHeard(page: Page): Promise<ShownHeard> {
  const ms = parseShownMs(await shownText(page, 'latency-heard'));
  const label = (await page.locator('[data-testid="latency"] dt').allInnerTexts()).find((t) => t.startsWith('Median heard'));
  return { turns: Number(/(\d+) turns?$/.exec(label ?? '')?.[1] ?? 0), ms };
}

export async function turns(page: Page, role: Role): Promise<string[]> {
  return page.getByTestId(`turn-${role}`).allInnerTexts();
}

export async function waitConnected(page: Page, timeoutMs: number): Promise<void> {
  await pollUntil('the dashboard to show Connected', async () => (await connection(page)) === 'connected', {
    timeoutMs,
  });
}

/** Waits for more than `after` turns of `role`; returns the newest one's text. */
export async function waitTurn(page: Page, role: Role, after: number, timeoutMs: number): Promise<string> {
  return pollUntil(
    `${role} turn #${after + 1}`,
    async () => {
      const all = await turns(page, role);
      return all.length > after ? all.at(-1) : undefined;
    },
    { timeoutMs },
  );
}

/** Waits until what the page has played to its speakers carries energy above `above`. */
export async function waitHeardEnergy(page: Page, above: number, timeoutMs: number): Promise<number> {
  return pollUntil(
    `audio played with energy above ${above.toFixed(4)}`,
    async () => {
      const energy = await heardEnergy(page);
      return energy > above ? energy : undefined;
    },
    { timeoutMs, intervalMs: 50 },
  );
}
