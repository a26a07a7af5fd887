/**
 * useVoiceAgentV2: a voice conversation with a voicepool agent.
 *
 * State transitions are the pure voiceAgentReducer; the I/O is VoiceSessionController. This hook
 * only wires the two into React and guarantees teardown on unmount.
 */
import { useCallback, useEffect, useMemo, useReducer, useRef, useState } from 'react';
import { flushSync } from 'react-dom';
import { HeardMeter } from '../audio/heardMeter';
import { SpeechHoldNode } from '../audio/speechHoldNode';
import { agentBaseUrl } from '../config';
import {
  DEFAULT_TUNING,
  VoiceSessionController,
  type ControllerTuning,
  type MediaHandles,
  type VoiceAgentDeps,
} from './sessionController';
import {
  initialVoiceAgentState,
  voiceAgentReducer,
  type VoiceAgentAction,
  type VoiceAgentState,
} from './voiceAgentReducer';

export type { VoiceAgentState } from './voiceAgentReducer';

export interface UseVoiceAgentOptions {
  /** Agent base URL; defaults to VITE_AGENT_URL or this page's origin. */
  baseUrl?: string;
  /** Injected I/O, for tests; defaults to the browser's. */
  deps?: Partial<VoiceAgentDeps>;
  tuning?: Partial<ControllerTuning>;
}

export interface UseVoiceAgentV2 {
  state: VoiceAgentState;
  media: MediaHandles;
  isConversationActive: boolean;
  startConversation: () => Promise<void>;
  stopConversation: () => void;
  /** Starts again after an error (same as start; kept for the page's wording). */
  retry: () => Promise<void>;
  sendText: (text: string) => boolean;
  interrupt: () => void;
  dismiss: () => void;
}

export interface AudioSink {
  play: (stream: MediaStream | null) => void;
  /**
   * Muted while the heard meter plays the agent through Web Audio (src/audio/heardMeter.ts, where
   * a hold silences it at once); the element keeps the remote track flowing either way.
   */
  mute: (muted: boolean) => void;
}

/** Plays remote audio through one detached <audio> element, created on first use. */
export function createAudioSink(): AudioSink {
  let element: HTMLAudioElement | null = null;
  let muted = false;
  return {
    play: (stream) => {
      if (!stream) {
        if (element) {
          element.pause();
          element.srcObject = null;
        }
        return;
      }
      element ??= Object.assign(document.createElement('audio'), { autoplay: true });
      element.muted = muted;
      element.srcObject = stream;
      void element.play().catch(() => undefined);
    },
    mute: (value) => {
      muted = value;
      if (element) element.muted = value;
    },
  };
}

export function browserDeps(): VoiceAgentDeps {
  const devices = typeof navigator !== 'undefined' ? navigator.mediaDevices : undefined;
  const sink = createAudioSink();
  return {
    fetch: (input, init) => window.fetch(input, init),
    createWebSocket: (url) => new WebSocket(url),
    createPeerConnection: (config) => new RTCPeerConnection(config),
    getUserMedia: devices?.getUserMedia ? (constraints) => devices.getUserMedia(constraints) : null,
    playRemote: sink.play,
    random: Math.random,
    now: () => Date.now(),
    heardMeter: () => new HeardMeter(sink.mute),
    speechHold: () => new SpeechHoldNode(),
    micPermission: async () => {
      if (typeof navigator === 'undefined' || !navigator.permissions) return null;
      return (await navigator.permissions.query({ name: 'microphone' as PermissionName })).state;
    },
  };
}

/**
 * Media coming up is what the person waits for: rendered in the event that brings it, not in a
 * later task queued behind whatever else the page has to do while a call connects.
 */
function showsAtOnce(action: VoiceAgentAction): boolean {
  return action.type === 'media' && action.state === 'connected';
}

const NO_MEDIA: MediaHandles = { localStream: null, remoteStream: null, peer: null };

export function useVoiceAgentV2(options: UseVoiceAgentOptions = {}): UseVoiceAgentV2 {
  const [state, dispatch] = useReducer(voiceAgentReducer, initialVoiceAgentState);
  const [media, setMedia] = useState<MediaHandles>(NO_MEDIA);
  const optionsRef = useRef(options);
  const controllerRef = useRef<VoiceSessionController | null>(null);

  const controller = useCallback((): VoiceSessionController => {
    if (!controllerRef.current) {
      const { baseUrl, deps, tuning } = optionsRef.current;
      controllerRef.current = new VoiceSessionController(
        baseUrl ?? agentBaseUrl(),
        { ...browserDeps(), ...deps },
        { dispatch: (action) => (showsAtOnce(action) ? flushSync(() => dispatch(action)) : dispatch(action)), media: setMedia },
        { ...DEFAULT_TUNING, ...tuning },
      );
    }
    return controllerRef.current;
  }, []);

  useEffect(() => {
    // Closing or leaving the tab ends the session at once, so the agent frees the slot now rather
    // than holding the call for its reconnect grace period. A stop (not a silent dispose), so a
    // page restored from the back/forward cache shows "Not connected" instead of a stale call.
    const leave = (): void => controllerRef.current?.stop();
    window.addEventListener('pagehide', leave);
    return () => {
      window.removeEventListener('pagehide', leave);
      controllerRef.current?.dispose();
      controllerRef.current = null;
    };
  }, []);

  useEffect(() => {
    // Once loaded the page is idle until the click: what the click needs and no session does is
    // made now. Only for the first call: a page that ended one holds no peer connection after it.
    const prepare = (): void => controller().prepare();
    if (typeof window.requestIdleCallback === 'function') {
      const id = window.requestIdleCallback(prepare, { timeout: 1000 });
      return () => window.cancelIdleCallback(id);
    }
    const id = setTimeout(prepare, 0);
    return () => clearTimeout(id);
  }, [controller]);

  const startConversation = useCallback(() => controller().start(), [controller]);
  const stopConversation = useCallback(() => controller().stop(), [controller]);
  const sendText = useCallback((text: string) => controller().sendText(text), [controller]);
  const interrupt = useCallback(() => controller().interrupt(), [controller]);
  const dismiss = useCallback(() => dispatch({ type: 'dismiss' }), []);

  return useMemo(
    () => ({
      state,
      media,
      isConversationActive: state.active,
      startConversation,
      stopConversation,
      retry: startConversation,
      sendText,
      interrupt,
      dismiss,
    }),
    [state, media, startConversation, stopConversation, sendText, interrupt, dismiss],
  );
}
