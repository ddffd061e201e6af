import got, { type Request } from 'got';
import { OutpostError } from '../../shared/errors.ts';
import type { Logger } from '../log.ts';
import { Backoff, StoppableTimer } from '../uplink/backoff.ts';

/**
 * The updater's HTTP client (got). Every request has connect and idle (socket) timeouts and a
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

export class HttpClient {
  readonly options: HttpOptions;
  private readonly timer = new StoppableTimer();
  private readonly active = new Set<Request>();
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

  private async *watch(url: string, stream: Request): AsyncGenerator<Buffer> {
    const o = this.options;
    const samples: Array<{ at: number; bytes: number }> = [];
    let total = 0;
    const started = Date.now();
    let slow: OutpostError | undefined;
    const watchdog = setInterval(
      () => {
        const now = Date.now();
        while (samples.length > 0 && (samples[0]?.at ?? now) < now - o.rateWindowMs) samples.shift();
        const recent = samples.reduce((n, s) => n + s.bytes, 0);
        if (now - started >= o.rateWindowMs && (recent * 1000) / o.rateWindowMs < o.minBytesPerSec) {
          slow = new OutpostError(
            'TIMEOUT',
            `GET ${url}: ${Math.round((recent * 1000) / o.rateWindowMs)} B/s over the last ${o.rateWindowMs} ms, below the ${o.minBytesPerSec} B/s minimum (${total} bytes so far)`,
          );
          stream.destroy(slow);
        }
      },
      Math.max(50, Math.min(1000, o.rateWindowMs / 4)),
    );
    try {
      for await (const chunk of stream) {
        const buf = chunk as Buffer;
        total += buf.length;
        samples.push({ at: Date.now(), bytes: buf.length });
        yield buf;
      }
    } catch (err) {
      throw slow ?? this.wrap(url, err as Error);
    } finally {
      clearInterval(watchdog);
      stream.destroy();
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
        res.abort();
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
  }
}
