/**
 * Debian's Chromium, headless, driven by playwright-core, with a fake microphone that plays a WAV.
 *
 * The only thing added to the page is an observer that keeps a reference to every
 * RTCPeerConnection the page creates, so the test can read the browser's own getStats (inbound
 * audio energy, RTT); the app's code runs unmodified.
 */
import { existsSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';
import { summarizeStats, type NetworkStats } from '../../src/webrtc/stats';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/**
 * With `wav`, the microphone is a fake device playing that file and every permission prompt is
 * accepted. Without it, no prompt is ever answered, so the page sees what a user clicking "Block"
 * produces (NotAllowedError); Chromium's fake prompt UI would override a denied permission.
 */
export async function launchChromium(wav: string | null): Promise<Browser> {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: apt-get install chromium (or set CHROMIUM_PATH)`);
  const microphone = wav
    ? ['--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream', `--use-file-for-fake-audio-capture=${wav}`]
    : ['--use-fake-device-for-media-stream'];
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 30_000,
    // Host candidates as mDNS names do not resolve here; keep plain loopback addresses.
    args: [...microphone, '--disable-features=WebRtcHideLocalIpsWithMdns'],
  });
}

const OBSERVE_PEERS = `
(() => {
  const Native = window.RTCPeerConnection;
  const peers = [];
  Object.defineProperty(window, '__e2ePeers', { value: peers });
  window.RTCPeerConnection = class extends Native {
    constructor(...args) { super(...args); peers.push(this); }
  };
})();
`;

export async function observePeers(page: Page): Promise<void> {
  await page.addInitScript({ content: OBSERVE_PEERS });
}

/** getStats of the page's newest peer connection, summarized; null when there is none. */
export async function peerStats(page: Page): Promise<NetworkStats | null> {
  const report = await page.evaluate(async () => {
    const peers = (window as unknown as { __e2ePeers?: RTCPeerConnection[] }).__e2ePeers ?? [];
    const pc = peers.at(-1);
    if (!pc || pc.connectionState === 'closed') return null;
    const stats = await pc.getStats();
    return [...stats.values()] as Record<string, unknown>[];
  });
  return report === null ? null : summarizeStats(report);
}

export async function peerCount(page: Page): Promise<number> {
  return page.evaluate(() => (window as unknown as { __e2ePeers?: unknown[] }).__e2ePeers?.length ?? 0);
}
