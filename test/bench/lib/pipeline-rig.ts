import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { AgentConfigInput } from '../../../agent/config.ts';
import { topics } from '../../../shared/topics.ts';
import { linearPipelineBundle, readingOf } from '../../fixtures/pipeline-bundles.ts';
import { startBroker, type TestBroker } from '../../helpers/broker.ts';
import type { BenchChild } from './child.ts';
import { CloudSubscriber, connectSensor, type MqttPath } from './mqtt-load.ts';
import type { BenchContext } from './scenario.ts';
import { startAgent, startFixture } from './subjects.ts';

export const DEVICE = 'bench';
export const MODEL = 'linear-regression';
/** Publishes awaiting PUBACK in the agent's uplink: the schema's maximum (the default is 100). */
export const UPLINK_INFLIGHT = 1000;
/** Dynamic batching for the pipeline's model (runtime.batching.defaultMaxBatchSize; the default 0 is off). */
const BATCH = 64;
/** A prediction envelope of the linear pipeline's size, for messages written straight into an outbox. */
export const PREDICTION_PAYLOAD = Buffer.from(
  JSON.stringify({
    v: 1,
    id: '01JBENCH0000000000000000000',
    deviceId: DEVICE,
    bootId: 'c16cf2ff-0aa8-429a-9fae-a637731db0d3',
    seq: 1,
    ts: '2026-11-29T23:50:23.569Z',
    type: 'prediction',
    model: { name: MODEL, version: '1.0.0', sha256: 'a'.repeat(64) },
    body: { key: 's1', values: [12345.25] },
  }),
);
const AGENT_SENSORS = 'bench/sensors/agent';
const RELAY_SENSORS = 'bench/sensors/relay';
const RELAY_OUT = 'bench/relay/out';

/** The agent config every MQTT benchmark uses, set explicitly so the figures say what they measured. */
export function pipelineAgentConfig(
  ctx: BenchContext,
  name: string,
  brokerUrl: string,
  bundles: string[],
): AgentConfigInput {
  return {
    deviceId: DEVICE,
    dataDir: join(ctx.tmpDir, `${name}-data`),
    log: { level: 'warn' },
    http: { port: 0 },
    uplink: { url: brokerUrl, protocol: '5', inflight: UPLINK_INFLIGHT },
    outbox: { synchronous: 'FULL', batchSize: 256, maxDelayMs: 10 },
    sensors: { mqtt: 'uplink' },
    // Telemetry would add its own messages to the stream being counted.
    telemetry: { enabled: false },
    models: { bundles },
    // One-reading windows are batch-1 inferences; without batching each costs a worker round trip
    // of its own (about 3× slower here). The example model has a dynamic batch dimension.
    runtime: { batching: { enabled: true, defaultMaxBatchSize: BATCH, defaultMaxQueueDelayMs: 1 } },
  };
}

export const PIPELINE_SETUP =
  `mosquitto on a loopback port; the agent (child process, default workers) runs the linear-regression ` +
  `bundle with a pipeline of 1-reading windows (hop 1, so each sensor message is one inference and one ` +
  `prediction) from an MQTT source on the uplink's broker, infers with dynamic batching (runtime.batching.` +
  `defaultMaxBatchSize ${BATCH}, defaultMaxQueueDelayMs 1; the default leaves this model unbatched), commits each prediction to the durable outbox ` +
  `(WAL, synchronous FULL, batchSize 256, maxDelayMs 10) and publishes it at QoS 1 with ` +
  `uplink.inflight ${UPLINK_INFLIGHT} (MQTT 5, telemetry off). Baseline: a raw mqtt.js relay (child process) ` +
  'that subscribes to the sensor topic and publishes each message unchanged at QoS 1 (no inference, no ' +
  'outbox). Sensors publish at QoS 0; the cloud subscriber (QoS 0) shares the bench process with the sensor.';

export interface PipelineRig {
  broker: TestBroker;
  agent: BenchChild;
  agentPath: MqttPath;
  relayPath: MqttPath;
  /** The reading number an agent prediction came from. */
  agentReading(payload: Buffer): number;
  /** The reading number a relayed sensor message carries. */
  relayReading(payload: Buffer): number;
}

export async function startPipelineRig(ctx: BenchContext): Promise<PipelineRig> {
  const broker = await startBroker({ kind: 'mosquitto' });
  ctx.defer(() => broker.stop());
  const bundle = await linearPipelineBundle(join(ctx.tmpDir, 'bundles'), {
    kind: 'mqtt',
    topic: `${AGENT_SENSORS}/+sensor`,
    key: 'sensor',
    payload: { format: 'json', field: 'x' },
  });
  const configPath = join(ctx.tmpDir, 'agent.json');
  await writeFile(configPath, JSON.stringify(pipelineAgentConfig(ctx, 'agent', broker.url, [bundle.dir])));
  const predTopic = topics.pred(DEVICE, MODEL);
  const cloud = await CloudSubscriber.connect(broker.url, [predTopic, RELAY_OUT]);
  ctx.defer(() => cloud.close());
  const sensor = await connectSensor(broker.url);
  ctx.defer(() => sensor.endAsync(true));
  const agent = await startAgent(ctx, configPath);
  await startFixture(ctx, 'mqtt-relay', [broker.url, `${RELAY_SENSORS}/#`, RELAY_OUT]);
  return {
    broker,
    agent,
    agentPath: { sensor, cloud, inTopic: `${AGENT_SENSORS}/s1`, outTopic: predTopic },
    relayPath: { sensor, cloud, inTopic: `${RELAY_SENSORS}/s1`, outTopic: RELAY_OUT },
    agentReading: (payload) =>
      readingOf((JSON.parse(payload.toString()) as { body: { values: number[] } }).body),
    relayReading: (payload) => (JSON.parse(payload.toString()) as { x: number[] }).x[0] as number,
  };
}
