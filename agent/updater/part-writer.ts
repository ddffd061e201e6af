import type { FileHandle } from 'node:fs/promises';

export interface PartWriterHooks {
  /** Fault injection: called before each write with the file offset; may throw (ENOSPC). */
  beforeWrite?: (offset: number, size: number) => void;
  /** Called after each write with the end offset of what is on file so far. */
  onWritten?: (end: number) => void;
  /** Called with each chunk once it is written (or the write failed): its memory may be reused. */
  release?: (chunk: Buffer) => void;
}

/** Chunks smaller than this (socket reads, a transfer's last buffer) are gathered into one writev of about this size. */
const BATCH_BYTES = 1024 * 1024;
/** Received but not yet written: past this the receiver waits (bounds memory, lets TCP push back). */
const MAX_QUEUED_BYTES = 8 * 1024 * 1024;
/** Write-back is started (fdatasync) each time this much more is on file. */
const WRITEBACK_BYTES = 8 * 1024 * 1024;

/**
 * Writes a download to its partial file while the next bytes arrive. Awaiting each write
 * before reading on stalls the socket (the server sits idle while the disk works, and back
 * again), and one fsync of the whole file at the end waits for all of it to reach the disk at
 * once. Here writes run one after the other in file order, at most one in flight, while the
 * receiver keeps going until MAX_QUEUED_BYTES wait; every WRITEBACK_BYTES an fdatasync runs
 * beside the writes, so the disk works during the transfer and finish()'s fsync has only the
 * tail left. Writes stay in order so that the file is always a prefix of the target and a
 * resume can trust its size.
 */
export class PartWriter {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** Issued writes not yet done, oldest first. */
  private readonly inFlight: Array<Promise<void>> = [];
  private queuedBytes = 0;
  private tail: Promise<void> = Promise.resolve();
  /** Offset the next issued write starts at. */
  private issued: number;
  /** End of what the completed writes put on file. */
  private done: number;
  private syncedTo: number;
  private syncing: Promise<void> | undefined;
  private failure: { err: unknown } | undefined;
  private finishing = false;

  constructor(
    private readonly fh: FileHandle,
    offset: number,
    private readonly hooks: PartWriterHooks = {},
  ) {
    this.issued = offset;
    this.done = offset;
    this.syncedTo = offset;
  }

  /** Bytes taken so far (written or waiting), from the start of the file. */
  get offset(): number {
    return this.issued + this.pendingBytes;
  }

  /** Takes a chunk; resolves at once unless too much waits to be written. Rejects once a write failed. */
  async push(chunk: Buffer): Promise<void> {
    this.throwIfFailed();
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    if (this.pendingBytes >= BATCH_BYTES) this.issue();
    while (this.queuedBytes > MAX_QUEUED_BYTES && this.inFlight.length > 0) await this.inFlight[0];
    this.throwIfFailed();
  }

  /** Writes out everything taken so far and waits for it (not for the disk). */
  async drain(): Promise<void> {
    this.issue();
    await this.tail;
    this.throwIfFailed();
  }

  /** drain(), then makes the file durable: the last write-back and a full fsync (size included). */
  async finish(): Promise<void> {
    await this.drain();
    this.finishing = true;
    // fsync covers every byte written before it is called; a write-back still running beside it is harmless.
    await Promise.all([this.syncing, this.fh.sync()]);
    this.throwIfFailed();
  }

  private throwIfFailed(): void {
    if (this.failure !== undefined) throw this.failure.err;
  }

  private issue(): void {
    if (this.pendingBytes === 0) return;
    const chunks = this.pending;
    const size = this.pendingBytes;
    this.pending = [];
    this.pendingBytes = 0;
    const at = this.issued;
    this.issued += size;
    this.queuedBytes += size;
    const write = this.tail.then(async () => {
      try {
        if (this.failure !== undefined) return;
        this.hooks.beforeWrite?.(at, size);
        await this.writeAll(chunks, at);
        this.done = at + size;
        this.hooks.onWritten?.(this.done);
        this.writeBack();
      } catch (err) {
        this.failure ??= { err };
      } finally {
        this.queuedBytes -= size;
        this.inFlight.shift();
        if (this.hooks.release !== undefined) for (const c of chunks) this.hooks.release(c);
      }
    });
    this.inFlight.push(write);
    this.tail = write;
  }

  /** One writev of the socket's chunks as they are (no copy into one buffer); resumes a short write. */
  private async writeAll(chunks: Buffer[], at: number): Promise<void> {
    let rest = chunks;
    let pos = at;
    while (rest.length > 0) {
      const { bytesWritten } = await this.fh.writev(rest, pos);
      if (bytesWritten <= 0) throw new Error(`writev at ${pos} wrote nothing`);
      pos += bytesWritten;
      let skip = bytesWritten;
      while (rest.length > 0 && skip >= (rest[0]?.length ?? 0)) {
        skip -= rest[0]?.length ?? 0;
        rest = rest.slice(1);
      }
      if (skip > 0 && rest[0] !== undefined) rest = [rest[0].subarray(skip), ...rest.slice(1)];
    }
  }

  /** Starts an fdatasync of what is on file when enough is new and none is running. */
  private writeBack(): void {
    if (this.finishing || this.syncing !== undefined || this.done - this.syncedTo < WRITEBACK_BYTES) return;
    const upTo = this.done;
    this.syncing = this.fh.datasync().then(
      () => {
        this.syncedTo = upTo;
        this.syncing = undefined;
        this.writeBack();
      },
      (err: unknown) => {
        this.failure ??= { err };
        this.syncing = undefined;
      },
    );
  }
}
