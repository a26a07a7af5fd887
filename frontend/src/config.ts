/**
 * Where the agent is. The built app is served by the agent itself, so the default is this page's
 * origin. The dev server proxies the agent's routes (see vite.config.ts), so it uses its own origin
 * too; a production build meant to be hosted elsewhere can bake in `VITE_AGENT_URL` (the agent then
 * has to allow that origin).
 */
export function agentBaseUrl(
  configured: string | undefined = import.meta.env.DEV ? undefined : import.meta.env.VITE_AGENT_URL,
  origin: string = window.location.origin,
): string {
  const base = configured && configured.trim() !== '' ? configured.trim() : origin;
  return base.replace(/\/+$/, '');
}

/** The signaling URL for a session: the agent's `ws_url` if it gave one, resolved against the base. */
export function signalingUrl(base: string, sessionId: string, wsUrl?: string | null): string {
  const target = new URL(wsUrl && wsUrl !== '' ? wsUrl : `/ws/v2/${encodeURIComponent(sessionId)}`, `${base}/`);
  if (target.protocol === 'http:') target.protocol = 'ws:';
  if (target.protocol === 'https:') target.protocol = 'wss:';
  return target.toString();
}
