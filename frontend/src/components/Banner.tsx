import { AlertTriangle, Info, RotateCcw, X } from 'lucide-react';
import type { ReactNode } from 'react';

interface BannerProps {
  kind: 'error' | 'warning' | 'info';
  title: string;
  children: ReactNode;
  onRetry?: (() => void) | undefined;
  retryLabel?: string;
  onDismiss?: (() => void) | undefined;
  testId?: string;
}

export function Banner({ kind, title, children, onRetry, retryLabel = 'Try again', onDismiss, testId }: BannerProps) {
  const Icon = kind === 'info' ? Info : AlertTriangle;
  return (
    <div className={`banner banner-${kind}`} role={kind === 'info' ? 'status' : 'alert'} data-testid={testId}>
      <Icon className="banner-icon" size={18} aria-hidden="true" />
      <div className="banner-body">
        <p className="banner-title">{title}</p>
        <p className="banner-text">{children}</p>
        {onRetry && (
          <button type="button" className="button button-secondary" onClick={onRetry}>
            <RotateCcw size={16} aria-hidden="true" />
            {retryLabel}
          </button>
        )}
      </div>
      {onDismiss && (
        <button type="button" className="icon-button" onClick={onDismiss} aria-label="Dismiss message">
          <X size={16} aria-hidden="true" />
        </button>
      )}
    </div>
  );
}
