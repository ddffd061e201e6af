import { EventEmitter } from 'node:events';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database, { type Database as Db, type Statement } from 'better-sqlite3';
import { OutpostError } from '../../shared/errors.ts';
import { migrate, OUTBOX_MIGRATIONS } from './migrations.ts';
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

interface Pending {
  msg: OutboxMessage;
  resolve: () => void;
  reject: (e: Error) => void;
}

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
  private stmts:
    | {
        insert: Statement;
        deleteSeq: Statement;
        fetchLane: Statement;
        oldestInLane: Statement;
        expire: Statement;
        counter: Statement;
        countRows: Statement;
      }
    | undefined;
  private pending: Pending[] = [];
  private flushTimer: NodeJS.Timeout | undefined;
  private flushImmediate: NodeJS.Immediate | undefined;
  private acks: Array<{ seq: number; bytes: number; lane: Lane; refused: boolean }> = [];
  private ackTimer: NodeJS.Timeout | undefined;
  private rows = 0;
  private bytes = 0;
  private rowsByLane: Record<Lane, number> = { control: 0, prediction: 0, telemetry: 0 };
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
    // better-sqlite3 leaves WAL at NORMAL, which can lose committed rows on power loss.
    db.pragma(`synchronous = ${this.options.synchronous}`);
    db.pragma('busy_timeout = 5000');
    migrate(db, OUTBOX_MIGRATIONS);
    this.db = db;
    this.stmts = {
      insert: db.prepare(
        'INSERT INTO outbox (id, lane, topic, payload, qos, retain, boot_id, created_ms, expires_ms, props) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
      ),
      deleteSeq: db.prepare('DELETE FROM outbox WHERE seq = ?'),
      fetchLane: db
        .prepare(
          // INDEXED BY: with statistics SQLite may walk the rowid over every lane instead.
          'SELECT seq, id, topic, payload, qos, retain, boot_id, props FROM outbox INDEXED BY outbox_lane_seq WHERE lane = ? AND seq > ? AND (expires_ms IS NULL OR expires_ms > ?) ORDER BY seq LIMIT ?',
        )
        // Arrays, not objects: a backlog drain reads every row once, and this is ~3× faster.
        .raw(true),
      oldestInLane: db.prepare(
        'SELECT seq, length(payload) + length(CAST(topic AS BLOB)) AS bytes FROM outbox INDEXED BY outbox_lane_seq WHERE lane = ? ORDER BY seq LIMIT ?',
      ),
      expire: db.prepare(
        'DELETE FROM outbox WHERE expires_ms IS NOT NULL AND expires_ms <= ? RETURNING seq, lane, length(payload) + length(CAST(topic AS BLOB)) AS bytes',
      ),
      counter: db.prepare(
        'INSERT INTO outbox_counters (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value',
      ),
      countRows: db.prepare(
        'SELECT lane, count(*) AS n, coalesce(sum(length(payload) + length(CAST(topic AS BLOB))), 0) AS b FROM outbox GROUP BY lane',
      ),
    };
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
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ msg, resolve, reject });
      const n = this.pending.length;
      if (n >= this.options.batchSize * MAX_BATCH_FACTOR) this.flush();
      else if (n >= this.options.batchSize) {
        // A full batch commits at the end of this turn of the event loop, so a burst enqueued
        // in one turn shares one fsync (which costs milliseconds on most disks).
        if (this.flushImmediate === undefined) this.flushImmediate = setImmediate(() => this.flush());
      } else if (this.flushTimer === undefined) {
        this.flushTimer = setTimeout(() => this.flush(), this.options.maxDelayMs);
      }
    });
  }

  /** Commits everything waiting, in one transaction. Synchronous: no await inside a transaction. */
  flush(): void {
    if (this.flushTimer !== undefined) {
      clearTimeout(this.flushTimer);
      this.flushTimer = undefined;
    }
    if (this.flushImmediate !== undefined) {
      clearImmediate(this.flushImmediate);
      this.flushImmediate = undefined;
    }
    const batch = this.pending;
    if (batch.length === 0 || this.db === undefined) return;
    this.pending = [];
    const now = this.now();
    const accepted: Pending[] = [];
    const rejected: Pending[] = [];
    const stored: StoredMessage[] = [];
    try {
      this.db.transaction(() => {
        for (const p of batch) {
          const m = p.msg;
          const bytes = m.payload.length + Buffer.byteLength(m.topic) + ROW_OVERHEAD;
          if (!this.makeRoom(bytes, m.lane)) {
            rejected.push(p);
            continue;
          }
          const ttl = m.ttlMs ?? (m.lane === 'control' ? 0 : this.options.ttlMs[m.lane]);
          const info = this.stmts!.insert.run(
            m.id,
            LANES[m.lane],
            m.topic,
            m.payload,
            m.qos,
            m.retain === true ? 1 : 0,
            this.options.bootId,
            now,
            ttl > 0 ? now + ttl : null,
            m.props === undefined ? null : JSON.stringify(m.props),
          );
          this.rows++;
          this.bytes += bytes;
          this.rowsByLane[m.lane]++;
          accepted.push(p);
          stored.push({
            ...(m.props === undefined ? {} : { props: m.props }),
            seq: Number(info.lastInsertRowid),
            id: m.id,
            lane: m.lane,
            topic: m.topic,
            payload: m.payload,
            qos: m.qos,
            retain: m.retain === true,
            bootId: this.options.bootId,
            bytes,
          });
        }
        this.counters.enqueued += accepted.length;
        this.counters.rejected += rejected.length;
        this.saveCounters();
      })();
    } catch (err) {
      this.recount();
      const error = new OutpostError('INTERNAL', `outbox commit failed: ${String(err)}`, { cause: err });
      this.options.log.error({ err }, 'outbox commit failed');
      for (const p of batch) p.reject(error);
      return;
    }
    for (const p of accepted) p.resolve();
    for (const p of rejected) {
      p.reject(new OutpostError('OUTBOX_FULL', `outbox is full (${this.rows} rows, ${this.bytes} bytes)`));
    }
    if (stored.length > 0) this.emit('committed', stored);
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

  private saveCounters(): void {
    for (const [name, value] of Object.entries(this.counters)) this.stmts!.counter.run(name, value);
  }

  /** Committed messages of one lane after `afterSeq`, oldest first, skipping expired ones (expire() counts them). */
  fetch(lane: Lane, afterSeq: number, limit: number): StoredMessage[] {
    if (this.stmts === undefined) return [];
    const rows = this.stmts.fetchLane.all(LANES[lane], afterSeq, this.now(), limit) as Array<
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

  /** Marks a message delivered. Deletes are batched into one transaction. */
  ack(msg: Pick<StoredMessage, 'seq' | 'bytes' | 'lane'>, refused = false): void {
    this.acks.push({ seq: msg.seq, bytes: msg.bytes, lane: msg.lane, refused });
    if (this.acks.length >= 512) this.flushAcks();
    else if (this.ackTimer === undefined) this.ackTimer = setTimeout(() => this.flushAcks(), 20);
  }

  flushAcks(): void {
    if (this.ackTimer !== undefined) {
      clearTimeout(this.ackTimer);
      this.ackTimer = undefined;
    }
    const acks = this.acks;
    if (acks.length === 0 || this.db === undefined) return;
    this.acks = [];
    try {
      this.db.transaction(() => {
        for (const a of acks) {
          // A row already evicted or expired is not counted twice.
          if (this.stmts!.deleteSeq.run(a.seq).changes === 0) {
            // Evicted or expired while in flight, yet the broker took it: it is not missing.
            const why = this.gone.get(a.seq);
            if (why !== undefined) {
              this.gone.delete(a.seq);
              this.counters[why]--;
              if (a.refused) this.counters.refused++;
              else this.counters.sent++;
            }
            continue;
          }
          if (a.refused) this.counters.refused++;
          else this.counters.sent++;
          this.rows--;
          this.bytes -= a.bytes;
          this.rowsByLane[a.lane]--;
        }
        this.saveCounters();
      })();
    } catch (err) {
      this.recount();
      this.options.log.error({ err }, 'outbox delete failed; messages will be sent again');
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
      pending: this.pending.length,
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
    this.db?.close();
    this.db = undefined;
    this.stmts = undefined;
    for (const p of this.pending) p.reject(new OutpostError('SHUTTING_DOWN', 'outbox is closed'));
    this.pending = [];
  }
}
