/**
 * A call moved by a draining agent (docs/deploy.md, "Rolling a pool"), as the page lives it: two
 * agents on one Redis behind a relay standing in for the Service; the one holding the call is taken
 * out of the relay's rotation and gets SIGTERM, moves the call at a turn boundary and exits. The
 * page reconnects through the relay to the other agent, which resumes the session; what the user
 * says meanwhile is held and sent on the new peer connection, after which the page sends its live
 * microphone again, and the user's next question is answered there. Then a question the user starts
 * at the move's notice (a synthetic microphone, support/ear.ts) is answered by the agent that took
 * the call: the old one had stopped listening, the new media was not up yet.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { AgentProcess, freshOutputDir, requireDist } from './support/agent';
import { expectMediaOnLoopback, launchChromium, observePeers } from './support/browser';
import { sessionId, turns, waitConnected, waitTurn } from './support/dashboard';
import { Ear } from './support/ear';
import { freePort } from './support/ports';
import { TcpRelay } from './support/proxy';
import { RedisServer } from './support/redis';
import { speechWav } from './support/speech';
import { pollUntil } from './support/wait';

/** Generous for a loaded machine: a move's gap is a benchmark's figure (bench/rollout.py), not this test's. */
const TIMEOUT_MS = 30_000;
/** From the held track going in to the microphone coming back: a pause of the fake microphone and some. */
const CAUGHT_UP_MS = 10_000;

// What each of the page's peer connections sends, in order: the track it was given and each track
// put in its place (ids), so the test sees the hold's track go in and the microphone come back.
const OBSERVE_SENT = `
(() => {
  const sent = [];
  Object.defineProperty(window, '__e2eSent', { value: sent });
  const addTrack = RTCPeerConnection.prototype.addTrack;
  RTCPeerConnection.prototype.addTrack = function (track, ...streams) {
    const sender = addTrack.call(this, track, ...streams);
    sender.__e2eIndex = sent.length;
    sent.push({ sender: sent.length, track: track.id });
    return sender;
  };
  const replaceTrack = RTCRtpSender.prototype.replaceTrack;
  RTCRtpSender.prototype.replaceTrack = function (track) {
    sent.push({ sender: this.__e2eIndex ?? -1, track: track ? track.id : null, replaced: true });
    return replaceTrack.call(this, track);
  };
})();
`;

// Says the loaded question into the synthetic microphone the moment the page is told its call moved,
// once armed: before the page itself handles the notice.
const SAY_ON_MOVE = `
(() => {
  let armed = false;
  Object.defineProperty(window, '__e2eSayOnMove', { value: () => { armed = true; } });
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', (event) => {
        if (armed && typeof event.data === 'string' && event.data.includes('"session_moved"')) {
          armed = false;
          window.__ear.say('question');
        }
      });
    }
  };
})();
`;

interface Sent {
  sender: number;
  track: string | null;
  replaced?: boolean;
}

let OUT: string;
let redis: RedisServer;
const agents: AgentProcess[] = [];
let relay: TcpRelay;
let browser: Browser;
let page: Page;
/** The agent the first test moved a call off, stopped. */
let gone: AgentProcess | undefined;
const frames: { at: number; data: Record<string, unknown> }[] = [];
const timings: Record<string, number> = {};

beforeAll(async () => {
  requireDist();
  OUT = freshOutputDir('e2e-move');
  redis = await RedisServer.start(await freePort());
  for (let i = 0; i < 2; i += 1) {
    const env = { REDIS_URL: redis.url, VOICE_DRAIN_TIMEOUT_S: '30', VOICE_STT_DECODERS: '1' };
    agents.push(new AgentProcess({ port: await freePort(), logDir: OUT, env }));
  }
  await Promise.all(agents.map((agent) => agent.start()));
  relay = await TcpRelay.start(agents[0]?.port ?? 0);
  browser = await launchChromium(speechWav(OUT));
  page = await browser.newPage();
  await watch(page);
});

async function watch(on: Page): Promise<void> {
  await observePeers(on);
  await on.addInitScript({ content: OBSERVE_SENT });
  on.on('websocket', (ws) => {
    ws.on('framereceived', (frame) => {
      if (typeof frame.payload === 'string') frames.push({ at: Date.now(), data: JSON.parse(frame.payload) });
    });
  });
}

/**
 * The final transcript with the question's words among the frames from `from` on, once a finished
 * reply follows it: its text.
 */
async function answered(from: number, what: string): Promise<string> {
  const after = (start: number, match: (d: Record<string, unknown>) => boolean): number =>
    frames.findIndex((f, i) => i >= start && match(f.data));
  return pollUntil(
    what,
    () => {
      const asked = after(from, (d) => d.type === 'transcript' && d.final === true && /time/i.test(String(d.text)));
      if (asked < 0 || after(asked, (d) => d.type === 'ai_response' && d.final === true) < 0) return undefined;
      return String(frames[asked]?.data.text);
    },
    { timeoutMs: TIMEOUT_MS },
  );
}

/** The agent the call runs on (the last `session` event says; the socket may be relayed to it) and the other. */
function callAgents(): { owner: AgentProcess; heir: AgentProcess } {
  const owners = frames.flatMap((f) => (f.data.type === 'session' ? [(f.data.session as { owner?: string }).owner] : []));
  const owner = agents.find((agent) => `e2e-${agent.port}` === owners.at(-1));
  const heir = agents.find((agent) => agent !== owner);
  if (!owner || !heir) throw new Error(`no agent runs the call: ${JSON.stringify(owners)}`);
  return { owner, heir };
}

/** The call's agent leaves the Service's endpoints, then gets SIGTERM: it drains by moving the call. */
async function drainOwner(): Promise<{ heir: AgentProcess; exited: Promise<void> }> {
  const { owner, heir } = callAgents();
  relay.retarget(heir.port);
  const moved = Date.now();
  const exited = owner.stop(40_000);
  gone = owner;
  await pollUntil('the move notice', () => frames.some((f) => f.at >= moved && f.data.code === 'session_moved'), {
    timeoutMs: TIMEOUT_MS,
  });
  timings.notice_ms = Date.now() - moved;
  return { heir, exited };
}

afterEach(async () => {
  for (const agent of agents) await expectMediaOnLoopback(page, agent);
});

afterAll(async () => {
  if (OUT) writeFileSync(resolve(OUT, 'timings.json'), `${JSON.stringify(timings, null, 2)}\n`);
  await browser?.close();
  await relay?.close();
  for (const agent of agents) await agent.stop();
  await redis?.stop();
});

const sent = (): Promise<Sent[]> => page.evaluate(() => [...((window as unknown as { __e2eSent: Sent[] }).__e2eSent ?? [])]);

it('holds the speech across the move, sends the microphone again after it, and the next question is answered', async () => {
  await page.goto(relay.url, { waitUntil: 'load', timeout: 15_000 });
  await page.getByRole('button', { name: 'Start conversation' }).click();
  await waitConnected(page, TIMEOUT_MS);
  await waitTurn(page, 'agent', 0, TIMEOUT_MS);
  const id = await sessionId(page);
  expect(id).toBeTruthy();
  const [first] = await sent();
  const mic = first?.track;
  expect(mic).toBeTruthy();

  const moved = Date.now();
  const { heir, exited } = await drainOwner();
  const agentTurns = (await turns(page, 'agent')).length;
  const userTurns = (await turns(page, 'user')).length;

  // The new peer first sends the hold's track, then the microphone once the replay caught up.
  const held = await pollUntil(
    'the new peer connection to send the held speech',
    async () => (await sent()).find((s) => !s.replaced && s.sender > 0 && s.track !== mic),
    { timeoutMs: TIMEOUT_MS },
  );
  // The fake microphone pauses 4.5 s between questions: the replay catches up in that pause, long
  // before it would give up (15 s after it started, src/audio/speechHold.ts).
  await pollUntil(
    'the replay to catch up and the microphone to go back on the new peer connection',
    async () => (await sent()).some((s) => s.replaced && s.sender === held.sender && s.track === mic),
    { timeoutMs: CAUGHT_UP_MS },
  );
  timings.live_mic_ms = Date.now() - moved;
  await exited;

  // The agent that took the call hears the user's next question and answers it.
  await waitTurn(page, 'user', userTurns, TIMEOUT_MS);
  await waitTurn(page, 'agent', agentTurns, TIMEOUT_MS);
  timings.next_answer_ms = Date.now() - moved;
  expect(await sessionId(page)).toBe(id);
  const session = await heir.json<{ id: string }>(`/v2/sessions/${id}`);
  expect(session.id).toBe(id);
});

it('answers a question the user starts as the call moves', async () => {
  if (gone) await gone.start(); // a pool of two again
  gone = undefined;
  await page.close();
  frames.length = 0;
  const dir = resolve(OUT, 'question');
  mkdirSync(dir, { recursive: true });
  const question = speechWav(dir, undefined, 0, 0);
  page = await (await browser.newContext({ permissions: ['microphone'] })).newPage();
  await watch(page);
  const ear = new Ear(page);
  await ear.install();
  await page.addInitScript({ content: SAY_ON_MOVE });
  await page.goto(relay.url, { waitUntil: 'load', timeout: 15_000 });
  await page.getByRole('button', { name: 'Start conversation' }).click();
  await waitConnected(page, TIMEOUT_MS);
  await ear.load('question', question);
  const listening = async (): Promise<boolean> =>
    (await page.locator('.app').getAttribute('data-processing')) === 'listening';
  const settled = async (): Promise<void> => {
    await ear.remoteQuiet(0.8, TIMEOUT_MS);
    await pollUntil('the agent to be listening', listening, { timeoutMs: TIMEOUT_MS });
  };
  // The microphone reaches the call's agent: asked once, answered, the answer played out.
  await settled();
  const before = frames.length;
  await ear.say('question');
  await answered(before, 'the question before the move');
  await settled();

  await page.evaluate(() => (window as unknown as { __e2eSayOnMove: () => void }).__e2eSayOnMove());
  const notice = frames.length;
  const { heir, exited } = await drainOwner();
  const heard = await answered(notice, 'the question said at the notice, after the move');
  writeFileSync(resolve(OUT, 'question.txt'), `${heard}\n`);
  expect(callAgents().owner).toBe(heir);
  await exited;
});
