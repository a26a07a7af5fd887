/**
 * A plain static file server on 127.0.0.1: what any static host (a CDN, an object store, nginx)
 * does with the built app. It knows nothing of the agent: no proxy, no headers beyond the type.
 */
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { extname, normalize, resolve, sep } from 'node:path';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
};

export class StaticSite {
  readonly url: string;
  /** Request paths served, for asserting the page came from here and not from the agent. */
  readonly served: string[] = [];
  private readonly server: Server;

  private constructor(server: Server, port: number) {
    this.server = server;
    this.url = `http://127.0.0.1:${port}`;
  }

  static async start(root: string): Promise<StaticSite> {
    const base = resolve(root);
    const server = createServer();
    await new Promise<void>((done, fail) => {
      server.once('error', fail);
      server.listen(0, '127.0.0.1', () => done());
    });
    const address = server.address();
    if (!address || typeof address !== 'object') throw new Error('static server did not bind');
    const site = new StaticSite(server, address.port);
    server.on('request', (req, res) => {
      const path = decodeURIComponent(new URL(req.url ?? '/', site.url).pathname);
      const file = resolve(base, `.${normalize(path.endsWith('/') ? `${path}index.html` : path)}`);
      if (file !== base && !file.startsWith(base + sep)) {
        res.writeHead(403).end();
        return;
      }
      readFile(file).then(
        (body) => {
          site.served.push(path);
          res.writeHead(200, { 'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream' }).end(body);
        },
        () => res.writeHead(404).end(),
      );
    });
    return site;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((done) => this.server.close(() => done()));
  }
}
