import { isIP, connect as netConnect, type OnReadOpts, type Socket } from 'node:net';
import { type ConnectionOptions, connect as tlsConnect } from 'node:tls';
import { OutpostError } from '../../shared/errors.ts';

/**
 * A plain HTTP/1.1 GET that receives a large body into a few reused buffers: the socket reads
 * straight into them (`onread`), the caller gets each filled buffer and hands it back with
 * release() once it is written. Node's HTTP client allocates a buffer for every socket read and
 * copies every body chunk into another one: some 1,600 short-lived buffers for a 50 MB model,
 * whose external memory set off 3 to 6 full garbage collections per download. Here a download
 * touches a fixed 4 MiB, and when the caller falls behind the socket stops reading until a
 * buffer comes back, so TCP pushes back on the server instead of memory piling up.
 *
 * Only what the updater's model download needs: GET, Content-Length, chunked or close-delimited
 * bodies, redirects (with the Authorization header dropped when the origin changes), http and
 * https, connect / response / idle timeouts. Small documents keep going through got.
 */

export interface TransferOptions {
  connectTimeoutMs: number;
  /** Time from the request to the end of the response head. */
  responseTimeoutMs: number;
  /** No byte received for this long ends the transfer. */
  idleTimeoutMs: number;
  maxRedirects?: number;
  /** Size of each receive buffer, and how many a transfer may hold (the bytes read ahead of the caller). */
  bufferBytes?: number;
  buffers?: number;
  /** Extra TLS options (a private CA in tests). */
  tls?: ConnectionOptions;
}

export interface TransferResponse {
  status: number;
  /** Lower-case names; repeated headers become arrays. */
  headers: Record<string, string | string[]>;
  /** The URL that answered, after redirects. */
  url: string;
  /**
   * Filled receive buffers, in order. Each is the caller's until it is passed to release();
   * a buffer not released stops the transfer once the others are in use.
   */
  body: AsyncIterable<Buffer>;
  release(chunk: Buffer): void;
  /** Ends the transfer (the caller stops reading early). */
  abort(): void;
  /** Ends the transfer with an error the body iterator throws (after the bytes already received). */
  cancel(err: Error): void;
  /** Bytes received so far (for the throughput watchdog). */
  readonly received: number;
}

const DEFAULT_BUFFER_BYTES = 1024 * 1024;
const DEFAULT_BUFFERS = 4;
/** Longest response head accepted. */
const MAX_HEAD_BYTES = 64 * 1024;
/** Longest chunk-size line (with extensions) or trailer line accepted. */
const MAX_LINE_BYTES = 4096;
/** Where a read lands while every receive buffer is with the caller (the socket is paused then). */
const SPARE_BYTES = 64 * 1024;

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

function fail(
  url: string,
  message: string,
  code = 'DOWNLOAD_FAILED' as 'DOWNLOAD_FAILED' | 'TIMEOUT',
): OutpostError {
  return new OutpostError(code, `GET ${url}: ${message}`, {
    details: { code: code === 'TIMEOUT' ? 'ETIMEDOUT' : undefined },
  });
}

function assertHeaderValue(name: string, value: string): void {
  // A value carrying CR or LF would let it end the header and inject others.
  if (!/^[\t\x20-\x7e\x80-\xff]*$/.test(value))
    throw new OutpostError('DOWNLOAD_FAILED', `request header ${name} has characters a header cannot carry`);
}

/** GET `url`, following redirects; resolves with the final response's head. */
export async function openTransfer(
  url: string,
  headers: Record<string, string>,
  options: TransferOptions,
  register: (abort: (err: Error) => void) => () => void = () => () => undefined,
): Promise<TransferResponse> {
  let current = new URL(url);
  let sent = { ...headers };
  for (let hop = 0; ; hop++) {
    const res = await request(current, sent, options, register);
    if (!REDIRECTS.has(res.status)) return res;
    res.abort();
    const location = res.headers['location'];
    if (typeof location !== 'string' || location === '')
      throw fail(current.href, `answered ${res.status} without a Location`);
    if (hop >= (options.maxRedirects ?? 10))
      throw fail(url, `more than ${options.maxRedirects ?? 10} redirects`);
    const next = new URL(location, current);
    if (next.origin !== current.origin) {
      // Credentials are for the origin they were configured for, not for wherever it redirects.
      sent = Object.fromEntries(Object.entries(sent).filter(([k]) => k.toLowerCase() !== 'authorization'));
    }
    current = next;
  }
}

type Framing = { kind: 'length'; left: number } | { kind: 'chunked' } | { kind: 'close' } | { kind: 'none' };

function request(
  url: URL,
  headers: Record<string, string>,
  o: TransferOptions,
  register: (abort: (err: Error) => void) => () => void,
): Promise<TransferResponse> {
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    return Promise.reject(fail(url.href, `unsupported protocol ${url.protocol}`));
  const lines = [`GET ${url.pathname}${url.search} HTTP/1.1`, `host: ${url.host}`];
  const names = new Set<string>();
  for (const [name, value] of Object.entries({
    'accept-encoding': 'identity',
    connection: 'close',
    ...headers,
  })) {
    if (
      !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name) ||
      names.has(name.toLowerCase()) ||
      name.toLowerCase() === 'host'
    )
      return Promise.reject(fail(url.href, `bad request header ${JSON.stringify(name)}`));
    assertHeaderValue(name, value);
    names.add(name.toLowerCase());
    lines.push(`${name}: ${value}`);
  }
  const head = Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');
  return new Promise<TransferResponse>((resolve, reject) =>
    new Transfer(url, head, o, register, resolve, reject).start(),
  );
}

class Transfer implements TransferResponse {
  status = 0;
  headers: Record<string, string | string[]> = {};
  readonly url: string;
  received = 0;
  readonly body: AsyncIterable<Buffer>;

  private socket: Socket | undefined;
  private readonly bufferBytes: number;
  private readonly maxBuffers: number;
  /** Every receive buffer of this transfer by its memory, to take a released slice back. */
  private readonly owned = new Map<ArrayBufferLike, Buffer>();
  private readonly free: Buffer[] = [];
  private readonly spare = Buffer.allocUnsafeSlow(SPARE_BYTES);
  /** The buffer reads go to and how much of it holds body bytes. */
  private cur: Buffer;
  private fill = 0;
  /** Set while no buffer is free: the socket is paused and reads land in `spare`. */
  private starved = false;
  private readonly ready: Buffer[] = [];
  private framing: Framing | undefined;
  private chunk = { state: 'size' as 'size' | 'data' | 'data-end' | 'trailer' | 'done', left: 0, line: '' };
  private done = false;
  private error: Error | undefined;
  private wake: (() => void) | undefined;
  private timer: NodeJS.Timeout | undefined;
  private unregister: () => void = () => undefined;

  constructor(
    url: URL,
    private readonly requestHead: Buffer,
    private readonly o: TransferOptions,
    private readonly register: (abort: (err: Error) => void) => () => void,
    private resolveHead: ((r: TransferResponse) => void) | undefined,
    private rejectHead: ((e: Error) => void) | undefined,
  ) {
    this.url = url.href;
    this.bufferBytes = o.bufferBytes ?? DEFAULT_BUFFER_BYTES;
    this.maxBuffers = Math.max(2, o.buffers ?? DEFAULT_BUFFERS);
    this.cur = this.allocate();
    this.body = { [Symbol.asyncIterator]: () => this.iterator() };
  }

  private allocate(): Buffer {
    const b = Buffer.allocUnsafeSlow(this.bufferBytes);
    this.owned.set(b.buffer, b);
    return b;
  }

  start(): void {
    const url = new URL(this.url);
    const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
    const https = url.protocol === 'https:';
    const port = Number(url.port || (https ? 443 : 80));
    const onread: OnReadOpts = {
      buffer: () =>
        this.starved || this.fill >= this.cur.length ? this.spare : this.cur.subarray(this.fill),
      callback: (n: number, into: Uint8Array) => this.onRead(n, into),
    };
    // tls.connect takes `onread` too (Node ≥ 14.17); @types/node only lists it for net.
    const tlsOptions: ConnectionOptions & { onread: OnReadOpts } = {
      host,
      port,
      ...(isIP(host) === 0 ? { servername: host } : {}),
      ALPNProtocols: ['http/1.1'],
      ...this.o.tls,
      onread,
    };
    const socket = https ? tlsConnect(tlsOptions) : netConnect({ host, port, onread });
    this.socket = socket;
    this.unregister = this.register((err) => this.destroy(err));
    this.arm(this.o.connectTimeoutMs, 'connect timed out');
    socket.once(https ? 'secureConnect' : 'connect', () => {
      this.arm(this.o.responseTimeoutMs, 'no response in time');
      socket.setTimeout(this.o.idleTimeoutMs);
      socket.write(this.requestHead);
    });
    socket.on('timeout', () =>
      this.destroy(fail(this.url, `no data for ${this.o.idleTimeoutMs} ms`, 'TIMEOUT')),
    );
    socket.on('error', (err: NodeJS.ErrnoException) =>
      this.destroy(
        new OutpostError(
          err.code === 'ETIMEDOUT' ? 'TIMEOUT' : 'DOWNLOAD_FAILED',
          `GET ${this.url}: ${err.message}${err.code === undefined ? '' : ` (${err.code})`}`,
          { cause: err, details: { code: err.code } },
        ),
      ),
    );
    socket.on('end', () => this.onEnd());
    socket.on('close', () => this.onEnd());
  }

  private arm(ms: number, message: string): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.destroy(fail(this.url, message, 'TIMEOUT')), ms);
  }

  private onRead(n: number, into: Uint8Array): boolean {
    if (this.done || this.error !== undefined) return false;
    this.received += n;
    let start = this.fill;
    if (into.buffer === this.spare.buffer) {
      // Read while every buffer was out: move it where it belongs. A read after the pause
      // (a TLS record already decrypted) gets a buffer beyond the limit rather than being lost.
      if (this.starved) {
        this.starved = false;
        this.socket?.setTimeout(this.o.idleTimeoutMs);
        this.cur = this.allocate();
        this.fill = 0;
        start = 0;
      }
      this.spare.copy(this.cur, this.fill, 0, n);
    }
    let end = this.fill + n;
    while (this.framing === undefined) {
      const head = this.parseHead(end);
      if (this.error !== undefined) return false;
      if (head === undefined) {
        this.fill = end;
        return this.ensureRoom();
      }
      // The head (or an interim 1xx response) is consumed: what follows moves to the front.
      this.cur.copyWithin(0, head, end);
      end -= head;
      start = 0;
      this.fill = 0;
    }
    this.fill = this.frame(start, end);
    if (this.error !== undefined) return false;
    if (this.done) {
      this.finish();
      return false;
    }
    return this.ensureRoom();
  }

  /** Hands the current buffer over once full and takes a free one; false pauses the socket. */
  private ensureRoom(): boolean {
    if (this.fill < this.cur.length) return true;
    if (this.framing === undefined) {
      this.destroy(
        fail(this.url, `response head longer than ${Math.min(MAX_HEAD_BYTES, this.cur.length)} bytes`),
      );
      return false;
    }
    this.deliver(this.cur.subarray(0, this.fill));
    const next = this.free.pop() ?? (this.owned.size < this.maxBuffers ? this.allocate() : undefined);
    if (next === undefined) {
      // Paused by our own writer, not by the server: the idle timeout does not run meanwhile.
      this.starved = true;
      this.socket?.setTimeout(0);
      return false;
    }
    this.cur = next;
    this.fill = 0;
    return true;
  }

  release(chunk: Buffer): void {
    const b = this.owned.get(chunk.buffer);
    if (b === undefined) return;
    if (!this.starved) {
      this.free.push(b);
      return;
    }
    this.starved = false;
    this.cur = b;
    this.fill = 0;
    if (this.done || this.error !== undefined) return;
    this.socket?.setTimeout(this.o.idleTimeoutMs);
    this.socket?.resume();
  }

  private deliver(b: Buffer): void {
    if (b.length > 0) this.ready.push(b);
    this.wake?.();
  }

  /**
   * Parses a response head at the start of cur[0, end): returns the bytes it takes (the body
   * follows them, or another head after a 1xx), or undefined when more must be read first.
   * Sets `framing` once the final head is parsed; on a malformed head, destroys the transfer.
   */
  private parseHead(end: number): number | undefined {
    const at = this.cur.subarray(0, end).indexOf('\r\n\r\n');
    if (at < 0) {
      if (end >= MAX_HEAD_BYTES)
        this.destroy(fail(this.url, `response head longer than ${MAX_HEAD_BYTES} bytes`));
      return undefined;
    }
    const lines = this.cur.toString('latin1', 0, at).split('\r\n');
    const m = /^HTTP\/1\.([01]) (\d{3})(?: .*)?$/.exec(lines[0] ?? '');
    if (m === null) {
      this.destroy(fail(this.url, 'not an HTTP/1.x response'));
      return undefined;
    }
    const status = Number(m[2]);
    const headers: Record<string, string | string[]> = {};
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      const name = line.slice(0, colon).toLowerCase();
      if (colon <= 0 || !/^[!#$%&'*+.^_`|~0-9a-z-]+$/.test(name)) {
        this.destroy(fail(this.url, 'malformed response header'));
        return undefined;
      }
      const value = line.slice(colon + 1).trim();
      const prev = headers[name];
      headers[name] = prev === undefined ? value : Array.isArray(prev) ? [...prev, value] : [prev, value];
    }
    // An interim response (100 Continue, 103 Early Hints): the real one follows.
    if (status >= 100 && status < 200) return at + 4;
    this.status = status;
    this.headers = headers;
    const te = String(headers['transfer-encoding'] ?? '').toLowerCase();
    const cl = headers['content-length'];
    if (status === 204 || status === 304) this.framing = { kind: 'none' };
    else if (te !== '' && te !== 'identity') {
      if (te !== 'chunked') {
        this.destroy(fail(this.url, `unsupported transfer-encoding ${te}`));
        return undefined;
      }
      this.framing = { kind: 'chunked' };
    } else if (cl !== undefined) {
      if (typeof cl !== 'string' || !/^\d{1,15}$/.test(cl)) {
        this.destroy(fail(this.url, 'bad content-length'));
        return undefined;
      }
      this.framing = { kind: 'length', left: Number(cl) };
    } else this.framing = { kind: 'close' };
    clearTimeout(this.timer);
    const resolve = this.resolveHead;
    this.resolveHead = undefined;
    this.rejectHead = undefined;
    resolve?.(this);
    if (this.framing.kind === 'none' || (this.framing.kind === 'length' && this.framing.left === 0))
      this.done = true;
    return at + 4;
  }

  /** Applies the body framing to cur[start, end) in place; returns the new fill. */
  private frame(start: number, end: number): number {
    const f = this.framing;
    if (f === undefined || this.done) return start;
    if (f.kind === 'close') return end;
    if (f.kind === 'length') {
      const take = Math.min(end - start, f.left);
      f.left -= take;
      if (f.left === 0) this.done = true;
      return start + take;
    }
    if (f.kind === 'none') return start;
    // Chunked: strip the framing, moving data bytes down to `out`.
    const c = this.chunk;
    let out = start;
    let i = start;
    while (i < end && c.state !== 'done') {
      if (c.state === 'data') {
        const take = Math.min(end - i, c.left);
        if (out !== i) this.cur.copyWithin(out, i, i + take);
        out += take;
        i += take;
        c.left -= take;
        if (c.left === 0) c.state = 'data-end';
        continue;
      }
      const nl = this.cur.indexOf(10, i);
      const stop = nl < 0 || nl >= end ? end : nl + 1;
      c.line += this.cur.toString('latin1', i, stop);
      i = stop;
      if (c.line.length > MAX_LINE_BYTES) {
        this.destroy(fail(this.url, 'chunked encoding: line too long'));
        return out;
      }
      if (!c.line.endsWith('\n')) continue;
      const line = c.line.replace(/\r?\n$/, '');
      c.line = '';
      if (c.state === 'data-end') {
        if (line !== '') {
          this.destroy(fail(this.url, 'chunked encoding: data longer than its chunk size'));
          return out;
        }
        c.state = 'size';
      } else if (c.state === 'size') {
        const size = /^([0-9a-fA-F]{1,12})(?:[ \t]*;.*)?$/.exec(line);
        if (size === null) {
          this.destroy(fail(this.url, 'chunked encoding: bad chunk size'));
          return out;
        }
        c.left = Number.parseInt(size[1] ?? '', 16);
        c.state = c.left === 0 ? 'trailer' : 'data';
      } else if (c.state === 'trailer' && line === '') {
        c.state = 'done';
        this.done = true;
      }
    }
    return out;
  }

  private finish(): void {
    this.deliver(this.cur.subarray(0, this.fill));
    this.fill = 0;
    this.close();
  }

  private onEnd(): void {
    if (this.done || this.error !== undefined) return;
    if (this.framing?.kind === 'close') {
      this.done = true;
      this.finish();
      return;
    }
    this.destroy(
      fail(
        this.url,
        this.framing === undefined
          ? 'the connection closed before a response'
          : `the connection closed ${this.framing.kind === 'length' ? `${this.framing.left} bytes` : 'before the last chunk'} short of the end`,
      ),
    );
  }

  abort(): void {
    if (this.done || this.error !== undefined) {
      this.close();
      return;
    }
    this.done = true;
    this.close();
    this.wake?.();
  }

  /** Ends the transfer with `err` (a watchdog's verdict). */
  cancel(err: Error): void {
    this.destroy(err);
  }

  /** Ends the transfer with an error; bytes already received are still handed out first. */
  private destroy(err: Error): void {
    if (this.error !== undefined || this.done) return;
    this.error = err;
    if (this.framing !== undefined && this.fill > 0) this.ready.push(this.cur.subarray(0, this.fill));
    this.fill = 0;
    this.close();
    const reject = this.rejectHead;
    this.resolveHead = undefined;
    this.rejectHead = undefined;
    reject?.(err);
    this.wake?.();
  }

  private close(): void {
    clearTimeout(this.timer);
    this.unregister();
    this.socket?.destroy();
  }

  private async *iterator(): AsyncGenerator<Buffer> {
    try {
      for (;;) {
        const next = this.ready.shift();
        if (next !== undefined) {
          yield next;
          continue;
        }
        if (this.error !== undefined) throw this.error;
        if (this.done) return;
        await new Promise<void>((resolve) => {
          this.wake = resolve;
        });
        this.wake = undefined;
      }
    } finally {
      // The caller stopped early (or the body ended): nothing more is read.
      if (!this.done && this.error === undefined) this.abort();
    }
  }
}
