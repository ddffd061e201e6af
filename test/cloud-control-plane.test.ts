import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { Updater } from 'tuf-js';
import { publishBundle } from '../cloud-sync/client/publish.ts';
import { exampleBundles } from '../deploy/examples/example-bundles.ts';
import { generateKey } from '../shared/tuf/index.ts';
import { OPERATOR_TOKEN, startControlPlane, type TestControlPlane } from './helpers/cloud.ts';
import { tempDir } from './helpers/tmp.ts';

async function call(
  url: string,
  method: string,
  path: string,
  token?: string,
  body?: unknown,
  headers: Record<string, string> = {},
) {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: {
      ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      ...headers,
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return {
    status: res.status,
    headers: res.headers,
    body: text === '' ? undefined : (JSON.parse(text) as Record<string, unknown>),
  };
}

describe('control plane over HTTP', () => {
  let t: TestControlPlane;
  const bundles = tempDir('cp-bundles');
  before(async () => {
    t = await startControlPlane();
  });
  after(() => t.stop());

  test('serves health, an OpenAPI document, and refuses the admin API without the operator token', async () => {
    assert.equal((await call(t.cp.url, 'GET', '/healthz')).status, 200);
    const api = await call(t.cp.url, 'GET', '/openapi.json');
    assert.equal(api.body?.openapi, '3.1.0');
    assert.ok(Object.keys(api.body?.paths as object).includes('/v1/devices/{id}/desired'));
    assert.equal((await call(t.cp.url, 'GET', '/v1/admin/devices')).status, 401);
    assert.equal((await call(t.cp.url, 'GET', '/v1/admin/devices', 'wrong-token-wrong-token')).status, 401);
    assert.equal((await call(t.cp.url, 'GET', '/v1/admin/devices', OPERATOR_TOKEN)).status, 200);
    assert.ok(t.cp.url.startsWith('http://127.0.0.1:'), 'binds loopback by default');
  });

  test('SQLite schema is migrated and recorded', () => {
    const db = new Database(join(t.dataDir, 'control-plane.db'), { readonly: true });
    const rows = db.prepare('SELECT version, name FROM schema_migrations').all() as Array<{
      version: number;
    }>;
    db.close();
    assert.equal(rows.length, 1);
    assert.equal(rows[0]?.version, 1);
  });

  test('an enrolment token works exactly once and gives a credential stored only as a hash', async () => {
    const tok = await t.client.post<{ token: string }>('/v1/admin/enrolment-tokens', {
      tags: { site: 'lab' },
    });
    const first = await call(t.cp.url, 'POST', '/v1/enrol', undefined, {
      token: tok.token,
      deviceId: 'once-a',
    });
    assert.equal(first.status, 201);
    const credential = String(first.body?.credential);
    const again = await call(t.cp.url, 'POST', '/v1/enrol', undefined, {
      token: tok.token,
      deviceId: 'once-b',
    });
    assert.equal(again.status, 401);
    const device = await t.client.get<{ tags: Record<string, string> }>('/v1/admin/devices/once-a');
    assert.deepEqual(device.tags, { site: 'lab' });
    assert.equal(JSON.stringify(device).includes(credential), false);
    const db = new Database(join(t.dataDir, 'control-plane.db'), { readonly: true });
    const stored = db.prepare("SELECT credential_hash FROM devices WHERE id = 'once-a'").get() as {
      credential_hash: string;
    };
    db.close();
    assert.notEqual(stored.credential_hash, credential);
    assert.match(stored.credential_hash, /^[0-9a-f]{64}$/);
    // Expired tokens are refused too.
    const short = await t.client.post<{ token: string }>('/v1/admin/enrolment-tokens', { ttl: '1m' });
    t.clock.advance(120_000);
    assert.equal(
      (await call(t.cp.url, 'POST', '/v1/enrol', undefined, { token: short.token, deviceId: 'late' })).status,
      401,
    );
  });

  test('device A can neither read B’s desired state nor report as B', async () => {
    const enrol = async (id: string) => {
      const tok = await t.client.post<{ token: string }>('/v1/admin/enrolment-tokens', {});
      return String(
        (await call(t.cp.url, 'POST', '/v1/enrol', undefined, { token: tok.token, deviceId: id })).body
          ?.credential,
      );
    };
    const a = await enrol('iso-a');
    const b = await enrol('iso-b');
    assert.equal((await call(t.cp.url, 'GET', '/v1/devices/iso-a/desired', a)).status, 200);
    assert.equal((await call(t.cp.url, 'GET', '/v1/devices/iso-b/desired', a)).status, 403);
    assert.equal((await call(t.cp.url, 'GET', '/v1/devices/iso-b/desired')).status, 401);
    assert.equal((await call(t.cp.url, 'GET', '/v1/devices/iso-b/desired', OPERATOR_TOKEN)).status, 401);
    const fake = { installed: [{ name: 'm', version: '9.9.9' }] };
    assert.equal((await call(t.cp.url, 'POST', '/v1/devices/iso-b/report', a, fake)).status, 403);
    const bView = await t.client.get<{ installed: unknown[] }>('/v1/admin/devices/iso-b');
    assert.deepEqual(bView.installed, []);
    assert.equal((await call(t.cp.url, 'POST', '/v1/devices/iso-b/report', b, fake)).status, 204);
    assert.deepEqual(
      (await t.client.get<{ installed: unknown[] }>('/v1/admin/devices/iso-b')).installed,
      fake.installed,
    );
    assert.equal(
      (await call(t.cp.url, 'POST', '/v1/devices/iso-b/report', b, { installed: 'nope' })).status,
      400,
    );
  });

  test('publish: signed targets upload, TUF clients verify it, desired state has an ETag', async () => {
    const v1 = await exampleBundles.mlp(bundles);
    const progress: number[] = [];
    const result = await publishBundle({
      client: t.client,
      bundleDir: v1.dir,
      targetsKeys: t.keys.targets,
      onProgress: (_f, sent) => progress.push(sent),
    });
    assert.equal(result.version, '1.0.0');
    assert.ok(progress.length > 0, 'upload progress reported');
    const listed = await t.client.get<Array<{ name: string; version: string }>>('/v1/admin/bundles');
    assert.deepEqual(
      listed.map((b) => `${b.name}@${b.version}`),
      ['mlp-classifier@1.0.0'],
    );

    // A device's TUF client, starting from the pinned root, sees and verifies the target.
    const dev = tempDir('tuf-client');
    const { writeFileSync, mkdirSync } = await import('node:fs');
    mkdirSync(join(dev, 'md'));
    writeFileSync(
      join(dev, 'md', 'root.json'),
      await (await fetch(`${t.cp.url}/tuf/metadata/1.root.json`)).text(),
    );
    const updater = new Updater({
      metadataDir: join(dev, 'md'),
      metadataBaseUrl: `${t.cp.url}/tuf/metadata`,
      targetBaseUrl: `${t.cp.url}/tuf/targets`,
      targetDir: dev,
    });
    await updater.refresh();
    const info = await updater.getTargetInfo('mlp-classifier/1.0.0/model.onnx');
    assert.equal(info?.hashes.sha256, v1.manifest.model.sha256);
    await updater.downloadTarget(info as NonNullable<typeof info>, join(dev, 'model.onnx'));

    // Targets signed with a key root does not name are refused.
    const v2 = await exampleBundles.mlpV2(bundles);
    await assert.rejects(
      publishBundle({ client: t.client, bundleDir: v2.dir, targetsKeys: [generateKey()] }),
      /not signed by the given targets key/,
    );

    const tok = await t.client.post<{ token: string }>('/v1/admin/enrolment-tokens', {});
    const cred = String(
      (await call(t.cp.url, 'POST', '/v1/enrol', undefined, { token: tok.token, deviceId: 'etag-1' })).body
        ?.credential,
    );
    const first = await call(t.cp.url, 'GET', '/v1/devices/etag-1/desired', cred);
    const etag = first.headers.get('etag') as string;
    assert.ok(etag);
    assert.equal(
      (await call(t.cp.url, 'GET', '/v1/devices/etag-1/desired', cred, undefined, { 'if-none-match': etag }))
        .status,
      304,
    );
    await t.client.request('PUT', '/v1/admin/devices/etag-1/assignments/mlp-classifier', {
      version: '1.0.0',
    });
    const changed = await call(t.cp.url, 'GET', '/v1/devices/etag-1/desired', cred, undefined, {
      'if-none-match': etag,
    });
    assert.equal(changed.status, 200);
    const signed = (changed.body as { signed: { deviceId: string; targets: Array<{ name: string }> } })
      .signed;
    assert.equal(signed.deviceId, 'etag-1');
    assert.deepEqual(signed.targets.map((x) => x.name).sort(), [
      'mlp-classifier/1.0.0/model.onnx',
      'mlp-classifier/1.0.0/outpost.bundle.json',
    ]);
  });
});
