import assert from 'node:assert/strict';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { StorageBudget } from '../agent/storage/budget.ts';
import { gcModelVersions, listInstalled } from '../agent/storage/gc.ts';
import { isOutpostError } from '../shared/errors.ts';
import { tempDir } from './helpers/tmp.ts';

const MiB = 1024 * 1024;

function installVersion(
  modelsDir: string,
  name: string,
  version: string,
  releaseCounter: number,
  bytes = 1024,
): string {
  const dir = join(modelsDir, name, version);
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, 'outpost.bundle.json'),
    JSON.stringify({ schema: 1, name, version, releaseCounter }),
  );
  writeFileSync(join(dir, 'model.onnx'), Buffer.alloc(bytes, 1));
  return dir;
}

describe('storage budget', () => {
  test('counts models, staging and the outbox database together, and refuses what does not fit', async () => {
    const dataDir = tempDir('storage');
    const budget = new StorageBudget({ dataDir, maxBytes: 20 * MiB, reserveFreeBytes: 0 });
    installVersion(budget.dir('models'), 'm', '1.0.0', 1, 6 * MiB);
    mkdirSync(budget.dir('staging'), { recursive: true });
    writeFileSync(join(budget.dir('staging'), 'partial.download'), Buffer.alloc(3 * MiB, 2));
    const db = new Database(join(dataDir, 'outbox.db'));
    db.pragma('journal_mode = WAL');
    db.exec('CREATE TABLE t (b BLOB)');
    const insert = db.prepare('INSERT INTO t VALUES (?)');
    db.transaction(() => {
      for (let i = 0; i < 64; i++) insert.run(Buffer.alloc(32 * 1024, i));
    })();

    const usage = await budget.usage();
    assert.ok(usage.models >= 6 * MiB && usage.models < 7 * MiB, `models ${usage.models}`);
    assert.ok(usage.staging >= 3 * MiB, `staging ${usage.staging}`);
    assert.ok(usage.outbox >= 2 * MiB, `outbox (db + wal) ${usage.outbox}`);
    assert.equal(usage.total, usage.models + usage.staging + usage.outbox);
    db.close();

    await budget.ensure(5 * MiB, 'model m@2.0.0');
    await assert.rejects(budget.ensure(12 * MiB, 'model m@3.0.0'), (err: unknown) => {
      assert.ok(isOutpostError(err, 'STORAGE_BUDGET'));
      assert.match(
        err.message,
        /^model m@3\.0\.0 needs 12582912 bytes but the storage budget has \d+ of 20971520 left/,
      );
      assert.equal(err.status, 507);
      return true;
    });
    await assert.rejects(budget.ensure(-1, 'nonsense'), (err: unknown) => isOutpostError(err, 'BAD_REQUEST'));
  });

  test('keeps the filesystem reserve free whatever the budget says', async () => {
    const dataDir = tempDir('storage');
    const budget = new StorageBudget({
      dataDir,
      maxBytes: Number.MAX_SAFE_INTEGER,
      reserveFreeBytes: Number.MAX_SAFE_INTEGER,
    });
    await assert.rejects(budget.ensure(1, 'a tiny file'), (err: unknown) => {
      assert.ok(isOutpostError(err, 'STORAGE_BUDGET'));
      assert.match(err.message, /filesystem has \d+ free and \d+ must stay free/);
      return true;
    });
  });
});

describe('model version gc', () => {
  test('keeps the newest N per model by release counter, plus protected versions', async () => {
    const modelsDir = join(tempDir('gc'), 'models');
    for (const [v, rc] of [
      ['1.0.0', 1],
      ['1.1.0', 2],
      ['2.0.0', 5],
      ['1.10.0', 4],
    ] as const)
      installVersion(modelsDir, 'vib', v, rc);
    installVersion(modelsDir, 'other', '0.1.0', 1);
    mkdirSync(join(modelsDir, 'vib', '3.0.0-incoming'), { recursive: true });

    const removed = await gcModelVersions({ modelsDir, keep: 2, protect: new Set(['vib@1.0.0']) });
    assert.deepEqual(
      removed.map((r) => `${r.name}@${r.version}`),
      ['vib@1.1.0'],
    );
    const left = (await listInstalled(modelsDir)).map((r) => `${r.name}@${r.version}`).sort();
    assert.deepEqual(left, ['other@0.1.0', 'vib@1.0.0', 'vib@1.10.0', 'vib@2.0.0']);
    assert.ok(
      existsSync(join(modelsDir, 'vib', '3.0.0-incoming')),
      'a directory without a manifest is left alone',
    );

    const again = await gcModelVersions({ modelsDir, keep: 1 });
    assert.deepEqual(again.map((r) => `${r.name}@${r.version}`).sort(), ['vib@1.0.0', 'vib@1.10.0']);
  });
});
