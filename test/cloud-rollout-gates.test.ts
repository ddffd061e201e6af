import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { publishBundle } from '../cloud-sync/client/publish.ts';
import type { RolloutStatus } from '../cloud-sync/rollout/engine.ts';
import { exampleBundles } from '../deploy/examples/example-bundles.ts';
import { waitFor } from './helpers/agent.ts';
import { startControlPlane, type TestControlPlane } from './helpers/cloud.ts';
import { tempDir } from './helpers/tmp.ts';

/**
 * Gates, timeouts, pause/resume/abort and the timestamp cron, against the real control plane.
 * The devices here are plain HTTP clients with real credentials that report what the test
 * says they run, so each gate can be driven exactly.
 */
const MODEL = 'mlp-classifier';

describe('rollout gates and TUF upkeep', () => {
  let t: TestControlPlane;
  const creds = new Map<string, string>();

  const desired = async (id: string) => {
    const res = await fetch(`${t.cp.url}/v1/devices/${id}/desired`, {
      headers: { authorization: `Bearer ${creds.get(id)}` },
    });
    return (
      (await res.json()) as { signed: { targets: Array<{ custom: { version: string } }> } }
    ).signed.targets.map((x) => x.custom.version)[0];
  };
  const report = async (id: string, version: string) => {
    const res = await fetch(`${t.cp.url}/v1/devices/${id}/report`, {
      method: 'POST',
      headers: { authorization: `Bearer ${creds.get(id)}`, 'content-type': 'application/json' },
      body: JSON.stringify({ installed: [{ name: MODEL, version, state: 'READY' }] }),
    });
    assert.equal(res.status, 204);
  };
  const status = (id: string) => t.client.get<RolloutStatus>(`/v1/admin/rollouts/${id}`);
  const until = async (id: string, check: (s: RolloutStatus) => boolean, what: string) => {
    let s: RolloutStatus | undefined;
    await waitFor(async () => {
      s = await status(id);
      return check(s);
    }, what);
    return s as RolloutStatus;
  };

  before(async () => {
    t = await startControlPlane({
      overrides: { tuf: { refreshCron: '* * * * * *', timestampExpiry: '1h', snapshotExpiry: '1d' } },
    });
    const dir = tempDir('gate-bundles');
    for (const b of [await exampleBundles.mlp(dir), await exampleBundles.mlpV2(dir)])
      await publishBundle({ client: t.client, bundleDir: b.dir, targetsKeys: t.keys.targets });
    for (const id of ['g0', 'g1', 'g2', 'g3']) {
      const { token } = await t.client.post<{ token: string }>('/v1/admin/enrolment-tokens', {
        tags: { pool: 'gates' },
      });
      const res = await fetch(`${t.cp.url}/v1/enrol`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ token, deviceId: id }),
      });
      creds.set(id, ((await res.json()) as { credential: string }).credential);
    }
  });
  after(() => t.stop());

  test('a node-cron job re-signs the timestamp before it expires', async () => {
    const before = await t.client.get<{ timestamp: number; timestampExpires: string }>('/v1/admin/tuf');
    t.clock.advance(31 * 60_000);
    await waitFor(
      async () => (await t.client.get<{ timestamp: number }>('/v1/admin/tuf')).timestamp > before.timestamp,
      'timestamp re-signed',
      5_000,
    );
    const served = (await (await fetch(`${t.cp.url}/tuf/metadata/timestamp.json`)).json()) as {
      signed: { expires: string; version: number };
    };
    assert.ok(Date.parse(served.signed.expires) > Date.parse(before.timestampExpires));
    assert.ok(served.signed.version > before.timestamp);
  });

  test('a silent device times out into a failure; the gate pauses and reverts; resume installs again', async () => {
    const r = await t.client.post<RolloutStatus>('/v1/admin/rollouts', {
      bundle: `${MODEL}@1.0.0`,
      selector: 'pool=gates',
      waves: '50,100',
      maxFailureRate: '0%',
      minReporting: 2,
      soak: '1m',
      deviceTimeout: '5m',
      onFailure: 'pause',
    });
    const wave1 = r.devices.filter((d) => d.wave === 0).map((d) => d.deviceId);
    assert.equal(wave1.length, 2);
    const [talker, silent] = wave1 as [string, string];
    assert.equal(await desired(talker), '1.0.0');
    await report(talker, '1.0.0');
    await until(
      r.rollout.id,
      (s) => s.devices.some((d) => d.deviceId === talker && d.outcome === 'success'),
      'talker succeeded',
    );
    assert.equal(
      (await status(r.rollout.id)).rollout.state,
      'running',
      'one report of two is below min-reporting: no verdict yet',
    );
    t.clock.advance(5 * 60_000 + 1);
    const paused = await until(r.rollout.id, (s) => s.rollout.state === 'paused', 'paused by the gate');
    assert.equal(paused.devices.find((d) => d.deviceId === silent)?.outcome, 'timeout');
    assert.match(paused.rollout.reason ?? '', /1 of 2 reporting devices failed/);
    assert.ok(paused.events.some((e) => e.type === 'device-timed-out' && e.deviceId === silent));
    assert.equal(await desired(silent), undefined, 'desired state reverted to what it was (nothing)');
    assert.equal(await desired(talker), undefined);

    await t.client.post(`/v1/admin/rollouts/${r.rollout.id}/resume`, { reason: 'silent box rebooted' });
    assert.equal(await desired(silent), '1.0.0');
    await report(silent, '1.0.0');
    await report(talker, '1.0.0');
    await until(r.rollout.id, (s) => s.rollout.soakStartedAt !== null, 'wave 1 soaking');
    t.clock.advance(60_001);
    const wave2 = await until(r.rollout.id, (s) => s.rollout.wave === 1, 'wave 2 started');
    for (const d of wave2.devices.filter((x) => x.wave === 1)) await report(d.deviceId, '1.0.0');
    await until(r.rollout.id, (s) => s.rollout.soakStartedAt !== null, 'wave 2 soaking');
    t.clock.advance(60_001);
    const done = await until(r.rollout.id, (s) => s.rollout.state === 'completed', 'completed');
    const transitions = done.events.filter((e) => e.type === 'state').map((e) => `${e.from}→${e.to}`);
    assert.deepEqual(transitions, ['running→paused', 'paused→running', 'running→completed']);
  });

  test('operator pause holds the waves; abort reverts every touched device to its previous version', async () => {
    const r = await t.client.post<RolloutStatus>('/v1/admin/rollouts', {
      bundle: `${MODEL}@2.0.0`,
      selector: 'pool=gates',
      waves: '50,100',
      soak: '0s',
    });
    const first = r.devices.filter((d) => d.wave === 0).map((d) => d.deviceId);
    await t.client.post(`/v1/admin/rollouts/${r.rollout.id}/pause`, {});
    for (const id of first) await report(id, '2.0.0');
    await new Promise((res) => setTimeout(res, 300));
    assert.equal((await status(r.rollout.id)).rollout.wave, 0, 'paused: no advance');
    const aborted = await t.client.post<RolloutStatus>(`/v1/admin/rollouts/${r.rollout.id}/abort`, {
      reason: 'wrong build',
    });
    assert.equal(aborted.rollout.state, 'aborted');
    assert.match(aborted.rollout.reason ?? '', /wrong build/);
    for (const id of ['g0', 'g1', 'g2', 'g3']) assert.equal(await desired(id), '1.0.0');
  });

  test('bad rollout requests get clear errors', async () => {
    const post = (body: unknown) => t.client.post('/v1/admin/rollouts', body);
    await assert.rejects(post({ bundle: `${MODEL}@1.0.0`, waves: '50,10' }), /ascending/);
    await assert.rejects(post({ bundle: `${MODEL}@1.0.0`, waves: '10,50' }), /last wave must be 100/);
    await assert.rejects(post({ bundle: `${MODEL}@7.0.0` }), /404.*has not been published/);
    await assert.rejects(post({ bundle: `${MODEL}@1.0.0`, selector: 'pool=nowhere' }), /matches no device/);
    await assert.rejects(post({ bundle: `${MODEL}@1.0.0`, maxFailureRate: '140%' }), /0%-100%/);
    await post({ bundle: `${MODEL}@2.0.0`, selector: 'pool=gates', soak: '1h' });
    await assert.rejects(post({ bundle: `${MODEL}@2.0.0`, selector: 'pool=gates' }), /409.*still running/);
  });
});
