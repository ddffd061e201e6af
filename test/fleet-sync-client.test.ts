import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { type InstallOutcome, SyncClient } from '../agent/sync/sync-client.ts';
import { createJsonLogger } from '../shared/log.ts';
import { waitFor } from './helpers/agent.ts';
import { freePort } from './helpers/broker.ts';
import { tempDir } from './helpers/tmp.ts';

const quiet = createJsonLogger({ level: 'silent' });

function client(
  url: string,
  handler: { apply: (d: unknown) => Promise<InstallOutcome[]> },
  extra: Partial<ConstructorParameters<typeof SyncClient>[0]> = {},
) {
  return new SyncClient({
    deviceId: 'sync-dev',
    url,
    enrolmentToken: 'oet_token',
    credentialPath: join(tempDir('sync'), 'credential.json'),
    pollIntervalMs: 50,
    backoffMinMs: 20,
    backoffMaxMs: 160,
    requestTimeoutMs: 1_000,
    arch: 'x64',
    agentVersion: '0.1.0',
    handler: { apply: handler.apply, installed: () => [{ name: 'm', version: '1.0.0' }] },
    log: quiet,
    ...extra,
  });
}

describe('sync client', () => {
  test('backs off exponentially with a cap while the control plane is unreachable, and does nothing to the device', async () => {
    const port = await freePort();
    let applied = 0;
    const c = client(
      `http://127.0.0.1:${port}`,
      {
        apply: async () => {
          applied++;
          return [];
        },
      },
      { random: () => 1 },
    );
    const failures: number[] = [];
    c.on('failed', () => failures.push(Date.now()));
    c.start();
    await waitFor(() => failures.length >= 7, 'seven failed attempts', 10_000);
    await c.stop();
    const gaps = failures.slice(1).map((t, i) => t - (failures[i] as number));
    // With random() = 1 the waits are 20, 40, 80, 160, 160… ms: doubling, then capped.
    assert.ok((gaps[2] as number) >= 60, `third gap ${gaps[2]} should be ≥ 80 ms less timer slack`);
    assert.ok(
      gaps.slice(4).every((g) => g < 600),
      `gaps stay capped: ${gaps.join(', ')}`,
    );
    assert.equal(applied, 0);
    assert.equal(c.enrolled, false);
    assert.match(c.lastError ?? '', /127\.0\.0\.1/);
  });

  test('enrols once, stores the credential 0600, polls with If-None-Match and reports outcomes until delivered', async () => {
    const seen: Array<{ method: string; url: string; inm?: string; auth?: string; body?: string }> = [];
    let reportsRefused = 1;
    const server = createServer((req: IncomingMessage, res: ServerResponse) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        seen.push({
          method: req.method ?? '',
          url: req.url ?? '',
          inm: req.headers['if-none-match'] as string | undefined,
          auth: req.headers.authorization,
          body,
        });
        if (req.url === '/v1/enrol')
          return res
            .writeHead(201, { 'content-type': 'application/json' })
            .end(JSON.stringify({ credential: 'odc_secret' }));
        if (req.url?.endsWith('/desired')) {
          if (req.headers['if-none-match'] === '"v1"') return res.writeHead(304).end();
          return res
            .writeHead(200, { etag: '"v1"', 'content-type': 'application/json' })
            .end(JSON.stringify({ signed: { version: 1 } }));
        }
        if (req.url?.endsWith('/report')) {
          if (reportsRefused-- > 0) return res.writeHead(503).end('busy');
          return res.writeHead(204).end();
        }
        res.writeHead(404).end();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const credentialPath = join(tempDir('sync'), 'credential.json');
    let applied = 0;
    const c = client(
      url,
      {
        apply: async () => {
          applied++;
          return [{ model: 'm', version: '1.0.0', ok: false, detail: 'sample check failed' }];
        },
      },
      { credentialPath },
    );
    c.start();
    await waitFor(
      () =>
        seen.filter((s) => s.url.endsWith('/report') && s.method === 'POST').length >= 2 &&
        seen.filter((s) => s.inm === '"v1"').length >= 2,
      'polls and a delivered report',
      10_000,
    );
    await c.stop();
    await new Promise<void>((r) => server.close(() => r()));
    assert.equal(seen.filter((s) => s.url === '/v1/enrol').length, 1);
    assert.equal(statSync(credentialPath).mode & 0o777, 0o600);
    assert.equal(applied, 1, 'an unchanged document (304) is not applied again');
    assert.ok(seen.filter((s) => s.url.endsWith('/desired')).every((s) => s.auth === 'Bearer odc_secret'));
    const reports = seen
      .filter((s) => s.url.endsWith('/report'))
      .map((s) => JSON.parse(s.body ?? '{}') as { outcomes: unknown[] });
    assert.equal(reports[0]?.outcomes.length, 1);
    assert.equal(reports[1]?.outcomes.length, 1, 'the refused report is sent again with its outcome');
  });
  test('a sync requested while one is under way runs again after it and sees the newer desired state', async () => {
    let version = 1;
    let desiredGets = 0;
    const server = createServer((req: IncomingMessage, res: ServerResponse) => {
      req.resume();
      req.on('end', () => {
        if (req.url === '/v1/enrol')
          return res
            .writeHead(201, { 'content-type': 'application/json' })
            .end(JSON.stringify({ credential: 'odc_secret' }));
        if (req.url?.endsWith('/desired')) {
          desiredGets++;
          const etag = `"v${version}"`;
          if (req.headers['if-none-match'] === etag) return res.writeHead(304).end();
          return res
            .writeHead(200, { etag, 'content-type': 'application/json' })
            .end(JSON.stringify({ signed: { version } }));
        }
        if (req.url?.endsWith('/report')) return res.writeHead(204).end();
        res.writeHead(404).end();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const applied: unknown[] = [];
    let release: () => void = () => {};
    const c = client(url, {
      apply: async (doc) => {
        applied.push((doc as { signed: { version: number } }).signed.version);
        if (applied.length === 1) await new Promise<void>((r) => (release = r));
        return [];
      },
    });
    try {
      const first = c.syncNow();
      await waitFor(() => applied.length === 1, 'the first sync applying version 1');
      // The control plane changes the desired state and says so (cmd/sync) while the device is
      // still applying the old one: twice, as a redelivered command would.
      version = 2;
      const second = c.syncNow();
      const third = c.syncNow();
      assert.equal(second, third, 'requests made during one sync share the one that follows it');
      release();
      assert.equal((await first).desiredVersion, 1);
      const after = await second;
      assert.equal(after.desiredVersion, 2);
      assert.deepEqual(applied, [1, 2]);
      assert.equal(desiredGets, 2);

      // A request queued behind a sync when the client stops is not run.
      version = 3;
      const inFlight = c.syncNow();
      const queued = c.syncNow();
      await c.stop();
      await inFlight;
      await assert.rejects(queued, /stopped/);
      assert.equal(desiredGets, 3);
    } finally {
      release();
      await c.stop();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});
