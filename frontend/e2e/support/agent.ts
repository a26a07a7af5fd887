/**
 * A real voicepool agent process (`python -m voice_agent`) for the browser e2e: offline providers,
 * embedded in-memory store, serving the built frontend. It can be killed hard and restarted on the
 * same port, the way a crashed pod comes back.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pollUntil } from './wait';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
export const FRONTEND_DIR = resolve(REPO_ROOT, 'frontend');
export const DIST_DIR = resolve(FRONTEND_DIR, 'dist');

/** The agent serves the built app; `npm run e2e` builds it first. */
export function requireDist(): void {
  if (!existsSync(resolve(DIST_DIR, 'index.html'))) throw new Error('frontend/dist is missing: run `npm run build`');
}

/** A fresh artifacts folder under frontend/test-results (gitignored). */
export function freshOutputDir(name: string): string {
  const dir = resolve(FRONTEND_DIR, 'test-results', name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  return dir;
}

export interface AgentOptions {
  port: number;
  logDir: string;
  env?: Record<string, string>;
}

export class AgentProcess {
  readonly port: number;
  readonly url: string;
  private readonly logDir: string;
  private readonly env: Record<string, string>;
  private child: ChildProcess | null = null;
  private starts = 0;

  constructor({ port, logDir, env = {} }: AgentOptions) {
    this.port = port;
    this.url = `http://127.0.0.1:${port}`;
    this.logDir = logDir;
    this.env = env;
  }

  static python(): string {
    const python = process.env.VOICE_PYTHON ?? resolve(REPO_ROOT, '.venv/bin/python');
    if (!existsSync(python)) throw new Error(`${python} not found: run \`make setup\` first (or set VOICE_PYTHON)`);
    return python;
  }

  /** Starts the process and waits (bounded) until /health answers. */
  async start(timeoutMs = 30_000): Promise<void> {
    if (this.child) throw new Error('agent already running');
    this.starts += 1;
    const log = createWriteStream(resolve(this.logDir, `agent-${this.port}-${this.starts}.log`));
    const child = spawn(AgentProcess.python(), ['-m', 'voice_agent'], {
      cwd: REPO_ROOT,
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        HOME: process.env.HOME ?? '/tmp',
        VOICE_HOST: '127.0.0.1',
        VOICE_PORT: String(this.port),
        VOICE_WEB_DIR: DIST_DIR,
        VOICE_AGENT_ID: `e2e-${this.port}`,
        VOICE_LOG_FORMAT: 'json',
        // Media on loopback only (Chromium is started with loopback allowed): see mediaOffLoopback.
        VOICE_ICE_ADDRESSES: '127.0.0.1',
        ...this.env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout?.pipe(log);
    child.stderr?.pipe(log);
    this.child = child;
    let exited: string | null = null;
    child.once('exit', (code, signal) => {
      exited = `exited with ${code ?? signal}`;
      if (this.child === child) this.child = null;
    });
    await pollUntil(
      `agent on port ${this.port} to become healthy (log: ${log.path.toString()})`,
      async () => {
        if (exited) throw new Error(`agent ${exited}; see ${log.path.toString()}`);
        try {
          const response = await fetch(`${this.url}/health`, { signal: AbortSignal.timeout(1000) });
          return response.ok;
        } catch {
          return false; // not listening yet
        }
      },
      { timeoutMs, intervalMs: 100 },
    );
  }

  /** The "ice pair selected" lines, over every run of this agent, whose local or remote end was off loopback. */
  mediaOffLoopback(): Record<string, unknown>[] {
    const off: Record<string, unknown>[] = [];
    for (let run = 1; run <= this.starts; run += 1) {
      const file = resolve(this.logDir, `agent-${this.port}-${run}.log`);
      if (!existsSync(file)) continue;
      for (const line of readFileSync(file, 'utf8').split('\n')) {
        if (!line.includes('"ice pair selected"')) continue;
        const pair = JSON.parse(line) as Record<string, unknown>;
        if (pair.local !== 'loopback' || pair.remote !== 'loopback') off.push(pair);
      }
    }
    return off;
  }

  /** SIGKILL: no drain, no goodbye on the WebSocket, in-memory sessions gone. */
  async kill9(timeoutMs = 10_000): Promise<void> {
    await this.stopWith('SIGKILL', timeoutMs);
  }

  async stop(timeoutMs = 15_000): Promise<void> {
    await this.stopWith('SIGTERM', timeoutMs);
  }

  private async stopWith(signal: NodeJS.Signals, timeoutMs: number): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise<void>((done) => child.once('exit', () => done()));
    child.kill(signal);
    const timer = new Promise<'timeout'>((done) => setTimeout(() => done('timeout'), timeoutMs).unref());
    if ((await Promise.race([exited, timer])) === 'timeout') {
      child.kill('SIGKILL');
      await exited;
    }
    this.child = null;
  }

  async json<T>(path: string): Promise<T> {
    const response = await fetch(`${this.url}${path}`, { signal: AbortSignal.timeout(5000) });
    if (!response.ok) throw new Error(`GET ${path}: HTTP ${response.status}`);
    return (await response.json()) as T;
  }
}
