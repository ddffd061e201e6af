import { createReadStream } from 'node:fs';
import { open, stat } from 'node:fs/promises';
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
   * Serve files through two reused buffers of this many bytes, the way a CDN or nginx does
   * (sendfile, fixed output buffers), instead of a Node read stream, which takes a fresh buffer
   * for every read: for a 50 MB model that is 50 fresh MiB the server's process must fault in,
   * CPU that on a small machine it takes from the agent under test. The tests keep the stream.
   */
  readChunkBytes?: number;
}

/** Bytes [start, end] of `file` to `res`, read into two buffers used in turn. */
async function sendThroughBuffers(
  res: ServerResponse,
  file: string,
  start: number,
  end: number,
  bytes: number,
): Promise<void> {
  const fh = await open(file, 'r');
  try {
    const buffers = [Buffer.allocUnsafe(bytes), Buffer.allocUnsafe(bytes)];
    // A buffer is read into again only once the socket has taken what was written from it.
    const written: Array<Promise<void> | undefined> = [undefined, undefined];
    let pos = start;
    for (let turn = 0; pos <= end && !res.destroyed; turn = 1 - turn) {
      await written[turn];
      const buffer = buffers[turn] as Buffer;
      const { bytesRead } = await fh.read(buffer, 0, Math.min(bytes, end - pos + 1), pos);
      if (bytesRead === 0) break;
      pos += bytesRead;
      written[turn] = new Promise((resolve, reject) =>
        res.write(buffer.subarray(0, bytesRead), (err) => (err ? reject(err) : resolve())),
      );
    }
    await Promise.all(written);
    res.end();
  } finally {
    await fh.close();
  }
}

export async function serveDirectory(dir: string, options: ServeOptions = {}): Promise<StaticServer> {
  /** The whole file, or bytes [start, end] of it. */
  const send = (res: ServerResponse, file: string, size: number, range?: [number, number]): Promise<void> => {
    const [start, end] = range ?? [0, size - 1];
    if (options.readChunkBytes !== undefined)
      return sendThroughBuffers(res, file, start, end, options.readChunkBytes);
    (range === undefined ? createReadStream(file) : createReadStream(file, { start, end })).pipe(res);
    return Promise.resolve();
  };
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
      await send(res, file, size, [start, end]);
      return;
    }
    res.writeHead(200, { 'content-length': size, etag, 'accept-ranges': 'bytes' });
    await send(res, file, size);
  }
  await new Promise<void>((resolve) => state.server.listen(0, '127.0.0.1', resolve));
  state.url = `http://127.0.0.1:${(state.server.address() as AddressInfo).port}`;
  return state;
}
