/**
 * Debian's Chromium, headless, driven by playwright-core, with a fake microphone that plays a WAV.
 *
 * The only things added to the page are an observer that keeps a reference to every
 * RTCPeerConnection the page creates, so the test can read the browser's own getStats (RTT, the
 * selected pair), and a meter of what the page plays to its speakers (whatever it connects to an
 * AudioContext's destination, after the page's own gain or mute); the app's code runs unmodified.
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
    // Media stays on loopback, as in every test: Chromium leaves loopback out of its candidates
    // unless allowed, and host candidates as mDNS names would not resolve here.
    args: [...microphone, '--allow-loopback-in-peer-connection', '--disable-features=WebRtcHideLocalIpsWithMdns'],
  });
}

// Every peer connection the page makes, and the addresses of the candidate pair each one selected
// (read from its own getStats when it connects), so a test can check where its media went.
const OBSERVE_PEERS = `
(() => {
  const Native = window.RTCPeerConnection;
  const peers = [];
  const pairs = [];
  Object.defineProperty(window, '__e2ePeers', { value: peers });
  Object.defineProperty(window, '__e2ePairs', { value: pairs });
  const recordPair = async (pc) => {
    const stats = [...(await pc.getStats()).values()];
    const byId = new Map(stats.map((s) => [s.id, s]));
    const transport = stats.find((s) => s.type === 'transport' && s.selectedCandidatePairId);
    const pair = transport ? byId.get(transport.selectedCandidatePairId) : undefined;
    if (!pair) return;
    const local = byId.get(pair.localCandidateId);
    const remote = byId.get(pair.remoteCandidateId);
    pairs.push({ local: local?.address ?? local?.ip ?? '?', remote: remote?.address ?? remote?.ip ?? '?' });
  };
  window.RTCPeerConnection = class extends Native {
    constructor(...args) {
      super(...args);
      peers.push(this);
      this.addEventListener('connectionstatechange', () => {
        if (this.connectionState === 'connected') void recordPair(this);
      });
    }
  };
  // What the speakers get: each node the page connects to a destination also feeds this context's
  // meter, which sums the energy it hears (mean square x seconds, the unit of getStats'
  // totalAudioEnergy). The agent's voice plays through Web Audio with the <audio> element muted,
  // so the receiver's own totalAudioEnergy (taken after the element's volume) reads nothing.
  let heard = 0;
  Object.defineProperty(window, '__e2eHeardEnergy', { get: () => heard });
  const nativeConnect = AudioNode.prototype.connect;
  const meters = new WeakMap();
  const meterOf = (ctx) => {
    let meter = meters.get(ctx);
    if (!meter) {
      meter = ctx.createScriptProcessor(2048, 1, 1);
      meter.onaudioprocess = (event) => {
        const samples = event.inputBuffer.getChannelData(0);
        let sum = 0;
        for (let i = 0; i < samples.length; i += 1) sum += samples[i] * samples[i];
        heard += sum / ctx.sampleRate;
      };
      nativeConnect.call(meter, ctx.destination); // pulled by the graph; its output stays silent
      meters.set(ctx, meter);
    }
    return meter;
  };
  AudioNode.prototype.connect = function (target, ...rest) {
    const result = nativeConnect.call(this, target, ...rest);
    if (target instanceof AudioDestinationNode && !(this instanceof ScriptProcessorNode)) {
      nativeConnect.call(this, meterOf(this.context));
    }
    return result;
  };
})();
`;

export interface SelectedPair {
  local: string;
  remote: string;
}

/** The candidate pairs the page's peer connections selected so far (local and remote address). */
export async function selectedPairs(page: Page): Promise<SelectedPair[]> {
  return page.evaluate(() => [...((window as unknown as { __e2ePairs?: SelectedPair[] }).__e2ePairs ?? [])]);
}

function isLoopback(address: string): boolean {
  return /^127\./.test(address) || address === '::1';
}

/**
 * The guard every browser test runs after each step: media went over loopback only, by the
 * browser's own getStats and by the agent's log of the pair it selected. Throws otherwise.
 */
export async function expectMediaOnLoopback(page: Page, agent: { mediaOffLoopback(): unknown[] }): Promise<void> {
  const pairs = await selectedPairs(page);
  const browserOff = pairs.filter((p) => !isLoopback(p.local) || !isLoopback(p.remote));
  if (browserOff.length > 0) throw new Error(`media left loopback: the browser selected ${JSON.stringify(browserOff[0])}`);
  const agentOff = agent.mediaOffLoopback();
  if (agentOff.length > 0) throw new Error(`media left loopback: the agent selected ${JSON.stringify(agentOff[0])}`);
}

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

/** The energy the page has played to its speakers so far (mean square x seconds). */
export async function heardEnergy(page: Page): Promise<number> {
  return page.evaluate(() => (window as unknown as { __e2eHeardEnergy?: number }).__e2eHeardEnergy ?? 0);
}

export async function peerCount(page: Page): Promise<number> {
  return page.evaluate(() => (window as unknown as { __e2ePeers?: unknown[] }).__e2ePeers?.length ?? 0);
}
