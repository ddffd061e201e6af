import assert from 'node:assert/strict';
import { copyFile, mkdir, readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { Updater } from 'tuf-js';
import { countValidSignatures, parseRoot, readKeyFile } from '../shared/tuf/index.ts';
import { outpost } from './helpers/cli.ts';
import { serveDirectory } from './helpers/static-server.ts';
import { tempDir } from './helpers/tmp.ts';

describe('outpost keys', () => {
  const dir = tempDir('cli-keys');
  const keys = join(dir, 'keys');
  const repo = join(dir, 'repo');

  test('init makes 0600 keys for every role with k-of-n thresholds and a root signed by them', async () => {
    const r = outpost('keys', 'init', '--dir', keys, '--root', '2/3', '--targets', '2/2', '--repo', repo);
    assert.equal(r.code, 0, r.stderr);
    const files = await readdir(keys);
    const privates = files.filter((f) => f.endsWith('.key.json'));
    assert.equal(privates.length, 3 + 2 + 1 + 1 + 1);
    for (const f of privates) {
      assert.equal((await stat(join(keys, f))).mode & 0o777, 0o600, f);
      const pem = (await readKeyFile(join(keys, f))).exportPrivatePem().split('\n')[1] ?? '';
      assert.ok(!r.stdout.includes(pem) && !r.stderr.includes(pem), 'a private key was printed');
    }
    const root = parseRoot(await readFile(join(keys, 'root.json')));
    assert.equal(root.signed.roles['root']?.threshold, 2);
    assert.equal(root.signed.roles['root']?.keyIDs.length, 3);
    assert.equal(root.signed.roles['targets']?.threshold, 2);
    assert.equal(root.signed.roles['director']?.keyIDs.length, 1);
    assert.ok(countValidSignatures(root, 'root', root).valid >= 2);
    assert.match(r.stdout, /root\s+2 of 3/);
    const again = outpost('keys', 'init', '--dir', keys);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /already holds a root/);
  });

  test('rotating root and targets keys makes a chain a pinned client follows', async () => {
    const device = tempDir('cli-device');
    await mkdir(join(device, 'meta'));
    await copyFile(join(keys, '1.root.json'), join(device, 'meta', 'root.json'));
    let r = outpost('keys', 'rotate', '--dir', keys, '--role', 'root', '--keys', '2/2', '--repo', repo);
    assert.equal(r.code, 0, r.stderr);
    r = outpost('keys', 'rotate', '--dir', keys, '--role', 'targets', '--keys', '1/1', '--repo', repo);
    assert.equal(r.code, 0, r.stderr);
    const v2 = parseRoot(await readFile(join(keys, '2.root.json')));
    const v1 = parseRoot(await readFile(join(keys, '1.root.json')));
    assert.ok(countValidSignatures(v1, 'root', v2).valid >= 2, 'v2 is signed by the old root keys');
    assert.ok(countValidSignatures(v2, 'root', v2).valid >= 2, 'v2 is signed by the new root keys');
    assert.ok((await readdir(join(keys, 'retired'))).some((f) => f.startsWith('root-')));

    const server = await serveDirectory(repo);
    try {
      const updater = new Updater({
        metadataDir: join(device, 'meta'),
        metadataBaseUrl: `${server.url}/metadata`,
      });
      await updater.refresh();
      const trusted = parseRoot(await readFile(join(device, 'meta', 'root.json')));
      assert.equal(trusted.signed.version, 3);
    } finally {
      await server.close();
    }
    const show = outpost('keys', 'show', '--dir', keys);
    assert.match(show.stdout, /root v3/);
    assert.match(show.stdout, /targets\s+1 of 1/);
  });
});
