import { timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { errorMessage, isOutpostError, OutpostError } from '../../shared/errors.ts';
import { isLoopback } from '../config.ts';
import type { Logger } from '../log.ts';
import type { Context, Params, Router } from './router.ts';

export interface HttpOptions {
  host: string;
  port: number;
  token?: string | undefined;
  bodyLimitBytes: number;
  headersTimeoutMs: number;
  requestTimeoutMs: number;
  keepAliveTimeoutMs: number;
  log: Logger;
  /** Paths answered without a token even when one is set (liveness probes). */
  public?: readonly string[];
  /** Called once per answered request with the matched route pattern (metrics). */
  onResponse?: (method: string, route: string, status: number, seconds: number) => void;
}

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

export function sendError(
  res: ServerResponse,
  status: number,
  message: string,
  headers: Record<string, string> = {},
): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  sendJson(res, status, { error: message }, headers);
}

function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? Number.NaN);
  if (Number.isFinite(declared) && declared > limit) {
    return Promise.reject(
      new OutpostError('PAYLOAD_TOO_LARGE', `body of ${declared} bytes exceeds the limit of ${limit}`),
    );
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        reject(new OutpostError('PAYLOAD_TOO_LARGE', `body exceeds the limit of ${limit} bytes`));
        req.resume();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size)));
    req.on('error', reject);
  });
}

/** A handler's view of its request. A class, so the lazy `url` getter costs nothing per request. */
class RequestContext implements Context {
  private parsed: URL | undefined;

  constructor(
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly params: Params,
    private readonly target: string,
    private readonly bodyLimit: number,
  ) {}

  /** Parsed only for the few handlers that read the query. */
  get url(): URL {
    this.parsed ??= new URL(this.target, 'http://localhost');
    return this.parsed;
  }

  body(): Promise<Buffer> {
    return readBody(this.req, this.bodyLimit);
  }
}

/** Request targets that are a plain absolute path: no dot segments, nothing a URL parser would rewrite. */
const PLAIN_PATH = /^\/[A-Za-z0-9\-_~!$&'()*+,;=:@/%]*$/;
const DOT_SEGMENT = /\/(?:\.|%2e)/i;

/**
 * The path of a request target. Almost every request is a plain path (and maybe a query),
 * taken as it is; anything else (dot segments, absolute-form targets, characters a URL parser
 * escapes) goes through the WHATWG parser so that routing and the token check see the same
 * normalised path either way.
 */
export function pathOf(target: string): string {
  const q = target.indexOf('?');
  const path = q === -1 ? target : target.slice(0, q);
  if (PLAIN_PATH.test(path) && !DOT_SEGMENT.test(path)) return path;
  return new URL(target, 'http://localhost').pathname;
}

function tokenMatches(header: string | undefined, token: string): boolean {
  if (header === undefined || !header.startsWith('Bearer ')) return false;
  const given = Buffer.from(header.slice(7));
  const want = Buffer.from(token);
  return given.length === want.length && timingSafeEqual(given, want);
}

/**
 * The local HTTP API server: plain node:http (the inference path is hot and a framework adds
 * little here), a bearer token when one is configured, a body limit, and header, request and
 * idle timeouts against slow clients. Errors are `{"error": "…"}` with the status their code
 * carries.
 */
export class HttpServer {
  private server: Server | undefined;
  readonly counters = { requests: 0, errors: 0, unauthorized: 0 };

  constructor(
    private readonly router: Router,
    private readonly options: HttpOptions,
  ) {}

  async start(): Promise<number> {
    const o = this.options;
    // The config refuses this too; the server checks again so no other path can open it unguarded.
    if (!isLoopback(o.host) && (o.token === undefined || o.token === '')) {
      throw new OutpostError(
        'CONFIG_INVALID',
        `refusing to serve the local API on ${o.host} without a bearer token (http.token)`,
      );
    }
    const timeouts = [o.headersTimeoutMs, o.requestTimeoutMs].filter((t) => t > 0);
    const server = createServer(
      {
        headersTimeout: o.headersTimeoutMs,
        requestTimeout: o.requestTimeoutMs,
        keepAliveTimeout: o.keepAliveTimeoutMs,
        // Node checks header and request deadlines on this interval (30 s by default), so a
        // slow client would otherwise hold its socket far past the configured timeouts.
        connectionsCheckingInterval: Math.max(50, Math.min(1_000, ...timeouts.map((t) => t / 4))),
      },
      (req, res) => {
        void this.handle(req, res);
      },
    );
    server.keepAliveTimeout = o.keepAliveTimeoutMs;
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(o.port, o.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const port = (server.address() as AddressInfo).port;
    o.log.info({ host: o.host, port, auth: o.token !== undefined }, 'local HTTP API listening');
    return port;
  }

  get port(): number | undefined {
    const address = this.server?.address();
    return address !== null && typeof address === 'object' ? address.port : undefined;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.counters.requests++;
    const o = this.options;
    const started = performance.now();
    const target = req.url ?? '/';
    const path = pathOf(target);
    let route = 'unmatched';
    if (
      o.token !== undefined &&
      !(o.public ?? []).includes(path) &&
      !tokenMatches(req.headers.authorization, o.token)
    ) {
      this.counters.unauthorized++;
      req.resume();
      sendError(res, 401, 'missing or wrong bearer token', { 'www-authenticate': 'Bearer' });
    } else {
      const found = this.router.match(req.method ?? 'GET', path);
      if (!('handler' in found)) {
        req.resume();
        if (found.allowed.length > 0)
          sendError(res, 405, `method ${req.method} not allowed`, { allow: found.allowed.join(', ') });
        else sendError(res, 404, `no route for ${req.method} ${path}`);
      } else {
        route = found.route;
        try {
          await found.handler(new RequestContext(req, res, found.params, target, o.bodyLimitBytes));
        } catch (err) {
          this.answerError(res, path, err);
        }
      }
    }
    // Every handler has answered (or failed) when its promise settles: timed here, the figure
    // needs no 'finish' listener and closure per request.
    if (o.onResponse !== undefined) {
      try {
        o.onResponse(req.method ?? 'GET', route, res.statusCode, (performance.now() - started) / 1000);
      } catch {
        // Metrics must never break an answer.
      }
    }
  }

  private answerError(res: ServerResponse, path: string, err: unknown): void {
    this.counters.errors++;
    const log = this.options.log;
    if (isOutpostError(err)) {
      const headers: Record<string, string> = {};
      if (err.status === 503 || err.status === 429) headers['retry-after'] = '1';
      if (err.status >= 500) log.warn({ err, path }, 'request failed');
      if (err.status === 413) res.setHeader('connection', 'close');
      sendError(res, err.status, err.message, headers);
      return;
    }
    log.error({ err, path }, 'unhandled error in HTTP handler');
    sendError(res, 500, errorMessage(err));
  }

  /** Stops accepting connections, lets in-flight requests finish, then closes idle ones. */
  async stop(graceMs = 2_000): Promise<void> {
    const server = this.server;
    if (server === undefined) return;
    this.server = undefined;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    const timer = setTimeout(() => server.closeAllConnections(), graceMs);
    await closed;
    clearTimeout(timer);
  }
}
