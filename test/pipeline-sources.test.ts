import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { appendFileSync, closeSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, test } from 'node:test';
import mqtt, { type MqttClient } from 'mqtt';
import type { AgentConfigInput } from '../agent/config.ts';
import type { Agent } from '../agent/main.ts';
import { LineStreamSource } from '../agent/sources/line-stream.ts';
import type { Envelope } from '../shared/envelope.ts';
import { createJsonLogger } from '../shared/log.ts';
import { topics } from '../shared/topics.ts';
import { linearPipelineBundle, readingOf } from './fixtures/pipeline-bundles.ts';
import { testAgent, waitFor } from './helpers/agent.ts';
import { freePort, startBroker, type TestBroker } from './helpers/broker.ts';
import { tempDir } from './helpers/tmp.ts';

type Pred = Envelope<{ key: string; values: number[] }>;

let broker: TestBroker;
let sub: MqttClient;
const received: Pred[] = [];

before(async () => {
  broker = await startBroker();
  sub = await mqtt.connectAsync(broker.url, { protocolVersion: 4 });
  await sub.subscribeAsync(topics.pred('+', 'linear-regression'), { qos: 1 });
  sub.on('message', (_t, payload) => received.push(JSON.parse(payload.toString()) as Pred));
});

after(async () => {
  await sub?.endAsync();
  await broker?.stop();
});

function fromDevice(device: string): Pred[] {
  return received.filter((e) => e.deviceId === device);
}

async function agentWith(device: string, source: Record<string, unknown>, config: AgentConfigInput = {}) {
  const bundle = await linearPipelineBundle(tempDir('bundles'), source);
  const agent = testAgent({
    deviceId: device,
    uplink: { url: broker.url },
    sensors: { mqtt: 'off' },
    telemetry: { enabled: false },
    models: { bundles: [bundle.dir] },
    ...config,
  });
  await agent.start();
  return agent;
}

function push(agent: Agent, source: string, body: string, query = '', type = 'application/json') {
  return fetch(`http://127.0.0.1:${agent.httpPort}/v1/sensors/${source}${query}`, {
    method: 'POST',
    headers: { 'content-type': type },
    body,
  });
}

test('HTTP push: 200 only once the predictions are committed; they arrive keyed, one per reading', async () => {
  const agent = await agentWith('push-1', {
    kind: 'http',
    name: 'line',
    payload: { format: 'json', field: 'x' },
    keyField: 'sensor',
  });
  try {
    const res = await push(
      agent,
      'line',
      JSON.stringify([
        { sensor: 'a', x: [1, 0, 0] },
        { sensor: 'b', x: [2, 0, 0] },
      ]),
    );
    assert.equal(res.status, 200);
    const result = (await res.json()) as { readings: number; windows: number; committed: number };
    assert.deepEqual(result, { readings: 2, windows: 2, committed: 2, dropped: 0, failed: 0 });
    // Committed means on disk: both are in the outbox or already acknowledged.
    const s = agent.outbox.stats();
    assert.equal(s.rowsByLane.prediction + s.sent, 2);

    // NDJSON body, and ?key= for records without a key field value.
    const nd = await push(agent, 'line', `{"sensor":"c","x":[3,0,0]}\n{"sensor":"c","x":[4,0,0]}\n`);
    assert.equal(nd.status, 200);

    await waitFor(() => fromDevice('push-1').length >= 4, 'four predictions');
    const got = fromDevice('push-1').map((e) => [e.body.key, readingOf(e.body)]);
    assert.deepEqual(got, [
      ['a', 1],
      ['b', 2],
      ['c', 3],
      ['c', 4],
    ]);
    const e = fromDevice('push-1')[0] as Pred;
    assert.equal(e.type, 'prediction');
    assert.equal(e.model?.name, 'linear-regression');

    const missing = await push(agent, 'nope', '{}');
    assert.equal(missing.status, 404);
    const bad = await push(agent, 'line', '{"sensor":"a","x":[1,2]}');
    assert.equal(bad.status, 400);
    assert.match(((await bad.json()) as { error: string }).error, /readings of 3/);
    const badKey = await push(agent, 'line', '{"x":[1,0,0]}', '?key=a/b');
    assert.equal(badKey.status, 400);
    assert.equal(agent.pipelines.stats()['linear-regression']?.malformed, 1);
  } finally {
    await agent.stop();
  }
});

test('HTTP push with CSV: the key column names the sensor', async () => {
  const agent = await agentWith('push-csv', {
    kind: 'http',
    name: 'gw',
    payload: { format: 'csv', keyColumn: 0 },
  });
  try {
    const res = await push(agent, 'gw', 's1,5,0,0\ns2,6,0,0\n', '', 'text/csv');
    assert.equal(res.status, 200);
    await waitFor(() => fromDevice('push-csv').length >= 2, 'two predictions');
    assert.deepEqual(
      fromDevice('push-csv').map((e) => [e.body.key, readingOf(e.body)]),
      [
        ['s1', 5],
        ['s2', 6],
      ],
    );
  } finally {
    await agent.stop();
  }
});

test('line stream from a followed file (NDJSON) and a FIFO (CSV), end to end', async () => {
  const dir = tempDir('lines');
  const file = join(dir, 'readings.ndjson');
  const fifo = join(dir, 'serial.fifo');
  writeFileSync(file, '{"id":"f1","x":[10,0,0]}\n{"id":"f1","x":[11,0,0]}\n');
  execFileSync('mkfifo', [fifo]);
  const bundles = tempDir('bundles');
  const fileBundle = await linearPipelineBundle(bundles, {
    kind: 'lines',
    stream: 'gateway',
    payload: { format: 'json', field: 'x' },
    keyField: 'id',
  });
  const agent = testAgent({
    deviceId: 'lines-file',
    uplink: { url: broker.url },
    sensors: { mqtt: 'off', streams: { gateway: { path: file, follow: true } } },
    telemetry: { enabled: false },
    models: { bundles: [fileBundle.dir] },
  });
  await agent.start();
  try {
    await waitFor(() => fromDevice('lines-file').length >= 2, 'the lines already in the file');
    appendFileSync(file, '{"id":"f2","x":[12,0,0]}\nnot json\n{"id":"f2","x":[13');
    appendFileSync(file, ',0,0]}\n');
    await waitFor(() => fromDevice('lines-file').length >= 4, 'the appended lines');
    assert.deepEqual(
      fromDevice('lines-file').map((e) => [e.body.key, readingOf(e.body)]),
      [
        ['f1', 10],
        ['f1', 11],
        ['f2', 12],
        ['f2', 13],
      ],
    );
    assert.equal(agent.pipelines.stats()['linear-regression']?.malformed, 1);
    assert.equal(agent.lineStreams.get('gateway')?.counters.lines, 5);
  } finally {
    await agent.stop();
  }

  const csvBundle = await linearPipelineBundle(tempDir('bundles'), {
    kind: 'lines',
    stream: 'serial',
    payload: { format: 'csv', keyColumn: 3 },
  });
  const fifoAgent = testAgent({
    deviceId: 'lines-fifo',
    uplink: { url: broker.url },
    sensors: { mqtt: 'off', streams: { serial: { path: fifo } } },
    telemetry: { enabled: false },
    models: { bundles: [csvBundle.dir] },
  });
  await fifoAgent.start();
  try {
    // Two gateway sessions: the stream survives a writer closing its end.
    for (const [n, key] of [
      [20, 'p1'],
      [21, 'p2'],
    ] as const) {
      const fd = openSync(fifo, 'w');
      writeSync(fd, `${n},0,0,${key}\n`);
      closeSync(fd);
    }
    await waitFor(() => fromDevice('lines-fifo').length >= 2, 'the FIFO lines');
    assert.deepEqual(
      fromDevice('lines-fifo').map((e) => [e.body.key, readingOf(e.body)]),
      [
        ['p1', 20],
        ['p2', 21],
      ],
    );
  } finally {
    await fifoAgent.stop();
  }
});

test('line stream on stdin: lines split across chunks, over-long lines dropped and counted', async () => {
  const stdin = new PassThrough();
  const lines: string[] = [];
  const source = new LineStreamSource({
    name: 'stdin',
    path: '-',
    follow: false,
    fromEnd: false,
    maxLineBytes: 32,
    stdin,
    log: createJsonLogger({ level: 'silent' }),
    deliver: (line) => {
      lines.push(line);
      return Promise.resolve();
    },
  });
  source.start();
  stdin.write('{"x":[1,0');
  stdin.write(',0]}\r\n');
  stdin.write(`${'9'.repeat(40)}\n{"x":[2,0,0]}\n`);
  stdin.write('y'.repeat(50));
  stdin.write('still the same long line\n{"x":[3,0,0]}\n');
  await waitFor(() => lines.length >= 3, 'three lines');
  assert.deepEqual(lines, ['{"x":[1,0,0]}', '{"x":[2,0,0]}', '{"x":[3,0,0]}']);
  assert.equal(source.counters.oversize, 2);
  assert.equal(source.counters.lines, 3);
  await source.stop();
});

test('MQTT sensor bus on the embedded broker: sensors publish to the agent itself', async () => {
  const port = await freePort();
  const agent = await agentWith(
    'embedded-bus',
    { kind: 'mqtt', topic: 'sensors/+sensor/x', key: 'sensor', payload: { format: 'json', field: 'x' } },
    { sensors: { mqtt: 'embedded', embeddedBroker: { port } } },
  );
  const sensor = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4 });
  try {
    await waitFor(() => agent.status().uplink?.state === 'connected', 'the uplink');
    await new Promise((r) => setTimeout(r, 300));
    await sensor.publishAsync('sensors/m1/x', JSON.stringify({ x: [30, 0, 0] }), { qos: 1 });
    await waitFor(() => fromDevice('embedded-bus').length >= 1, 'the prediction through the uplink broker');
    assert.deepEqual(
      fromDevice('embedded-bus').map((e) => [e.body.key, readingOf(e.body)]),
      [['m1', 30]],
    );
  } finally {
    await sensor.endAsync();
    await agent.stop();
  }
});
