import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { drive, settle, type Driven } from './controller';
import { FakePeer } from './fakes';

/** A peer that takes a transceiver, as the browser's does; the sender records the track it is given. */
class TransceiverPeer extends FakePeer {
  replaced: MediaStreamTrack[] = [];
  addTransceiver(): RTCRtpTransceiver {
    const sender = { replaceTrack: async (track: MediaStreamTrack) => void this.replaced.push(track) };
    return { sender } as unknown as RTCRtpTransceiver;
  }
}

/** The fake agent's sessions, with these ICE servers (a loopback agent names none). */
function withSparePeers(iceServers: RTCIceServer[] = []): Driven & { made: TransceiverPeer[] } {
  const made: TransceiverPeer[] = [];
  const d = drive({}, {
    createPeerConnection: (config) => {
      const peer = new TransceiverPeer(config);
      made.push(peer);
      return peer;
    },
  });
  const agentFetch = d.deps.fetch;
  d.deps.fetch = async (url, init) => {
    const response = await agentFetch(url, init);
    if (init?.method !== 'POST') return response;
    const body = { ...((await response.json()) as object), ice_servers: iceServers };
    return new Response(JSON.stringify(body), { status: response.status, headers: response.headers });
  };
  return Object.assign(d, { made });
}

describe('VoiceSessionController: what is prepared while the page is idle', () => {
  // jsdom has no WebRTC; a browser's transceivers exist, which is what lets a spare peer be made.
  beforeEach(() => vi.stubGlobal('RTCRtpTransceiver', function RTCRtpTransceiver() {}));
  afterEach(() => vi.unstubAllGlobals());

  it('a peer with its offer and candidates, no request to the agent; the click adds the mic and sends that offer', async () => {
    const d = withSparePeers();
    d.controller.prepare();
    await settle();
    expect(d.made).toHaveLength(1);
    const spare = d.made[0] as TransceiverPeer;
    expect(spare.signalingState).toBe('have-local-offer');
    spare.gather('candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host');
    spare.gather(null);
    expect(d.agent.requests).toEqual([]);

    await d.controller.start();
    await settle();
    d.agent.socket.open();
    await settle();
    expect(d.made).toHaveLength(1); // no second peer
    expect(spare.replaced).toEqual(d.mic.stream.getAudioTracks());
    expect(spare.offers).toHaveLength(1); // the offer made while idle, not a new one
    expect(d.agent.socket.sent.filter((m) => m.type === 'offer' || m.type === 'ice-candidate')).toEqual([
      { type: 'offer', sdp: 'v=0 offer 1' },
      { type: 'ice-candidate', candidate: null, sdpMid: null, sdpMLineIndex: null },
    ]);
  });

  it('a session with ICE servers gets a peer of its own; stop closes the spare', async () => {
    const d = withSparePeers([{ urls: 'turn:turn.test:3478', username: 'u', credential: 'c' }]);
    d.controller.prepare();
    await settle();
    await d.controller.start();
    await settle();
    d.agent.socket.open();
    await settle();
    expect(d.made).toHaveLength(2);
    const [spare, own] = d.made as [TransceiverPeer, TransceiverPeer];
    expect(own.config.iceServers).toHaveLength(1);
    expect(own.tracks).toHaveLength(1);
    expect(spare.closed).toBe(false);
    d.controller.stop();
    expect(spare.closed).toBe(true);
  });

  it('a microphone already allowed opens while the session is asked for; if it fails after all, the session is ended', async () => {
    let denyMic: (error: Error) => void = () => undefined;
    const getUserMedia = vi.fn(
      () =>
        new Promise<MediaStream>((_, reject) => {
          denyMic = reject;
        }),
    );
    const d = drive({}, { micPermission: async () => 'granted', getUserMedia });
    d.controller.prepare();
    await settle();
    const started = d.controller.start();
    await settle();
    expect(d.agent.requests).toEqual(['POST /v2/sessions']); // before the microphone answered
    denyMic(Object.assign(new Error('in use'), { name: 'NotReadableError' }));
    await started;
    await settle();
    expect(d.agent.requests).toEqual(['POST /v2/sessions', 'DELETE /v2/sessions/s1']);
    expect(d.state().errorCode).toBe('mic-unavailable');
  });

  it('a microphone already allowed does not hold up signaling: the prepared offer goes out, the track when it opens', async () => {
    let openMic: () => void = () => undefined;
    const d = withSparePeers();
    d.deps.micPermission = async () => 'granted';
    d.deps.getUserMedia = vi.fn(
      () =>
        new Promise<MediaStream>((resolve) => {
          openMic = () => resolve(d.mic.stream);
        }),
    );
    d.controller.prepare();
    await settle();
    const started = d.controller.start();
    await settle();
    d.agent.socket.open();
    await settle();
    const spare = d.made[0] as TransceiverPeer;
    expect(d.agent.socket.types()).toContain('offer'); // before the microphone answered
    expect(spare.replaced).toEqual([]);
    openMic();
    await started;
    await settle();
    expect(d.made).toHaveLength(1);
    expect(spare.replaced).toEqual(d.mic.stream.getAudioTracks());
    expect(spare.offers).toHaveLength(1);
  });

  it('a peer of the session\'s own (other ICE servers) waits for the microphone before its offer', async () => {
    let openMic: () => void = () => undefined;
    const d = withSparePeers([{ urls: 'turn:turn.test:3478', username: 'u', credential: 'c' }]);
    d.deps.micPermission = async () => 'granted';
    d.deps.getUserMedia = vi.fn(
      () =>
        new Promise<MediaStream>((resolve) => {
          openMic = () => resolve(d.mic.stream);
        }),
    );
    d.controller.prepare();
    await settle();
    const started = d.controller.start();
    await settle();
    d.agent.socket.open();
    await settle();
    expect(d.made).toHaveLength(1); // only the spare: no peer without the track
    expect(d.agent.socket.types()).not.toContain('offer');
    openMic();
    await started;
    await settle();
    const own = d.made[1] as TransceiverPeer;
    expect(own.tracks).toEqual(d.mic.stream.getAudioTracks());
    expect(d.agent.socket.types()).toContain('offer');
  });

  it('a microphone that will ask first gets no session until it is allowed', async () => {
    let allowMic: () => void = () => undefined;
    const d = drive({}, { micPermission: async () => 'prompt' });
    d.deps.getUserMedia = vi.fn(
      () =>
        new Promise<MediaStream>((resolve) => {
          allowMic = () => resolve(d.mic.stream);
        }),
    );
    d.controller.prepare();
    await settle();
    const started = d.controller.start();
    await settle();
    expect(d.agent.requests).toEqual([]);
    allowMic();
    await started;
    expect(d.agent.requests).toEqual(['POST /v2/sessions']);
  });
});
