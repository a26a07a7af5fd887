// @vitest-environment node
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { schemaTypes } from '../../scripts/openapi.mjs';
import { clientContract } from '../../e2e/support/contract';

const api = (name: string): string => readFileSync(fileURLToPath(new URL(`../../src/api/${name}`, import.meta.url)), 'utf8');

describe('typed API client vs the agent\'s OpenAPI document', () => {
  it('schema.d.ts is exactly what openapi-typescript makes of the committed snapshot', async () => {
    expect(await schemaTypes(api('openapi.json'))).toBe(api('schema.d.ts'));
  });

  it('the snapshot documents every session operation the client calls', () => {
    const { paths, schemas } = clientContract(JSON.parse(api('openapi.json')));
    const ops = paths as Record<string, Record<string, { responses: Record<string, unknown> }>>;
    expect(Object.keys(ops['/v2/sessions']?.post?.responses ?? {})).toEqual(expect.arrayContaining(['201', '503']));
    expect(Object.keys(ops['/v2/sessions/{session_id}']?.get?.responses ?? {})).toEqual(expect.arrayContaining(['200', '404']));
    expect(Object.keys(ops['/v2/sessions/{session_id}']?.delete?.responses ?? {})).toEqual(expect.arrayContaining(['204']));
    expect(schemas).toHaveProperty('CreatedSession');
  });
});
