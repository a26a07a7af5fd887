/** Wording and tone for the dashboard's status indicators, derived from state only. */
import type { ProcessingStatus, VoiceAgentState } from '../hooks/voiceAgentReducer';

export type Tone = 'neutral' | 'progress' | 'good' | 'warning' | 'danger';
export type StatusIcon = 'offline' | 'connecting' | 'online' | 'error' | 'reconnecting';

export interface StatusInfo {
  label: string;
  detail: string;
  tone: Tone;
  icon: StatusIcon;
}

export function getStatusInfo(state: VoiceAgentState): StatusInfo {
  if (state.connectionStatus === 'error') {
    return { label: 'Stopped', detail: state.error ?? 'Something went wrong.', tone: 'danger', icon: 'error' };
  }
  if (state.connectionStatus === 'disconnected') {
    return { label: 'Not connected', detail: 'Press Start to talk with the agent.', tone: 'neutral', icon: 'offline' };
  }
  if (state.starting) {
    const seconds = (state.starting.delayMs / 1000).toFixed(0);
    return {
      label: 'Starting an agent',
      detail: `No agent was running, so one is starting (this takes a little while). Asking again in ${seconds} s.`,
      tone: 'progress',
      icon: 'connecting',
    };
  }
  if (state.reconnect) {
    const seconds = (state.reconnect.delayMs / 1000).toFixed(1);
    return {
      label: 'Reconnecting',
      detail: `Connection lost. Attempt ${state.reconnect.attempt} in ${seconds} s; your session is kept.`,
      tone: 'warning',
      icon: 'reconnecting',
    };
  }
  if (state.connectionStatus === 'connected') {
    return { label: 'Connected', detail: 'Audio is flowing both ways.', tone: 'good', icon: 'online' };
  }
  if (state.media === 'stalled') {
    return { label: 'Audio interrupted', detail: 'No audio from the agent; restoring it.', tone: 'warning', icon: 'reconnecting' };
  }
  if (state.media === 'restarting') {
    return { label: 'Restoring audio', detail: 'Re-establishing the audio path.', tone: 'warning', icon: 'reconnecting' };
  }
  if (state.sessionId === null) {
    return { label: 'Starting', detail: 'Opening the microphone and a session.', tone: 'progress', icon: 'connecting' };
  }
  return { label: 'Connecting', detail: 'Setting up audio with the agent.', tone: 'progress', icon: 'connecting' };
}

export interface ProcessingInfo {
  label: string;
  hint: string;
}

const PROCESSING: Record<ProcessingStatus, ProcessingInfo> = {
  idle: { label: 'Idle', hint: 'Waiting for the conversation to start.' },
  listening: { label: 'Listening', hint: 'Go ahead and speak.' },
  processing: { label: 'Thinking', hint: 'The agent is working on a reply.' },
  speaking: { label: 'Speaking', hint: 'The agent is talking. Speak to interrupt.' },
  error: { label: 'Unavailable', hint: 'The conversation stopped.' },
};

export function getProcessingInfo(status: ProcessingStatus): ProcessingInfo {
  return PROCESSING[status];
}

export function formatMs(value: number | null | undefined): string {
  if (value === null || value === undefined) return '--';
  return value >= 1000 ? `${(value / 1000).toFixed(2)} s` : `${Math.round(value)} ms`;
}

export function formatPct(value: number | null | undefined): string {
  if (value === null || value === undefined) return '--';
  return `${value < 10 ? value.toFixed(1) : Math.round(value)} %`;
}
