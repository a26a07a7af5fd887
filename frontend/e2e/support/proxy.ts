/**
 * A plain TCP relay between the browser and the agent (both on 127.0.0.1). It lets the e2e cut
 * every open connection at once, which is what a network blip or a load balancer reset does to
 * the signaling WebSocket; the WebRTC media (UDP, straight to the agent) is not affected.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';

export class TcpRelay {
  readonly port: number;
  private targetPort: number;
  private readonly server: Server;
  private readonly open = new Set<Socket>();
  /** First bytes of every connection (the request line), for asserting what the browser did. */
  readonly requests: string[] = [];

  private constructor(server: Server, port: number, targetPort: number) {
    this.server = server;
    this.port = port;
    this.targetPort = targetPort;
  }

  static async start(targetPort: number): Promise<TcpRelay> {
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    const address = server.address();
    if (!address || typeof address !== 'object') throw new Error('relay did not bind');
    const relay = new TcpRelay(server, address.port, targetPort);
    server.on('connection', (client) => relay.pipe(client));
    return relay;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** New connections go to this port from now on, those open stay: a Service that dropped an endpoint. */
  retarget(port: number): void {
    this.targetPort = port;
  }

  private pipe(client: Socket): void {
    const upstream = connect(this.targetPort, '127.0.0.1');
    this.open.add(client);
    this.open.add(upstream);
    client.once('data', (chunk: Buffer) => {
      this.requests.push(chunk.toString('latin1').split('\r\n', 1)[0] ?? '');
    });
    client.pipe(upstream);
    upstream.pipe(client);
    const end = (): void => {
      client.destroy();
      upstream.destroy();
      this.open.delete(client);
      this.open.delete(upstream);
    };
    client.on('error', end);
    upstream.on('error', end);
    client.on('close', end);
    upstream.on('close', end);
  }

  /** Resets every connection (RST, no close handshake), like a dropped network path. */
  cutAll(): number {
    const count = this.open.size / 2;
    for (const socket of this.open) socket.resetAndDestroy();
    this.open.clear();
    return count;
  }

  async close(): Promise<void> {
    this.cutAll();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
