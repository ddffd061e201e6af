import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import mqtt from 'mqtt';
import { loadConfig } from '../agent/config.ts';
import { createAgent } from '../agent/main.ts';
import type { Envelope } from '../shared/envelope.ts';
import { createJsonLogger } from '../shared/log.ts';
import { topics } from '../shared/topics.ts';
import { linearPipelineBundle, readingOf } from './fixtures/pipeline-bundles.ts';
import { waitFor } from './helpers/agent.ts';
import { startBroker } from './helpers/broker.ts';
import { tempDir } from './helpers/tmp.ts';

const GARBAGE: Array<string | Buffer> = [
  'not json',
  '',
  'null',
  '[]',
  '{"y":[1,0,0]}',
  '{"x":"one"}',
  '{"x":[1,2]}',
  '{"x":[1,2,"3"]}',
  '{"x":[1e400,0,0]}',
  '{"x":[[1,0,0],[1,0]]}',
  Buffer.from([0xff, 0xfe, 0x00, 0x01]),
  `{"x":${'['.repeat(5000)}${']'.repeat(5000)}}`,
];

test('malformed sensor payloads are counted, logged at most once per interval, and never crash the agent', async () => {
  const broker = await startBroker();
  const bundle = await linearPipelineBundle(tempDir('bundles'), {
    kind: 'mqtt',
    topic: 'sensors/+sensor/x',
    key: 'sensor',
    payload: { format: 'json', field: 'x' },
  });
  const intervalMs = 1_000;
  const lines: Array<{ msg: string; suppressedSinceLast?: number; malformed?: number }> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n')) if (l !== '') lines.push(JSON.parse(l));
      done();
    },
  });
  const config = loadConfig({
    overrides: {
      deviceId: 'bad-input',
      dataDir: tempDir('agent'),
      http: { port: 0 },
      runtime: { workers: 1 },
      uplink: { url: broker.url },
      telemetry: { enabled: false },
      sensors: { malformedLogIntervalMs: intervalMs },
      models: { bundles: [bundle.dir] },
    },
  });
  const agent = createAgent(config, { logger: createJsonLogger({ level: 'warn', destination: sink }) });
  await agent.start();
  const sensor = await mqtt.connectAsync(broker.url, { protocolVersion: 4 });
  const cloud = await mqtt.connectAsync(broker.url, { protocolVersion: 4 });
  const preds: Envelope<{ key: string; values: number[] }>[] = [];
  await cloud.subscribeAsync(topics.pred('bad-input', 'linear-regression'), { qos: 1 });
  cloud.on('message', (_t, p) => preds.push(JSON.parse(p.toString())));
  try {
    await waitFor(() => agent.status().uplink?.state === 'connected', 'the uplink');
    await new Promise((r) => setTimeout(r, 300));
    const started = Date.now();
    const rounds = 20;
    for (let round = 0; round < rounds; round++) {
      for (const g of GARBAGE) await sensor.publishAsync(`sensors/s${round % 3}/x`, g, { qos: 1 });
    }
    // A good reading after all that still becomes a prediction: the pipeline is alive.
    await sensor.publishAsync('sensors/s1/x', JSON.stringify({ x: [7, 0, 0] }), { qos: 1 });
    await waitFor(() => preds.length >= 1, 'the good reading');
    const elapsed = Date.now() - started;
    assert.equal(readingOf(preds[0]?.body as { values: number[] }), 7);

    const malformed = agent.pipelines.stats()['linear-regression']?.malformed;
    assert.equal(malformed, rounds * GARBAGE.length, 'every malformed message counted');
    const warnings = lines.filter((l) => l.msg === 'malformed sensor payload dropped');
    assert.ok(warnings.length >= 1);
    assert.ok(
      warnings.length <= 1 + Math.floor(elapsed / intervalMs),
      `${warnings.length} warnings in ${elapsed} ms: at most one per ${intervalMs} ms`,
    );
    // What was not logged was counted as suppressed.
    const suppressed = warnings.reduce((n, w) => n + (w.suppressedSinceLast ?? 0), 0);
    assert.ok(suppressed <= (malformed ?? 0) - warnings.length);
    assert.equal(agent.status().state, 'running');
  } finally {
    await sensor.endAsync();
    await cloud.endAsync();
    await agent.stop();
    await broker.stop();
  }
});
