import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { Outbox, type OutboxMessage, type StoredMessage } from '../agent/outbox/outbox.ts';
import { isOutpostError } from '../shared/errors.ts';
import { createJsonLogger } from '../shared/log.ts';
import { tempDir } from './helpers/tmp.ts';

const silent = createJsonLogger({ level: 'silent' });

function open(maxRows = 1_000): Outbox {
  const outbox = new Outbox({
    path: join(tempDir('outbox-sync'), 'outbox.db'),
    bootId: 'b1',
    synchronous: 'FULL',
    batchSize: 64,
    maxDelayMs: 2,
    maxRows,
    maxBytes: 1_000_000,
    ttlMs: { prediction: 0, telemetry: 0 },
    log: silent,
  });
  outbox.start();
  return outbox;
}

function msg(id: string, lane: OutboxMessage['lane'] = 'prediction'): OutboxMessage {
  return { id, topic: `outpost/v1/d/${lane}`, payload: Buffer.from(`{"id":"${id}"}`), lane, qos: 1 };
}

test('a commit is handed out (promise, committed event, backlog read) only once the WAL sync covering it is done', async () => {
  const outbox = open();
  const seen: string[] = [];
  outbox.on('committed', (rows) => seen.push(...rows.map((r) => r.id)));
  const done = outbox.enqueueMany([msg('a'), msg('b'), msg('c')]);
  let settled = false;
  void done.then(() => {
    settled = true;
  });
  // The transaction commits right here; its sync runs on the thread pool and cannot be done yet.
  outbox.flush();
  assert.equal(outbox.stats().rows, 3);
  assert.deepEqual(outbox.fetch('prediction', 0, 10), [], 'rows not yet synced are not read for sending');
  assert.deepEqual(seen, []);
  await Promise.resolve();
  assert.equal(settled, false);
  assert.deepEqual(await done, [true, true, true]);
  assert.deepEqual(seen, ['a', 'b', 'c']);
  assert.deepEqual(
    outbox.fetch('prediction', 0, 10).map((m) => m.id),
    ['a', 'b', 'c'],
  );
  outbox.stop();
});

test('enqueueMany says which messages fit; single enqueues still reject when full', async () => {
  const outbox = open(3);
  assert.deepEqual(await outbox.enqueueMany([msg('c1', 'control'), msg('c2', 'control')]), [true, true]);
  // p1 takes the last row; c3 evicts it (control outranks predictions); p2 may not evict control.
  assert.deepEqual(await outbox.enqueueMany([msg('p1'), msg('c3', 'control'), msg('p2')]), [
    true,
    true,
    false,
  ]);
  await assert.rejects(outbox.enqueue(msg('p3')), (e) => isOutpostError(e, 'OUTBOX_FULL'));
  const stats = outbox.stats();
  assert.equal(stats.rows, 3);
  assert.equal(stats.rejected, 2);
  assert.equal(stats.evicted_prediction, 1);
  assert.deepEqual(
    outbox.fetch('control', 0, 10).map((m) => m.id),
    ['c1', 'c2', 'c3'],
  );
  outbox.stop();
});

test('acks are deleted with the next commit, in runs, and counted once', async () => {
  const outbox = open();
  const stored: StoredMessage[] = [];
  outbox.on('committed', (rows) => stored.push(...rows));
  await outbox.enqueueMany(Array.from({ length: 10 }, (_, i) => msg(`m${i}`)));
  // Acked out of order and with a gap (m4 still in flight).
  for (const i of [3, 1, 0, 2, 9, 5, 6, 8, 7]) outbox.ack(stored[i] as StoredMessage);
  outbox.ack(stored[3] as StoredMessage);
  await outbox.enqueue(msg('next'));
  const stats = outbox.stats();
  assert.equal(stats.rows, 2, 'm4 and the new message are left');
  assert.equal(stats.sent, 9, 'an ack that arrives twice is counted once');
  assert.deepEqual(
    outbox.fetch('prediction', 0, 10).map((m) => m.id),
    ['m4', 'next'],
  );
  outbox.stop();
});
