import assert from 'node:assert/strict';
import { chmodSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { test } from 'node:test';
import { Aedes } from 'aedes';
import mqtt from 'mqtt';
import type { Agent } from '../agent/main.ts';
import type { Envelope } from '../shared/envelope.ts';
import { topics } from '../shared/topics.ts';
import { linearPipelineBundle, readingOf } from './fixtures/pipeline-bundles.ts';
import { testAgent, waitFor } from './helpers/agent.ts';
import { freePort, startBroker } from './helpers/broker.ts';
import { tempDir } from './helpers/tmp.ts';

type Pred = Envelope<{ key: string; values: number[] }> & { historical?: true };

interface Outage {
  url: string;
  /** Called just before the broker goes away. */
  beforeStop?: () => Promise<void>;
  /** How the cloud side listens: `dup` is set when the broker itself sent the message again. */
  subscribe(topic: string, onMessage: (payload: Buffer, dup: boolean) => void): Promise<void>;
  stop(): Promise<void>;
  start(): Promise<void>;
  close(): Promise<void>;
}

/** mosquitto with persistence on, so the cloud subscriber's session and queue survive the restart. */
async function mosquittoBroker(): Promise<Outage> {
  const dir = tempDir('mosquitto-db');
  // mosquitto started as root drops to its own user before it saves its database.
  chmodSync(dir, 0o777);
  const b = await startBroker({
    kind: 'mosquitto',
    extraConfig: `allow_anonymous true\npersistence true\npersistence_location ${dir}/\nautosave_interval 1`,
  });
  let sub: mqtt.MqttClient | undefined;
  let listen: ((payload: Buffer, dup: boolean) => void) | undefined;
  const connect = async () => {
    // The handler goes on before CONNACK: messages queued for the session come right after it.
    const client = mqtt.connect(b.url, { protocolVersion: 4, clientId: 'cloud-subscriber', clean: false });
    client.on('message', (_t, payload, packet) => listen?.(payload, packet.dup));
    await new Promise<void>((resolve, reject) => {
      client.once('connect', () => resolve());
      client.once('error', reject);
    });
    sub = client;
  };
  return {
    url: b.url,
    async subscribe(topic, onMessage) {
      listen = onMessage;
      await connect();
      await sub?.subscribeAsync(topic, { qos: 1 });
    },
    // The cloud subscriber leaves cleanly (its session and queue persist) before the broker
    // stops: mosquitto can lose QoS 1 messages that were in flight to a subscriber when it is
    // terminated, which is a loss on the broker → cloud hop, not the device's.
    beforeStop: async () => {
      await sub?.endAsync();
    },
    stop: () => b.stop(),
    async start() {
      await b.start();
      await connect();
    },
    async close() {
      await sub?.endAsync(true);
      await b.stop();
    },
  };
}

/**
 * aedes (MQTT 3.1.1 only) whose listener goes away and comes back on the same port while the
 * broker, with its in-memory sessions, lives on: for the device it is the same outage.
 */
async function aedesBroker(): Promise<Outage> {
  const broker = await Aedes.createBroker();
  const port = await freePort();
  let server: Server | undefined;
  const sockets = new Set<Socket>();
  const start = async () => {
    const s = createServer((socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      broker.handle(socket);
    });
    await new Promise<void>((resolve) => s.listen(port, '127.0.0.1', resolve));
    server = s;
  };
  const stop = async () => {
    const s = server;
    server = undefined;
    for (const socket of sockets) socket.destroy();
    if (s !== undefined) await new Promise<void>((resolve) => s.close(() => resolve()));
  };
  await start();
  return {
    url: `mqtt://127.0.0.1:${port}`,
    // The cloud side listens inside the broker: it sees exactly what the device delivered.
    subscribe: (topic, onMessage) =>
      new Promise<void>((resolve) =>
        broker.subscribe(
          topic,
          (packet, cb) => {
            onMessage(Buffer.from(packet.payload), false);
            cb();
          },
          resolve,
        ),
      ),
    start,
    stop,
    async close() {
      await stop();
      await new Promise<void>((resolve) => broker.close(() => resolve()));
    },
  };
}

async function pushOne(agent: Agent, n: number): Promise<boolean> {
  try {
    const res = await fetch(`http://127.0.0.1:${agent.httpPort}/v1/sensors/feed?key=k${n % 3}`, {
      method: 'POST',
      body: JSON.stringify({ x: [n, 0, 0] }),
    });
    await res.arrayBuffer();
    return res.status === 200;
  } catch {
    return false;
  }
}

async function outageRun(broker: Outage, expectProtocol: 5 | 4): Promise<void> {
  const device = `outage-${expectProtocol}`;
  const received: Pred[] = [];
  const brokerRedelivered = new Set<number>();
  await broker.subscribe(topics.pred(device, 'linear-regression'), (payload, dup) => {
    // mosquitto may itself send a message again to a subscriber that dropped before its PUBACK
    // (DUP set): a duplicate of the broker → cloud hop, not of the device's uplink.
    if (dup) brokerRedelivered.add(received.length);
    received.push(JSON.parse(payload.toString()) as Pred);
  });
  const bundle = await linearPipelineBundle(tempDir('bundles'), {
    kind: 'http',
    name: 'feed',
    payload: { format: 'json', field: 'x' },
  });
  const inflight = 20;
  const agent = testAgent({
    deviceId: device,
    uplink: { url: broker.url, inflight, backoffMinMs: 100, backoffMaxMs: 400 },
    sensors: { mqtt: 'off' },
    telemetry: { enabled: false },
    models: { bundles: [bundle.dir] },
  });
  await agent.start();
  try {
    await waitFor(() => agent.uplink?.state === 'connected', 'the uplink');
    assert.equal(agent.uplink?.protocol, expectProtocol);
    const accepted: number[] = [];
    let n = 0;
    const started = Date.now();
    let phase: 'before' | 'down' | 'after' = 'before';
    // A steady stream, four requests at a time; the broker goes away for a second in the middle.
    const streams = [0, 1, 2, 3].map(async () => {
      while (Date.now() - started < 3_000) {
        const mine = ++n;
        if (await pushOne(agent, mine)) accepted.push(mine);
        await new Promise((r) => setTimeout(r, 2));
      }
    });
    const outage = (async () => {
      await new Promise((r) => setTimeout(r, 800));
      await broker.beforeStop?.();
      await broker.stop();
      phase = 'down';
      await waitFor(() => agent.uplink?.state !== 'connected', 'the uplink to notice');
      await new Promise((r) => setTimeout(r, 1_000));
      await broker.start();
      phase = 'after';
    })();
    await Promise.all([...streams, outage]);
    assert.equal(phase, 'after');
    assert.ok(accepted.length > 20, `a steady stream (${accepted.length} accepted)`);

    const arrived = () => new Set(received.map((e) => readingOf(e.body)));
    await waitFor(() => accepted.every((a) => arrived().has(a)), 'every accepted prediction', 20_000).catch(
      (err: unknown) => {
        const missing = accepted.filter((a) => !arrived().has(a));
        throw new Error(
          `${String(err)}: ${missing.length} missing (${missing.slice(0, 5).join(',')}…), outbox ${JSON.stringify(agent.outbox.stats())}, uplink ${agent.uplink?.state} ${JSON.stringify(agent.uplink?.counters)}`,
        );
      },
    );
    await waitFor(() => agent.outbox.stats().rows === 0, 'the outbox to empty');

    // De-duplicated by id, the stream is complete and in order.
    const seen = new Map<string, Pred>();
    const fresh = new Map<string, number>();
    const unique: Pred[] = [];
    for (const [i, e] of received.entries()) {
      // Of all copies of one message, only one is the device's first send; any other copy is a
      // device replay (marked historical) or the broker's own redelivery (DUP set).
      if (e.historical !== true && !brokerRedelivered.has(i)) fresh.set(e.id, (fresh.get(e.id) ?? 0) + 1);
      const first = seen.get(e.id);
      if (first === undefined) {
        seen.set(e.id, e);
        unique.push(e);
        continue;
      }
      assert.deepEqual(first.body, e.body, 'a duplicate is the same message: same id, same body');
    }
    for (const [id, copies] of fresh) assert.ok(copies <= 1, `${id}: ${copies} copies not marked as replays`);
    assert.equal(unique.length, accepted.length, 'nothing extra, nothing missing');
    for (let i = 1; i < unique.length; i++) {
      assert.ok((unique[i] as Pred).seq > (unique[i - 1] as Pred).seq, `in order at ${i}`);
    }
    const duplicates = received.length - unique.length;
    const connects = agent.uplink?.counters.connects ?? 0;
    assert.ok(connects >= 2, 'it reconnected');
    assert.ok(
      duplicates <= inflight * (connects - 1),
      `${duplicates} duplicates, at most the in-flight window (${inflight}) per reconnect`,
    );
    const stats = agent.outbox.stats();
    assert.equal(stats.sent, accepted.length);
    assert.equal(stats.evicted_prediction + stats.expired + stats.rejected, 0);
  } finally {
    await agent.stop();
  }
}

test('mosquitto (MQTT 5) stops mid-stream and returns: every accepted prediction arrives once, in order', async () => {
  const broker = await mosquittoBroker();
  try {
    await outageRun(broker, 5);
  } finally {
    await broker.close();
  }
});

test('aedes (MQTT 3.1.1 fallback) stops mid-stream and returns: every accepted prediction arrives, in order', async () => {
  const broker = await aedesBroker();
  try {
    await outageRun(broker, 4);
  } finally {
    await broker.close();
  }
});
