import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Outbox } from '../../../agent/outbox/outbox.ts';
import { createJsonLogger } from '../../../shared/log.ts';
import { topics } from '../../../shared/topics.ts';
import { startBroker } from '../../helpers/broker.ts';
import { CloudSubscriber } from '../lib/mqtt-load.ts';
import {
  DEVICE,
  MODEL,
  PREDICTION_PAYLOAD,
  pipelineAgentConfig,
  UPLINK_INFLIGHT,
} from '../lib/pipeline-rig.ts';
import type { Scenario } from '../lib/scenario.ts';
import { startAgent, startFixture } from '../lib/subjects.ts';

const BASELINE_TOPIC = 'bench/raw/out';

interface Drain {
  received: number;
  /** First to last message at the cloud subscriber. */
  ms: number;
  rate: number;
}

/** Counts arrivals on `topic` until `count` came or `timeoutMs` passed without all of them. */
function drainAt(cloud: CloudSubscriber, topic: string, count: number, timeoutMs: number): Promise<Drain> {
  return new Promise((resolve) => {
    let received = 0;
    let first = 0;
    let last = 0;
    const done = () => {
      clearTimeout(timer);
      cloud.route(topic, undefined);
      const ms = last - first;
      resolve({ received, ms, rate: ms > 0 ? ((received - 1) / ms) * 1000 : Number.NaN });
    };
    const timer = setTimeout(done, timeoutMs);
    cloud.route(topic, () => {
      last = performance.now();
      if (received === 0) first = last;
      received++;
      if (received === count) done();
    });
  });
}

/** Writes `count` prediction messages into the outbox file the agent will open, as an earlier boot left them. */
async function fillOutbox(path: string, count: number): Promise<void> {
  const outbox = new Outbox({
    path,
    bootId: 'earlier-boot',
    synchronous: 'FULL',
    batchSize: 256,
    maxDelayMs: 10,
    maxRows: 2_000_000,
    maxBytes: 512 * 1024 * 1024,
    ttlMs: { prediction: 7 * 24 * 3600_000, telemetry: 24 * 3600_000 },
    log: createJsonLogger({ level: 'silent' }),
  });
  outbox.start();
  const topic = topics.pred(DEVICE, MODEL);
  try {
    for (let n = 0; n < count; ) {
      const burst: Array<Promise<void>> = [];
      for (let i = 0; i < 4_096 && n < count; i++, n++)
        burst.push(
          outbox.enqueue({ id: `m${n}`, topic, payload: PREDICTION_PAYLOAD, lane: 'prediction', qos: 1 }),
        );
      await Promise.all(burst);
    }
  } finally {
    outbox.stop();
  }
}

export const backlogDrain: Scenario = {
  name: 'backlog-drain',
  description:
    'Backlog drain: the outbox file holds N prediction messages (1,000,000; 20,000 in a quick run) written ' +
    'by an earlier boot while the broker was away; the agent (child process, uplink MQTT 5, inflight ' +
    `${UPLINK_INFLIGHT}, outbox synchronous FULL) starts against mosquitto and sends them all, marked ` +
    'historical; the rate is N over first → last arrival at a cloud subscriber (QoS 0), and the outbox must ' +
    'be empty afterwards. Baseline: a raw mqtt.js client (child process) publishing N QoS 1 messages of the ' +
    `same payload with at most ${UPLINK_INFLIGHT} awaiting PUBACK to the same broker, timed the same way. ` +
    'Run once each, baseline first.',
  async run(ctx) {
    const count = ctx.quick ? 20_000 : 1_000_000;
    const broker = await startBroker({ kind: 'mosquitto' });
    ctx.defer(() => broker.stop());
    const cloud = await CloudSubscriber.connect(broker.url, [topics.pred(DEVICE, MODEL), BASELINE_TOPIC]);
    ctx.defer(() => cloud.close());
    const timeoutMs = 30_000 + count / 2;

    const publisher = await startFixture(ctx, 'mqtt-publisher', [broker.url]);
    const baselineArrivals = drainAt(cloud, BASELINE_TOPIC, count, timeoutMs);
    await publisher.command(
      'publish',
      { topic: BASELINE_TOPIC, payload: PREDICTION_PAYLOAD.toString(), count, inflight: UPLINK_INFLIGHT },
      timeoutMs,
    );
    const baseline = await baselineArrivals;
    await publisher.stop();

    const config = pipelineAgentConfig(ctx, 'agent', broker.url, []);
    const fillStarted = performance.now();
    await fillOutbox(join(String(config.dataDir), 'outbox.db'), count);
    ctx.log(
      `filled the outbox with ${count} messages in ${((performance.now() - fillStarted) / 1000).toFixed(1)} s`,
    );
    const configPath = join(ctx.tmpDir, 'agent.json');
    await writeFile(configPath, JSON.stringify(config));
    const agentArrivals = drainAt(cloud, topics.pred(DEVICE, MODEL), count, timeoutMs);
    const agent = await startAgent(ctx, configPath);
    const drained = await agentArrivals;
    // Deletes follow PUBACKs in batches: give the last one a moment before reading the depth.
    let rows = Number.NaN;
    for (let i = 0; i < 50; i++) {
      const status = (await agent.command('status')).status as { outbox: { rows: number } };
      rows = status.outbox.rows;
      if (rows === 0) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    ctx.log(
      `agent ${drained.received}/${count} in ${drained.ms.toFixed(0)} ms (${drained.rate.toFixed(0)}/s), outbox rows after: ${rows}; ` +
        `raw ${baseline.received}/${count} in ${baseline.ms.toFixed(0)} ms (${baseline.rate.toFixed(0)}/s)`,
    );
    const problems: string[] = [];
    if (drained.received < count)
      problems.push(`only ${drained.received} of ${count} reached the subscriber`);
    if (baseline.received < count) problems.push(`baseline: only ${baseline.received} of ${count} arrived`);
    if (rows !== 0) problems.push(`${rows} rows still in the outbox afterwards`);
    ctx.record({
      metric: `${count.toLocaleString('en')}-message backlog drain rate`,
      value: drained.received === count && rows === 0 ? drained.rate : 0,
      unit: 'msg/s',
      baseline: baseline.rate,
      target: { on: 'value', op: '>=', limit: 10_000 },
      note:
        `${count} messages in ${(drained.ms / 1000).toFixed(1)} s (baseline ${(baseline.ms / 1000).toFixed(1)} s)` +
        (problems.length > 0 ? `; ${problems.join('; ')}` : ''),
    });
  },
};
