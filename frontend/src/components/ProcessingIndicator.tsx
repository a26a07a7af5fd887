import { AlertCircle, AudioLines, Brain, Ear, Moon, type LucideIcon } from 'lucide-react';
import type { ProcessingStatus } from '../hooks/voiceAgentReducer';
import { getProcessingInfo } from '../pages/statusInfo';

const ICONS: Record<ProcessingStatus, LucideIcon> = {
  idle: Moon,
  listening: Ear,
  processing: Brain,
  speaking: AudioLines,
  error: AlertCircle,
};

export function ProcessingIndicator({ status }: { status: ProcessingStatus }) {
  const Icon = ICONS[status];
  const info = getProcessingInfo(status);
  return (
    <div className={`processing processing-${status}`} data-testid="processing-status" data-status={status}>
      <Icon size={18} aria-hidden="true" />
      <span className="processing-label">{info.label}</span>
      <span className="processing-hint">{info.hint}</span>
    </div>
  );
}
