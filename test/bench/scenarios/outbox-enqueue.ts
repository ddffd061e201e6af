import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import { migrate, OUTBOX_MIGRATIONS } from '../../../agent/outbox/migrations.ts';
import type { Outbox, OutboxMessage } from '../../../agent/outbox/outbox.ts';
import { createJsonLogger } from '../../../shared/log.ts';
import { PREDICTION_PAYLOAD } from '../lib/pipeline-rig.ts';
import type { Scenario } from '../lib/scenario.ts';
import { interleaved, mean } from '../lib/stable.ts';

/** The agent's default outbox batch (config outbox.batchSize). */
const BATCH = 256;
const TOPIC = 'outpost/v1/bench/pred/linear-regression';
const PAYLOAD = PREDICTION_PAYLOAD;

interface Window {
  messages: number;
  throughput: number;
}

function message(n: number): OutboxMessage {
  return { id: `m${n}`, topic: TOPIC, payload: PAYLOAD, lane: 'prediction', qos: 1 };
}

/** The outbox as the publisher uses it: a turn's worth of enqueues (one batch), then wait for all to be on disk. */
async function outboxWindow(outbox: Outbox, durationMs: number, counter: { n: number }): Promise<Window> {
  const started = performance.now();
  let messages = 0;
  while (performance.now() - started < durationMs) {
    const batch: Array<Promise<void>> = new Array(BATCH);
    for (let i = 0; i < BATCH; i++) batch[i] = outbox.enqueue(message(counter.n++));
    await Promise.all(batch);
    messages += BATCH;
  }
  const elapsed = performance.now() - started;
  return { messages, throughput: (messages / elapsed) * 1000 };
}

/** The baseline: the same rows, one prepared INSERT, one transaction per batch, one event-loop turn per batch as above. */
function rawSqlite(path: string) {
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  migrate(db, OUTBOX_MIGRATIONS);
  const insert = db.prepare(
    'INSERT INTO outbox (id, lane, topic, payload, qos, retain, boot_id, created_ms, expires_ms, props) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
  );
  const commit = db.transaction((from: number) => {
    const now = Date.now();
    for (let i = 0; i < BATCH; i++)
      insert.run(`m${from + i}`, 1, TOPIC, PAYLOAD, 1, 0, 'boot', now, now + 1e9, null);
  });
  let n = 0;
  return {
    db,
    async window(durationMs: number): Promise<Window> {
      const started = performance.now();
      let messages = 0;
      while (performance.now() - started < durationMs) {
        commit(n);
        n += BATCH;
        messages += BATCH;
        await new Promise((r) => setImmediate(r));
      }
      const elapsed = performance.now() - started;
      return { messages, throughput: (messages / elapsed) * 1000 };
    },
  };
}

export const outboxEnqueue: Scenario = {
  name: 'outbox-enqueue',
  description:
    `Outbox enqueue rate: the Outbox class (compiled JavaScript, as the service runs it) on a SQLite file in a temp dir (WAL, synchronous FULL, ` +
    `batchSize ${BATCH}, maxDelayMs 10: the defaults), fed ${BATCH} prediction-sized messages ` +
    `(${PAYLOAD.length}-byte payload) per event-loop turn, each batch awaited until every promise resolved ` +
    `(committed). Baseline: raw better-sqlite3 inserts of the same rows into the same schema, one ` +
    `transaction per ${BATCH} rows, same pragmas. Both run in the bench process; windows alternate until ` +
    'three agree within 10%.',
  async run(ctx) {
    // The agent's compiled JavaScript, as the service runs it (not the bench's own TypeScript loader).
    const built = pathToFileURL(join(ctx.buildDir, 'agent', 'outbox', 'outbox.js')).href;
    const { Outbox: BuiltOutbox } = (await import(built)) as typeof import('../../../agent/outbox/outbox.ts');
    const outbox = new BuiltOutbox({
      path: join(ctx.tmpDir, 'outbox.db'),
      bootId: 'bench',
      synchronous: 'FULL',
      batchSize: BATCH,
      maxDelayMs: 10,
      maxRows: 20_000_000,
      maxBytes: 8 * 1024 ** 3,
      ttlMs: { prediction: 7 * 24 * 3600_000, telemetry: 24 * 3600_000 },
      log: createJsonLogger({ level: 'silent' }),
    });
    outbox.start();
    ctx.defer(() => outbox.stop());
    const raw = rawSqlite(join(ctx.tmpDir, 'raw.db'));
    ctx.defer(() => {
      raw.db.close();
    });
    const counter = { n: 0 };
    const windowMs = ctx.quick ? 300 : 1_000;
    const result = await interleaved(
      [
        { name: 'outbox', window: () => outboxWindow(outbox, windowMs, counter) },
        { name: 'raw', window: () => raw.window(windowMs) },
      ],
      {
        metric: (r) => r.throughput,
        minWindows: ctx.minWindows,
        // Every window leaves its rows behind (as an outbox whose broker is away would): keep the files modest.
        maxWindows: Math.min(ctx.maxWindows, 6),
        warmup: async (side) => {
          if (side === 'outbox') await outboxWindow(outbox, 200, counter);
          else await raw.window(200);
        },
      },
    );
    const stats = outbox.stats();
    if (stats.rows !== counter.n)
      throw new Error(`outbox holds ${stats.rows} rows after ${counter.n} enqueues`);
    const value = mean((result.last[0] ?? []).map((w) => w.throughput));
    const baseline = mean((result.last[1] ?? []).map((w) => w.throughput));
    ctx.log(`outbox ${value.toFixed(0)}/s, raw ${baseline.toFixed(0)}/s, ${stats.rows} rows`);
    ctx.record({
      metric: 'enqueue rate (committed)',
      value,
      unit: 'msg/s',
      baseline,
      target: { on: 'value', op: '>=', limit: 50_000 },
      stable: result.stable,
      note: `${result.windows} windows of ${windowMs} ms per side; the outbox held ${stats.rows} rows at the end`,
    });
  },
};
