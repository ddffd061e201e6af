import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import Database from 'better-sqlite3';
import mqtt, { type MqttClient } from 'mqtt';
import type { Envelope } from '../shared/envelope.ts';
import { topics } from '../shared/topics.ts';
import { linearPipelineBundle, readingOf } from './fixtures/pipeline-bundles.ts';
import { waitFor } from './helpers/agent.ts';
import { startBroker, type TestBroker } from './helpers/broker.ts';
import { tempDir } from './helpers/tmp.ts';

type Pred = Envelope<{ key: string; values: number[] }> & { historical?: true };

const runner = new URL('./fixtures/agent-runner.ts', import.meta.url).pathname;
let broker: TestBroker;
let sub: MqttClient;
const received: Pred[] = [];
const children = new Set<ChildProcess>();
type Status = { state: string; bootId: string };
const statuses: Status[] = [];

before(async () => {
  broker = await startBroker();
  sub = await mqtt.connectAsync(broker.url, { protocolVersion: 4 });
  await sub.subscribeAsync(topics.pred('crash-dev', 'linear-regression'), { qos: 1 });
  await sub.subscribeAsync(topics.status('crash-dev'), { qos: 1 });
  sub.on('message', (topic, payload) => {
    if (topic === topics.status('crash-dev')) statuses.push(JSON.parse(payload.toString()) as Status);
    else received.push(JSON.parse(payload.toString()) as Pred);
  });
});

after(async () => {
  for (const c of children) c.kill('SIGKILL');
  await sub?.endAsync();
  await broker?.stop();
});

/** Starts the agent as a child process; resolves with its HTTP port once it printed READY. */
function spawnAgent(configFile: string): Promise<{ child: ChildProcess; port: number; bootId: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', runner, configFile], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, NODE_NO_WARNINGS: '1' },
  });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /READY (\{.*\})\n/.exec(out);
      if (m !== null) {
        const info = JSON.parse(m[1] as string) as { httpPort: number; bootId: string };
        resolve({ child, port: info.httpPort, bootId: info.bootId });
      }
    });
    child.once('exit', (code) => reject(new Error(`agent exited (${code}) before READY: ${out}`)));
  });
}

function integrity(path: string): { check: string; rows: number } {
  const db = new Database(path);
  try {
    const check = db.pragma('integrity_check', { simple: true }) as string;
    const rows = (db.prepare('SELECT count(*) AS n FROM outbox').get() as { n: number }).n;
    return { check, rows };
  } finally {
    db.close();
  }
}

test('SIGKILL mid-stream: everything accepted (2xx = committed) arrives after a restart, and the database is intact', async () => {
  const dataDir = tempDir('crash-agent');
  const bundle = await linearPipelineBundle(tempDir('bundles'), {
    kind: 'http',
    name: 'feed',
    payload: { format: 'json', field: 'x' },
  });
  const configFile = join(tempDir('crash-config'), 'agent.json');
  writeFileSync(
    configFile,
    JSON.stringify({
      deviceId: 'crash-dev',
      dataDir,
      http: { port: 0 },
      runtime: { workers: 1 },
      models: { bundles: [bundle.dir] },
      sensors: { mqtt: 'off' },
      telemetry: { enabled: false },
      uplink: { url: broker.url, backoffMinMs: 100, backoffMaxMs: 500 },
    }),
  );

  const first = await spawnAgent(configFile);
  const accepted: number[] = [];
  let n = 0;
  let killed = false;
  const pushers = Array.from({ length: 8 }, async () => {
    while (!killed) {
      const mine = ++n;
      try {
        const res = await fetch(`http://127.0.0.1:${first.port}/v1/sensors/feed?key=k${mine % 4}`, {
          method: 'POST',
          body: JSON.stringify({ x: [mine, 0, 0] }),
        });
        await res.arrayBuffer();
        if (res.status === 200) accepted.push(mine);
      } catch {
        // The agent died under this request: not accepted, the client would send it again.
      }
    }
  });
  await waitFor(() => accepted.length >= 100, 'a stream of accepted readings', 20_000);
  const exited = new Promise((resolve) => first.child.once('exit', resolve));
  first.child.kill('SIGKILL');
  killed = true;
  await exited;
  await Promise.all(pushers);
  const attempted = n;

  // The broker saw the connection drop and published the Last Will (retained).
  await waitFor(
    () => statuses.some((st) => st.state === 'offline' && st.bootId === first.bootId),
    'the Last Will of the killed agent',
  );
  assert.ok(
    statuses.some((st) => st.state === 'online' && st.bootId === first.bootId),
    'its birth message',
  );

  const dbPath = join(dataDir, 'outbox.db');
  const afterKill = integrity(dbPath);
  assert.equal(afterKill.check, 'ok', 'the outbox survives SIGKILL intact');

  const second = await spawnAgent(configFile);
  assert.notEqual(second.bootId, first.bootId);
  const arrived = () => new Set(received.map((e) => readingOf(e.body)));
  await waitFor(
    () => accepted.every((a) => arrived().has(a)),
    'every accepted reading after the restart',
    20_000,
  );
  await waitFor(async () => {
    const res = await fetch(`http://127.0.0.1:${second.port}/v1/agent/status`);
    const status = (await res.json()) as { outbox: { rows: number } };
    return status.outbox.rows === 0;
  }, 'the restarted agent to drain its outbox');
  await new Promise((r) => setTimeout(r, 100));
  // Messages sent again by the new run are marked historical and keep their ids.
  const replays = received.filter((e) => e.bootId === first.bootId && e.historical === true);
  if (afterKill.rows > 0)
    assert.ok(replays.length > 0, 'leftovers of the killed run are replayed as historical');
  const ids = new Set(received.map((e) => e.id));
  assert.ok(ids.size >= accepted.length);
  assert.ok(ids.size <= attempted, 'nothing invented');

  const stopped = new Promise<number | null>((resolve) => second.child.once('exit', resolve));
  second.child.kill('SIGTERM');
  assert.equal(await stopped, 0, 'graceful stop');
  const final = integrity(dbPath);
  assert.equal(final.check, 'ok');
  assert.equal(final.rows, 0, 'the outbox ends empty');
});
