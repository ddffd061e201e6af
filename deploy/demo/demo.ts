import { rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { startEmbeddedBroker } from '../../agent/broker/embedded.ts';
import { loadConfig } from '../../agent/config.ts';
import { createAgent } from '../../agent/main.ts';
import type { Envelope } from '../../shared/envelope.ts';
import { VIBRATION_ANOMALY_THRESHOLD } from '../../shared/onnx/models.ts';
import { vibrationBundle } from '../examples/example-bundles.ts';
import { SensorSimulator } from './sensor-sim.ts';

/**
 * `npm start`: an embedded MQTT broker, one agent with the example vibration anomaly bundle,
 * and simulated accelerometers that now and then develop a fault. Predictions are read back
 * from the agent's MQTT topics and printed. Ctrl-C stops everything.
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

  const bundle = await vibrationBundle(join(dataDir, 'bundles'));
  const config = loadConfig({
    overrides: {
      deviceId: DEVICE,
      dataDir,
      http: { port: httpPort },
      uplink: { url: broker.url },
      models: { bundles: [bundle.dir] },
    },
  });
  const agent = createAgent(config, { logger: pino({ level: process.env.OUTPOST_LOG ?? 'warn' }) });
  await agent.start();
  console.log(`  local HTTP API   http://127.0.0.1:${agent.httpPort}/v2/models/vibration-anomaly`);
  console.log(
    `  model            ${bundle.manifest.name}@${bundle.manifest.version} (anomalous above ${VIBRATION_ANOMALY_THRESHOLD})`,
  );
  console.log(`  topics           mosquitto_sub -p ${broker.port} -t 'outpost/v1/${DEVICE}/#' -v`);
  console.log('  Ctrl-C to stop\n');

  const watcher = await mqtt.connectAsync(broker.url, {
    protocolVersion: 4,
    clientId: 'outpost-demo-watcher',
  });
  await watcher.subscribeAsync(`outpost/v1/${DEVICE}/#`, { qos: 1 });
  const latest = new Map<string, { score: number; n: number; active: boolean }>();
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
        `  ${new Date().toLocaleTimeString()}  ${sensor.padEnd(8)} ${state} score ${s.score.toFixed(4).padStart(7)} ${bar(s.score)}  ${String(s.n).padStart(5)} predictions  outbox ${agent.outbox.depth}`,
      );
    }
  }, 1000);

  let stopping = false;
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
