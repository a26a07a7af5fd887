/**
 * The part of the agent's OpenAPI document the browser client depends on: the session operations
 * and every schema they reference. Comparing only this part keeps unrelated agent changes from
 * failing the frontend, while any change to what the client calls does.
 */
type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Document = { paths?: Record<string, Json>; components?: { schemas?: Record<string, Json> } };

export const CLIENT_PATHS = ['/v2/sessions', '/v2/sessions/{session_id}'] as const;
const REF_PREFIX = '#/components/schemas/';

function collectRefs(node: Json, into: Set<string>): void {
  if (Array.isArray(node)) {
    node.forEach((item) => collectRefs(item, into));
  } else if (node !== null && typeof node === 'object') {
    for (const [key, value] of Object.entries(node)) {
      if (key === '$ref' && typeof value === 'string' && value.startsWith(REF_PREFIX)) {
        into.add(value.slice(REF_PREFIX.length));
      } else {
        collectRefs(value, into);
      }
    }
  }
}

export function clientContract(document: Document): { paths: Record<string, Json>; schemas: Record<string, Json> } {
  const paths: Record<string, Json> = {};
  for (const path of CLIENT_PATHS) paths[path] = document.paths?.[path] ?? null;
  const schemas: Record<string, Json> = {};
  const pending = new Set<string>();
  collectRefs(paths, pending);
  while (pending.size > 0) {
    const [name] = pending;
    if (name === undefined) break;
    pending.delete(name);
    if (name in schemas) continue;
    const schema = document.components?.schemas?.[name] ?? null;
    schemas[name] = schema;
    const nested = new Set<string>();
    collectRefs(schema, nested);
    nested.forEach((ref) => {
      if (!(ref in schemas)) pending.add(ref);
    });
  }
  return { paths, schemas: Object.fromEntries(Object.entries(schemas).sort(([a], [b]) => a.localeCompare(b))) };
}
