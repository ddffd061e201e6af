import { EventEmitter } from 'node:events';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database, { type Database as Db } from 'better-sqlite3';
import { OutpostError } from '../../shared/errors.ts';
import { type Ack, AckQueue } from './ack-queue.ts';
import { migrate, OUTBOX_MIGRATIONS } from './migrations.ts';
import { type OutboxStatements, prepareStatements } from './statements.ts';
import {
  LANE_NAMES,
  LANES,
  type Lane,
  type OutboxCounters,
  type OutboxEvents,
  type OutboxMessage,
  type OutboxOptions,
  type OutboxStats,
  type PublishProps,
  type StoredMessage,
} from './types.ts';
import { type Waiter, Waiting } from './waiting.ts';
import { WalSync } from './wal-sync.ts';

export {
  LANES,
  type Lane,
  type OutboxCounters,
  type OutboxEvents,
  type OutboxMessage,
  type OutboxOptions,
  type OutboxStats,
  type PublishProps,
  type StoredMessage,
};

const ROW_OVERHEAD = 64;
/** Dropped rows remembered for late acks: well above any in-flight window. */
const GONE_MEMORY = 4_096;
type GoneReason = 'expired' | 'evicted_prediction' | 'evicted_telemetry';
/** A burst grows one transaction up to this many batches before committing mid-turn. */
const MAX_BATCH_FACTOR = 16;

/**
 * The store-and-forward outbox. Every message is committed to SQLite before anything publishes
 * it, and deleted only when the broker acknowledged it. Writes are batched (one fsync per
 * batch, with a bounded delay) because one row per transaction costs an fsync each.
 */
export class Outbox extends EventEmitter<OutboxEvents> {
  private db: Db | undefined;
  private wal: WalSync | undefined;
  private stmts: OutboxStatements | undefined;
  private waiting = new Waiting();
  private flushTimer: NodeJS.Timeout | undefined;
  private flushImmediate: NodeJS.Immediate | undefined;
  // With new messages waiting, their commit (due within maxDelayMs) takes the deletes along.
  private readonly acks = new AckQueue(
    () => this.flushAcks(),
    () => this.waiting.length === 0,
  );
  private rows = 0;
  private bytes = 0;
  private rowsByLane: Record<Lane, number> = { control: 0, prediction: 0, telemetry: 0 };
  private readonly savedCounters = new Map<keyof OutboxCounters, number>();
  private readonly counters: OutboxCounters = {
    enqueued: 0,
    sent: 0,
    expired: 0,
    rejected: 0,
    refused: 0,
    evicted_prediction: 0,
    evicted_telemetry: 0,
  };
  private expireTimer: NodeJS.Timeout | undefined;
  private readonly gone = new Map<number, GoneReason>();
  private readonly now: () => number;

  constructor(private readonly options: OutboxOptions) {
    super();
    this.now = options.now ?? Date.now;
  }

  start(): void {
    mkdirSync(dirname(this.options.path), { recursive: true, mode: 0o750 });
    const db = new Database(this.options.path);
    db.pragma('journal_mode = WAL');
    // better-sqlite3 leaves WAL at NORMAL, which can lose committed rows on power loss. FULL's
    // extra WAL fsync per commit is done by WalSync, off the event loop (see wal-sync.ts).
    db.pragma('synchronous = NORMAL');
    db.pragma('busy_timeout = 5000');
    migrate(db, OUTBOX_MIGRATIONS);
    if (this.options.synchronous === 'FULL') {
      const wal = new WalSync(`${this.options.path}-wal`);
      try {
        wal.open();
        this.wal = wal;
      } catch (err) {
        // No WAL file to sync separately: let SQLite sync each commit itself, on this thread.
        this.options.log.warn({ err }, 'outbox WAL file not found; syncing each commit in place');
        db.pragma('synchronous = FULL');
      }
    }
    this.db = db;
    this.stmts = prepareStatements(db);
    for (const row of db.prepare('SELECT name, value FROM outbox_counters').all() as Array<{
      name: keyof OutboxCounters;
      value: number;
    }>) {
      if (row.name in this.counters) this.counters[row.name] = row.value;
    }
    this.recount();
    this.expireTimer = setInterval(() => this.expire(), 5_000);
    this.expireTimer.unref();
  }

  private recount(): void {
    this.rows = 0;
    this.bytes = 0;
    this.rowsByLane = { control: 0, prediction: 0, telemetry: 0 };
    for (const r of this.stmts!.countRows.all() as Array<{ lane: number; n: number; b: number }>) {
      const lane = LANE_NAMES[r.lane] ?? 'telemetry';
      this.rowsByLane[lane] += r.n;
      this.rows += r.n;
      this.bytes += r.b + r.n * ROW_OVERHEAD;
    }
  }

  /** Resolves once the message is committed to disk; rejects if it can never be stored. */
  enqueue(msg: OutboxMessage): Promise<void> {
    if (this.db === undefined) return Promise.reject(new OutpostError('SHUTTING_DOWN', 'outbox is closed'));
    const p = this.waiting.one(msg, () => this.fullError());
    this.scheduleFlush();
    return p;
  }

  /**
   * Enqueues several messages (kept in this order) for one promise: it resolves once they are
   * committed to disk, with whether each was stored (false: the outbox is full of messages it may
   * not evict; counted as rejected). Rejects only when the commit failed and none was stored.
   */
  enqueueMany(msgs: readonly OutboxMessage[]): Promise<boolean[]> {
    if (this.db === undefined) return Promise.reject(new OutpostError('SHUTTING_DOWN', 'outbox is closed'));
    if (msgs.length === 0) return Promise.resolve([]);
    const p = this.waiting.many(msgs);
    this.scheduleFlush();
    return p;
  }

  private scheduleFlush(): void {
    const n = this.waiting.length;
    if (n >= this.options.batchSize * MAX_BATCH_FACTOR) this.flush();
    else if (n >= this.options.batchSize) {
      // A full batch commits at the end of this turn of the event loop, so a burst enqueued
      // in one turn shares one fsync (which costs milliseconds on most disks).
      this.flushImmediate ??= setImmediate(() => this.flush());
    } else this.flushTimer ??= setTimeout(() => this.flush(), this.options.maxDelayMs);
  }

  private fullError(): OutpostError {
    return new OutpostError('OUTBOX_FULL', `outbox is full (${this.rows} rows, ${this.bytes} bytes)`);
  }

  /** Commits what is waiting and resolves once everything committed so far is on disk. */
  durable(): Promise<void> {
    this.flush();
    const wal = this.wal;
    if (wal === undefined) return Promise.resolve();
    return new Promise((resolve, reject) =>
      wal.after(Number.POSITIVE_INFINITY, (err) => (err === undefined ? resolve() : reject(err))),
    );
  }

  /**
   * Commits everything waiting, in one transaction, together with the deletes of messages
   * acknowledged since the last commit (one fsync for both). Synchronous: no await inside a
   * transaction.
   */
  flush(): void {
    if (this.flushTimer !== undefined) {
      clearTimeout(this.flushTimer);
      this.flushTimer = undefined;
    }
    if (this.flushImmediate !== undefined) {
      clearImmediate(this.flushImmediate);
      this.flushImmediate = undefined;
    }
    if (this.waiting.length === 0 || this.db === undefined) return;
    const { batch, waiters } = this.waiting.take();
    const acks = this.acks.take();
    const now = this.now();
    const stored = new Uint8Array(batch.length);
    const rows: StoredMessage[] = [];
    let rejected = 0;
    const insert = this.stmts!.insert;
    const bootId = this.options.bootId;
    try {
      this.db.transaction(() => {
        // Acks first: their rows leave before the bounds are checked for the new ones.
        if (acks.length > 0) this.deleteAcked(acks);
        for (let i = 0; i < batch.length; i++) {
          const m = batch[i] as OutboxMessage;
          const bytes = m.payload.length + Buffer.byteLength(m.topic) + ROW_OVERHEAD;
          const fits = this.rows < this.options.maxRows && this.bytes + bytes <= this.options.maxBytes;
          if (!fits && !this.makeRoom(bytes, m.lane)) {
            rejected++;
            continue;
          }
          const ttl = m.ttlMs ?? (m.lane === 'control' ? 0 : this.options.ttlMs[m.lane]);
          const info = insert.run(
            m.id,
            LANES[m.lane],
            m.topic,
            m.payload,
            m.qos,
            m.retain === true ? 1 : 0,
            bootId,
            now,
            ttl > 0 ? now + ttl : null,
            m.props === undefined ? null : JSON.stringify(m.props),
          );
          this.rows++;
          this.bytes += bytes;
          this.rowsByLane[m.lane]++;
          stored[i] = 1;
          const row: StoredMessage = {
            seq: Number(info.lastInsertRowid),
            id: m.id,
            lane: m.lane,
            topic: m.topic,
            payload: m.payload,
            qos: m.qos,
            retain: m.retain === true,
            bootId,
            bytes,
          };
          if (m.props !== undefined) row.props = m.props;
          rows.push(row);
        }
        this.counters.enqueued += rows.length;
        this.counters.rejected += rejected;
        this.saveCounters();
      })();
    } catch (err) {
      // The counters' rows were rolled back too: write them all with the next commit.
      this.savedCounters.clear();
      this.recount();
      // The acks' deletes were rolled back with the rest: they are tried again on their own.
      this.acks.requeue(acks);
      const error = new OutpostError('INTERNAL', `outbox commit failed: ${String(err)}`, { cause: err });
      this.options.log.error({ err }, 'outbox commit failed');
      for (const w of waiters) w.settle(stored, error);
      return;
    }
    if (this.wal === undefined) this.committed(waiters, stored, rows, undefined);
    else
      this.wal.after(rows[0]?.seq ?? Number.POSITIVE_INFINITY, (err) =>
        this.committed(waiters, stored, rows, err),
      );
  }

  /** A commit is on disk (or its sync failed): its callers hear of it, then the uplink may send it. */
  private committed(
    waiters: Waiter[],
    stored: Uint8Array,
    rows: StoredMessage[],
    err: Error | undefined,
  ): void {
    if (err !== undefined) {
      this.options.log.error({ err }, 'outbox sync failed');
      const error = new OutpostError('INTERNAL', `outbox sync failed: ${String(err)}`, { cause: err });
      for (const w of waiters) w.settle(stored, error);
      return;
    }
    for (const w of waiters) w.settle(stored, undefined);
    if (rows.length > 0) this.emit('committed', rows);
  }

  /** Evicts lower-priority rows (telemetry, then predictions) until `bytes` more fit. */
  private makeRoom(bytes: number, lane: Lane): boolean {
    const fits = () => this.rows + 1 <= this.options.maxRows && this.bytes + bytes <= this.options.maxBytes;
    if (fits()) return true;
    // A message may only push out messages of its own lane or a less important one.
    for (const victim of ['telemetry', 'prediction'] as const) {
      if (LANES[victim] < LANES[lane]) break;
      while (!fits() && this.rowsByLane[victim] > 0) {
        const olds = this.stmts!.oldestInLane.all(LANES[victim], 256) as Array<{
          seq: number;
          bytes: number;
        }>;
        if (olds.length === 0) break;
        for (const o of olds) {
          if (fits()) break;
          this.stmts!.deleteSeq.run(o.seq);
          this.rows--;
          this.bytes -= o.bytes + ROW_OVERHEAD;
          this.rowsByLane[victim]--;
          this.counters[`evicted_${victim}`]++;
          this.noteGone(o.seq, `evicted_${victim}`);
        }
      }
      if (fits()) return true;
    }
    return fits();
  }

  /** Remembers recently dropped rows, so a late PUBACK for one moves it back from dropped to sent. */
  private noteGone(seq: number, why: GoneReason): void {
    this.gone.set(seq, why);
    if (this.gone.size > GONE_MEMORY) {
      const oldest = this.gone.keys().next().value;
      if (oldest !== undefined) this.gone.delete(oldest);
    }
  }

  /** Writes the counters that changed since the last commit (most commits move one or two). */
  private saveCounters(): void {
    for (const name of Object.keys(this.counters) as Array<keyof OutboxCounters>) {
      const value = this.counters[name];
      if (this.savedCounters.get(name) === value) continue;
      this.stmts!.counter.run(name, value);
      this.savedCounters.set(name, value);
    }
  }

  /** Committed messages of one lane after `afterSeq`, oldest first, skipping expired ones (expire() counts them). */
  fetch(lane: Lane, afterSeq: number, limit: number): StoredMessage[] {
    if (this.stmts === undefined) return [];
    // Rows whose commit is not yet on disk are not handed out: they come with 'committed'.
    const before = Math.min(this.wal?.unsyncedFrom ?? Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
    const rows = this.stmts.fetchLane.all(LANES[lane], afterSeq, before, this.now(), limit) as Array<
      [
        seq: number,
        id: string,
        topic: string,
        payload: Buffer,
        qos: number,
        retain: number,
        bootId: string,
        props: string | null,
      ]
    >;
    const out: StoredMessage[] = new Array(rows.length);
    for (let i = 0; i < rows.length; i++) {
      const [seq, id, topic, payload, qos, retain, bootId, props] = rows[i] as (typeof rows)[number];
      const m: StoredMessage = {
        seq,
        id,
        lane,
        topic,
        payload,
        qos: qos === 1 ? 1 : 0,
        retain: retain === 1,
        bootId,
        bytes: payload.length + Buffer.byteLength(topic) + ROW_OVERHEAD,
      };
      if (props !== null) m.props = JSON.parse(props) as PublishProps;
      out[i] = m;
    }
    return out;
  }

  /**
   * Marks a message delivered. Deletes are batched: they ride along with the next commit of new
   * messages, or go in a transaction of their own after a short delay when nothing is enqueued.
   */
  ack(msg: Pick<StoredMessage, 'seq' | 'bytes' | 'lane'>, refused = false): void {
    this.acks.push({ seq: msg.seq, bytes: msg.bytes, lane: msg.lane, refused });
  }

  flushAcks(): void {
    if (this.db === undefined) return;
    const acks = this.acks.take();
    if (acks.length === 0) return;
    try {
      this.db.transaction(() => {
        this.deleteAcked(acks);
        this.saveCounters();
      })();
    } catch (err) {
      // The counters' rows were rolled back too: write them all with the next commit.
      this.savedCounters.clear();
      this.recount();
      this.options.log.error({ err }, 'outbox delete failed; messages will be sent again');
    }
  }

  /** Deletes acknowledged rows, a run of consecutive seqs per statement. Inside a transaction. */
  private deleteAcked(acks: Ack[]): void {
    acks.sort((a, b) => a.seq - b.seq);
    let start = 0;
    while (start < acks.length) {
      let end = start + 1;
      while (end < acks.length && (acks[end] as Ack).seq === (acks[end - 1] as Ack).seq + 1) end++;
      const first = (acks[start] as Ack).seq;
      const last = (acks[end - 1] as Ack).seq;
      const deleted = this.stmts!.deleteRange.all(first, last) as number[];
      if (deleted.length === end - start) {
        for (let i = start; i < end; i++) this.acked(acks[i] as Ack, true);
      } else {
        // Some rows of the run were evicted or expired while in flight: settle each by whether
        // its row was still there.
        const present = new Set(deleted);
        for (let i = start; i < end; i++) {
          const a = acks[i] as Ack;
          this.acked(a, present.has(a.seq));
        }
      }
      start = end;
    }
  }

  /** Counts one acknowledged message; `present`: its row was still there to delete. */
  private acked(a: Ack, present: boolean): void {
    if (!present) {
      // Evicted or expired while in flight, yet the broker took it: it is not missing.
      const why = this.gone.get(a.seq);
      if (why === undefined) return;
      this.gone.delete(a.seq);
      this.counters[why]--;
    }
    if (a.refused) this.counters.refused++;
    else this.counters.sent++;
    if (present) {
      this.rows--;
      this.bytes -= a.bytes;
      this.rowsByLane[a.lane]--;
    }
  }

  /** Drops messages whose TTL has passed; counted as expired. */
  expire(): number {
    if (this.db === undefined) return 0;
    let n = 0;
    try {
      this.db.transaction(() => {
        const gone = this.stmts!.expire.all(this.now()) as Array<{
          seq: number;
          lane: number;
          bytes: number;
        }>;
        n = gone.length;
        // The rows say what they weighed: no full-table recount on a large backlog.
        for (const g of gone) {
          this.noteGone(g.seq, 'expired');
          const lane = LANE_NAMES[g.lane] ?? 'telemetry';
          this.rows--;
          this.bytes -= g.bytes + ROW_OVERHEAD;
          this.rowsByLane[lane]--;
        }
        this.counters.expired += n;
        if (n > 0) this.saveCounters();
      })();
    } catch (err) {
      // The counters' rows were rolled back too: write them all with the next commit.
      this.savedCounters.clear();
      this.recount();
      this.options.log.error({ err }, 'outbox expiry failed');
      return 0;
    }
    if (n > 0) this.options.log.warn({ expired: n }, 'outbox messages expired before they could be sent');
    return n;
  }

  stats(): OutboxStats {
    return {
      ...this.counters,
      rows: this.rows,
      bytes: this.bytes,
      pending: this.waiting.length,
      rowsByLane: { ...this.rowsByLane },
    };
  }

  get depth(): number {
    return this.rows;
  }

  /** Commits what is waiting and closes the database. */
  stop(): void {
    if (this.expireTimer !== undefined) clearInterval(this.expireTimer);
    this.flush();
    this.flushAcks();
    this.wal?.close();
    this.wal = undefined;
    this.db?.close();
    this.db = undefined;
    this.stmts = undefined;
    this.waiting.fail(new OutpostError('SHUTTING_DOWN', 'outbox is closed'));
  }
}
