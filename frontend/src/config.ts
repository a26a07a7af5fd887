/**
 * Where the agent is. The built app is served by the agent itself, so the default is this page's
 * origin. The dev server proxies the agent's routes (see vite.config.ts), so it uses its own origin
 * too. A build hosted elsewhere (docs/frontend.md, "Hosting the app elsewhere") names the agent at
 * load time in index.html's `<meta name="voicepool-agent-url">`, which wins so one build serves any
 * agent, or at build time with `VITE_AGENT_URL`; the agent then has to allow the page's origin.
 */
export const AGENT_URL_META = 'voicepool-agent-url';

/** A configured agent URL that cannot work; its message says what to change. */
export class AgentUrlError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AgentUrlError';
  }
}

/** The agent URL index.html names at load time; '' when the tag is absent or empty. */
export function loadTimeAgentUrl(doc: Document | undefined = typeof document === 'undefined' ? undefined : document): string {
  return doc?.querySelector<HTMLMetaElement>(`meta[name="${AGENT_URL_META}"]`)?.content.trim() ?? '';
}

/** An absolute http(s) URL, optionally with a path; no credentials, query or fragment. */
export function checkAgentUrl(value: string, source: string): string {
  const example = 'e.g. https://voice.example.com';
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new AgentUrlError(`${source} is not an absolute URL: "${value}" (${example}).`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new AgentUrlError(`${source} must be an http:// or https:// URL, not "${value}" (${example}).`);
  }
  if (url.username || url.password || url.search || url.hash) {
    throw new AgentUrlError(`${source} must not carry credentials, a query or a fragment: "${value}" (${example}).`);
  }
  return value.replace(/\/+$/, '');
}

/** The agent's base URL: load time, then build time, then this page's origin. Throws AgentUrlError. */
export function agentBaseUrl(
  configured: string | undefined = import.meta.env.DEV ? undefined : import.meta.env.VITE_AGENT_URL,
  origin: string = window.location.origin,
  atLoad: string = loadTimeAgentUrl(),
): string {
  if (atLoad !== '') return checkAgentUrl(atLoad, `<meta name="${AGENT_URL_META}"> in index.html`);
  const built = configured?.trim() ?? '';
  if (built !== '') return checkAgentUrl(built, 'VITE_AGENT_URL');
  return origin.replace(/\/+$/, '');
}

/** True when the agent is on another origin than the page, so the agent's CORS allowlist applies. */
export function isCrossOrigin(base: string, origin: string): boolean {
  try {
    return new URL(base).origin !== new URL(origin).origin;
  } catch {
    return false;
  }
}

/** The signaling URL for a session: the agent's `ws_url` if it gave one, resolved against the base. */
export function signalingUrl(base: string, sessionId: string, wsUrl?: string | null): string {
  const target = new URL(wsUrl && wsUrl !== '' ? wsUrl : `/ws/v2/${encodeURIComponent(sessionId)}`, `${base}/`);
  if (target.protocol === 'http:') target.protocol = 'ws:';
  if (target.protocol === 'https:') target.protocol = 'wss:';
  return target.toString();
}
