import { connect, type Socket } from 'node:net';
import { Histogram } from './histogram.ts';

export interface LoadTarget {
  port: number;
  path: string;
  method?: 'GET' | 'POST';
  body?: Buffer;
  headers?: Record<string, string>;
}

export interface LoadResult {
  completed: number;
  errors: number;
  /** Status codes other than 200, with counts (so a run of 429s is visible, not just "errors"). */
  statuses: Record<string, number>;
  elapsedMs: number;
  /** Completed requests per second. */
  throughput: number;
  /** Latency of completed requests, in µs. */
  latency: Histogram;
}

/** The whole request, head and body, as the bytes every send of it writes. */
function requestBytes(target: LoadTarget): Buffer {
  const head = [
    `${target.method ?? 'GET'} ${target.path} HTTP/1.1`,
    `host: 127.0.0.1:${target.port}`,
    'connection: keep-alive',
  ];
  const headers: Record<string, string> = { ...target.headers };
  if (target.body !== undefined) {
    headers['content-type'] ??= 'application/json';
    headers['content-length'] = String(target.body.length);
  }
  for (const [k, v] of Object.entries(headers)) head.push(`${k}: ${v}`);
  return Buffer.concat([Buffer.from(`${head.join('\r\n')}\r\n\r\n`), target.body ?? Buffer.alloc(0)]);
}

const CRLF = Buffer.from('\r\n');
const CRLF2 = Buffer.from('\r\n\r\n');

/**
 * Where the response at the start of `buf` ends, and its status; undefined while incomplete.
 * Reads content-length and chunked bodies, the two a keep-alive server can send.
 */
export function parseResponse(buf: Buffer): { status: number; end: number; close: boolean } | undefined {
  const headEnd = buf.indexOf(CRLF2);
  if (headEnd < 0) return undefined;
  const head = buf.toString('latin1', 0, headEnd);
  const status = Number(head.slice(9, 12));
  if (!head.startsWith('HTTP/1.') || !Number.isInteger(status))
    throw new Error(`not an HTTP response: ${JSON.stringify(head.slice(0, 40))}`);
  let length = 0;
  let chunked = false;
  let close = false;
  for (const line of head.split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line
      .slice(colon + 1)
      .trim()
      .toLowerCase();
    if (name === 'content-length') length = Number(value);
    else if (name === 'transfer-encoding') chunked = value.includes('chunked');
    else if (name === 'connection') close = value === 'close';
  }
  const bodyStart = headEnd + 4;
  if (!chunked) {
    const end = bodyStart + length;
    return buf.length >= end ? { status, end, close } : undefined;
  }
  let at = bodyStart;
  for (;;) {
    const lineEnd = buf.indexOf(CRLF, at);
    if (lineEnd < 0) return undefined;
    const size = Number.parseInt(buf.toString('latin1', at, lineEnd), 16);
    if (!Number.isFinite(size)) throw new Error('bad chunk size in response');
    if (size === 0) {
      // The last chunk, then trailers (usually none), then an empty line.
      const end = buf.indexOf(CRLF2, lineEnd);
      return end < 0 ? undefined : { status, end: end + 4, close };
    }
    at = lineEnd + 2 + size + 2;
    if (buf.length < at) return undefined;
  }
}

/**
 * One keep-alive connection that sends the same request bytes and reads whole responses. The
 * load generator shares the CPU with the server it measures, so it does as little as it can per
 * request: no http.Agent, no request or response objects, no header parsing beyond the framing.
 */
class Connection {
  private socket: Socket | undefined;
  private buf: Buffer = Buffer.alloc(0);
  private waiting: { resolve: (status: number) => void; reject: (err: Error) => void } | undefined;

  constructor(
    private readonly port: number,
    private readonly bytes: Buffer,
  ) {}

  private open(): Socket {
    const socket = connect({ host: '127.0.0.1', port: this.port, noDelay: true });
    // Events of a socket this connection has already dropped are not its business any more.
    socket.on('data', (chunk: Buffer) => {
      if (this.socket === socket) this.received(chunk);
    });
    socket.on('error', (err) => {
      if (this.socket === socket) this.drop(err);
    });
    socket.on('close', () => {
      if (this.socket === socket)
        this.drop(Object.assign(new Error('connection closed'), { code: 'ECONNRESET' }));
    });
    return socket;
  }

  private received(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const w = this.waiting;
    if (w === undefined) return;
    let parsed: ReturnType<typeof parseResponse>;
    try {
      parsed = parseResponse(this.buf);
    } catch (err) {
      this.drop(err as Error);
      return;
    }
    if (parsed === undefined) return;
    this.buf = this.buf.subarray(parsed.end);
    this.waiting = undefined;
    if (parsed.close) this.drop();
    w.resolve(parsed.status);
  }

  /** Forgets the socket (the next send opens another); a request in progress fails with `err`. */
  private drop(err?: Error): void {
    const socket = this.socket;
    this.socket = undefined;
    this.buf = Buffer.alloc(0);
    socket?.destroy();
    const w = this.waiting;
    this.waiting = undefined;
    if (w !== undefined) w.reject(err ?? new Error('connection dropped'));
  }

  send(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject };
      this.socket ??= this.open();
      this.socket.write(this.bytes);
    });
  }

  close(): void {
    this.drop();
  }
}

/**
 * A closed-loop load generator: `concurrency` clients, each sending its next request as soon
 * as the previous one is answered, over keep-alive connections (one per client), for
 * `durationMs`. Closed loop is how perf_analyzer drives a server: throughput is what the
 * server sustains at that concurrency, and latency is not inflated by a queue we made.
 */
export async function closedLoop(
  target: LoadTarget,
  concurrency: number,
  durationMs: number,
): Promise<LoadResult> {
  const bytes = requestBytes(target);
  const latency = new Histogram();
  const statuses: Record<string, number> = {};
  let completed = 0;
  let errors = 0;
  const started = performance.now();
  const deadline = started + durationMs;
  const client = async () => {
    const connection = new Connection(target.port, bytes);
    while (performance.now() < deadline) {
      const t0 = performance.now();
      try {
        const status = await connection.send();
        if (status === 200) {
          latency.record((performance.now() - t0) * 1000);
          completed++;
        } else {
          errors++;
          statuses[status] = (statuses[status] ?? 0) + 1;
        }
      } catch (err) {
        errors++;
        const key = err instanceof Error && 'code' in err ? String(err.code) : 'error';
        statuses[key] = (statuses[key] ?? 0) + 1;
        // A refused connection would otherwise spin this loop as fast as the CPU allows.
        await new Promise((r) => setTimeout(r, 5));
      }
    }
    connection.close();
  };
  await Promise.all(Array.from({ length: concurrency }, client));
  const elapsedMs = performance.now() - started;
  return { completed, errors, statuses, elapsedMs, throughput: (completed / elapsedMs) * 1000, latency };
}

/** Merges the windows judged stable into one figure set: throughput averaged, latencies pooled. */
export function combine(results: readonly LoadResult[]): LoadResult {
  const latency = Histogram.merged(results.map((r) => r.latency));
  const statuses: Record<string, number> = {};
  for (const r of results)
    for (const [k, v] of Object.entries(r.statuses)) statuses[k] = (statuses[k] ?? 0) + v;
  const completed = results.reduce((a, r) => a + r.completed, 0);
  const elapsedMs = results.reduce((a, r) => a + r.elapsedMs, 0);
  return {
    completed,
    errors: results.reduce((a, r) => a + r.errors, 0),
    statuses,
    elapsedMs,
    throughput: (completed / elapsedMs) * 1000,
    latency,
  };
}

/** Sends `count` requests one after another over one keep-alive connection; throws on any non-200. */
export async function sendSequentially(target: LoadTarget, count: number): Promise<void> {
  const connection = new Connection(target.port, requestBytes(target));
  try {
    for (let i = 0; i < count; i++) {
      const status = await connection.send();
      if (status !== 200) throw new Error(`${target.path} answered ${status}`);
    }
  } finally {
    connection.close();
  }
}
