import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, normalize } from 'node:path';

/**
 * A plain static file server over a directory, the way a CDN mirror of the TUF repository
 * would serve it: 404 for missing files, `Range` (single `bytes=a-` / `a-b`) with `If-Range`
 * on the ETag, and a hook that lets a test take over any request to misbehave.
 */
export interface StaticServer {
  url: string;
  server: Server;
  /** Requests seen, in order: method, path and the Range header. */
  requests: Array<{ path: string; range: string | undefined }>;
  hook: ((req: IncomingMessage, res: ServerResponse, file: string) => boolean | Promise<boolean>) | undefined;
  close(): Promise<void>;
}

export interface ServeOptions {
  /**
   * Bytes read from a file at a time (Node's default is 64 KiB). A mirror that stands in for a
   * CDN reads in large blocks, as nginx does (sendfile, big output buffers); the tests keep the
   * default.
   */
  readChunkBytes?: number;
}

export async function serveDirectory(dir: string, options: ServeOptions = {}): Promise<StaticServer> {
  const chunk = options.readChunkBytes === undefined ? {} : { highWaterMark: options.readChunkBytes };
  const state: StaticServer = {
    url: '',
    server: undefined as unknown as Server,
    requests: [],
    hook: undefined,
    close: async () => {
      state.server.closeAllConnections();
      await new Promise<void>((resolve) => state.server.close(() => resolve()));
    },
  };
  state.server = createServer((req, res) => {
    void handle(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(500);
      res.end();
    });
  });
  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    state.requests.push({ path, range: req.headers.range });
    const file = join(dir, normalize(path).replace(/^(\.\.(\/|$))+/, ''));
    if (state.hook !== undefined && (await state.hook(req, res, file))) return;
    let size: number;
    let mtime: number;
    try {
      const s = await stat(file);
      if (!s.isFile()) throw new Error('not a file');
      size = s.size;
      mtime = s.mtimeMs;
    } catch {
      res.writeHead(404).end();
      return;
    }
    const etag = `"${size.toString(16)}-${Math.floor(mtime).toString(16)}"`;
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    const ifRange = req.headers['if-range'];
    if (range !== null && (ifRange === undefined || ifRange === etag)) {
      const start = Number(range[1]);
      const end = range[2] === '' ? size - 1 : Math.min(Number(range[2]), size - 1);
      if (start >= size) {
        res.writeHead(416, { 'content-range': `bytes */${size}` }).end();
        return;
      }
      res.writeHead(206, {
        'content-length': end - start + 1,
        'content-range': `bytes ${start}-${end}/${size}`,
        etag,
        'accept-ranges': 'bytes',
      });
      createReadStream(file, { start, end, ...chunk }).pipe(res);
      return;
    }
    res.writeHead(200, { 'content-length': size, etag, 'accept-ranges': 'bytes' });
    createReadStream(file, chunk).pipe(res);
  }
  await new Promise<void>((resolve) => state.server.listen(0, '127.0.0.1', resolve));
  state.url = `http://127.0.0.1:${(state.server.address() as AddressInfo).port}`;
  return state;
}
