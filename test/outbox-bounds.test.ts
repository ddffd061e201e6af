import assert from 'node:assert/strict';
import { chmodSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import mqtt from 'mqtt';
import { Outbox, type OutboxMessage } from '../agent/outbox/outbox.ts';
import type { Envelope } from '../shared/envelope.ts';
import { isOutpostError } from '../shared/errors.ts';
import { createJsonLogger } from '../shared/log.ts';
import { testAgent, waitFor } from './helpers/agent.ts';
import { startBroker } from './helpers/broker.ts';
import { tempDir } from './helpers/tmp.ts';

const model = { name: 'm', version: '1.0.0', sha256: 'a'.repeat(64) };
const silent = createJsonLogger({ level: 'silent' });

test('bounds reached: telemetry is evicted first, then predictions, control never; counters match what is missing', async () => {
  const db = tempDir('mosquitto-db');
  // mosquitto started as root drops to its own user before it saves its database.
  chmodSync(db, 0o777);
  const broker = await startBroker({
    extraConfig: `allow_anonymous true\npersistence true\npersistence_location ${db}/\nautosave_interval 1`,
  });
  // The cloud side's session (clean: false) outlives the outage, so it misses nothing sent on return.
  const subOptions = { protocolVersion: 4 as const, clientId: 'bounds-cloud', clean: false };
  const first = await mqtt.connectAsync(broker.url, subOptions);
  await first.subscribeAsync('outpost/v1/bounds-dev/#', { qos: 1 });
  await first.endAsync();
  await broker.stop();
  const agent = testAgent({
    deviceId: 'bounds-dev',
    uplink: { url: broker.url, backoffMinMs: 100, backoffMaxMs: 300 },
    sensors: { mqtt: 'off' },
    telemetry: { enabled: false },
    outbox: { maxRows: 100 },
  });
  await agent.start();
  const p = agent.publisher;
  const rejected: string[] = [];
  const put = (kind: 't' | 'p' | 'c', i: number) => {
    const done =
      kind === 't' ? p.telemetry({ i }) : kind === 'p' ? p.prediction(model, { i }) : p.event('note', { i });
    return done.catch((err: unknown) => {
      assert.ok(isOutpostError(err, 'OUTBOX_FULL'));
      rejected.push(`${kind}${i}`);
    });
  };
  const all: Array<Promise<void>> = [];
  try {
    // 80 telemetry fill the box; 60 predictions push out 40 of them; 20 control push out 20 more.
    for (let i = 1; i <= 80; i++) all.push(put('t', i));
    for (let i = 1; i <= 60; i++) all.push(put('p', i));
    for (let i = 1; i <= 20; i++) all.push(put('c', i));
    await Promise.all(all);
    let s = agent.outbox.stats();
    assert.deepEqual(s.rowsByLane, { control: 20, prediction: 60, telemetry: 20 });
    assert.equal(s.evicted_telemetry, 60);
    assert.equal(s.evicted_prediction, 0);
    // 30 more control: the last 20 telemetry go, then the 10 oldest predictions.
    for (let i = 21; i <= 50; i++) all.push(put('c', i));
    // Telemetry now has nothing less important to push out: refused, and counted.
    for (let i = 81; i <= 85; i++) all.push(put('t', i));
    await Promise.all(all);
    s = agent.outbox.stats();
    assert.deepEqual(s.rowsByLane, { control: 50, prediction: 50, telemetry: 0 });
    assert.equal(s.evicted_telemetry, 80);
    assert.equal(s.evicted_prediction, 10);
    assert.equal(s.rejected, 5);
    assert.deepEqual(rejected, ['t81', 't82', 't83', 't84', 't85']);

    // The broker returns: what arrives is exactly what was not counted as dropped.
    await broker.start();
    const got = { t: [] as number[], p: [] as number[], c: [] as number[] };
    // Listening before any message can be delivered: the handler is attached in the same tick.
    const sub = mqtt.connect(broker.url, subOptions);
    sub.on('message', (topic, payload) => {
      if (topic.endsWith('/status')) return;
      const e = JSON.parse(payload.toString()) as Envelope<{ i: number }>;
      const kind = e.type === 'telemetry' ? 't' : e.type === 'prediction' ? 'p' : 'c';
      got[kind].push(e.body.i);
    });
    await waitFor(() => agent.status().uplink?.state === 'connected', 'the uplink', 15_000);
    await waitFor(() => agent.outbox.stats().rows === 0, 'the outbox to drain');
    await waitFor(() => got.c.length + got.p.length >= 100, 'everything kept').catch((err: unknown) => {
      throw new Error(`${String(err)}: ${JSON.stringify(got)}`);
    });
    await sub.endAsync();
    const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, k) => a + k);
    assert.deepEqual(got.c, range(1, 50), 'control: nothing missing');
    assert.deepEqual(got.p, range(11, 60), 'predictions: the oldest were evicted');
    assert.deepEqual(got.t, []);
    s = agent.outbox.stats();
    assert.equal(
      85 - got.t.length,
      s.evicted_telemetry + s.rejected,
      'missing telemetry = evicted + refused',
    );
    assert.equal(60 - got.p.length, s.evicted_prediction, 'missing predictions = evicted');
    assert.equal(s.sent, 100);
  } finally {
    await agent.stop();
    await broker.stop();
  }
});

function msg(id: string, lane: OutboxMessage['lane'], bytes: number, ttlMs?: number): OutboxMessage {
  return {
    id,
    topic: `outpost/v1/d/${lane}`,
    payload: Buffer.alloc(bytes, 0x61),
    lane,
    qos: 1,
    ...(ttlMs === undefined ? {} : { ttlMs }),
  };
}

test('byte bound, control never evicted, TTL expiry, counters persisted, schema version checked', async () => {
  const dir = tempDir('outbox');
  const path = join(dir, 'outbox.db');
  let clock = 1_000_000;
  const options = {
    path,
    bootId: 'b1',
    synchronous: 'FULL' as const,
    batchSize: 64,
    maxDelayMs: 2,
    maxRows: 1_000,
    maxBytes: 10_000,
    ttlMs: { prediction: 0, telemetry: 0 },
    log: silent,
    now: () => clock,
  };
  const outbox = new Outbox(options);
  outbox.start();
  const fail = (p: Promise<void>) =>
    p.then(
      () => 'ok',
      (err: unknown) => (isOutpostError(err, 'OUTBOX_FULL') ? 'full' : String(err)),
    );
  // ~1 kB each (payload + topic + row overhead): nine predictions fit in 10 kB.
  const results = await Promise.all(
    Array.from({ length: 9 }, (_, i) => fail(outbox.enqueue(msg(`p${i}`, 'prediction', 1000)))),
  );
  assert.deepEqual(new Set(results), new Set(['ok']));
  // Two are in flight (read by an uplink) when control takes the room of predictions, oldest
  // first, never the other way round.
  const inFlight = outbox.fetch('prediction', 0, 2);
  const control = await Promise.all(
    Array.from({ length: 12 }, (_, i) => fail(outbox.enqueue(msg(`c${i}`, 'control', 1000)))),
  );
  let s = outbox.stats();
  assert.equal(s.rowsByLane.prediction, 0);
  assert.equal(s.evicted_prediction, 9);
  assert.ok(s.bytes <= 10_000);
  assert.equal(control.filter((r) => r === 'ok').length, s.rowsByLane.control);
  assert.equal(control.filter((r) => r === 'full').length, s.rejected);
  assert.ok(s.rejected > 0, 'control is refused when only control fills the box');
  assert.deepEqual(
    outbox.fetch('control', 0, 100).map((m) => m.id),
    control.map((_, i) => `c${i}`).filter((_, i) => control[i] === 'ok'),
  );
  // Their PUBACKs come in after the eviction: they reached the broker, so they are sent, not missing.
  for (const m of inFlight) outbox.ack(m);
  outbox.flushAcks();
  s = outbox.stats();
  assert.equal(s.evicted_prediction, 7);
  assert.equal(s.sent, 2);
  // TTL: a message past its time is never sent and is counted as expired.
  for (const m of outbox.fetch('control', 0, 100)) outbox.ack(m);
  outbox.flushAcks();
  await outbox.enqueue(msg('short', 'telemetry', 10, 1_000));
  await outbox.enqueue(msg('long', 'telemetry', 10, 60_000));
  clock += 5_000;
  assert.deepEqual(
    outbox.fetch('telemetry', 0, 10).map((m) => m.id),
    ['long'],
  );
  assert.equal(outbox.expire(), 1);
  s = outbox.stats();
  assert.equal(s.expired, 1);
  assert.equal(s.rows, 1);
  const before = { ...s };
  outbox.stop();

  // Counters and rows survive a restart.
  const again = new Outbox(options);
  again.start();
  const t = again.stats();
  for (const k of [
    'sent',
    'expired',
    'rejected',
    'evicted_prediction',
    'evicted_telemetry',
    'enqueued',
  ] as const)
    assert.equal(t[k], before[k], k);
  assert.equal(t.rows, 1);
  again.stop();

  // A database from a newer agent is refused rather than misread.
  const db = new Database(path);
  assert.equal(db.pragma('user_version', { simple: true }), 1);
  db.pragma('user_version = 99');
  db.close();
  assert.throws(() => new Outbox(options).start(), /newer than this agent/);
});
