import { AlertTriangle, Loader2, RefreshCw, Wifi, WifiOff, type LucideIcon } from 'lucide-react';
import type { StatusIcon, StatusInfo } from '../pages/statusInfo';

const ICONS: Record<StatusIcon, LucideIcon> = {
  offline: WifiOff,
  connecting: Loader2,
  online: Wifi,
  error: AlertTriangle,
  reconnecting: RefreshCw,
};

export function StatusBadge({ info }: { info: StatusInfo }) {
  const Icon = ICONS[info.icon];
  const spinning = info.icon === 'connecting' || info.icon === 'reconnecting';
  return (
    <div className={`badge tone-${info.tone}`} role="status" aria-live="polite" data-testid="connection-status">
      <Icon className={spinning ? 'spin' : undefined} size={16} aria-hidden="true" />
      <span>{info.label}</span>
    </div>
  );
}
