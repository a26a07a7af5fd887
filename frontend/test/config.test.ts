import { describe, expect, it } from 'vitest';
import { ApiError } from '../src/api/client';
import { AGENT_URL_META, AgentUrlError, agentBaseUrl, checkAgentUrl, isCrossOrigin, loadTimeAgentUrl } from '../src/config';
import { describeApiError } from '../src/hooks/sessionController';

function page(meta: string | null): Document {
  const doc = document.implementation.createHTMLDocument('voicepool');
  if (meta !== null) {
    const tag = doc.createElement('meta');
    tag.name = AGENT_URL_META;
    tag.content = meta;
    doc.head.append(tag);
  }
  return doc;
}

describe('the agent URL of a hosted build', () => {
  it('is read from the meta tag, blank when the tag is absent or empty', () => {
    expect(loadTimeAgentUrl(page(' https://voice.example.com/ '))).toBe('https://voice.example.com/');
    expect(loadTimeAgentUrl(page(''))).toBe('');
    expect(loadTimeAgentUrl(page(null))).toBe('');
    expect(loadTimeAgentUrl(undefined)).toBe('');
  });

  it('comes from load time, then build time, then the page origin', () => {
    const origin = 'https://app.example.com';
    expect(agentBaseUrl('https://built.example', origin, 'https://loaded.example/')).toBe('https://loaded.example');
    expect(agentBaseUrl('https://built.example//', origin, '')).toBe('https://built.example');
    expect(agentBaseUrl(' ', origin, '')).toBe(origin);
    expect(agentBaseUrl(undefined, origin, '')).toBe(origin);
    // An agent behind a path prefix keeps it.
    expect(agentBaseUrl(undefined, origin, 'https://example.com/voice/')).toBe('https://example.com/voice');
  });

  it.each([
    ['voice.example.com', 'is not an absolute URL'],
    ['/agent', 'is not an absolute URL'],
    ['ftp://voice.example.com', 'must be an http:// or https:// URL'],
    ['wss://voice.example.com', 'must be an http:// or https:// URL'],
    ['https://user:secret@voice.example.com', 'must not carry credentials'],
    ['https://voice.example.com/?pool=a', 'must not carry credentials, a query or a fragment'],
    ['https://voice.example.com/#x', 'must not carry credentials, a query or a fragment'],
  ])('refuses %s with a message naming where it was set', (value, problem) => {
    const where = `<meta name="${AGENT_URL_META}"> in index.html`;
    expect(() => agentBaseUrl(undefined, 'https://app.example', value)).toThrow(AgentUrlError);
    expect(() => agentBaseUrl(undefined, 'https://app.example', value)).toThrow(`${where} ${problem}`);
    expect(() => agentBaseUrl(value, 'https://app.example', '')).toThrow(`VITE_AGENT_URL ${problem}`);
  });

  it('checks one value on its own', () => {
    expect(checkAgentUrl('http://127.0.0.1:8000/', 'x')).toBe('http://127.0.0.1:8000');
  });
});

describe('an unreachable agent on another origin', () => {
  const unreachable = new ApiError('unreachable', 'Cannot reach the voice agent (TypeError: Failed to fetch).');

  it('names the CORS allowlist and the page origin to add', () => {
    const failure = describeApiError(unreachable, 'https://agent.example', 'https://app.example');
    expect(failure.code).toBe('agent-unreachable');
    expect(failure.message).toBe(
      'Cannot reach the voice agent at https://agent.example. Check that it is running and that its ' +
        "VOICE_CORS_ORIGINS allows this page's origin (https://app.example), then try again.",
    );
  });

  it('says only "running" when the agent is the page origin', () => {
    const failure = describeApiError(unreachable, 'https://agent.example', 'https://agent.example');
    expect(failure.message).toBe('Cannot reach the voice agent at https://agent.example. Check that it is running, then try again.');
  });

  it('compares origins, not strings', () => {
    expect(isCrossOrigin('https://a.example/voice', 'https://a.example')).toBe(false);
    expect(isCrossOrigin('http://127.0.0.1:8001', 'http://127.0.0.1:8000')).toBe(true);
    expect(isCrossOrigin('not a url', 'https://a.example')).toBe(false);
  });
});
