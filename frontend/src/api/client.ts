/**
 * Typed client for the agent's session API (docs/api.md, "HTTP API").
 *
 * The shapes the page relies on are declared here and checked at compile time against the types
 * generated from the agent's OpenAPI document (`schema.d.ts`, see scripts/openapi.mjs), so a
 * breaking change on the agent side fails `npm run typecheck` instead of a live call.
 */
import type { paths } from './schema';

export interface SessionInfo {
  id: string;
  ws_url: string;
  ice_servers: RTCIceServer[];
  expires_at: string | number;
}

/** Compiles only when `Body` has every field of `Shape` with a compatible type. */
type Provides<Body extends Shape, Shape> = Body;
type Json<R> = R extends { content: { 'application/json': infer B } } ? B : never;
type SessionsApi = paths['/v2/sessions'];
type SessionApi = paths['/v2/sessions/{session_id}'];

/** POST /v2/sessions: 201 with what toSessionInfo reads; 503 when full and 429 when rate limited
 * (both with Retry-After); 401 when the agent wants an API token. */
export type CreatedSessionContract = Provides<
  Json<SessionsApi['post']['responses'][201]>,
  { id: string; ws_url: string; ice_servers: Record<string, unknown>[]; expires_at: string }
>;
/** GET /v2/sessions/{id}: 200 when it exists and 404 when not (sessionExists relies on both). */
export type SessionLookupContract = [
  Provides<Json<SessionApi['get']['responses'][200]>, { id: string }>,
  SessionApi['get']['responses'][404],
  SessionApi['delete']['responses'][204],
  SessionsApi['post']['responses'][503],
  SessionsApi['post']['responses'][429],
  SessionsApi['post']['responses'][401],
];

export type ApiErrorKind =
  | 'unreachable'
  | 'busy'
  | 'starting'
  | 'rate-limited'
  | 'unauthorized'
  | 'not-found'
  | 'http'
  | 'invalid';

/** The code of a 503 from the operator's waker: the pool had no agent up and one is starting
 * (docs/operator.md, "Scale to zero"); the client retries after Retry-After. */
export const AGENT_STARTING = 'agent_starting';

export class ApiError extends Error {
  readonly kind: ApiErrorKind;
  readonly status: number | null;
  readonly retryAfterS: number | null;

  constructor(kind: ApiErrorKind, message: string, status: number | null = null, retryAfterS: number | null = null) {
    super(message);
    this.name = 'ApiError';
    this.kind = kind;
    this.status = status;
    this.retryAfterS = retryAfterS;
  }
}

export type FetchLike = (input: string, init?: RequestInit) => Promise<Response>;

function parseRetryAfter(value: string | null): number | null {
  if (value === null) return null;
  const seconds = Number(value);
  return Number.isFinite(seconds) && seconds >= 0 ? seconds : null;
}

function isIceServer(value: unknown): value is RTCIceServer {
  if (typeof value !== 'object' || value === null) return false;
  const urls = (value as { urls?: unknown }).urls;
  return typeof urls === 'string' || (Array.isArray(urls) && urls.every((u) => typeof u === 'string'));
}

/** Narrows an untrusted JSON body to SessionInfo, dropping malformed ICE server entries. */
export function toSessionInfo(body: unknown): SessionInfo {
  if (typeof body !== 'object' || body === null) throw new ApiError('invalid', 'The agent sent an empty session.');
  const record = body as Record<string, unknown>;
  if (typeof record.id !== 'string' || record.id === '') {
    throw new ApiError('invalid', 'The agent sent a session without an id.');
  }
  const servers = Array.isArray(record.ice_servers) ? record.ice_servers.filter(isIceServer) : [];
  return {
    id: record.id,
    ws_url: typeof record.ws_url === 'string' ? record.ws_url : '',
    ice_servers: servers,
    expires_at: typeof record.expires_at === 'string' || typeof record.expires_at === 'number' ? record.expires_at : '',
  };
}

async function request(fetchFn: FetchLike, url: string, init: RequestInit): Promise<Response> {
  try {
    return await fetchFn(url, { ...init, headers: { Accept: 'application/json', ...init.headers } });
  } catch (cause) {
    throw new ApiError('unreachable', `Cannot reach the voice agent (${String(cause)}).`);
  }
}

async function bodyCode(response: Response): Promise<unknown> {
  try {
    const body: unknown = await response.clone().json();
    return typeof body === 'object' && body !== null ? (body as { code?: unknown }).code : undefined;
  } catch {
    return undefined;
  }
}

async function failure(response: Response, what: string): Promise<ApiError> {
  if (response.status === 503 && (await bodyCode(response)) === AGENT_STARTING) {
    return new ApiError(
      'starting',
      'No voice agent is running yet; one is starting.',
      503,
      parseRetryAfter(response.headers.get('Retry-After')),
    );
  }
  if (response.status === 503) {
    return new ApiError(
      'busy',
      'All voice agents are busy right now.',
      503,
      parseRetryAfter(response.headers.get('Retry-After')),
    );
  }
  if (response.status === 429) {
    return new ApiError(
      'rate-limited',
      'Too many sessions were started from this address.',
      429,
      parseRetryAfter(response.headers.get('Retry-After')),
    );
  }
  if (response.status === 401) return new ApiError('unauthorized', `${what}: the agent requires an API token.`, 401);
  if (response.status === 404) return new ApiError('not-found', `${what}: not found.`, 404);
  let detail = '';
  try {
    detail = (await response.text()).slice(0, 200);
  } catch {
    detail = '';
  }
  return new ApiError('http', `${what} failed with HTTP ${response.status}${detail ? `: ${detail}` : ''}.`, response.status);
}

export async function createSession(fetchFn: FetchLike, base: string): Promise<SessionInfo> {
  const response = await request(fetchFn, `${base}/v2/sessions`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: '{}',
  });
  if (!response.ok) throw await failure(response, 'Creating a session');
  return toSessionInfo(await response.json());
}

/** `true` if the agent still knows the session, `false` if it is gone; throws when unreachable. */
export async function sessionExists(fetchFn: FetchLike, base: string, id: string): Promise<boolean> {
  const response = await request(fetchFn, `${base}/v2/sessions/${encodeURIComponent(id)}`, { method: 'GET' });
  if (response.ok) return true;
  if (response.status === 404 || response.status === 410) return false;
  throw await failure(response, 'Looking up the session');
}

/** Best effort: used when the signaling link is already down, so the agent frees the slot early. */
export async function deleteSession(fetchFn: FetchLike, base: string, id: string): Promise<void> {
  try {
    await fetchFn(`${base}/v2/sessions/${encodeURIComponent(id)}`, { method: 'DELETE', keepalive: true });
  } catch {
    // The session expires on its own (VOICE_SESSION_TTL_S); nothing more to do.
  }
}
