import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import got from 'got';
import { OutpostError } from '../../shared/errors.ts';

/** A thin client of the admin API for the CLI, the demo and tests. Errors carry the server's message. */
export class AdminClient {
  constructor(
    readonly url: string,
    private readonly token: string,
  ) {}

  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    let res: Response;
    try {
      res = await fetch(`${this.url}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${this.token}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(30_000),
      });
    } catch (err) {
      throw new OutpostError(
        'DOWNLOAD_FAILED',
        `cannot reach the control plane at ${this.url}: ${String(err)}`,
        { cause: err },
      );
    }
    const text = await res.text();
    const parsed: unknown = text === '' ? undefined : JSON.parse(text);
    if (!res.ok) {
      const message = (parsed as { error?: string } | undefined)?.error ?? res.statusText;
      const code =
        res.status === 401
          ? 'UNAUTHORIZED'
          : res.status === 403
            ? 'FORBIDDEN'
            : res.status === 404
              ? 'NOT_FOUND'
              : res.status === 409
                ? 'CONFLICT'
                : res.status < 500
                  ? 'BAD_REQUEST'
                  : 'INTERNAL';
      throw new OutpostError(code, `${method} ${path}: ${res.status} ${message}`);
    }
    return parsed as T;
  }

  get<T>(path: string): Promise<T> {
    return this.request<T>('GET', path);
  }

  post<T>(path: string, body: unknown = {}): Promise<T> {
    return this.request<T>('POST', path, body);
  }

  /** Public (unauthenticated) TUF metadata. */
  async metadata(name: string): Promise<unknown> {
    const res = await fetch(`${this.url}/tuf/metadata/${name}`, { signal: AbortSignal.timeout(30_000) });
    if (!res.ok) throw new OutpostError('NOT_FOUND', `metadata ${name}: ${res.status}`);
    return res.json();
  }

  /** Streams a file to the staging area, reporting bytes sent. */
  async upload(
    file: string,
    sha256: string,
    onProgress?: (sent: number, total: number) => void,
  ): Promise<void> {
    const total = (await stat(file)).size;
    const req = got.put(`${this.url}/v1/admin/uploads/${sha256}`, {
      body: createReadStream(file),
      headers: {
        authorization: `Bearer ${this.token}`,
        'content-type': 'application/octet-stream',
        'content-length': String(total),
      },
      timeout: { connect: 10_000, send: 600_000, response: 60_000 },
      retry: { limit: 0 },
      throwHttpErrors: false,
    });
    req.on('uploadProgress', (p) => onProgress?.(p.transferred, total));
    const res = await req;
    if (res.statusCode !== 201)
      throw new OutpostError(
        'BAD_REQUEST',
        `upload of ${file} failed: ${res.statusCode} ${String(res.body).slice(0, 200)}`,
      );
  }
}
