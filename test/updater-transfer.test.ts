import assert from 'node:assert/strict';
import { createReadStream } from 'node:fs';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import type { AgentConfigInput } from '../agent/config.ts';
import type { AgentDeps } from '../agent/main.ts';
import { OutpostError } from '../shared/errors.ts';
import { events, inferOk, MODEL, UpdateFixture } from './helpers/update-fixture.ts';

const fixtures: UpdateFixture[] = [];
after(async () => {
  for (const fx of fixtures) await fx.stop();
});

async function baseline(overrides: AgentConfigInput = {}, deps: AgentDeps = {}) {
  const fx = await new UpdateFixture().start();
  fixtures.push(fx);
  const agent = await fx.deviceServingV1(overrides, deps);
  const v2 = await fx.publish('mlpV2');
  await fx.direct([[MODEL, '2.0.0']], { expiresDays: 30 });
  const isV2Model = (file: string) => file.endsWith(`${v2.manifest.model.sha256}.model.onnx`);
  return { fx, agent, v2, isV2Model };
}

function v2Requests(fx: UpdateFixture, sha: string) {
  return fx.server.requests.filter((r) => r.path.endsWith(`${sha}.model.onnx`));
}

/** Sends the first half of the file with a 200 and the full length, then drops the connection. */
async function halfThenReset(req: IncomingMessage, res: ServerResponse, file: string) {
  const data = await readFile(file);
  res.writeHead(200, { 'content-length': data.length, etag: '"v2"' });
  await new Promise<void>((r) => res.write(data.subarray(0, Math.floor(data.length / 2)), () => r()));
  // A reset discards what the client has not read yet: give a loaded machine time to read the
  // half before the connection goes, or there is nothing to resume from.
  await new Promise((r) => setTimeout(r, 400));
  req.socket.destroy();
}

describe('updater: transfer faults', () => {
  test('metadata requests answered 503 are retried with backoff, then succeed', async () => {
    const { fx, agent } = await baseline();
    let failures = 2;
    fx.server.hook = (req, res) => {
      if (!req.url?.endsWith('/timestamp.json') || failures <= 0) return false;
      failures--;
      res.writeHead(503).end();
      return true;
    };
    const before = fx.server.requests.filter((r) => r.path.endsWith('/timestamp.json')).length;
    const outcome = await agent.updater!.checkNow();
    assert.deepEqual(outcome.failed, []);
    const after = fx.server.requests.filter((r) => r.path.endsWith('/timestamp.json')).length;
    assert.equal(after - before, 3);
    assert.equal(await inferOk(agent), '2.0.0');
  });

  test('endless data: a target longer than declared is cut off at its length and refused', async () => {
    const { fx, agent, isV2Model } = await baseline();
    let sent = 0;
    fx.server.hook = (_req, res, file) => {
      if (!isV2Model(file)) return false;
      res.writeHead(200);
      const chunk = Buffer.alloc(64 * 1024, 7);
      const pump = () => {
        while (!res.destroyed && res.write(chunk)) sent += chunk.length;
        if (!res.destroyed) res.once('drain', pump);
      };
      pump();
      return true;
    };
    const outcome = await agent.updater!.checkNow();
    assert.match(outcome.failed[0]?.error ?? '', /more than the \d+ bytes TUF declares/);
    assert.ok(sent < 16 * 1024 * 1024, `the device stopped reading (${sent} bytes sent)`);
    assert.equal(await inferOk(agent), '1.0.0');
  });

  test('a target with the declared length but other bytes is refused', async () => {
    const { fx, agent, v2 } = await baseline();
    const served = join(fx.repo.targetsDir, MODEL, '2.0.0', `${v2.manifest.model.sha256}.model.onnx`);
    const bytes = await readFile(served);
    bytes[bytes.length - 100] = (bytes[bytes.length - 100] ?? 0) ^ 0xff;
    await writeFile(served, bytes);
    const outcome = await agent.updater!.checkNow();
    assert.match(
      outcome.failed[0]?.error ?? '',
      /sha256 [0-9a-f]{64} is not the [0-9a-f]{64} TUF vouches for/,
    );
    assert.ok(
      (await events(agent)).some(
        (e) => e.type === 'update-failed' && e.body['code'] === 'OUTPOST_ERR_TRUST_FAILED',
      ),
    );
    assert.equal(await inferOk(agent), '1.0.0');
  });

  test('slow retrieval: a trickling server is cut off by the throughput watchdog and reported', async () => {
    const { fx, agent, isV2Model } = await baseline({ updates: { retries: 1 } });
    fx.server.hook = async (_req, res, file) => {
      if (!isV2Model(file)) return false;
      const size = (await stat(file)).size;
      res.writeHead(200, { 'content-length': size });
      // 100 bytes every 100 ms stays under the 2 s idle timeout but far below 2000 B/s.
      const timer = setInterval(() => res.write(Buffer.alloc(100, 1)), 100);
      res.on('close', () => clearInterval(timer));
      return true;
    };
    const started = Date.now();
    const outcome = await agent.updater!.checkNow();
    assert.ok(Date.now() - started < 10_000);
    assert.match(outcome.failed[0]?.error ?? '', /below the 2000 B\/s minimum/);
    const failed = (await events(agent)).find((e) => e.type === 'update-failed');
    assert.equal(failed?.body['code'], 'OUTPOST_ERR_TIMEOUT');
    assert.equal(await inferOk(agent), '1.0.0');
  });

  test('a connection reset mid-download resumes with Range and If-Range', async () => {
    const { fx, agent, v2, isV2Model } = await baseline();
    let first = true;
    fx.server.hook = async (req, res, file) => {
      if (!isV2Model(file) || !first) return false;
      first = false;
      await halfThenReset(req, res, file);
      return true;
    };
    const outcome = await agent.updater!.checkNow();
    assert.deepEqual(outcome.failed, []);
    const reqs = v2Requests(fx, v2.manifest.model.sha256);
    assert.equal(reqs.length, 2);
    assert.match(reqs[1]?.range ?? '', /^bytes=[1-9]\d*-$/);
    assert.equal(await inferOk(agent), '2.0.0');
  });

  test('a server that ignores Range gets the file rewritten from the start', async () => {
    const { fx, agent, v2, isV2Model } = await baseline();
    let n = 0;
    fx.server.hook = async (req, res, file) => {
      if (!isV2Model(file)) return false;
      if (n++ === 0) {
        await halfThenReset(req, res, file);
        return true;
      }
      res.writeHead(200, { 'content-length': (await stat(file)).size });
      createReadStream(file).pipe(res);
      return true;
    };
    const outcome = await agent.updater!.checkNow();
    assert.deepEqual(outcome.failed, []);
    const reqs = v2Requests(fx, v2.manifest.model.sha256);
    assert.match(reqs[1]?.range ?? '', /^bytes=/);
    assert.equal(await inferOk(agent), '2.0.0');
    assert.equal(agent.registry.current(MODEL)?.ref.sha256, v2.manifest.model.sha256);
  });

  test('a corrupt partial file is detected after the resume and fetched again whole', async () => {
    const { fx, agent, v2, isV2Model } = await baseline({ updates: { retries: 0 } });
    let first = true;
    fx.server.hook = async (req, res, file) => {
      if (!isV2Model(file) || !first) return false;
      first = false;
      await halfThenReset(req, res, file);
      return true;
    };
    assert.equal((await agent.updater!.checkNow()).failed.length, 1);
    const staging = join(agent.config.dataDir, 'updates', 'staging');
    const part = (await readdir(staging)).find((f) => f.endsWith('.part'));
    assert.ok(part, 'a partial file is kept for the resume');
    const bytes = await readFile(join(staging, part));
    bytes[10] = (bytes[10] ?? 0) ^ 0xff;
    await writeFile(join(staging, part), bytes);
    const outcome = await agent.updater!.checkNow();
    assert.deepEqual(outcome.failed, []);
    const ranges = v2Requests(fx, v2.manifest.model.sha256).map((r) => r.range);
    assert.deepEqual([ranges[0], ranges[2]], [undefined, undefined]);
    assert.match(ranges[1] ?? '', /^bytes=/);
    assert.equal(await inferOk(agent), '2.0.0');
  });
});

describe('updater: disk full', () => {
  test('the ensureSpace hook refuses an install before anything is downloaded', async () => {
    const asked: number[] = [];
    const { fx, agent, v2 } = await baseline(
      {},
      {
        ensureSpace: (bytes) => {
          asked.push(bytes);
          if (asked.length > 1)
            throw new OutpostError('STORAGE_BUDGET', `storage budget: ${bytes} bytes refused`);
        },
      },
    );
    const outcome = await agent.updater!.checkNow();
    assert.match(outcome.failed[0]?.error ?? '', /storage budget/);
    assert.ok((asked[1] ?? 0) > v2.manifest.model.size);
    assert.equal(v2Requests(fx, v2.manifest.model.sha256).length, 0);
    assert.equal(await inferOk(agent), '1.0.0');
  });

  test('a failed fsync of the new bundle while its model loads releases the new session and switches nothing', async () => {
    const { fx, agent } = await baseline();
    await agent.stop();
    process.env.OUTPOST_UPDATER_FAULT = 'eio:sync';
    const again = fx.agent({ dataDir: agent.config.dataDir });
    delete process.env.OUTPOST_UPDATER_FAULT;
    await again.start();
    const outcome = await again.updater!.checkNow();
    assert.match(outcome.failed[0]?.error ?? '', /EIO/);
    assert.equal(await inferOk(again), '1.0.0');
    assert.equal(again.registry.get(MODEL, '2.0.0')?.state, 'UNAVAILABLE');
    assert.equal((await again.registry.sessionStats()).sessions, 1, 'only 1.0.0 keeps a session');
    const dirs = await readdir(join(again.config.dataDir, 'bundles', MODEL));
    assert.deepEqual(
      dirs.filter((d) => !d.startsWith('1.0.0-')),
      [],
      'no 2.0.0 directory, finished or not',
    );
    assert.equal(again.status().updates!.models[MODEL]?.current.version, '1.0.0');
  });

  test('ENOSPC while writing the download is refused, cleaned up and reported', async () => {
    const { fx, agent } = await baseline();
    await agent.stop();
    process.env.OUTPOST_UPDATER_FAULT = 'enospc:512';
    const again = fx.agent({ dataDir: agent.config.dataDir });
    delete process.env.OUTPOST_UPDATER_FAULT;
    await again.start();
    assert.equal(await inferOk(again), '1.0.0');
    const outcome = await again.updater!.checkNow();
    assert.match(outcome.failed[0]?.error ?? '', /disk full/);
    const staging = join(again.config.dataDir, 'updates', 'staging');
    assert.deepEqual(
      (await readdir(staging)).filter((f) => f.endsWith('.part')),
      [],
    );
    assert.ok(
      (await events(again)).some(
        (e) => e.type === 'update-failed' && e.body['code'] === 'OUTPOST_ERR_STORAGE_BUDGET',
      ),
    );
    assert.equal(await inferOk(again), '1.0.0');
  });
});
