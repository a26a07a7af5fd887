/**
 * An ear inside the page: the user's microphone and the agent's voice timed on one audio clock.
 *
 * Injected before the app loads and sharing none of its code (not its level meter, not its stats):
 * `navigator.mediaDevices.getUserMedia` answers with a synthetic microphone, a
 * MediaStreamAudioDestinationNode the measurement feeds decoded speech into when it chooses. The
 * agent is heard where the page plays it: the page's AudioContext is the ear's own (the
 * `AudioContext` constructor hands out the one context), and whatever the page connects to its
 * speakers (`destination`) is tapped as well, after any gain or mute of the page's, so what the
 * remote track carries but the page silences is not heard. A page that plays the agent some other
 * way (a bare <audio> element) is not heard at all, and its turns fail. Both taps record through an
 * AudioWorklet every 128-sample render block's start time (`currentTime`) and RMS level, so an end
 * of speech on the microphone and the first sound of the reply are read off the one clock the page
 * plays audio on. The synthetic
 * microphone gives exact control of when the user speaks (a looping fake-device WAV would not let a
 * barge-in land while the agent is talking); the app receives it as it would a real microphone's
 * track, without the browser's capture processing in front of it.
 *
 * Analysis is here, in Node, over the blocks the page recorded: the page only records.
 */
import { readFileSync } from 'node:fs';
import type { Page } from 'playwright-core';
import { pollUntil } from './wait';

/** Clock readings this close (s, audio clock) to a time are used to put it on the wall clock. */
const OFFSET_SPAN_S = 5;

/** A block is sound above this RMS (-50 dBFS, the loudness floor the Python probe in bench/ uses). */
export const LOUD_RMS = 10 ** (-50 / 20);

const WORKLET = `
class EarTap extends AudioWorkletProcessor {
  constructor() {
    super();
    this.batch = [];
  }
  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel) {
      let sum = 0;
      for (let i = 0; i < channel.length; i += 1) sum += channel[i] * channel[i];
      this.batch.push(currentTime, Math.sqrt(sum / channel.length));
      // About 43 ms of blocks per message at 48 kHz: the reader polls, it never needs each block at once.
      if (this.batch.length >= 32) {
        this.port.postMessage(this.batch);
        this.batch = [];
      }
    }
    return true;
  }
}
registerProcessor('ear-tap', EarTap);
`;

const EAR = `
(() => {
  const WORKLET = ${JSON.stringify(WORKLET)};
  const taps = { mic: [], remote: [] };
  const buffers = new Map();
  const keep = [];
  let ctx = null;
  let bus = null;
  let sink = null;
  let ready = null;
  const NativeContext = window.AudioContext;
  const nativeConnect = AudioNode.prototype.connect;
  let speakers = null;
  const context = () => {
    if (ctx) return ctx;
    ctx = new NativeContext({ latencyHint: 'interactive' });
    // The page closing "its" context at the end of a call must not stop the ear.
    ctx.close = () => Promise.resolve();
    bus = ctx.createGain();
    // A microphone is never digitally silent, and Chromium sends no packets for a WebAudio track
    // whose graph is: the agent would hear no silence after the user's words and wait for more.
    // Room noise at about -85 dBFS keeps the track flowing, far below anything heard as speech.
    const noise = ctx.createBuffer(1, ctx.sampleRate, ctx.sampleRate);
    const samples = noise.getChannelData(0);
    for (let i = 0; i < samples.length; i += 1) samples[i] = (Math.random() * 2 - 1) * 1e-4;
    const floor = ctx.createBufferSource();
    floor.buffer = noise;
    floor.loop = true;
    floor.connect(bus);
    floor.start();
    // The taps must be pulled by the graph to run; a muted sink does that without playing them.
    sink = ctx.createGain();
    sink.gain.value = 0;
    sink.connect(ctx.destination);
    const url = URL.createObjectURL(new Blob([WORKLET], { type: 'application/javascript' }));
    ready = ctx.audioWorklet.addModule(url);
    return ctx;
  };
  const tapNode = async (name, source) => {
    const c = context();
    await ready;
    const node = new AudioWorkletNode(c, 'ear-tap', { channelCount: 1, channelCountMode: 'explicit' });
    node.port.onmessage = (event) => { for (const v of event.data) taps[name].push(v); };
    nativeConnect.call(source, node);
    nativeConnect.call(node, sink);
    keep.push(source, node);
  };
  const tap = (name, stream) => tapNode(name, context().createMediaStreamSource(stream));
  function SharedContext() { return context(); }
  SharedContext.prototype = NativeContext.prototype;
  window.AudioContext = SharedContext;
  // What the page sends to its speakers, summed on one bus as the speakers sum it.
  AudioNode.prototype.connect = function (target, ...rest) {
    const result = nativeConnect.call(this, target, ...rest);
    if (ctx && target === ctx.destination && this !== sink) {
      if (!speakers) {
        speakers = ctx.createGain();
        void tapNode('remote', speakers);
      }
      nativeConnect.call(this, speakers);
    }
    return result;
  };
  navigator.mediaDevices.getUserMedia = async (constraints) => {
    if (!constraints || !constraints.audio || constraints.video) {
      throw new DOMException('the synthetic microphone has audio only', 'NotFoundError');
    }
    const c = context();
    await c.resume();
    const destination = c.createMediaStreamDestination();
    destination.channelCount = 1;
    bus.connect(destination);
    await tap('mic', destination.stream);
    return destination.stream;
  };
  const peers = [];
  const Native = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends Native {
    constructor(...args) {
      super(...args);
      peers.push(this);
    }
  };
  Object.defineProperty(window, '__ear', {
    value: {
      async load(name, base64) {
        const bytes = Uint8Array.from(atob(base64), (ch) => ch.charCodeAt(0));
        const buffer = await context().decodeAudioData(bytes.buffer);
        buffers.set(name, buffer);
        return buffer.duration;
      },
      say(name) {
        const source = ctx.createBufferSource();
        source.buffer = buffers.get(name);
        source.connect(bus);
        source.start();
        return ctx.currentTime;
      },
      blocks(name, from) { return taps[name].slice(from); },
      info() {
        if (!ctx) return null;
        return { state: ctx.state, sampleRate: ctx.sampleRate, baseLatency: ctx.baseLatency, outputLatency: ctx.outputLatency };
      },
      clock() { return ctx && [ctx.currentTime, performance.now() / 1000]; },
      unixOffset() { return ctx && [ctx.currentTime, performance.timeOrigin + performance.now() - ctx.currentTime * 1000]; },
      async receiver() {
        const pc = peers.at(-1);
        if (!pc) return null;
        const stats = [...(await pc.getStats()).values()];
        return stats.find((s) => s.type === 'inbound-rtp' && s.kind === 'audio') ?? null;
      },
    },
  });
})();
`;

interface PageEar {
  load(name: string, base64: string): Promise<number>;
  say(name: string): number;
  blocks(name: Tap, from: number): number[];
  info(): ContextInfo | null;
  clock(): [number, number] | null;
  unixOffset(): [number, number] | null;
  receiver(): Promise<Record<string, number> | null>;
}

/** The page's audio clock against its wall clock (both in s): the blocks' times are only as good as this. */
export interface ClockReading {
  audio: number;
  wall: number;
}

/**
 * What the browser's own receiver did with the agent's audio (its inbound-rtp stats, over the
 * call): the playout buffer the reply waited in, and the share of samples it had to invent
 * because packets came late. Not part of any timing; it explains them.
 */
export interface ReceiverReading {
  /** RTP interarrival jitter (RFC 3550) of the agent's packets as they arrived. */
  jitterMs: number;
  jitterBufferMs: number;
  targetDelayMs: number;
  concealedPercent: number;
}

/** Running totals of the receiver's inbound-rtp stats: seconds of buffering summed over the samples played. */
export interface BufferTotals {
  delayS: number;
  emitted: number;
}

/**
 * How long the browser held the agent's audio, on average, between two readings (ms): the share
 * of a timed moment that sat in its playout buffer. Undefined when nothing was played between.
 */
export function bufferBetween(a: BufferTotals | null, b: BufferTotals | null): number | undefined {
  if (!a || !b || b.emitted <= a.emitted) return undefined;
  return Math.round(((b.delayS - a.delayS) / (b.emitted - a.emitted)) * 10000) / 10;
}

declare global {
  interface Window {
    __ear: PageEar;
  }
}

export type Tap = 'mic' | 'remote';

export interface ContextInfo {
  state: string;
  sampleRate: number;
  baseLatency: number;
  outputLatency: number;
}

/** One render block as the worklet saw it: start time on the page's audio clock (s) and RMS level. */
export interface Block {
  t: number;
  rms: number;
}

/** Start times of the loud blocks in [from, to]. */
export function loudTimes(blocks: readonly Block[], from: number, to = Infinity): number[] {
  return blocks.filter((b) => b.rms > LOUD_RMS && b.t >= from && b.t <= to).map((b) => b.t);
}

/** Start time of the first loud block in [from, to], or undefined. */
export function firstLoud(blocks: readonly Block[], from: number, to = Infinity): number | undefined {
  const times = loudTimes(blocks, from, to);
  return times.length > 0 ? times.reduce((a, b) => Math.min(a, b)) : undefined;
}

/** Start time of the last loud block in [from, to], or undefined. */
export function lastLoud(blocks: readonly Block[], from: number, to: number): number | undefined {
  const times = loudTimes(blocks, from, to);
  return times.length > 0 ? times.reduce((a, b) => Math.max(a, b)) : undefined;
}

/** The latest block time recorded, -Infinity before the first. */
export function latest(blocks: readonly Block[]): number {
  return blocks.reduce((m, b) => Math.max(m, b.t), -Infinity);
}

/** One utterance as the microphone tap heard it: first and last loud sound, on the page clock (s). */
export interface Utterance {
  said: number;
  onset: number;
  end: number;
}

/** The page's ear, read from Node: the blocks so far of both taps, and the synthetic microphone. */
export class Ear {
  mic: Block[] = [];
  remote: Block[] = [];
  private readonly durations = new Map<string, number>();
  /**
   * Unix ms minus the audio clock's ms, read on the page's main thread at each sync, with the audio
   * time of the reading. The main thread sees the audio clock move in steps of the render callback
   * (~10 ms), so the smallest of the readings near a time is when the render thread got there.
   */
  private readonly offsets: { t: number; ms: number }[] = [];
  /** How many values of each tap's page-side record have been fetched. */
  private readonly fetched = { mic: 0, remote: 0 };
  blockS = 128 / 48_000;

  constructor(private readonly page: Page) {}

  /** Adds the synthetic microphone and the taps to the page; call before it loads. */
  async install(): Promise<void> {
    await this.page.addInitScript({ content: EAR });
  }

  /** Context facts (sample rate, latencies); null until the app has asked for the microphone. */
  async info(): Promise<ContextInfo | null> {
    return this.page.evaluate(() => window.__ear.info());
  }

  async clock(): Promise<ClockReading | null> {
    const both = await this.page.evaluate(() => window.__ear.clock());
    return both && { audio: both[0], wall: both[1] };
  }

  async receiver(): Promise<ReceiverReading | null> {
    const s = await this.page.evaluate(() => window.__ear.receiver());
    if (!s) return null;
    const per = (total: number | undefined): number =>
      Math.round(((total ?? NaN) / (s.jitterBufferEmittedCount ?? NaN)) * 10000) / 10;
    return {
      jitterMs: Math.round((s.jitter ?? NaN) * 10000) / 10,
      jitterBufferMs: per(s.jitterBufferDelay),
      targetDelayMs: per(s.jitterBufferTargetDelay),
      concealedPercent: Math.round(((s.concealedSamples ?? NaN) / (s.totalSamplesReceived ?? NaN)) * 1000) / 10,
    };
  }

  /** The receiver's running playout-buffer totals; two readings give its mean over the span between. */
  async bufferTotals(): Promise<BufferTotals | null> {
    const s = await this.page.evaluate(() => window.__ear.receiver());
    const delayS = s?.jitterBufferDelay;
    const emitted = s?.jitterBufferEmittedCount;
    return delayS === undefined || emitted === undefined ? null : { delayS, emitted };
  }

  /** Decodes a WAV into the page, ready for say(). */
  async load(name: string, wav: string): Promise<void> {
    const base64 = readFileSync(wav).toString('base64');
    const duration = await this.page.evaluate(
      ([n, b]) => window.__ear.load(n, b),
      [name, base64] as const,
    );
    this.durations.set(name, duration);
    const info = await this.info();
    if (info) this.blockS = 128 / info.sampleRate;
  }

  /** Fetches the blocks recorded since the last sync. */
  async sync(): Promise<void> {
    const [mic, remote, offset] = await this.page.evaluate(
      ([m, r]) => {
        const ear = window.__ear;
        return [ear.blocks('mic', m), ear.blocks('remote', r), ear.unixOffset()] as const;
      },
      [this.fetched.mic, this.fetched.remote] as const,
    );
    if (offset) this.offsets.push({ t: offset[0], ms: offset[1] });
    this.fetched.mic += mic.length;
    this.fetched.remote += remote.length;
    for (const [flat, into] of [
      [mic, this.mic],
      [remote, this.remote],
    ] as const) {
      for (let i = 0; i + 1 < flat.length; i += 2) into.push({ t: flat[i] ?? NaN, rms: flat[i + 1] ?? NaN });
    }
  }

  /** Drops the blocks before `t` (page clock): each turn reads only its own seconds. */
  forget(t: number): void {
    this.mic = this.mic.filter((b) => b.t >= t);
    this.remote = this.remote.filter((b) => b.t >= t);
    const kept = this.offsets.filter((o) => o.t >= t - OFFSET_SPAN_S);
    this.offsets.splice(0, this.offsets.length, ...kept);
  }

  /**
   * A time on the page's audio clock (s) as Unix ms, to line the page's moments up with the agent's
   * (same machine, same wall clock); undefined without readings within OFFSET_SPAN_S of it.
   */
  unixMs(t: number): number | undefined {
    const near = this.offsets.filter((o) => Math.abs(o.t - t) <= OFFSET_SPAN_S).map((o) => o.ms);
    return near.length > 0 ? t * 1000 + Math.min(...near) : undefined;
  }

  /** The page clock now, as far as both taps have been fetched. */
  heardUntil(): number {
    return Math.min(latest(this.mic), latest(this.remote));
  }

  /** Polls (bounded) until `probe`, run after each sync, answers. */
  async until<T>(what: string, probe: () => T | undefined | false, timeoutMs: number): Promise<T> {
    return pollUntil(
      what,
      async () => {
        await this.sync();
        return probe();
      },
      { timeoutMs, intervalMs: 50 },
    );
  }

  /**
   * Plays a loaded phrase into the microphone and waits until the tap has heard all of it; returns
   * where its sound began and ended (the tap's own reading, not the file's).
   */
  async say(name: string, timeoutMs = 15_000): Promise<Utterance> {
    const duration = this.durations.get(name);
    if (duration === undefined) throw new Error(`phrase ${name} was not loaded`);
    const said = await this.page.evaluate((n) => window.__ear.say(n), name);
    const until = said + duration + 0.1;
    await this.until(`the microphone tap to hear "${name}"`, () => latest(this.mic) >= until, timeoutMs);
    const onset = firstLoud(this.mic, said, until);
    const last = lastLoud(this.mic, said, until);
    if (onset === undefined || last === undefined) throw new Error(`the microphone tap heard nothing of "${name}"`);
    return { said, onset, end: last + this.blockS };
  }

  /** Waits until the remote has been silent for `quietS` on the page clock. */
  async remoteQuiet(quietS: number, timeoutMs: number): Promise<void> {
    await this.until(
      `the agent's audio to be silent for ${quietS} s`,
      () => {
        const now = latest(this.remote);
        const heardLongEnough = now >= (this.remote[0]?.t ?? Infinity) + quietS;
        return heardLongEnough && loudTimes(this.remote, now - quietS).length === 0;
      },
      timeoutMs,
    );
  }
}
