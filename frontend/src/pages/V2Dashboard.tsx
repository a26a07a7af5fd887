/**
 * V2Dashboard: the page people talk to the agent on.
 *
 * V2Dashboard wires the hook and the media meters; DashboardView is a plain function of that data,
 * so each state can be rendered and tested on its own.
 */
import { AudioLines, Hand, Mic, Square } from 'lucide-react';
import { useEffect, useState } from 'react';
import { Banner } from '../components/Banner';
import { Composer } from '../components/Composer';
import { Conversation } from '../components/Conversation';
import { LevelMeter } from '../components/LevelMeter';
import { LatencyPanel, NetworkPanel } from '../components/MetricsPanel';
import { ProcessingIndicator } from '../components/ProcessingIndicator';
import { StatusBadge } from '../components/StatusBadge';
import { afterPaint } from '../hooks/afterPaint';
import { useMicLevel } from '../hooks/useMicLevel';
import { useNetworkStats } from '../hooks/useNetworkStats';
import { useVoiceAgentV2, type UseVoiceAgentOptions } from '../hooks/useVoiceAgentV2';
import type { VoiceAgentState, VoiceErrorCode } from '../hooks/voiceAgentReducer';
import type { NetworkStats } from '../webrtc/stats';
import { getStatusInfo } from './statusInfo';

export interface DashboardViewProps {
  state: VoiceAgentState;
  micLevel: number | null;
  network: NetworkStats | null;
  onToggle: () => void;
  onRetry: () => void;
  onDismiss: () => void;
  onSendText: (text: string) => boolean;
  /** Cuts the agent short (the `interrupt` message), for when speaking over it is not an option. */
  onInterrupt: () => void;
}

const ERROR_TITLES: Record<VoiceErrorCode, string> = {
  'mic-permission': 'Microphone blocked',
  'mic-unavailable': 'Microphone unavailable',
  unsupported: 'Audio not supported here',
  'agent-unreachable': 'Agent unreachable',
  'agent-busy': 'Agents are busy',
  'agent-not-started': 'No agent started',
  'session-failed': 'Could not start a session',
  'signaling-lost': 'Connection lost',
  'media-failed': 'Audio connection failed',
  'session-taken': 'Continued elsewhere',
  'agent-error': 'The agent reported a problem',
};

function ErrorArea({ state, onRetry, onDismiss }: Pick<DashboardViewProps, 'state' | 'onRetry' | 'onDismiss'>) {
  if (!state.error) return null;
  const title = state.errorCode ? ERROR_TITLES[state.errorCode] : 'Something went wrong';
  if (state.errorFatal) {
    return (
      <Banner kind="error" title={title} onRetry={onRetry} testId="error-banner">
        {state.error}
      </Banner>
    );
  }
  return (
    <Banner kind="warning" title={title} onDismiss={onDismiss} testId="error-banner">
      {state.error}
    </Banner>
  );
}

export function DashboardView(props: DashboardViewProps) {
  const { state, micLevel, network, onToggle, onRetry, onDismiss, onSendText, onInterrupt } = props;
  const status = getStatusInfo(state);
  const active = state.active;
  const streamingReply = state.aiResponseFinal ? null : state.aiResponse;
  return (
    <div className="app" data-connection={state.connectionStatus} data-processing={state.processingStatus}>
      <header className="topbar">
        <div className="brand">
          <AudioLines size={22} aria-hidden="true" />
          <span>voicepool</span>
        </div>
        <StatusBadge info={status} />
      </header>

      <main className="layout">
        <section className="panel call" aria-labelledby="call-title">
          <h1 id="call-title">Voice conversation</h1>
          <p className="muted" data-testid="status-detail">
            {status.detail}
          </p>
          <button
            type="button"
            className={`toggle ${active ? 'toggle-stop' : 'toggle-start'}`}
            onClick={onToggle}
            aria-pressed={active}
            data-testid="toggle"
          >
            {active ? <Square size={28} aria-hidden="true" /> : <Mic size={28} aria-hidden="true" />}
            <span>{active ? 'End conversation' : 'Start conversation'}</span>
          </button>
          <ProcessingIndicator status={state.processingStatus} />
          {state.processingStatus === 'speaking' && (
            <button type="button" className="button button-secondary" onClick={onInterrupt} data-testid="interrupt">
              <Hand size={16} aria-hidden="true" />
              Interrupt
            </button>
          )}
          <LevelMeter level={active ? micLevel : null} />
          {state.sessionId && (
            <p className="session-id">
              Session <code data-testid="session-id">{state.sessionId}</code>
            </p>
          )}
          <ErrorArea state={state} onRetry={onRetry} onDismiss={onDismiss} />
          {state.notice && (
            <Banner kind="info" title="New session" onDismiss={onDismiss} testId="notice-banner">
              {state.notice}
            </Banner>
          )}
        </section>

        <section className="panel conversation-panel" aria-labelledby="conversation-title">
          <h2 id="conversation-title">Conversation</h2>
          <Conversation
            history={state.history}
            interimTranscript={state.interimTranscript}
            streamingReply={streamingReply}
          />
          <Composer disabled={state.signaling !== 'open'} onSend={onSendText} />
        </section>

        <div className="side">
          <LatencyPanel turns={state.turnMetrics} heard={state.heardMs} />
          <NetworkPanel stats={active ? network : null} />
        </div>
      </main>
      <footer className="footer muted">Client {state.version}</footer>
    </div>
  );
}

/**
 * True from a call's first connected (once painted) until it ends. The meters start then, not while
 * it connects: their AudioContext and stats requests would take the page's main thread from the
 * connect's own steps (the answer, ICE and DTLS events wait for it) and from the connected paint.
 */
function useMetered(state: VoiceAgentState): boolean {
  const [metered, setMetered] = useState(false);
  const connected = state.active && state.connectionStatus === 'connected';
  if (metered && !state.active) setMetered(false);
  useEffect(() => (connected && !metered ? afterPaint(() => setMetered(true)) : undefined), [connected, metered]);
  return metered && state.active;
}

export default function V2Dashboard(options: UseVoiceAgentOptions = {}) {
  const agent = useVoiceAgentV2(options);
  const metered = useMetered(agent.state);
  const micLevel = useMicLevel(metered ? agent.media.localStream : null);
  const network = useNetworkStats(metered ? agent.media.peer : null);

  const handleToggleConversation = () => {
    if (agent.isConversationActive) {
      agent.stopConversation();
    } else {
      void agent.startConversation();
    }
  };

  return (
    <DashboardView
      state={agent.state}
      micLevel={micLevel}
      network={network}
      onToggle={handleToggleConversation}
      onRetry={() => void agent.retry()}
      onDismiss={agent.dismiss}
      onSendText={agent.sendText}
      onInterrupt={agent.interrupt}
    />
  );
}
