import assert from 'node:assert/strict';
import { test } from 'node:test';
import mqtt from 'mqtt';
import { loadConfig } from '../agent/config.ts';
import type { Envelope } from '../shared/envelope.ts';
import { isOutpostError } from '../shared/errors.ts';
import { topics } from '../shared/topics.ts';
import { linearPipelineBundle } from './fixtures/pipeline-bundles.ts';
import { testAgent, waitFor } from './helpers/agent.ts';
import { startBroker } from './helpers/broker.ts';
import { tempDir } from './helpers/tmp.ts';

interface TelemetryBody {
  system?: {
    cpu: { loadPercent: number; cores: number[] };
    memory: { totalBytes: number; availableBytes: number; usedPercent: number };
    temperature: { mainC: number | null; maxC: number | null };
    disk: { path: string; totalBytes: number; freeBytes: number };
    network: Array<{ iface: string; rxBytes: number; txBytes: number }>;
  };
  runtime?: {
    models: Record<string, { count: number; errors: number; p50Ms: number | null; p99Ms: number | null }>;
    pipelines: Record<string, { predictions: number }>;
  };
  outbox?: Record<string, number>;
}

test('telemetry on a per-second cron: system, runtime and outbox figures arrive on the telemetry topic', async () => {
  const broker = await startBroker();
  const bundle = await linearPipelineBundle(tempDir('bundles'), {
    kind: 'http',
    name: 'feed',
    payload: { format: 'json', field: 'x' },
  });
  const dataDir = tempDir('telemetry-agent');
  const agent = testAgent({
    deviceId: 'tele-dev',
    dataDir,
    uplink: { url: broker.url },
    sensors: { mqtt: 'off' },
    models: { bundles: [bundle.dir] },
    telemetry: {
      schedules: { system: '* * * * * *', runtime: '* * * * * *', outbox: '* * * * * *' },
    },
  });
  const sub = await mqtt.connectAsync(broker.url, { protocolVersion: 4 });
  const got: Envelope<TelemetryBody>[] = [];
  await sub.subscribeAsync(topics.telemetry('tele-dev'), { qos: 1 });
  sub.on('message', (_t, payload) => got.push(JSON.parse(payload.toString()) as Envelope<TelemetryBody>));
  await agent.start();
  try {
    for (let i = 0; i < 5; i++) {
      const res = await fetch(`http://127.0.0.1:${agent.httpPort}/v1/sensors/feed`, {
        method: 'POST',
        body: JSON.stringify({ x: [i, 0, 0] }),
      });
      assert.equal(res.status, 200);
    }
    await waitFor(
      () => got.some((e) => (e.body.runtime?.models['linear-regression']?.count ?? 0) >= 5),
      'a telemetry message with the inferences',
      15_000,
    );
    const e = got.find(
      (x) => (x.body.runtime?.models['linear-regression']?.count ?? 0) >= 5,
    ) as Envelope<TelemetryBody>;
    assert.equal(e.type, 'telemetry');
    assert.equal(e.deviceId, 'tele-dev');
    assert.match(e.id, /^[0-9A-HJKMNP-TV-Z]{26}$/);
    const { system, runtime, outbox } = e.body;
    assert.ok(
      system !== undefined && runtime !== undefined && outbox !== undefined,
      'all three kinds in one message',
    );
    assert.equal(typeof system.cpu.loadPercent, 'number');
    assert.ok(system.memory.totalBytes > 0 && system.memory.availableBytes > 0);
    assert.ok('mainC' in system.temperature, 'temperature reported (null without a sensor)');
    assert.equal(system.disk.path, dataDir);
    assert.ok(system.disk.freeBytes > 0 && system.disk.totalBytes >= system.disk.freeBytes);
    assert.ok(system.network.length > 0 && typeof system.network[0]?.rxBytes === 'number');
    const m = runtime.models['linear-regression'];
    assert.equal(m?.errors, 0);
    assert.ok(m?.p50Ms !== null && m?.p99Ms !== null && (m?.p99Ms as number) >= (m?.p50Ms as number));
    assert.ok((runtime.pipelines['linear-regression']?.predictions ?? 0) >= 5);
    for (const k of [
      'rows',
      'bytes',
      'sent',
      'expired',
      'rejected',
      'refused',
      'evicted_prediction',
      'evicted_telemetry',
    ])
      assert.equal(typeof outbox[k], 'number', `outbox.${k}`);
    // It went through the outbox on the telemetry lane, like everything else.
    await waitFor(() => agent.outbox.stats().rowsByLane.telemetry === 0, 'telemetry rows to be acknowledged');
    assert.ok(agent.telemetry !== undefined && agent.telemetry.counters.sent >= 1);
  } finally {
    await agent.stop();
    await sub.endAsync();
    await broker.stop();
  }
});

test('a bad cron expression is a config error that names the key', () => {
  assert.throws(
    () =>
      loadConfig({
        overrides: { dataDir: tempDir('cfg'), telemetry: { schedules: { system: 'every minute' } } },
      }),
    (err: unknown) =>
      isOutpostError(err, 'CONFIG_INVALID') && /telemetry\.schedules\.system/.test(err.message),
  );
});
