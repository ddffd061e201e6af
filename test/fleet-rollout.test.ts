import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { WorkerPool } from '../agent/runtime/pool.ts';
import { publishBundle } from '../cloud-sync/client/publish.ts';
import type { RolloutStatus } from '../cloud-sync/rollout/engine.ts';
import { exampleBundles } from '../deploy/examples/example-bundles.ts';
import { createJsonLogger } from '../shared/log.ts';
import { waitFor } from './helpers/agent.ts';
import { driveRollout, rolloutStatus, startControlPlane, type TestControlPlane } from './helpers/cloud.ts';
import { FleetDevice } from './helpers/fleet-device.ts';
import { tempDir } from './helpers/tmp.ts';

/**
 * Staged rollouts over 20 devices against the real control plane (HTTP, SQLite, TUF). Each
 * device runs the agent's sync client, updater and model registry; inference (the sample
 * check of every install) runs in one shared onnxruntime worker (see FleetDevice).
 */
const FLEET = 20;
const MODEL = 'mlp-classifier';

describe('fleet rollouts', () => {
  let t: TestControlPlane;
  const devices: FleetDevice[] = [];
  const pool = new WorkerPool(
    1,
    { intraOpThreads: 1, interOpThreads: 1, graphOptimizationLevel: 'all', executionMode: 'sequential' },
    createJsonLogger({ level: 'silent' }),
  );

  const status = (id: string) => rolloutStatus(t, id);

  const drive = (id: string, until: (s: RolloutStatus) => boolean, what: string) =>
    driveRollout(t, id, until, what);

  before(async () => {
    t = await startControlPlane();
    pool.start();
    const dir = tempDir('fleet-bundles');
    for (const b of [
      await exampleBundles.mlp(dir),
      await exampleBundles.mlpV2(dir),
      await exampleBundles.mlpBroken(dir),
    ])
      await publishBundle({ client: t.client, bundleDir: b.dir, targetsKeys: t.keys.targets });
    const root = FleetDevice.pinRoot(await (await fetch(`${t.cp.url}/tuf/metadata/1.root.json`)).text());
    for (let i = 0; i < FLEET; i++) {
      const { token } = await t.client.post<{ token: string }>('/v1/admin/enrolment-tokens', {
        tags: { site: 'plant-1', ring: i < 2 ? 'canary' : 'main' },
      });
      const d = new FleetDevice(`dev-${String(i).padStart(2, '0')}`, t.cp.url, token, pool, root);
      d.sync.start();
      devices.push(d);
    }
    await waitFor(
      async () => (await t.client.get<unknown[]>('/v1/admin/devices')).length === FLEET,
      'all devices enrolled',
    );
  });

  after(async () => {
    await Promise.all(devices.map((d) => d.stop()));
    await t.stop();
    await pool.stop();
  });

  test('a good bundle reaches 100% wave by wave, gated and soaked', async () => {
    const created = await t.client.post<RolloutStatus>('/v1/admin/rollouts', {
      bundle: `${MODEL}@1.0.0`,
      selector: 'site=plant-1',
      waves: '1,10,50,100',
      maxFailureRate: '5%',
      minReporting: 1,
      soak: '10m',
    });
    assert.deepEqual(
      created.waves.map((w) => w.devices),
      [1, 1, 8, 10],
    );
    const done = await drive(created.rollout.id, (s) => s.rollout.state === 'completed', 'rollout completed');
    assert.equal(
      done.waves.reduce((n, w) => n + w.counts.success, 0),
      FLEET,
    );
    await waitFor(() => devices.every((d) => d.version(MODEL) === '1.0.0'), 'every device runs 1.0.0');
    const types = done.events.map((e) => e.type);
    assert.equal(types.filter((x) => x === 'wave-started').length, 4);
    assert.equal(types.filter((x) => x === 'gate-passed').length, 4);
    assert.ok(
      done.events.every((e) => e.reason.length > 0),
      'every transition has a reason',
    );
    // The record of what runs comes from the devices' reports.
    const fleet = await t.client.get<Array<{ installed: Array<{ version: string }> }>>('/v1/admin/devices');
    assert.ok(fleet.every((d) => d.installed[0]?.version === '1.0.0'));
  });

  test('a bundle that fails its sample check halts in wave 1 and the fleet stays on the previous model', async () => {
    const created = await t.client.post<RolloutStatus>('/v1/admin/rollouts', {
      bundle: `${MODEL}@3.0.0`,
      selector: 'site=plant-1',
      waves: '1,10,50,100',
      maxFailureRate: '5%',
      minReporting: 1,
      soak: '10m',
    });
    const halted = await drive(created.rollout.id, (s) => s.rollout.state === 'aborted', 'rollout aborted');
    assert.match(halted.rollout.reason ?? '', /wave 1 gate failed/);
    assert.equal(halted.waves[0]?.counts.failure, 1);
    assert.deepEqual(
      halted.waves.slice(1).map((w) => w.counts.pending),
      halted.waves.slice(1).map((w) => w.devices),
    );
    assert.ok(halted.events.some((e) => e.type === 'reverted'));
    const failed = halted.devices.find((d) => d.outcome === 'failure');
    assert.match(failed?.detail ?? '', /sample check failed/);
    // Desired state is back on 1.0.0 for the canary, and every device still runs 1.0.0.
    const canary = await t.client.get<{ assignments: Array<{ version: string }> }>(
      `/v1/admin/devices/${failed?.deviceId}`,
    );
    assert.equal(canary.assignments[0]?.version, '1.0.0');
    await new Promise((r) => setTimeout(r, 400));
    assert.ok(devices.every((d) => d.version(MODEL) === '1.0.0'));
  });

  test('a control-plane restart mid-rollout resumes where it was', async () => {
    const created = await t.client.post<RolloutStatus>('/v1/admin/rollouts', {
      bundle: `${MODEL}@2.0.0`,
      selector: 'site=plant-1',
      waves: '10,50,100',
      maxFailureRate: '5%',
      minReporting: 2,
      soak: '10m',
    });
    const id = created.rollout.id;
    const mid = await drive(
      id,
      (s) => s.rollout.wave === 1 && s.rollout.soakStartedAt !== null,
      'wave 2 soaking',
    );
    await t.restart();
    const resumed = await status(id);
    assert.equal(resumed.rollout.state, 'running');
    assert.equal(resumed.rollout.wave, 1);
    assert.equal(
      resumed.rollout.soakStartedAt,
      mid.rollout.soakStartedAt,
      'the soak continues, it does not restart',
    );
    assert.ok(resumed.events.some((e) => e.type === 'resumed-after-restart'));
    const done = await drive(id, (s) => s.rollout.state === 'completed', 'rollout completed after restart');
    const starts = done.events.filter((e) => e.type === 'wave-started').map((e) => e.to);
    assert.deepEqual(starts, ['wave 1', 'wave 2', 'wave 3'], 'no wave ran twice');
    await waitFor(() => devices.every((d) => d.version(MODEL) === '2.0.0'), 'every device runs 2.0.0');
  });
});
