import { closeSync, fdatasync, fdatasyncSync, openSync } from 'node:fs';

interface Commit {
  /** The first seq the commit wrote; Infinity when it wrote no row. */
  firstSeq: number;
  done: (err: Error | undefined) => void;
  settled: boolean;
}

/**
 * `synchronous=FULL` without stalling the event loop. In WAL mode SQLite's FULL is NORMAL plus
 * one fsync of the WAL file after each commit (sqlite.org/pragma.html#pragma_synchronous), and
 * better-sqlite3 runs that fsync on the calling thread: every commit froze the agent for the
 * disk's flush time (milliseconds here), with MQTT, inference replies and HTTP waiting behind it.
 * So the connection runs NORMAL and this class does the same sync of the WAL on libuv's thread
 * pool (fdatasync, as SQLite itself uses on Linux: the data and the size, not the timestamps). Nothing that depends on a commit (the enqueue promise, the uplink publishing the rows, a
 * backlog read) happens before the fsync that covers it has completed, so an acknowledged
 * message is on disk exactly as with FULL. One fsync runs at a time and covers every commit made
 * before it started: commits that arrive meanwhile share the next one, in order.
 */
export class WalSync {
  private fd: number | undefined;
  private waiting: Commit[] = [];
  private running: Commit[] | undefined;
  private closeWhenIdle = false;

  constructor(private readonly walPath: string) {}

  open(): void {
    this.fd = openSync(this.walPath, 'r');
  }

  /** Calls `done` once everything committed so far is on disk (or the fsync failed). */
  after(firstSeq: number, done: (err: Error | undefined) => void): void {
    this.waiting.push({ firstSeq, done, settled: false });
    if (this.running === undefined) this.sync();
  }

  /** Rows from this seq on are committed but not yet known to be on disk: nobody may send them. */
  get unsyncedFrom(): number {
    let from = Number.POSITIVE_INFINITY;
    for (const c of this.running ?? []) from = Math.min(from, c.firstSeq);
    for (const c of this.waiting) from = Math.min(from, c.firstSeq);
    return from;
  }

  private sync(): void {
    const fd = this.fd;
    if (fd === undefined || this.waiting.length === 0) return;
    const batch = this.waiting;
    this.waiting = [];
    this.running = batch;
    fdatasync(fd, (err) => {
      this.running = undefined;
      settle(batch, err ?? undefined);
      if (this.closeWhenIdle) this.closeNow();
      else this.sync();
    });
  }

  /** Syncs what is left on this thread and settles every commit; the file closes once idle. */
  close(): void {
    const fd = this.fd;
    if (fd === undefined) return;
    let err: Error | undefined;
    try {
      fdatasyncSync(fd);
    } catch (e) {
      err = e instanceof Error ? e : new Error(String(e));
    }
    settle(this.running ?? [], err);
    settle(this.waiting, err);
    this.waiting = [];
    // An fsync still running on the pool holds the descriptor: close it when that returns.
    if (this.running === undefined) this.closeNow();
    else this.closeWhenIdle = true;
  }

  private closeNow(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

function settle(commits: Commit[], err: Error | undefined): void {
  for (const c of commits) {
    if (c.settled) continue;
    c.settled = true;
    c.done(err);
  }
}
