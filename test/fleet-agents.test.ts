import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadConfig } from '../agent/config.ts';
import { type Agent, createAgent } from '../agent/main.ts';
import { publishBundle } from '../cloud-sync/client/publish.ts';
import type { RolloutStatus } from '../cloud-sync/rollout/engine.ts';
import { exampleBundles } from '../deploy/examples/example-bundles.ts';
import { createJsonLogger } from '../shared/log.ts';
import { waitFor } from './helpers/agent.ts';
import { startBroker, type TestBroker } from './helpers/broker.ts';
import { driveRollout, startControlPlane, type TestControlPlane } from './helpers/cloud.ts';
import { tempDir } from './helpers/tmp.ts';

/**
 * Full agents (worker pool, onnxruntime, outbox, MQTT uplink, updater, sync client) against
 * the real control plane and a real broker. The sync poll is slow on purpose (a minute): the
 * rollouts here move because the control plane sends `cmd/sync` over MQTT.
 */
const MODEL = 'mlp-classifier';

describe('full agents follow rollouts', () => {
  let t: TestControlPlane;
  let broker: TestBroker;
  const agents: Agent[] = [];

  const running = (a: Agent) =>
    a.registry.all().find((m) => m.name === MODEL && m.state === 'READY')?.version;
  const drive = (id: string, until: (s: RolloutStatus) => boolean, what: string) =>
    driveRollout(t, id, until, what);

  before(async () => {
    broker = await startBroker();
    t = await startControlPlane({ overrides: { mqtt: { url: broker.url } } });
    const dir = tempDir('agent-bundles');
    for (const b of [await exampleBundles.mlp(dir), await exampleBundles.mlpBroken(dir)])
      await publishBundle({ client: t.client, bundleDir: b.dir, targetsKeys: t.keys.targets });
    const root = join(tempDir('pinned'), 'root.json');
    writeFileSync(root, await (await fetch(`${t.cp.url}/tuf/metadata/1.root.json`)).text());
    for (let i = 0; i < 3; i++) {
      const { token } = await t.client.post<{ token: string }>('/v1/admin/enrolment-tokens', {
        tags: { line: 'a' },
      });
      const config = loadConfig({
        overrides: {
          deviceId: `agent-${i}`,
          dataDir: tempDir('fleet-agent'),
          http: { port: 0 },
          runtime: { workers: 1 },
          uplink: { url: broker.url },
          sensors: { mqtt: 'off' },
          sync: { enabled: true, url: t.cp.url, enrolmentToken: token, pollIntervalMs: 60_000 },
          updates: { enabled: true, pinnedRoot: root },
        },
      });
      const agent = createAgent(config, {
        logger: createJsonLogger({ level: process.env.OUTPOST_TEST_LOG ?? 'silent' }),
      });
      await agent.start();
      agents.push(agent);
    }
    await waitFor(
      async () => (await t.client.get<unknown[]>('/v1/admin/devices')).length === 3,
      'agents enrolled',
    );
  });

  after(async () => {
    for (const a of agents) await a.stop();
    await t.stop();
    await broker.stop();
  });

  test('a good bundle reaches every agent; presence comes from the MQTT status topics', async () => {
    await waitFor(
      async () =>
        (await t.client.get<Array<{ presence: string; onlineSource: string }>>('/v1/admin/devices')).every(
          (d) => d.presence === 'online' && d.onlineSource === 'mqtt',
        ),
      'agents online via MQTT',
    );
    const r = await t.client.post<RolloutStatus>('/v1/admin/rollouts', {
      bundle: `${MODEL}@1.0.0`,
      selector: 'line=a',
      waves: '34,100',
      soak: '1m',
    });
    const done = await drive(
      r.rollout.id,
      (s) => s.rollout.state === 'completed',
      'rollout to 1.0.0 completed',
    );
    assert.equal(
      done.waves.reduce((n, w) => n + w.counts.success, 0),
      3,
    );
    assert.ok(agents.every((a) => running(a) === '1.0.0'));
    const inv = await t.client.get<{
      installed: Array<{ name: string; version: string; sha256: string }>;
      agentVersion: string;
      arch: string;
    }>('/v1/admin/devices/agent-0');
    assert.equal(inv.installed.find((m) => m.name === MODEL)?.version, '1.0.0');
    assert.equal(inv.agentVersion, '0.1.0');
    assert.ok(inv.arch === 'x64' || inv.arch === 'arm64');
  });

  test('a bundle failing its sample check on the first agent halts the rollout; every agent keeps serving 1.0.0', async () => {
    const r = await t.client.post<RolloutStatus>('/v1/admin/rollouts', {
      bundle: `${MODEL}@3.0.0`,
      selector: 'line=a',
      waves: '34,100',
      soak: '1m',
    });
    const halted = await drive(r.rollout.id, (s) => s.rollout.state === 'aborted', 'rollout aborted');
    assert.match(halted.rollout.reason ?? '', /gate failed/);
    const failed = halted.devices.find((d) => d.outcome === 'failure');
    assert.ok(failed !== undefined);
    assert.ok(
      agents.every((a) => running(a) === '1.0.0'),
      'the failing agent reverted on its own; the rest never installed',
    );
    const res = await fetch(`http://127.0.0.1:${agents[0]?.httpPort}/v2/models/${MODEL}/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 8], data: [0, 1, 2, 3, 4, 5, 6, 7] }],
      }),
    });
    assert.equal(res.status, 200);
  });

  test('with the control plane down an agent keeps serving its verified model', async () => {
    const a = agents[0] as Agent;
    await t.cp.stop();
    // Nothing on the device depends on the control plane being up.
    const sync = a.status().sync;
    assert.equal(sync?.enrolled, true);
    const res = await fetch(`http://127.0.0.1:${a.httpPort}/v1/agent/status`);
    assert.equal(res.status, 200);
    const infer = await fetch(`http://127.0.0.1:${a.httpPort}/v2/models/${MODEL}/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 8], data: [1, 1, 1, 1, 1, 1, 1, 1] }],
      }),
    });
    assert.equal(infer.status, 200);
    assert.equal(running(a), '1.0.0');
    await t.restart();
    assert.equal(running(a), '1.0.0');
  });

  test('an agent that stops goes offline through its MQTT status', async () => {
    const last = agents.pop() as Agent;
    await last.stop();
    await waitFor(
      async () =>
        (await t.client.get<{ presence: string }>('/v1/admin/devices/agent-2')).presence === 'offline',
      'agent-2 offline',
    );
  });
});
