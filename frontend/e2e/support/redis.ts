/** A throwaway redis-server on 127.0.0.1 (no persistence), for the agent's shared session store. */
import { spawn, type ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import { pollUntil } from './wait';

function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once('error', () => done(false));
    socket.once('data', (data) => done(data.toString().startsWith('+PONG')));
    socket.once('connect', () => socket.write('PING\r\n'));
  });
}

export class RedisServer {
  private constructor(
    readonly port: number,
    private readonly child: ChildProcess,
  ) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}/0`;
  }

  static async start(port: number): Promise<RedisServer> {
    const child = spawn(
      process.env.REDIS_SERVER ?? 'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'yes'],
      { stdio: 'ignore' },
    );
    const server = new RedisServer(port, child);
    let failed: Error | null = null;
    child.once('error', (error) => {
      failed = error;
    });
    await pollUntil(
      `redis-server on port ${port}`,
      async () => {
        if (failed) throw failed;
        return ping(port);
      },
      { timeoutMs: 15_000 },
    );
    return server;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.kill('SIGTERM');
    await exited;
  }
}
