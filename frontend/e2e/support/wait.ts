/** Bounded polling: the only way the e2e waits for anything (no fixed sleeps as synchronisation). */
export interface PollOptions {
  timeoutMs: number;
  intervalMs?: number;
}

/**
 * Calls `probe` until it returns a value other than undefined/false, or fails after the deadline.
 *
 * A probe that throws (or rejects) fails the wait at once with its error: that is how a probe says
 * "this will never come" (the process exited, the page shows the wrong thing), and waiting out the
 * deadline would only hide the reason. A probe that expects transient failures (a port not yet
 * listening) catches them itself and answers "not yet".
 */
export async function pollUntil<T>(
  what: string,
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  { timeoutMs, intervalMs = 100 }: PollOptions,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
