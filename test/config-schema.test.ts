import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { configLeaves, envName, loadConfig } from '../agent/config.ts';
import { isOutpostError } from '../shared/errors.ts';
import { tempDir } from './helpers/tmp.ts';

function problems(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    assert.ok(isOutpostError(err, 'CONFIG_INVALID'), String(err));
    return (err.details?.problems as string[]) ?? [];
  }
  assert.fail('expected CONFIG_INVALID');
}

describe('config: one schema', () => {
  test('safe defaults: loopback HTTP, durable outbox, TLS verification, a storage budget, a shutdown deadline', () => {
    const c = loadConfig({ overrides: { dataDir: tempDir('cfg') } });
    assert.equal(c.http.host, '127.0.0.1');
    assert.equal(c.http.port, 8470);
    assert.equal(c.outbox.synchronous, 'FULL');
    assert.equal(c.shutdownDeadlineMs, 20_000);
    assert.equal(c.storage.maxBytes, 4 * 1024 ** 3);
    assert.equal(c.storage.keepModelVersions, 2);
    assert.equal(c.controlPlane.url, undefined);
    assert.ok(c.outbox.maxBytes <= c.storage.maxBytes);
  });

  test('every leaf has an OUTPOST_ variable derived from its path, and they override the file', () => {
    const names = configLeaves().map((l) => envName(l.path));
    for (const expected of [
      'OUTPOST_SHUTDOWN_DEADLINE_MS',
      'OUTPOST_STORAGE__MAX_BYTES',
      'OUTPOST_STORAGE__KEEP_MODEL_VERSIONS',
      'OUTPOST_CONTROL_PLANE__URL',
      'OUTPOST_UPLINK__TLS__REJECT_UNAUTHORIZED',
    ])
      assert.ok(names.includes(expected), expected);
    const dir = tempDir('cfg');
    const file = join(dir, 'agent.json');
    writeFileSync(file, JSON.stringify({ dataDir: 'data', storage: { maxBytes: 100 * 1024 * 1024 } }));
    const c = loadConfig({
      file,
      env: {
        OUTPOST_STORAGE__MAX_BYTES: String(200 * 1024 * 1024),
        OUTPOST_OUTBOX__MAX_BYTES: String(50 * 1024 * 1024),
        OUTPOST_CONTROL_PLANE__URL: 'https://cp.example.com',
        OUTPOST_SHUTDOWN_DEADLINE_MS: '5000',
      },
    });
    assert.equal(c.storage.maxBytes, 200 * 1024 * 1024);
    assert.equal(c.controlPlane.url, 'https://cp.example.com');
    assert.equal(c.shutdownDeadlineMs, 5000);
    assert.equal(c.dataDir, join(dir, 'data'), 'relative paths resolve against the file');
  });

  test('errors name the key, for the file and for the environment, all at once', () => {
    const found = problems(() =>
      loadConfig({
        overrides: { storage: { maxBytes: 10 }, controlPlane: { url: 'ftp://x' } },
        env: {},
      }),
    );
    assert.ok(
      found.some((p) => p.startsWith('storage.maxBytes:')),
      found.join('\n'),
    );
    assert.ok(
      found.some((p) => p.startsWith('controlPlane.url: must be an http:// or https:// URL')),
      found.join('\n'),
    );
    const env = problems(() => loadConfig({ env: { OUTPOST_SHUTDOWN_DEADLINE_MS: 'soon' } }));
    assert.deepEqual(env, ['OUTPOST_SHUTDOWN_DEADLINE_MS: must be a number, got "soon"']);
    const unknown = problems(() => loadConfig({ overrides: { storage: { maxbytes: 1 } as never } }));
    assert.ok(
      unknown.some((p) => p.startsWith('storage.maxbytes: unknown field') && p.includes('maxBytes')),
      unknown.join('\n'),
    );
  });

  test('the outbox must fit inside the storage budget', () => {
    const found = problems(() =>
      loadConfig({
        overrides: { storage: { maxBytes: 64 * 1024 * 1024 }, outbox: { maxBytes: 128 * 1024 * 1024 } },
      }),
    );
    assert.deepEqual(found.length, 1);
    assert.match(found[0] as string, /^outbox\.maxBytes: must not exceed storage\.maxBytes/);
  });

  test('the result is frozen', () => {
    const c = loadConfig({ overrides: { dataDir: tempDir('cfg') } });
    assert.ok(Object.isFrozen(c.storage));
    assert.throws(() => {
      (c.storage as { maxBytes: number }).maxBytes = 1;
    }, TypeError);
  });

  test('the shipped example config is valid', () => {
    const c = loadConfig({ file: new URL('../deploy/config/agent.example.json', import.meta.url).pathname });
    assert.equal(c.deviceId, 'line3-press7');
    assert.equal(c.uplink.tls?.rejectUnauthorized, true);
  });
});
