import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import mqtt from 'mqtt';
import type { Agent } from '../agent/main.ts';
import { vibrationBundle } from '../deploy/examples/example-bundles.ts';
import type { Envelope } from '../shared/envelope.ts';
import {
  simulateVibration,
  VIBRATION_ANOMALY_THRESHOLD,
  vibrationAnomaly,
  windowsToFeeds,
} from '../shared/onnx/models.ts';
import { topics } from '../shared/topics.ts';
import { testAgent, waitFor } from './helpers/agent.ts';
import { startBroker, type TestBroker } from './helpers/broker.ts';
import { tempDir } from './helpers/tmp.ts';

let broker: TestBroker;
let agent: Agent;

before(async () => {
  broker = await startBroker();
  const bundle = await vibrationBundle(tempDir('bundles'));
  agent = testAgent({ uplink: { url: broker.url }, models: { bundles: [bundle.dir] } });
  await agent.start();
});

after(async () => {
  await agent?.stop();
  await broker?.stop();
});

function expectedScore(window: number[][]): number {
  const out = vibrationAnomaly().reference(windowsToFeeds([window]));
  const score = out.score;
  assert.ok(score !== undefined);
  return (score.data as Float32Array | Float64Array)[0] as number;
}

test('sensor readings over MQTT become predictions on the pred topic, committed then deleted on PUBACK', async () => {
  const received: Envelope<{ key: string; score: number; active: boolean }>[] = [];
  const sub = await mqtt.connectAsync(broker.url, { protocolVersion: 4 });
  await sub.subscribeAsync(topics.pred('test-device', 'vibration-anomaly'), { qos: 1 });
  sub.on('message', (_topic, payload) => received.push(JSON.parse(payload.toString())));
  const sensors = await mqtt.connectAsync(broker.url, { protocolVersion: 4 });
  await waitFor(() => agent.status().uplink?.state === 'connected', 'uplink to connect');
  // Give the sensor bus its subscription before publishing.
  await new Promise((r) => setTimeout(r, 300));

  const clean = simulateVibration({ seed: 11 });
  const faulty = simulateVibration({ seed: 12, fault: true });
  for (const [sensor, window] of [
    ['s1', clean],
    ['s2', faulty],
  ] as const) {
    for (let i = 0; i < 64; i += 16) {
      await sensors.publishAsync(
        `sensors/${sensor}/accel`,
        JSON.stringify({ accel: window.slice(i, i + 16) }),
        { qos: 1 },
      );
    }
  }
  await waitFor(() => received.length >= 2, 'two predictions');
  const byKey = new Map(received.map((e) => [e.body.key, e]));
  const s1 = byKey.get('s1');
  const s2 = byKey.get('s2');
  assert.ok(s1 && s2, 'one prediction per sensor');
  assert.equal(s1.v, 1);
  assert.equal(s1.deviceId, 'test-device');
  assert.equal(s1.type, 'prediction');
  assert.equal(s1.model?.name, 'vibration-anomaly');
  assert.match(s1.id, /^[0-9A-HJKMNP-TV-Z]{26}$/, 'ULID id');
  assert.ok(Math.abs(s1.body.score - expectedScore(clean)) < 1e-4, `clean score ${s1.body.score}`);
  assert.ok(
    Math.abs(s2.body.score - expectedScore(faulty)) < 1e-3 * expectedScore(faulty) + 1e-5,
    `fault score ${s2.body.score}`,
  );
  assert.ok(s1.body.score < VIBRATION_ANOMALY_THRESHOLD);
  assert.ok(s2.body.score > VIBRATION_ANOMALY_THRESHOLD);
  assert.equal(s2.body.active, true);
  await waitFor(
    () => agent.outbox.stats().rowsByLane.prediction === 0,
    'the outbox to delete acknowledged predictions',
  );
  assert.ok(agent.outbox.stats().sent >= 2);
  await sub.endAsync();
  await sensors.endAsync();
});

test('the local HTTP API answers V2 infer with the same score', async () => {
  const window = simulateVibration({ seed: 5, fault: true });
  const res = await fetch(`http://127.0.0.1:${agent.httpPort}/v2/models/vibration-anomaly/infer`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      id: 'r1',
      inputs: [{ name: 'window', datatype: 'FP32', shape: [1, 64, 3], data: window }],
    }),
  });
  assert.equal(res.status, 200);
  const body = (await res.json()) as { id: string; outputs: Array<{ name: string; data: number[] }> };
  assert.equal(body.id, 'r1');
  const score = body.outputs.find((o) => o.name === 'score')?.data[0];
  assert.ok(score !== undefined && Math.abs(score - expectedScore(window)) < 1e-3 * expectedScore(window));
});
