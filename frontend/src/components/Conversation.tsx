import { Bot, User } from 'lucide-react';
import { useEffect, useRef } from 'react';
import type { ConversationTurn } from '../hooks/voiceAgentReducer';

interface ConversationProps {
  history: ConversationTurn[];
  interimTranscript: string;
  /** The agent's reply while it is still streaming; null once it is in the history. */
  streamingReply: string | null;
}

function Speaker({ who }: { who: ConversationTurn['role'] }) {
  return (
    <span className="turn-speaker">
      {who === 'user' ? <User size={14} aria-hidden="true" /> : <Bot size={14} aria-hidden="true" />}
      {who === 'user' ? 'You' : 'Agent'}
    </span>
  );
}

export function Conversation({ history, interimTranscript, streamingReply }: ConversationProps) {
  const endRef = useRef<HTMLDivElement>(null);
  useEffect(() => {
    endRef.current?.scrollIntoView?.({ block: 'nearest' });
  }, [history.length, interimTranscript, streamingReply]);

  const empty = history.length === 0 && !interimTranscript && !streamingReply;
  return (
    // Scrollable, so it must be reachable by keyboard to scroll it (WCAG 2.1.1, axe scrollable-region-focusable).
    // eslint-disable-next-line jsx-a11y/no-noninteractive-tabindex
    <div className="conversation" data-testid="conversation" role="region" aria-label="Conversation" tabIndex={0}>
      {empty && <p className="empty">Nothing said yet. Start the conversation and say hello.</p>}
      <ol className="turns" aria-label="Conversation history">
        {history.map((turn) => (
          <li key={turn.id} className={`turn turn-${turn.role}`} data-testid={`turn-${turn.role}`}>
            <Speaker who={turn.role} />
            <p>
              {turn.text}
              {turn.interrupted && <span className="turn-note"> (interrupted)</span>}
            </p>
          </li>
        ))}
      </ol>
      <div aria-live="polite" className="live">
        {interimTranscript && (
          <div className="turn turn-user turn-interim" data-testid="interim-transcript">
            <Speaker who="user" />
            <p>{interimTranscript}</p>
          </div>
        )}
        {streamingReply && (
          <div className="turn turn-agent turn-streaming" data-testid="streaming-reply">
            <Speaker who="agent" />
            <p>
              {streamingReply}
              <span className="caret" aria-hidden="true" />
            </p>
          </div>
        )}
      </div>
      <div ref={endRef} />
    </div>
  );
}
