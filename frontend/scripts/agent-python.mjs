/**
 * What the generators (openapi.mjs, signaling.mjs) share: reading a contract from the agent's code
 * (never from a running server), and writing or checking the committed files made from it.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const frontend = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const repo = resolve(frontend, '..');

/** Runs a snippet of Python in the agent's environment and returns what it printed. */
export function agentPython(code) {
  const python = process.env.VOICE_PYTHON ?? resolve(repo, '.venv/bin/python');
  if (!existsSync(python)) throw new Error(`${python} not found; run \`make setup\` (or set VOICE_PYTHON)`);
  return execFileSync(python, ['-c', code], {
    cwd: repo,
    encoding: 'utf8',
    env: { ...process.env, VOICE_LOG_LEVEL: 'WARNING' },
    timeout: 60_000,
  });
}

/**
 * `generate` writes each [path, text] that `outputs` makes; `check` fails (exit code 1) when a
 * committed file differs from it, naming the npm script that regenerates them.
 */
export async function generateOrCheck(command, outputs, regenerate) {
  if (command !== 'generate' && command !== 'check') {
    console.error(`usage: node ${relative(frontend, process.argv[1] ?? '')} generate|check`);
    return 2;
  }
  const files = await outputs();
  const shown = files.map(([path]) => relative(frontend, path));
  if (command === 'generate') {
    for (const [path, text] of files) writeFileSync(path, text);
    console.log(`wrote ${shown.join(', ')}`);
    return 0;
  }
  const stale = shown.filter((_, i) => {
    const [path, text] = files[i];
    return !existsSync(path) || readFileSync(path, 'utf8') !== text;
  });
  if (stale.length > 0) {
    console.error(`out of date: ${stale.join(', ')}; run \`${regenerate}\`, then \`npm run typecheck\``);
    return 1;
  }
  console.log(`${shown.join(', ')} match the agent`);
  return 0;
}
