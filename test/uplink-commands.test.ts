import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import mqtt, { type MqttClient } from 'mqtt';
import type { Agent } from '../agent/main.ts';
import type { Envelope } from '../shared/envelope.ts';
import { topics } from '../shared/topics.ts';
import { testAgent, waitFor } from './helpers/agent.ts';
import { startBroker, type TestBroker } from './helpers/broker.ts';

interface Reply {
  command: string;
  id?: string;
  corr?: string;
  ok: boolean;
  result?: unknown;
  error?: string;
  duplicate?: true;
}

let broker: TestBroker;
before(async () => {
  broker = await startBroker({ kind: 'mosquitto' });
});
after(async () => {
  await broker?.stop();
});

async function commandAgent(
  device: string,
  protocol: 'auto' | '3.1.1',
): Promise<{ agent: Agent; runs: () => number }> {
  const agent = testAgent({
    deviceId: device,
    uplink: { url: broker.url, protocol },
    sensors: { mqtt: 'off' },
    telemetry: { enabled: false },
  });
  let runs = 0;
  agent.commands.register('count', async (args) => {
    runs++;
    // Slow enough that a redelivery arrives while the first run is still going.
    await new Promise((r) => setTimeout(r, 100));
    return { runs, echo: args.echo };
  });
  await agent.start();
  await waitFor(() => agent.uplink?.state === 'connected', 'the uplink');
  // The command subscription is sent right after CONNACK; give it a moment to settle.
  await new Promise((r) => setTimeout(r, 200));
  return { agent, runs: () => runs };
}

function collect(client: MqttClient) {
  const got: Array<{ topic: string; envelope: Envelope<Reply>; correlation?: string }> = [];
  client.on('message', (topic, payload, packet) => {
    const correlation = packet.properties?.correlationData?.toString();
    got.push({
      topic,
      envelope: JSON.parse(payload.toString()) as Envelope<Reply>,
      ...(correlation === undefined ? {} : { correlation }),
    });
  });
  return got;
}

test('MQTT 5: answered on the response topic with the correlation data; a repeated id runs once', async () => {
  const { agent, runs } = await commandAgent('cmd5', 'auto');
  const cloud = await mqtt.connectAsync(broker.url, { protocolVersion: 5 });
  try {
    assert.equal(agent.uplink?.protocol, 5);
    const replyTopic = 'outpost/v1/cmd5/evt/reply/req-1';
    await cloud.subscribeAsync('outpost/v1/cmd5/evt/reply/#', { qos: 1 });
    const got = collect(cloud);
    await cloud.publishAsync(topics.cmd('cmd5', 'status'), JSON.stringify({ id: 'a1' }), {
      qos: 1,
      properties: { responseTopic: replyTopic, correlationData: Buffer.from('corr-status') },
    });
    await waitFor(() => got.length >= 1, 'the status reply');
    const status = got[0];
    assert.equal(status?.topic, replyTopic);
    assert.equal(status?.correlation, 'corr-status');
    assert.equal(status?.envelope.type, 'reply');
    assert.equal(status?.envelope.body.ok, true);
    assert.equal((status?.envelope.body.result as { deviceId?: string } | undefined)?.deviceId, 'cmd5');

    for (const corr of ['c-1', 'c-2']) {
      await cloud.publishAsync(
        topics.cmd('cmd5', 'count'),
        JSON.stringify({ id: 'same-id', args: { echo: 7 } }),
        {
          qos: 1,
          properties: { responseTopic: replyTopic, correlationData: Buffer.from(corr) },
        },
      );
    }
    await waitFor(() => got.length >= 3, 'both count replies');
    assert.equal(runs(), 1, 'a repeated command id is not executed twice');
    const counts = got.slice(1).sort((a, b) => String(a.correlation).localeCompare(String(b.correlation)));
    assert.deepEqual(
      counts.map((c) => c.correlation),
      ['c-1', 'c-2'],
    );
    for (const c of counts) assert.deepEqual(c.envelope.body.result, { runs: 1, echo: 7 });
    assert.equal(counts.filter((c) => c.envelope.body.duplicate === true).length, 1);
    assert.equal(agent.commands.counters.duplicates, 1);

    await cloud.publishAsync(topics.cmd('cmd5', 'nope'), '{"id":"x"}', {
      qos: 1,
      properties: { responseTopic: replyTopic, correlationData: Buffer.from('c-3') },
    });
    await cloud.publishAsync(topics.cmd('cmd5', 'count'), 'not json', {
      qos: 1,
      properties: { responseTopic: replyTopic, correlationData: Buffer.from('c-4') },
    });
    await waitFor(() => got.length >= 5, 'the error replies');
    assert.match(got.find((g) => g.correlation === 'c-3')?.envelope.body.error ?? '', /unknown command nope/);
    assert.match(got.find((g) => g.correlation === 'c-4')?.envelope.body.error ?? '', /not valid JSON/);
  } finally {
    await cloud.endAsync();
    await agent.stop();
  }
});

test('MQTT 3.1.1: answered on evt/reply/{name} with the request corr; a repeated id runs once', async () => {
  const { agent, runs } = await commandAgent('cmd4', '3.1.1');
  const cloud = await mqtt.connectAsync(broker.url, { protocolVersion: 4 });
  try {
    assert.equal(agent.uplink?.protocol, 4);
    await cloud.subscribeAsync(topics.reply('cmd4', '+'), { qos: 1 });
    const got = collect(cloud);
    await cloud.publishAsync(topics.cmd('cmd4', 'status'), JSON.stringify({ id: 's1', corr: 'k-1' }), {
      qos: 1,
    });
    await waitFor(() => got.length >= 1, 'the status reply');
    assert.equal(got[0]?.topic, topics.reply('cmd4', 'status'));
    assert.equal(got[0]?.envelope.body.corr, 'k-1');
    assert.equal(got[0]?.envelope.body.ok, true);

    await cloud.publishAsync(topics.cmd('cmd4', 'count'), JSON.stringify({ id: 'dup', corr: 'k-2' }), {
      qos: 1,
    });
    await cloud.publishAsync(topics.cmd('cmd4', 'count'), JSON.stringify({ id: 'dup', corr: 'k-3' }), {
      qos: 1,
    });
    await waitFor(() => got.length >= 3, 'both count replies');
    assert.equal(runs(), 1);
    const byCorr = new Map(got.map((g) => [g.envelope.body.corr, g.envelope.body]));
    assert.deepEqual(byCorr.get('k-2')?.result, { runs: 1 });
    assert.deepEqual(byCorr.get('k-3')?.result, { runs: 1 });
    assert.equal(got.filter((g) => g.envelope.body.duplicate === true).length, 1);
  } finally {
    await cloud.endAsync();
    await agent.stop();
  }
});
