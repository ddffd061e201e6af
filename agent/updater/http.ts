import type { ConnectionOptions } from 'node:tls';
import got, { type Request } from 'got';
import { OutpostError } from '../../shared/errors.ts';
import type { Logger } from '../log.ts';
import { Backoff, StoppableTimer } from '../uplink/backoff.ts';
import { openTransfer } from './file-transfer.ts';

/**
 * The updater's HTTP client: got for documents, file-transfer.ts for model files (openFile).
 * Every request has connect and idle (socket) timeouts and a
 * throughput watchdog: a server that trickles bytes just fast enough to dodge the idle timeout
 * (TUF's slow-retrieval attack) is cut off once the rate over `rateWindowMs` drops below
 * `minBytesPerSec`. Retries are ours, with capped exponential backoff and full jitter.
 */
export interface HttpOptions {
  connectTimeoutMs: number;
  idleTimeoutMs: number;
  /** Time to the first response byte. */
  responseTimeoutMs: number;
  minBytesPerSec: number;
  rateWindowMs: number;
  retries: number;
  backoffMinMs: number;
  backoffMaxMs: number;
  headers?: Record<string, string>;
  random?: () => number;
  /** Extra TLS options for file transfers (a private CA in tests). */
  tls?: ConnectionOptions;
}

export const DEFAULT_HTTP: HttpOptions = {
  connectTimeoutMs: 10_000,
  idleTimeoutMs: 30_000,
  responseTimeoutMs: 30_000,
  minBytesPerSec: 1024,
  rateWindowMs: 30_000,
  retries: 4,
  backoffMinMs: 1_000,
  backoffMaxMs: 60_000,
};

export class HttpStatusError extends OutpostError {
  constructor(
    readonly url: string,
    readonly statusCode: number,
  ) {
    super(statusCode === 404 ? 'NOT_FOUND' : 'DOWNLOAD_FAILED', `GET ${url} answered ${statusCode}`, {
      details: { statusCode },
    });
  }
}

export interface OpenResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: AsyncIterable<Buffer>;
  /** Ends the transfer early (size cap reached, caller gave up). */
  abort(): void;
}

/** A file transfer's response: body buffers are the caller's until passed to release(). */
export interface FileResponse extends OpenResponse {
  release(chunk: Buffer): void;
}

export class HttpClient {
  readonly options: HttpOptions;
  private readonly timer = new StoppableTimer();
  private readonly active = new Set<Request>();
  private readonly transfers = new Set<(err: Error) => void>();
  private stopped = false;

  constructor(
    options: Partial<HttpOptions>,
    private readonly log: Logger,
  ) {
    this.options = { ...DEFAULT_HTTP, ...options };
  }

  /** One attempt: resolves on the response head; the body is guarded by the watchdog. */
  open(url: string, headers: Record<string, string> = {}): Promise<OpenResponse> {
    if (this.stopped) return Promise.reject(new OutpostError('SHUTTING_DOWN', `GET ${url}: stopped`));
    const o = this.options;
    const stream: Request = got.stream(url, {
      headers: { 'user-agent': 'outpost-agent', ...o.headers, ...headers },
      timeout: { connect: o.connectTimeoutMs, socket: o.idleTimeoutMs, response: o.responseTimeoutMs },
      retry: { limit: 0 },
      throwHttpErrors: false,
      decompress: false,
      followRedirect: true,
    });
    this.active.add(stream);
    stream.once('close', () => this.active.delete(stream));
    return new Promise((resolve, reject) => {
      stream.once('error', (err: Error) => reject(this.wrap(url, err)));
      stream.once('response', (res: { statusCode: number; headers: OpenResponse['headers'] }) => {
        stream.removeAllListeners('error');
        // Errors reach the consumer through the body iterator; this keeps an unread body's
        // late socket error from becoming an unhandled 'error' event.
        stream.on('error', () => undefined);
        resolve({
          status: res.statusCode,
          headers: res.headers,
          body: this.watch(url, stream),
          abort: () => stream.destroy(),
        });
      });
    });
  }

  /**
   * One attempt at a large file (a model): the body arrives in a few reused buffers, each to be
   * given back with release() once written (see file-transfer.ts), under the same timeouts and
   * throughput watchdog as open().
   */
  async openFile(url: string, headers: Record<string, string> = {}): Promise<FileResponse> {
    if (this.stopped) throw new OutpostError('SHUTTING_DOWN', `GET ${url}: stopped`);
    const o = this.options;
    const res = await openTransfer(
      url,
      { 'user-agent': 'outpost-agent', ...o.headers, ...headers },
      {
        connectTimeoutMs: o.connectTimeoutMs,
        responseTimeoutMs: o.responseTimeoutMs,
        idleTimeoutMs: o.idleTimeoutMs,
        ...(o.tls === undefined ? {} : { tls: o.tls }),
      },
      (abort) => {
        this.transfers.add(abort);
        return () => this.transfers.delete(abort);
      },
    );
    const body = res.body;
    const watched = async function* (this: HttpClient): AsyncGenerator<Buffer> {
      const stop = this.watchdog(
        url,
        () => res.received,
        (err) => res.cancel(err),
      );
      try {
        yield* body;
      } finally {
        stop();
        res.abort();
      }
    }.call(this);
    return {
      status: res.status,
      headers: res.headers,
      body: watched,
      release: (chunk) => res.release(chunk),
      abort: () => res.abort(),
    };
  }

  /**
   * Cuts a transfer off when fewer than minBytesPerSec arrive over rateWindowMs (TUF's
   * slow-retrieval attack); `received` is the running byte count. Returns the stop function.
   */
  private watchdog(url: string, received: () => number, kill: (err: OutpostError) => void): () => void {
    const o = this.options;
    const started = Date.now();
    const samples: Array<{ at: number; total: number }> = [{ at: started, total: received() }];
    const timer = setInterval(
      () => {
        const now = Date.now();
        const total = received();
        samples.push({ at: now, total });
        while (samples.length > 1 && (samples[1]?.at ?? now) <= now - o.rateWindowMs) samples.shift();
        const recent = total - (samples[0]?.total ?? 0);
        if (now - started >= o.rateWindowMs && (recent * 1000) / o.rateWindowMs < o.minBytesPerSec) {
          clearInterval(timer);
          kill(
            new OutpostError(
              'TIMEOUT',
              `GET ${url}: ${Math.round((recent * 1000) / o.rateWindowMs)} B/s over the last ${o.rateWindowMs} ms, below the ${o.minBytesPerSec} B/s minimum (${total} bytes so far)`,
            ),
          );
        }
      },
      Math.max(50, Math.min(1000, o.rateWindowMs / 4)),
    );
    return () => clearInterval(timer);
  }

  private async *watch(url: string, stream: Request): AsyncGenerator<Buffer> {
    let total = 0;
    let slow: OutpostError | undefined;
    let complete = false;
    const stop = this.watchdog(
      url,
      () => total,
      (err) => {
        slow = err;
        stream.destroy(err);
      },
    );
    try {
      for await (const chunk of stream) {
        const buf = chunk as Buffer;
        total += buf.length;
        yield buf;
      }
      complete = true;
    } catch (err) {
      throw slow ?? this.wrap(url, err as Error);
    } finally {
      stop();
      // A body read to its end leaves the connection to the agent's pool for the next request
      // (a check makes half a dozen); one left unread or failed is closed.
      if (!complete) stream.destroy();
    }
    if (slow !== undefined) throw slow;
  }

  private wrap(url: string, err: Error): Error {
    if (err instanceof OutpostError) return err;
    const code = (err as NodeJS.ErrnoException).code;
    return new OutpostError(
      code === 'ETIMEDOUT' ? 'TIMEOUT' : 'DOWNLOAD_FAILED',
      `GET ${url}: ${err.message}${code === undefined ? '' : ` (${code})`}`,
      { cause: err, details: { code } },
    );
  }

  /** Whether an error is worth another attempt: network trouble, timeouts and 5xx, not 4xx. */
  static retriable(err: unknown): boolean {
    if (err instanceof HttpStatusError) return err.statusCode >= 500 || err.statusCode === 429;
    return err instanceof OutpostError && (err.is('TIMEOUT') || err.is('DOWNLOAD_FAILED'));
  }

  /** Runs `attempt` until it succeeds, a non-retriable error, `retries` is used up, or stop(). */
  async withRetries<T>(what: string, attempt: (n: number) => Promise<T>): Promise<T> {
    const o = this.options;
    const backoff = new Backoff(o.backoffMinMs, o.backoffMaxMs, o.random);
    for (let n = 0; ; n++) {
      try {
        return await attempt(n);
      } catch (err) {
        if (this.stopped || n >= o.retries || !HttpClient.retriable(err)) throw err;
        const delay = backoff.next();
        this.log.warn({ err, attempt: n + 1, delayMs: delay, what }, 'download attempt failed; retrying');
        await this.timer.sleep(delay);
        if (this.stopped) throw new OutpostError('SHUTTING_DOWN', `${what}: stopped`);
      }
    }
  }

  /** GET a small document whole, never reading more than `maxLength` bytes. */
  getBytes(url: string, maxLength: number): Promise<Buffer> {
    return this.withRetries(`GET ${url}`, async () => {
      const res = await this.open(url);
      if (res.status !== 200) {
        await discard(res);
        throw new HttpStatusError(url, res.status);
      }
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of res.body) {
        size += chunk.length;
        if (size > maxLength) {
          res.abort();
          throw new OutpostError('TRUST_FAILED', `GET ${url}: more than the ${maxLength} bytes allowed`, {
            details: { endlessData: true },
          });
        }
        chunks.push(chunk);
      }
      return Buffer.concat(chunks);
    });
  }

  /** Ends retries and aborts transfers in flight, so the agent's shutdown is not held up. */
  stop(): void {
    this.stopped = true;
    this.timer.cancel();
    for (const s of this.active) s.destroy(new OutpostError('SHUTTING_DOWN', 'the updater is stopping'));
    this.active.clear();
    for (const abort of [...this.transfers])
      abort(new OutpostError('SHUTTING_DOWN', 'the updater is stopping'));
    this.transfers.clear();
  }
}

/** Reads and drops a short error body so its connection can serve the next request; a long one is cut. */
async function discard(res: OpenResponse): Promise<void> {
  let size = 0;
  try {
    for await (const chunk of res.body) {
      size += chunk.length;
      // Leaving the loop early closes the connection.
      if (size > 64 * 1024) break;
    }
  } catch {
    // The status is what the caller reports.
  }
}
