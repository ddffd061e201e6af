import { closeSync, constants, fstatSync, openSync, read, statSync } from 'node:fs';
import { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import type { Logger } from '../log.ts';
import { StoppableTimer } from '../uplink/backoff.ts';

export interface LineStreamOptions {
  name: string;
  /** A regular file, a FIFO, or `-` for stdin. */
  path: string;
  follow: boolean;
  fromEnd: boolean;
  maxLineBytes: number;
  /** Takes one line; the returned promise is awaited before more is read (backpressure). */
  deliver: (line: string) => Promise<unknown> | undefined;
  log: Logger;
  /** The agent's stdin, injectable for tests. */
  stdin?: Readable;
  pollMs?: number;
}

export interface LineStreamCounters {
  lines: number;
  bytes: number;
  /** Lines longer than `maxLineBytes`, dropped. */
  oversize: number;
  /** Lines no pipeline was attached to read. */
  unrouted: number;
  reopened: number;
}

/** Splits bytes into lines, dropping (and counting) any line longer than the bound. */
export class LineSplitter {
  private partial: Buffer[] = [];
  private partialBytes = 0;
  private discarding = false;

  constructor(
    private readonly maxLineBytes: number,
    private readonly onOversize: () => void,
  ) {}

  push(chunk: Buffer): string[] {
    const lines: string[] = [];
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, start);
      if (nl === -1) break;
      const piece = chunk.subarray(start, nl);
      start = nl + 1;
      if (this.discarding || this.partialBytes + piece.length > this.maxLineBytes) {
        if (!this.discarding) this.onOversize();
        this.discarding = false;
        this.reset();
        continue;
      }
      const whole = this.partial.length === 0 ? piece : Buffer.concat([...this.partial, piece]);
      this.reset();
      const line = whole.toString('utf8').replace(/\r$/, '');
      if (line.trim() !== '') lines.push(line);
    }
    const rest = chunk.subarray(start);
    if (rest.length > 0 && !this.discarding) {
      if (this.partialBytes + rest.length > this.maxLineBytes) {
        this.onOversize();
        this.discarding = true;
        this.reset();
      } else {
        // Copy: the chunk's memory is reused by the reader.
        this.partial.push(Buffer.from(rest));
        this.partialBytes += rest.length;
      }
    }
    return lines;
  }

  private reset(): void {
    this.partial = [];
    this.partialBytes = 0;
  }
}

/**
 * A line stream: how serial gateways and shell pipelines feed the agent. Each line is one
 * NDJSON record or CSV row for the pipelines reading this stream.
 *
 * - a regular file is read from the start (or its end) and, with `follow`, polled for what is
 *   appended, like `tail -F` (a truncated file is read again from the start);
 * - a FIFO is opened read-write so that the agent itself counts as a writer: the stream never
 *   ends when a gateway closes its end, and opening never blocks a libuv thread;
 * - `-` reads stdin.
 *
 * Reading waits for the pipelines to take each chunk, so a fast file does not overrun
 * inference; a writer that outruns it meets a full pipe, and the pipelines' bounded windows
 * count what they drop.
 */
export class LineStreamSource {
  readonly counters: LineStreamCounters = { lines: 0, bytes: 0, oversize: 0, unrouted: 0, reopened: 0 };
  private running = false;
  private readonly timer = new StoppableTimer();
  private socket: Readable | undefined;
  private readonly splitter: LineSplitter;
  private done: Promise<void> = Promise.resolve();

  constructor(private readonly o: LineStreamOptions) {
    this.splitter = new LineSplitter(o.maxLineBytes, () => {
      this.counters.oversize++;
      o.log.warn({ stream: o.name, maxLineBytes: o.maxLineBytes }, 'line too long; dropped');
    });
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.done = this.run().catch((err: unknown) => {
      this.o.log.error({ err, stream: this.o.name }, 'line stream failed');
    });
  }

  private async run(): Promise<void> {
    const { path } = this.o;
    if (path === '-') {
      await this.readStream(this.o.stdin ?? process.stdin);
      return;
    }
    let warned = false;
    while (this.running) {
      let isFifo: boolean;
      try {
        isFifo = statSync(path).isFIFO();
      } catch (err) {
        // The gateway may create its file or FIFO after the agent starts.
        if (!warned)
          this.o.log.warn({ err, stream: this.o.name, path }, 'line stream not there yet; waiting');
        warned = true;
        await this.timer.sleep(this.o.pollMs ?? 500);
        continue;
      }
      if (isFifo) {
        const fd = openSync(path, constants.O_RDWR | constants.O_NONBLOCK);
        await this.readStream(new Socket({ fd, readable: true, writable: false }));
        this.counters.reopened++;
      } else {
        await this.readFile(path);
        return;
      }
    }
  }

  private async readStream(stream: Readable): Promise<void> {
    this.socket = stream;
    this.o.log.info({ stream: this.o.name, path: this.o.path }, 'line stream open');
    try {
      for await (const chunk of stream) {
        if (!this.running) break;
        await this.take(chunk as Buffer);
      }
    } catch (err) {
      if (this.running) this.o.log.warn({ err, stream: this.o.name }, 'line stream read failed');
    } finally {
      this.socket = undefined;
    }
  }

  private async readFile(path: string): Promise<void> {
    const fd = openSync(path, constants.O_RDONLY);
    this.o.log.info({ stream: this.o.name, path }, 'line stream open');
    let offset = this.o.fromEnd ? fstatSync(fd).size : 0;
    const buf = Buffer.allocUnsafe(64 * 1024);
    try {
      while (this.running) {
        const n = await new Promise<number>((resolve, reject) =>
          read(fd, buf, 0, buf.length, offset, (err, bytes) => (err ? reject(err) : resolve(bytes))),
        );
        if (n > 0) {
          offset += n;
          await this.take(buf.subarray(0, n));
          continue;
        }
        if (!this.o.follow) break;
        const size = statSync(path, { throwIfNoEntry: false })?.size ?? 0;
        if (size < offset) {
          this.o.log.info({ stream: this.o.name }, 'line stream file truncated; reading from the start');
          offset = 0;
          continue;
        }
        await this.timer.sleep(this.o.pollMs ?? 200);
      }
    } finally {
      closeSync(fd);
    }
  }

  private async take(chunk: Buffer): Promise<void> {
    this.counters.bytes += chunk.length;
    const pending: Array<Promise<unknown>> = [];
    for (const line of this.splitter.push(chunk)) {
      this.counters.lines++;
      const p = this.o.deliver(line);
      if (p === undefined) this.counters.unrouted++;
      else pending.push(p);
    }
    if (pending.length > 0) await Promise.all(pending);
  }

  /** Stops reading; lines already handed to pipelines are theirs to finish. */
  async stop(): Promise<void> {
    this.running = false;
    this.timer.cancel();
    const s = this.socket;
    if (this.o.path === '-') {
      // stdin belongs to the process: leave it open, just stop taking from it.
      s?.pause();
      return;
    }
    s?.destroy();
    await this.done;
  }
}
