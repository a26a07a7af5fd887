/**
 * What the ear hears: voice-to-voice and barge-in timed inside the page (support/ear.ts), for
 * `bench/browser.py` and docs/performance.md. Not a test: nothing here asserts a target.
 *
 * Each run is a fresh page (new context, new session) against one agent process. Per run: TURNS
 * questions, each timed from the end of the user's speech on the microphone tap to the first sound
 * of the reply on the remote tap; then BARGE_INS interruptions, each spoken once a story has been
 * playing for a second (0.45 s more for each next one) and timed from its speech onset to the last
 * sound of the agent before the user stopped talking. An interruption whose onset fell in a pause of
 * the story is tried again later in a new story (up to 3 times). A turn with no reply, or a barge-in
 * the agent was not speaking for or did not stop for, is a counted failure with its reason, never a
 * time.
 *
 * `npm run e2e:ear` (build first: `npm run build`); RUNS, TURNS, BARGE_INS set the counts, EAR_OUT
 * the JSON's path, EAR_LOGS the directory under test-results/ for the agent's log and the speech
 * (`ear` by default; emptied first, so two runs at once each need their own). Every VOICE_* variable in the environment is passed to the agent, so one
 * configuration or another is measured by the same script.
 */
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { AgentProcess, FRONTEND_DIR, freshOutputDir, requireDist } from './support/agent';
import { expectMediaOnLoopback, launchChromium, observePeers } from './support/browser';
import { type ShownHeard, shownHeard, waitConnected } from './support/dashboard';
import {
  type ClockReading,
  type ContextInfo,
  Ear,
  type ReceiverReading,
  bufferBetween,
  firstLoud,
  lastLoud,
  latest,
  loudTimes,
} from './support/ear';
import { freePort } from './support/ports';
import { speechWav } from './support/speech';
import { pollUntil } from './support/wait';

const RUNS = Number(process.env.RUNS ?? 5);
const TURNS = Number(process.env.TURNS ?? 6);
const BARGE_INS = Number(process.env.BARGE_INS ?? 3);
const OUT_FILE = process.env.EAR_OUT ?? resolve(FRONTEND_DIR, 'test-results/ear/ear.json');

const PHRASES = {
  question: 'what time is it',
  story: 'please tell me a story',
  interruption: 'wait, what time is it',
};
/** The agent's audio is over when it has been silent this long after the page says listening. */
const QUIET_S = 0.6;
/**
 * How long the story plays (its sound, on the remote tap) before the user interrupts it: the first
 * barge-in of a run after this, each next one STORY_STEP_S later, so the interruptions land at
 * different points of the story's words and pauses rather than always before the same comma.
 */
const STORY_HEARD_S = 1.0;
const STORY_STEP_S = 0.45;
/** The agent sounded this close before the interruption's onset, or the user spoke into a pause. */
const SOUNDING_S = 0.06;
/** Interruptions tried per barge-in while each lands in a pause of the story (not timed). */
const BARGE_IN_ATTEMPTS = 3;
/** A reply, or the story, not heard within this is a failed turn. */
const REPLY_TIMEOUT_MS = 15_000;
/** The agent still sounding this close to the end of the interruption never stopped for it. */
const STILL_TALKING_S = 0.04;
/** How long after the reply is heard here the dashboard may take to show its own figure for the turn. */
const DASHBOARD_WAIT_MS = 3_000;

interface Turn {
  voiceToVoiceMs?: number;
  /** The browser's playout buffer over the turn (its mean delay from the question to the reply heard). */
  bufferMs?: number;
  /** The reply began before the user's speech ended (it talked over the user). */
  overlapped?: boolean;
  /**
   * The figure the dashboard showed for this turn (the app's own heard measurement, read off its
   * Turn latency panel), or absent when it showed none within DASHBOARD_WAIT_MS of the reply.
   */
  dashboardMs?: number;
  /** The end of the user's speech and the first sound of the reply as Unix ms (support/ear.ts, unixMs). */
  endUnixMs?: number;
  replyUnixMs?: number;
  /** The agent's log line for the same turn (agentSteps): where its share of the time went. */
  agent?: AgentSteps;
  failed?: string;
}

/**
 * The agent's "turn complete" log line for a turn (pipeline/turn_metrics.py): its last voiced
 * frame's Unix time, and in ms after it the voice's last loud frame, the turn taken, the final
 * transcript, the first reply audio into the track and the first reply frame sent.
 */
interface AgentSteps {
  voice_end_unix_ms: number;
  loud_end_ms?: number;
  taken_ms?: number;
  stt_ms?: number;
  audio_ready_ms?: number;
  voice_to_voice_ms?: number;
}

/**
 * The agent's turn whose voice ended closest to the page's, within this window (ms), is the same
 * turn: its frames may come that late on a loaded machine, and the next question is seconds away.
 */
const SAME_TURN_MS = { before: 100, after: 1500 };

function agentSteps(dir: string): AgentSteps[] {
  const steps: AgentSteps[] = [];
  for (const name of readdirSync(dir).filter((n) => n.startsWith('agent-') && n.endsWith('.log'))) {
    for (const line of readFileSync(resolve(dir, name), 'utf8').split('\n')) {
      if (!line.includes('"turn complete"')) continue;
      const record = JSON.parse(line) as Partial<AgentSteps>;
      if (typeof record.voice_end_unix_ms === 'number') steps.push(record as AgentSteps);
    }
  }
  return steps;
}

/** Gives each timed turn the agent's record of it, matched on the wall clock; each record at most once. */
function attachAgentSteps(turns: Turn[], steps: AgentSteps[]): void {
  const free = [...steps];
  for (const turn of turns) {
    const end = turn.endUnixMs;
    if (end === undefined) continue;
    const lag = (s: AgentSteps): number => s.voice_end_unix_ms - end;
    const candidates = free.filter((s) => lag(s) >= -SAME_TURN_MS.before && lag(s) <= SAME_TURN_MS.after);
    const best = candidates.sort((a, b) => Math.abs(lag(a)) - Math.abs(lag(b)))[0];
    if (best) {
      turn.agent = best;
      free.splice(free.indexOf(best), 1);
    }
  }
}

interface BargeIn {
  bargeInMs?: number;
  /** The browser's playout buffer while the interruption was spoken. */
  bufferMs?: number;
  failed?: string;
}

interface Run {
  run: number;
  context: ContextInfo | null;
  /** The page's audio clock and wall clock at the first and last turn of the run. */
  clock: (ClockReading | null)[];
  receiver: ReceiverReading | null;
  turns: Turn[];
  bargeIns: BargeIn[];
}

/** The agent's configuration under measurement: VOICE_* from this process, minus the harness's own. */
function agentEnv(): Record<string, string> {
  return Object.fromEntries(
    Object.entries(process.env).filter(
      (e): e is [string, string] => e[0].startsWith('VOICE_') && e[0] !== 'VOICE_PYTHON' && e[1] !== undefined,
    ),
  );
}

/**
 * The agent's own account of the runs, from its /metrics at the end: which end-of-turn outcome
 * took each turn, the silence it waited, and what it made of each sound over a reply. It explains
 * the page's figures; it is not one of them.
 */
interface AgentAccount {
  turnDecisions: Record<string, number>;
  /** Cumulative counts of voice_turn_end_silence_seconds by upper bound (s), and their sum. */
  turnEndSilence: { buckets: [number, number][]; sumS: number; count: number };
  interruptions: Record<string, number>;
  /** Replies drafted during the pause, by what became of them (used, missed, dropped). */
  drafts: Record<string, number>;
  /** How long the agent's outbound audio fell behind its 20 ms clock, and in how many frames. */
  outputStalledS: number;
  outputLateFrames: number;
}

/** Samples of one metric family, by the value of one label (summed over the other labels). */
function byLabel(text: string, metric: string, label: string): Record<string, number> {
  const out: Record<string, number> = {};
  const line = new RegExp(`^${metric}\\{([^}]*)\\} (\\S+)$`, 'gm');
  for (const m of text.matchAll(line)) {
    const value = new RegExp(`${label}="([^"]*)"`).exec(m[1] ?? '')?.[1];
    if (value !== undefined) out[value] = (out[value] ?? 0) + Number(m[2]);
  }
  return out;
}

/** An unlabelled sample's value (0 when absent). */
function plain(text: string, metric: string): number {
  return Number(new RegExp(`^${metric} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);
}

async function agentAccount(url: string): Promise<AgentAccount> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const silence = 'voice_turn_end_silence_seconds';
  const total = (name: string): number => Object.values(byLabel(text, name, 'detector')).reduce((a, b) => a + b, 0);
  return {
    turnDecisions: byLabel(text, 'voice_turn_decisions_total', 'outcome'),
    turnEndSilence: {
      buckets: Object.entries(byLabel(text, `${silence}_bucket`, 'le'))
        .map(([le, n]): [number, number] => [Number(le), n])
        .filter(([le]) => Number.isFinite(le))
        .sort((a, b) => a[0] - b[0]),
      sumS: total(`${silence}_sum`),
      count: total(`${silence}_count`),
    },
    interruptions: byLabel(text, 'voice_interruptions_total', 'kind'),
    drafts: byLabel(text, 'voice_preemptive_drafts_total', 'outcome'),
    outputStalledS: plain(text, 'voice_output_stalled_seconds_total'),
    outputLateFrames: plain(text, 'voice_output_late_frames_total'),
  };
}

let agent: AgentProcess;
let agentLogs: string;
let browser: Browser;
let phrases: Record<keyof typeof PHRASES, string>;

beforeAll(async () => {
  requireDist();
  const out = freshOutputDir(process.env.EAR_LOGS ?? 'ear');
  phrases = Object.fromEntries(
    Object.entries(PHRASES).map(([name, text]) => {
      const dir = resolve(out, name);
      mkdirSync(dir, { recursive: true });
      return [name, speechWav(dir, text, 0, 0)];
    }),
  ) as Record<keyof typeof PHRASES, string>;
  agentLogs = out;
  agent = new AgentProcess({ port: await freePort(), logDir: out, env: agentEnv() });
  await agent.start();
  // The microphone is the page's own (support/ear.ts): Chromium's is never opened.
  browser = await launchChromium(null);
});

afterAll(async () => {
  await browser?.close();
  await agent?.stop();
});

async function processing(page: Page): Promise<string | null> {
  return page.locator('.app').getAttribute('data-processing');
}

/** The agent is listening and its audio has been silent for QUIET_S: a turn can start. */
async function idle(page: Page, ear: Ear, timeoutMs = 30_000): Promise<void> {
  await pollUntil('the agent to be listening', async () => (await processing(page)) === 'listening', { timeoutMs });
  await ear.remoteQuiet(QUIET_S, timeoutMs);
  ear.forget(ear.heardUntil() - QUIET_S);
}

/** The wait's value, or undefined when it timed out; any other error is the run's, not the turn's. */
async function unlessTimedOut<T>(wait: Promise<T>): Promise<T | undefined> {
  try {
    return await wait;
  } catch (error) {
    if (error instanceof Error && error.message.startsWith('timed out')) return undefined;
    throw error;
  }
}

/**
 * The dashboard's heard figure once it shows a new one: more turns counted than `before`, or (its
 * count stops at the last 20 turns) another figure. Undefined if it never does.
 */
async function dashboardFigure(page: Page, before: ShownHeard): Promise<number | undefined> {
  const shown = await unlessTimedOut(
    pollUntil(
      'the dashboard to show this turn\'s heard figure',
      async () => {
        const now = await shownHeard(page);
        return now.turns > before.turns || now.ms !== before.ms ? now : undefined;
      },
      { timeoutMs: DASHBOARD_WAIT_MS, intervalMs: 50 },
    ),
  );
  return shown?.ms;
}

async function turn(page: Page, ear: Ear): Promise<Turn> {
  await idle(page, ear);
  const before = await ear.bufferTotals();
  const shownBefore = await shownHeard(page);
  const spoken = await ear.say('question');
  const reply = await unlessTimedOut(
    ear.until('the reply', () => firstLoud(ear.remote, spoken.onset), REPLY_TIMEOUT_MS),
  );
  if (reply === undefined) return { failed: 'no reply' };
  const bufferMs = bufferBetween(before, await ear.bufferTotals());
  const dashboardMs = await dashboardFigure(page, shownBefore);
  const ms = (reply - spoken.end) * 1000;
  const endUnixMs = ear.unixMs(spoken.end);
  const replyUnixMs = ear.unixMs(reply);
  return {
    voiceToVoiceMs: Math.round(ms * 10) / 10,
    ...(endUnixMs !== undefined && replyUnixMs !== undefined ? { endUnixMs, replyUnixMs } : {}),
    ...(bufferMs !== undefined ? { bufferMs } : {}),
    ...(ms < 0 ? { overlapped: true } : {}),
    ...(dashboardMs !== undefined ? { dashboardMs } : {}),
  };
}

/** A barge-in that lands in a pause of the story is not one (nothing sounded to stop): tried again. */
async function bargeIn(page: Page, ear: Ear, index: number): Promise<BargeIn> {
  let result: BargeIn = { failed: 'not tried' };
  for (let attempt = 0; attempt < BARGE_IN_ATTEMPTS; attempt += 1) {
    result = await bargeInOnce(page, ear, STORY_HEARD_S + STORY_STEP_S * (index + attempt));
    if (result.failed !== 'agent was not speaking') return result;
  }
  return result;
}

async function bargeInOnce(page: Page, ear: Ear, storyHeardS: number): Promise<BargeIn> {
  await idle(page, ear);
  const asked = await ear.say('story');
  const enough = Math.round(storyHeardS / ear.blockS);
  const started = await unlessTimedOut(
    ear.until('the story', () => firstLoud(ear.remote, asked.onset), REPLY_TIMEOUT_MS),
  );
  const heard =
    started !== undefined &&
    (await unlessTimedOut(
      ear.until('a second of the story', () => loudTimes(ear.remote, started).length >= enough, REPLY_TIMEOUT_MS),
    ));
  if (!heard) return { failed: 'the story was not heard' };
  const before = await ear.bufferTotals();
  const cut = await ear.say('interruption');
  await ear.until('the agent audio up to the end of the interruption', () => latest(ear.remote) >= cut.end, 5_000);
  const bufferMs = bufferBetween(before, await ear.bufferTotals());
  const buffered = bufferMs !== undefined ? { bufferMs } : {};
  // The agent must be sounding as the user starts: an onset in a pause between the story's words
  // would time the pause, not the stop.
  const speaking = lastLoud(ear.remote, cut.onset - SOUNDING_S, cut.onset + ear.blockS);
  const last = lastLoud(ear.remote, cut.onset, cut.end);
  if (speaking === undefined || last === undefined) return { failed: 'agent was not speaking', ...buffered };
  if (last + ear.blockS >= cut.end - STILL_TALKING_S) return { failed: 'agent did not stop', ...buffered };
  return { bargeInMs: Math.round((last + ear.blockS - cut.onset) * 10000) / 10, ...buffered };
}

it(`times voice-to-voice and barge-in inside the page over ${RUNS} runs`, { timeout: 120_000 * RUNS }, async () => {
  const runs: Run[] = [];
  for (let i = 0; i < RUNS; i += 1) {
    // Granted, as a user would: Chromium offers its host candidates (loopback here) only to a page
    // with microphone permission, and the synthetic microphone never asks for it.
    const context = await browser.newContext({ permissions: ['microphone'] });
    const page = await context.newPage();
    page.on('pageerror', (error) => console.error('page error:', error));
    await observePeers(page);
    const ear = new Ear(page);
    await ear.install();
    await page.goto(agent.url, { waitUntil: 'load', timeout: 15_000 });
    await page.getByRole('button', { name: 'Start conversation' }).click();
    await waitConnected(page, 15_000);
    for (const [name, wav] of Object.entries(phrases)) await ear.load(name, wav);
    const run: Run = {
      run: i + 1,
      context: await ear.info(),
      clock: [await ear.clock()],
      receiver: null,
      turns: [],
      bargeIns: [],
    };
    for (let t = 0; t < TURNS; t += 1) {
      run.turns.push(await turn(page, ear));
      console.warn(`run ${i + 1} turn ${t + 1}: ${JSON.stringify(run.turns.at(-1))}`);
    }
    for (let b = 0; b < BARGE_INS; b += 1) {
      run.bargeIns.push(await bargeIn(page, ear, b));
      console.warn(`run ${i + 1} barge-in ${b + 1}: ${JSON.stringify(run.bargeIns.at(-1))}`);
    }
    // The run's figures are in: an agent still talking here (a loaded machine) costs the closing
    // readings their quiet, not the run.
    await unlessTimedOut(idle(page, ear));
    run.clock.push(await ear.clock());
    run.receiver = await ear.receiver();
    await expectMediaOnLoopback(page, agent);
    runs.push(run);
    await page.getByRole('button', { name: 'End conversation' }).click();
    await context.close();
  }
  // The agent logs a turn once its reply has played: all are in by now.
  attachAgentSteps(
    runs.flatMap((r) => r.turns),
    agentSteps(agentLogs),
  );
  mkdirSync(dirname(OUT_FILE), { recursive: true });
  const account = await agentAccount(agent.url);
  const result = { runs: RUNS, turnsPerRun: TURNS, bargeInsPerRun: BARGE_INS, perRun: runs, agent: account };
  writeFileSync(OUT_FILE, `${JSON.stringify(result, null, 2)}\n`);
  expect(runs).toHaveLength(RUNS);
});
