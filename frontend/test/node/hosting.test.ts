// @vitest-environment node
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

// The tag src/config.ts reads (AGENT_URL_META), as deployers see it in index.html.
const AGENT_URL_META = 'voicepool-agent-url';
const read = (name: string): string => readFileSync(fileURLToPath(new URL(`../../${name}`, import.meta.url)), 'utf8');

describe('a build hosted apart from the agent (docs/frontend.md, "Hosting the app elsewhere")', () => {
  it('ships index.html with the agent URL tag present and empty, the string the docs replace', () => {
    const tags = read('index.html').match(new RegExp(`<meta name="${AGENT_URL_META}"[^>]*>`, 'g'));
    expect(tags).toEqual([`<meta name="${AGENT_URL_META}" content="" />`]);
  });

  const vercel = JSON.parse(read('vercel.json')) as {
    buildCommand: string;
    outputDirectory: string;
    headers: { source: string; headers: { key: string; value: string }[] }[];
  };
  const header = (source: string, key: string): string | undefined =>
    vercel.headers.find((h) => h.source === source)?.headers.find((h) => h.key === key)?.value;

  it('vercel.json builds with the project script into the folder vite writes', () => {
    expect(vercel.buildCommand).toBe('npm run build');
    expect(vercel.outputDirectory).toBe('dist');
    expect(read('vite.config.ts')).toContain("outDir: 'dist'");
  });

  it('vercel.json lets the page use the microphone, keeps index.html fresh and hashed assets cached', () => {
    expect(header('/(.*)', 'Permissions-Policy')).toContain('microphone=(self)');
    expect(header('/(.*)', 'Cache-Control')).toBe('no-cache');
    expect(header('/assets/(.*)', 'Cache-Control')).toContain('immutable');
  });
});
