import assert from 'node:assert/strict';
import { copyFile, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import type { AgentConfigInput } from '../agent/config.ts';
import type { AgentDeps } from '../agent/main.ts';
import { FLOOR_PERSIST_MS } from '../agent/updater/trust.ts';
import {
  buildRoot,
  buildSnapshot,
  buildTargets,
  buildTimestamp,
  expiresIn,
  generateKey,
  metadataBytes,
  parseSnapshot,
  parseTargets,
  type RoleName,
  roleKeysFromRoot,
  type SigningKey,
  signMetadata,
  targetFile,
} from '../shared/tuf/index.ts';
import { events, inferOk, MODEL, UpdateFixture } from './helpers/update-fixture.ts';

const fixtures: UpdateFixture[] = [];
after(async () => {
  for (const fx of fixtures) await fx.stop();
});

/** A device serving mlp 1.0.0, installed through the updater from a fresh repository. */
async function baseline(overrides: AgentConfigInput = {}, deps: AgentDeps = {}) {
  const fx = await new UpdateFixture().start();
  fixtures.push(fx);
  const agent = await fx.deviceServingV1(overrides, deps);
  assert.equal(await inferOk(agent), '1.0.0');
  return { fx, agent };
}

/** The check fails with `pattern`, is reported as an evt, and 1.0.0 keeps serving. */
async function refused(agent: Awaited<ReturnType<typeof baseline>>['agent'], pattern: RegExp) {
  const outcome = await agent.updater!.checkNow();
  assert.equal(outcome.installed.length, 0, 'nothing may be installed');
  assert.ok(
    outcome.failed.some((f) => pattern.test(f.error)),
    `expected a failure matching ${pattern}, got ${JSON.stringify(outcome.failed)}`,
  );
  assert.ok(
    (await events(agent)).some((e) => e.type === 'update-failed' && pattern.test(String(e.body['error']))),
  );
  assert.equal(await inferOk(agent), '1.0.0');
  assert.match(agent.status().updates!.lastError ?? '', pattern);
}

/** Publishes 2.0.0 and names it, then rewrites the targets metadata's signatures. */
async function v2WithTargetsSignedBy(fx: UpdateFixture, keys: SigningKey[]) {
  await fx.publish('mlpV2');
  await fx.direct([[MODEL, '2.0.0']], { expiresDays: 30 });
  const md = fx.repo.targets;
  md.signatures = {};
  signMetadata(md, keys);
  await fx.repo.writeTargets(md);
  await fx.repo.resignSnapshot(fx.signers);
}

function newRoot(fx: UpdateFixture, rootKeys: SigningKey[]) {
  const roles = {} as Record<RoleName, { keys: SigningKey[]; threshold: number }>;
  for (const r of ['targets', 'snapshot', 'timestamp', 'director'] as const) {
    const { keys, threshold } = roleKeysFromRoot(fx.repo.root, r);
    roles[r] = { keys: Object.values(keys) as unknown as SigningKey[], threshold };
  }
  roles.root = { keys: rootKeys, threshold: 2 };
  return buildRoot({ version: 2, expires: expiresIn(365), roles });
}

describe('updater: attacks on the metadata', () => {
  test('unsigned targets metadata is refused', async () => {
    const { fx, agent } = await baseline();
    await v2WithTargetsSignedBy(fx, []);
    await refused(agent, /UnsignedMetadataError|signed by 0\/2/);
  });

  test('targets metadata signed with keys root does not name is refused', async () => {
    const { fx, agent } = await baseline();
    await v2WithTargetsSignedBy(fx, [generateKey(), generateKey()]);
    await refused(agent, /signed by 0\/2/);
  });

  test('targets metadata below its 2-of-2 threshold is refused', async () => {
    const { fx, agent } = await baseline();
    await v2WithTargetsSignedBy(fx, [fx.keys.targets[0]!]);
    await refused(agent, /signed by 1\/2/);
  });

  test('a new root signed only by the new root keys is refused', async () => {
    const { fx, agent } = await baseline();
    const fresh = [generateKey(), generateKey()];
    await writeFile(
      join(fx.repo.metadataDir, '2.root.json'),
      metadataBytes(signMetadata(newRoot(fx, fresh), fresh)),
    );
    await refused(agent, /root was signed by 0\/2/);
    const trusted = await agent.updater!.trust.trustedRoot();
    assert.equal(trusted.signed.version, 1);
  });

  test('a new root signed only by the old root keys is refused', async () => {
    const { fx, agent } = await baseline();
    const fresh = [generateKey(), generateKey()];
    await writeFile(
      join(fx.repo.metadataDir, '2.root.json'),
      metadataBytes(signMetadata(newRoot(fx, fresh), fx.keys.root.slice(0, 2))),
    );
    await refused(agent, /root was signed by 0\/2/);
    assert.equal((await agent.updater!.trust.trustedRoot()).signed.version, 1);
  });

  test('a rotated root signed by old and new keys is accepted and persisted', async () => {
    const { fx, agent } = await baseline();
    const fresh = [generateKey(), generateKey()];
    await fx.repo.writeRoot(signMetadata(newRoot(fx, fresh), [...fx.keys.root.slice(0, 2), ...fresh]));
    const trusted = join(agent.config.dataDir, 'updates', 'trust', 'root.json');
    const inode = (await stat(trusted)).ino;
    const outcome = await agent.updater!.checkNow();
    assert.deepEqual(outcome.failed, []);
    assert.equal((await agent.updater!.trust.trustedRoot()).signed.version, 2);
    // Replaced by rename (a new inode), never rewritten in place.
    assert.notEqual((await stat(trusted)).ino, inode);
    assert.deepEqual(
      (await readdir(join(agent.config.dataDir, 'updates'))).filter((f) => f.startsWith('.trust-work')),
      [],
    );
  });

  test('a rolled-back timestamp is refused', async () => {
    const { fx, agent } = await baseline();
    const old = await readFile(join(fx.repo.metadataDir, 'timestamp.json'));
    await fx.repo.refreshTimestamp(fx.signers);
    assert.deepEqual((await agent.updater!.checkNow()).failed, []);
    await writeFile(join(fx.repo.metadataDir, 'timestamp.json'), old);
    await refused(agent, /BadVersionError/);
  });

  test('a timestamp pointing at a rolled-back snapshot is refused', async () => {
    const { fx, agent } = await baseline();
    const oldSnapshot = parseSnapshot(await readFile(join(fx.repo.metadataDir, 'snapshot.json')));
    await fx.repo.resignSnapshot(fx.signers);
    assert.deepEqual((await agent.updater!.checkNow()).failed, []);
    const ts = buildTimestamp({
      version: fx.repo.timestamp.signed.version + 1,
      expires: expiresIn(1),
      snapshot: oldSnapshot,
    });
    await fx.repo.writeTimestamp(signMetadata(ts, fx.keys.timestamp));
    await refused(agent, /BadVersionError/);
  });

  test('a snapshot pointing at rolled-back targets is refused', async () => {
    const { fx, agent } = await baseline();
    const oldTargets = parseTargets(await readFile(join(fx.repo.metadataDir, 'targets.json')));
    await fx.repo.addTargets([], {}, fx.signers);
    assert.deepEqual((await agent.updater!.checkNow()).failed, []);
    const snap = buildSnapshot({
      version: fx.repo.snapshot.signed.version + 1,
      expires: expiresIn(7),
      targets: oldTargets,
    });
    await fx.repo.writeSnapshot(signMetadata(snap, fx.keys.snapshot));
    await fx.repo.refreshTimestamp(fx.signers);
    await refused(agent, /New version \d+ of targets.json is less than current version/);
  });

  test('a properly signed bundle with a lower releaseCounter is refused', async () => {
    const { fx, agent } = await baseline();
    await fx.publish('mlp', '0.9.0', 0);
    await fx.direct([[MODEL, '0.9.0']], { expiresDays: 30 });
    await refused(agent, /releaseCounter 0, below the installed 1/);
  });

  test('mix-and-match: targets metadata of another version under the expected name is refused', async () => {
    const { fx, agent } = await baseline();
    const oldVersion = fx.repo.targets.signed.version;
    await fx.publish('mlpV2');
    await fx.direct([[MODEL, '2.0.0']], { expiresDays: 30 });
    const v = fx.repo.targets.signed.version;
    await copyFile(
      join(fx.repo.metadataDir, `${oldVersion}.targets.json`),
      join(fx.repo.metadataDir, `${v}.targets.json`),
    );
    await refused(agent, /LengthOrHashMismatchError|BadVersionError|Expected/);
  });

  test('path traversal in a target name is refused before anything is fetched', async () => {
    const { fx, agent } = await baseline();
    const evil = targetFile(
      'mlp-classifier/../../../escape/model.onnx',
      { length: 10, sha256: 'a'.repeat(64) },
      { kind: 'model', name: MODEL, version: '9.0.0', releaseCounter: 9 },
    );
    const md = buildTargets({
      version: fx.repo.targets.signed.version + 1,
      expires: expiresIn(30),
      targets: [...Object.values(fx.repo.targets.signed.targets), evil],
    });
    await fx.repo.writeTargets(signMetadata(md, fx.keys.targets));
    await fx.repo.resignSnapshot(fx.signers);
    await fx.direct([], {
      expiresDays: 30,
      targets: [
        {
          name: evil.path,
          length: 10,
          hashes: { sha256: 'a'.repeat(64) },
          custom: { ...evil.custom, kind: 'manifest' },
        },
        { name: evil.path, length: 10, hashes: { sha256: 'a'.repeat(64) }, custom: evil.custom },
      ],
    });
    const before = fx.server.requests.length;
    await refused(agent, /unsafe target path/);
    assert.ok(!fx.server.requests.slice(before).some((r) => r.path.includes('escape')));
  });

  test('path traversal in the manifest model file name is refused', async () => {
    const { fx, agent } = await baseline();
    const v2 = await fx.publish('mlpV2');
    const manifest = JSON.parse(await readFile(join(v2.dir, 'outpost.bundle.json'), 'utf8'));
    manifest.version = '2.0.1';
    manifest.model.file = '../../escape.onnx';
    const manifestBytes = Buffer.from(JSON.stringify(manifest));
    const { sha256Hex } = await import('../shared/tuf/index.ts');
    const custom = {
      name: MODEL,
      version: '2.0.1',
      releaseCounter: 2,
      arch: ['x64', 'arm64'],
      minAgentVersion: '0.1.0',
    };
    const mt = targetFile(
      'mlp-classifier/2.0.1/outpost.bundle.json',
      { length: manifestBytes.length, sha256: sha256Hex(manifestBytes) },
      { ...custom, kind: 'manifest' },
    );
    const model = await readFile(join(v2.dir, 'model.onnx'));
    const modelT = targetFile(
      'mlp-classifier/2.0.1/model.onnx',
      { length: model.length, sha256: sha256Hex(model) },
      {
        ...custom,
        kind: 'model',
      },
    );
    await fx.repo.addTargets([mt, modelT], { [mt.path]: manifestBytes, [modelT.path]: model }, fx.signers);
    await fx.direct([[MODEL, '2.0.1']], { expiresDays: 30 });
    await refused(agent, /model\.file: must be a plain file name/);
  });
});

describe('updater: freeze, with the device clock skewed', () => {
  test('device clock ahead: metadata past its expiry is refused', async () => {
    let offset = 0;
    const { fx, agent } = await baseline({}, { now: () => Date.now() + offset });
    offset = 2 * 86_400_000;
    await fx.publish('mlpV2');
    await fx.direct([[MODEL, '2.0.0']], { expiresDays: 30 });
    await refused(agent, /ExpiredMetadataError/);
  });

  test('device clock behind: a stale (frozen) timestamp is still refused, judged by the director-signed time', async () => {
    let offset = 0;
    const { fx, agent } = await baseline({}, { now: () => Date.now() + offset });
    offset = -30 * 86_400_000;
    // The image repository is frozen at a timestamp that expired an hour ago (real time).
    await fx.repo.refreshTimestamp(fx.signers, { timestampDays: -1 / 24 });
    // The director is live: its document is signed now.
    await fx.direct([[MODEL, '1.0.0']], { expiresDays: 30 });
    await refused(agent, /ExpiredMetadataError/);
    assert.ok(agent.updater!.trust.floor > Date.now() - 60_000);
  });

  test('the time floor goes to disk with new metadata, and alone only once it moved an hour', async () => {
    let offset = 0;
    const { fx, agent } = await baseline({}, { now: () => Date.now() + offset });
    const trust = agent.updater!.trust;
    const clockFile = join(agent.config.dataDir, 'updates', 'trust', 'clock.json');
    const onDisk = async () => (JSON.parse(await readFile(clockFile, 'utf8')) as { floorMs: number }).floorMs;
    const installed = await onDisk();
    // Ten minutes on, nothing new in the repository: the floor moves in memory only.
    offset = 10 * 60_000;
    await trust.refresh();
    assert.ok(trust.floor >= installed + 10 * 60_000);
    assert.equal(await onDisk(), installed);
    // New metadata is committed: the floor goes with it.
    await fx.publish('mlpV2');
    await trust.refresh();
    assert.equal(await onDisk(), trust.floor);
    // An hour on with nothing new: written alone.
    const withMetadata = trust.floor;
    offset += FLOOR_PERSIST_MS;
    await trust.refresh();
    assert.ok(trust.floor >= withMetadata + FLOOR_PERSIST_MS);
    assert.equal(await onDisk(), trust.floor);
  });
});
