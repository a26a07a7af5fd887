/** Reconnect pacing: exponential backoff with a cap and jitter, so a restarted agent is not stampeded. */
export interface BackoffPolicy {
  baseMs: number;
  factor: number;
  maxMs: number;
  /** Fraction of the delay randomised either way (0.2 = +/-20%). */
  jitter: number;
  /** Attempts before giving up and asking the user. */
  maxAttempts: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = {
  baseMs: 500,
  factor: 2,
  maxMs: 8000,
  jitter: 0.2,
  maxAttempts: 12,
};

/** Delay before reconnect attempt `attempt` (1-based); `random` returns [0, 1). */
export function backoffDelay(attempt: number, policy: BackoffPolicy, random: () => number): number {
  const exponent = Math.max(0, attempt - 1);
  const raw = Math.min(policy.maxMs, policy.baseMs * policy.factor ** exponent);
  const spread = raw * policy.jitter * (random() * 2 - 1);
  return Math.max(0, Math.round(raw + spread));
}
