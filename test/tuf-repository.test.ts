import assert from 'node:assert/strict';
import { copyFile, mkdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { inspect } from 'node:util';
import { canonicalize } from '@tufjs/canonical-json';
import { Updater } from 'tuf-js';
import { exampleBundles } from '../deploy/examples/example-bundles.ts';
import {
  buildRoot,
  directorTargetsForBundle,
  expiresIn,
  generateKey,
  keyIdOf,
  type RoleName,
  readKeyFile,
  roleKeysFromRoot,
  rotateRoot,
  type SigningKey,
  signDirectorDocument,
  signMetadata,
  TufRepository,
  verifyDirectorDocument,
  writeKeyFile,
} from '../shared/tuf/index.ts';
import { type StaticServer, serveDirectory } from './helpers/static-server.ts';
import { tempDir } from './helpers/tmp.ts';

function keys(n: number): SigningKey[] {
  return Array.from({ length: n }, () => generateKey());
}

describe('shared/tuf', () => {
  const dir = tempDir('tuf-repo');
  const rootKeys = keys(3);
  const targetsKeys = keys(2);
  const snapshotKeys = keys(1);
  const timestampKeys = keys(1);
  const directorKeys = keys(1);
  const repo = new TufRepository(join(dir, 'repo'));
  let server: StaticServer;
  const signers = { targets: targetsKeys, snapshot: snapshotKeys, timestamp: timestampKeys };

  before(async () => {
    const roles: Record<RoleName, { keys: SigningKey[]; threshold: number }> = {
      root: { keys: rootKeys, threshold: 2 },
      targets: { keys: targetsKeys, threshold: 2 },
      snapshot: { keys: snapshotKeys, threshold: 1 },
      timestamp: { keys: timestampKeys, threshold: 1 },
      director: { keys: directorKeys, threshold: 1 },
    };
    const root = signMetadata(
      buildRoot({ version: 1, expires: expiresIn(365), roles }),
      rootKeys.slice(0, 2),
    );
    await repo.init(root, signers);
    server = await serveDirectory(repo.dir);
  });
  after(() => server.close());

  test('keyids are sha256 over the canonical JSON of the public key', async () => {
    const k = generateKey();
    const { createHash } = await import('node:crypto');
    const expected = createHash('sha256').update(canonicalize(k.publicJson)).digest('hex');
    assert.equal(k.keyId, expected);
    assert.equal(keyIdOf(k.publicJson), expected);
    assert.match(k.publicJson.keyval.public, /^[0-9a-f]{64}$/);
  });

  test('key files are 0600, round-trip, are not overwritten, and the private key never prints', async () => {
    const k = generateKey();
    const path = join(dir, 'k.json');
    writeKeyFile(path, k);
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    const back = await readKeyFile(path);
    assert.equal(back.keyId, k.keyId);
    assert.throws(() => writeKeyFile(path, generateKey()), /already exists/);
    assert.equal((await readKeyFile(path)).keyId, k.keyId);
    const pem = k.exportPrivatePem();
    const body = pem.split('\n')[1] ?? '';
    assert.ok(!JSON.stringify(k).includes(body));
    assert.ok(!inspect(k, { depth: 10, showHidden: true }).includes(body));
  });

  test('a root below its threshold is refused by the builder; rotation needs old and new keys', () => {
    const newRootKeys = keys(2);
    const change = { roles: { root: { keys: newRootKeys, threshold: 2 } } };
    assert.throws(() => rotateRoot(repo.root, change, newRootKeys), /old root keys need/);
    assert.throws(() => rotateRoot(repo.root, change, rootKeys.slice(0, 2)), /new root keys need/);
    const v2 = rotateRoot(repo.root, change, [...rootKeys.slice(0, 2), ...newRootKeys]);
    assert.equal(v2.signed.version, 2);
    assert.equal(roleKeysFromRoot(v2, 'director').threshold, 1);
  });

  test('tuf-js verifies a published bundle and a rotated root from the served repository', async () => {
    const bundles = tempDir('tuf-bundles');
    const mlp = await exampleBundles.mlp(bundles);
    const { targets } = await repo.publishBundle(mlp.dir, signers);
    const newRootKeys = keys(2);
    await repo.writeRoot(
      rotateRoot(repo.root, { roles: { root: { keys: newRootKeys, threshold: 2 } } }, [
        ...rootKeys.slice(0, 2),
        ...newRootKeys,
      ]),
    );

    const device = tempDir('tuf-device');
    await mkdir(join(device, 'meta'));
    await copyFile(join(repo.metadataDir, '1.root.json'), join(device, 'meta', 'root.json'));
    const updater = new Updater({
      metadataDir: join(device, 'meta'),
      metadataBaseUrl: `${server.url}/metadata`,
      targetBaseUrl: `${server.url}/targets`,
      targetDir: device,
    });
    await updater.refresh();
    const trusted = JSON.parse(await readFile(join(device, 'meta', 'root.json'), 'utf8'));
    assert.equal(trusted.signed.version, 2);
    const info = await updater.getTargetInfo(targets[1].path);
    assert.ok(info);
    assert.equal(info.custom['releaseCounter'], 1);
    assert.equal(info.custom['kind'], 'model');
    const file = await updater.downloadTarget(info, join(device, 'model.onnx'));
    assert.equal((await stat(file)).size, mlp.manifest.model.size);
  });

  test('director documents verify with the root director keys and nothing else', () => {
    const trust = roleKeysFromRoot(repo.root, 'director');
    const entries = directorTargetsForBundle(repo.targets.signed, 'mlp-classifier', '1.0.0');
    assert.equal(entries.length, 2);
    const signed = { deviceId: 'dev-1', version: 3, expires: expiresIn(1), targets: entries };
    const doc = signDirectorDocument(signed, directorKeys);
    const now = new Date();
    assert.equal(verifyDirectorDocument(doc, trust, { deviceId: 'dev-1', now }).version, 3);
    assert.throws(
      () => verifyDirectorDocument(signDirectorDocument(signed, keys(1)), trust, { deviceId: 'dev-1', now }),
      /signed by 0 of the 1/,
    );
    assert.throws(() => verifyDirectorDocument(doc, trust, { deviceId: 'dev-2', now }), /not dev-2/);
    assert.throws(
      () => verifyDirectorDocument(doc, trust, { deviceId: 'dev-1', now, minVersion: 4 }),
      /older than the accepted 4/,
    );
    const tampered = structuredClone(doc);
    (tampered.signed.targets[0] as { length: number }).length += 1;
    assert.throws(() => verifyDirectorDocument(tampered, trust, { deviceId: 'dev-1', now }), /signed by 0/);
    assert.throws(
      () =>
        verifyDirectorDocument(doc, trust, { deviceId: 'dev-1', now: new Date(Date.now() + 2 * 86_400_000) }),
      /expired/,
    );
  });
});
