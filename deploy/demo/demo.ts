import { rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { startEmbeddedBroker } from '../../agent/broker/embedded.ts';
import { loadConfig } from '../../agent/config.ts';
import { createAgent } from '../../agent/main.ts';
import type { Envelope } from '../../shared/envelope.ts';
import { createJsonLogger } from '../../shared/log.ts';
import { VIBRATION_ANOMALY_THRESHOLD } from '../../shared/onnx/models.ts';
import { vibrationBundle } from '../examples/example-bundles.ts';
import { followRollout, publish, startDemoFleet } from './demo-fleet.ts';
import { SensorSimulator } from './sensor-sim.ts';

/**
 * `npm start`: an embedded MQTT broker, the control plane, one agent enrolled with it, and
 * simulated accelerometers that now and then develop a fault. The demo publishes the signed
 * vibration anomaly bundle and rolls it out (the agent starts with no model and gets it
 * through the director and TUF), then a while later rolls out a second version. Predictions
 * and rollout events are printed live. Ctrl-C stops everything.
 */
const DEVICE = 'demo-device';
const SENSORS = ['pump-1', 'fan-2'];
const color = process.stdout.isTTY
  ? (code: number, s: string) => `\x1b[${code}m${s}\x1b[0m`
  : (_: number, s: string) => s;

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

function bar(score: number): string {
  const width = 24;
  const filled = Math.min(width, Math.round((Math.log10(Math.max(score, 1e-5)) + 5) * (width / 5)));
  return '█'.repeat(filled).padEnd(width, '·');
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const durationArg = args.indexOf('--duration');
  const durationS = durationArg >= 0 ? Number(args[durationArg + 1]) : undefined;
  const dataDir = join(process.cwd(), '.outpost-demo');
  rmSync(dataDir, { recursive: true, force: true });

  const brokerPort = (await portFree(1883)) ? 1883 : 0;
  const broker = await startEmbeddedBroker({ port: brokerPort });
  const httpPort = (await portFree(8470)) ? 8470 : 0;
  console.log(color(1, 'Outpost demo'));
  console.log(`  MQTT broker      ${broker.url}${brokerPort === 0 ? ' (1883 was busy)' : ''}`);

  const cpPort = (await portFree(8480)) ? 8480 : 0;
  const fleet = await startDemoFleet(dataDir, cpPort, broker.url);
  console.log(`  control plane    ${fleet.cp.url}  (OpenAPI at /openapi.json)`);
  const bundles = join(dataDir, 'bundles');
  const v1 = await vibrationBundle(bundles, '1.0.0', 1);
  const v2 = await vibrationBundle(bundles, '1.1.0', 2);
  await publish(fleet, v1.dir);
  console.log(
    `  published        ${v1.manifest.name}@${v1.manifest.version} (signed targets, snapshot and timestamp)`,
  );
  const { token } = await fleet.client.post<{ token: string }>('/v1/admin/enrolment-tokens', {
    tags: { site: 'demo' },
  });

  const config = loadConfig({
    overrides: {
      deviceId: DEVICE,
      dataDir: join(dataDir, 'agent'),
      http: { port: httpPort },
      runtime: { workers: 1 },
      uplink: { url: broker.url },
      sync: { enabled: true, url: fleet.cp.url, enrolmentToken: token, pollIntervalMs: 15_000 },
      updates: { enabled: true, pinnedRoot: fleet.pinnedRoot },
    },
  });
  const agent = createAgent(config, {
    logger: createJsonLogger({ level: process.env.OUTPOST_LOG ?? 'warn' }),
  });
  await agent.start();
  console.log(`  local HTTP API   http://127.0.0.1:${agent.httpPort}/v2/models/vibration-anomaly`);
  console.log(
    `  model            vibration-anomaly (anomalous above ${VIBRATION_ANOMALY_THRESHOLD}), delivered by rollout`,
  );
  console.log(`  topics           mosquitto_sub -p ${broker.port} -t 'outpost/v1/${DEVICE}/#' -v`);
  console.log('  Ctrl-C to stop\n');

  const watcher = await mqtt.connectAsync(broker.url, {
    protocolVersion: 4,
    clientId: 'outpost-demo-watcher',
  });
  await watcher.subscribeAsync(`outpost/v1/${DEVICE}/#`, { qos: 1 });
  const latest = new Map<string, { score: number; n: number; active: boolean; version: string }>();
  watcher.on('message', (topic, payload) => {
    let env: Envelope<Record<string, unknown>>;
    try {
      env = JSON.parse(payload.toString()) as Envelope<Record<string, unknown>>;
    } catch {
      return;
    }
    if (topic.includes('/pred/')) {
      const key = String(env.body.key);
      const prev = latest.get(key);
      latest.set(key, {
        score: Number(env.body.score),
        n: (prev?.n ?? 0) + 1,
        active: env.body.active === true,
        version: env.model?.version ?? '?',
      });
    } else if (topic.includes('/evt/anomaly')) {
      const on = env.body.active === true;
      const line = `${new Date(env.ts).toLocaleTimeString()}  ${String(env.body.key).padEnd(8)} ${on ? 'ANOMALY STARTED' : 'back to normal'}  score ${Number(env.body.score).toFixed(4)}`;
      console.log(on ? color(31, `  ⚠ ${line}`) : color(32, `  ✓ ${line}`));
    }
  });

  const sensorClient = await mqtt.connectAsync(broker.url, {
    protocolVersion: 4,
    clientId: 'outpost-demo-sensors',
  });
  const sim = new SensorSimulator({ client: sensorClient, sensors: SENSORS });
  sim.start();

  const ticker = setInterval(() => {
    for (const sensor of SENSORS) {
      const s = latest.get(sensor);
      if (s === undefined) continue;
      const state = s.active ? color(31, 'ANOMALY') : color(32, 'ok     ');
      console.log(
        `  ${new Date().toLocaleTimeString()}  ${sensor.padEnd(8)} ${state} score ${s.score.toFixed(4).padStart(7)} ${bar(s.score)}  ${String(s.n).padStart(5)} predictions  model ${s.version}  outbox ${agent.outbox.depth}`,
      );
    }
  }, 1000);

  let stopping = false;
  const say = (line: string) => console.log(color(36, `  ⇢ ${new Date().toLocaleTimeString()}  ${line}`));
  const rollouts = (async () => {
    const create = (bundle: string) =>
      fleet.client.post<{ rollout: { id: string } }>('/v1/admin/rollouts', {
        bundle,
        selector: 'site=demo',
        waves: '100',
        maxFailureRate: '0%',
        minReporting: 1,
        soak: '5s',
        deviceTimeout: '2m',
      });
    say(`rollout of ${v1.manifest.name}@1.0.0 to site=demo`);
    const first = await create(`${v1.manifest.name}@1.0.0`);
    await followRollout(fleet, first.rollout.id, say, () => stopping);
    // Let the first version serve for a while; Ctrl-C cuts the wait short.
    for (let i = 0; i < 80 && !stopping; i++) await new Promise((r) => setTimeout(r, 250));
    if (stopping) return;
    await publish(fleet, v2.dir);
    say(`published ${v2.manifest.name}@1.1.0; rolling it out`);
    const second = await create(`${v2.manifest.name}@1.1.0`);
    await followRollout(fleet, second.rollout.id, say, () => stopping);
  })().catch((err: unknown) => {
    if (!stopping) console.error('  rollout failed:', err);
  });
  const stop = async (reason: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`\n  ${reason}: stopping…`);
    const force = setTimeout(() => {
      console.error('  did not stop within 4.5 s; exiting');
      process.exit(1);
    }, 4_500);
    force.unref();
    clearInterval(ticker);
    sim.stop();
    await sensorClient.endAsync();
    await agent.stop();
    await watcher.endAsync();
    await fleet.stop();
    await rollouts;
    await broker.stop();
    console.log('  stopped cleanly.');
  };
  process.once('SIGINT', () => void stop('SIGINT'));
  process.once('SIGTERM', () => void stop('SIGTERM'));
  if (durationS !== undefined && Number.isFinite(durationS))
    setTimeout(() => void stop('time is up'), durationS * 1000);
}

main().catch((err: unknown) => {
  console.error('demo failed:', err);
  process.exit(1);
});
