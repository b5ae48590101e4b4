/**
 * A static file server for the browser test: serves one folder (the repository root) on
 * 127.0.0.1 at a random free port, so the page loads dist/*.js and shaders/*.wgsl by URL exactly
 * as from an installed copy of the package. GET/HEAD only; paths that leave the folder, dot
 * files/folders (.git, .cache) and node_modules are 404.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, resolve, sep } from 'node:path';

const MIME: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.wgsl': 'text/plain; charset=utf-8',
  '.ts': 'text/plain; charset=utf-8',
  '.md': 'text/plain; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

export interface StaticServer {
  /** http://127.0.0.1:<port>/ */
  url: string;
  /** Every request served, as `STATUS METHOD path` (for failure messages). */
  log: string[];
  close(): Promise<void>;
}

/** Serves `root` on 127.0.0.1; `extra` maps URL paths to in-memory bodies (e.g. a generated page). */
export async function startStaticServer(
  root: string,
  extra: Record<string, { type: string; body: string }> = {},
): Promise<StaticServer> {
  const base = resolve(root);
  const log: string[] = [];
  const server = createServer((req, res) => {
    const done = (
      status: number,
      type = 'text/plain; charset=utf-8',
      body: string | undefined = undefined,
    ) => {
      log.push(`${status} ${req.method} ${req.url}`);
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : (body ?? String(status)));
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return done(405);
    let path: string;
    try {
      path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    } catch {
      return done(400);
    }
    const mem = extra[path];
    if (mem) return done(200, mem.type, mem.body);
    const file = resolve(base, `.${path}`);
    const rel = file.slice(base.length + 1);
    if (
      !file.startsWith(base + sep) ||
      path.includes('\0') ||
      rel.split(sep).some((p) => p.startsWith('.') || p === 'node_modules')
    )
      return done(404);
    stat(file).then(
      (st) => {
        if (!st.isFile()) return done(404);
        log.push(`200 ${req.method} ${req.url}`);
        res.writeHead(200, {
          'content-type': MIME[extname(file)] ?? 'application/octet-stream',
          'content-length': st.size,
          'cache-control': 'no-store',
        });
        if (req.method === 'HEAD') res.end();
        else createReadStream(file).pipe(res);
      },
      () => done(404),
    );
  });
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => ok());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/`,
    log,
    close: () =>
      new Promise<void>((ok) => {
        server.closeAllConnections();
        server.close(() => ok());
      }),
  };
}
