import assert from 'node:assert/strict';
import { chmodSync, chownSync, mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type CheckResult, checkClock, type DoctorReport } from '../agent/doctor.ts';
import { runCli } from './fixtures/agent-process.ts';
import { freePort, startBroker, type TestBroker } from './helpers/broker.ts';
import { tempDir } from './helpers/tmp.ts';

/** An HTTP service standing in for the control plane's root URL; its Date header can be skewed. */
async function httpService(skewMs: number): Promise<{ url: string; server: Server }> {
  const server = createServer((_req, res) => {
    res.setHeader('date', new Date(Date.now() + skewMs).toUTCString());
    res.end('{}');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, server };
}

function byName(report: DoctorReport): Record<string, CheckResult> {
  return Object.fromEntries(report.checks.map((c) => [c.name, c]));
}

describe('outpost-agent doctor', () => {
  let broker: TestBroker;
  const servers: Server[] = [];
  before(async () => {
    broker = await startBroker();
  });
  after(async () => {
    for (const s of servers) s.close();
    await broker.stop();
  });

  test('a healthy device: every check passes and the exit code is 0', async () => {
    const dir = tempDir('doctor');
    const dataDir = join(dir, 'data');
    mkdirSync(dataDir, { mode: 0o750 });
    chmodSync(dataDir, 0o750);
    // As root, doctor wants the data dir owned by the service user, as install.sh leaves it.
    if (process.getuid?.() === 0) chownSync(dataDir, 999, 999);
    const cp = await httpService(0);
    servers.push(cp.server);
    const file = join(dir, 'agent.json');
    writeFileSync(
      file,
      JSON.stringify({
        deviceId: 'doc1',
        dataDir,
        uplink: { url: broker.url },
        controlPlane: { url: cp.url },
      }),
    );
    const r = await runCli(['doctor', '--config', file, '--json']);
    const report = JSON.parse(r.stdout) as DoctorReport;
    const checks = byName(report);
    assert.deepEqual(Object.keys(checks), [
      'config',
      'data-dir',
      'storage',
      'onnxruntime',
      'broker',
      'control-plane',
      'clock',
    ]);
    for (const c of report.checks) assert.equal(c.state, 'pass', `${c.name}: ${c.detail}`);
    assert.match(checks.onnxruntime?.detail ?? '', /^onnxruntime \d+\.\d+\.\d+ runs on (x64|arm64)$/);
    assert.equal(r.code, 0);
    assert.equal(report.ok, true);
  });

  test('an unhappy device: each failure is named and the exit code is 1', async () => {
    const dir = tempDir('doctor');
    const dataDir = join(dir, 'data');
    mkdirSync(join(dataDir, 'updates', 'staging'), { recursive: true });
    chmodSync(dataDir, 0o777);
    writeFileSync(join(dataDir, 'updates', 'staging', 'huge.part'), Buffer.alloc(17 * 1024 * 1024, 1));
    const skewed = await httpService(-10 * 60_000);
    servers.push(skewed.server);
    const closed = await freePort();
    const file = join(dir, 'agent.json');
    writeFileSync(
      file,
      JSON.stringify({
        deviceId: 'doc2',
        dataDir,
        uplink: { url: `mqtt://127.0.0.1:${closed}` },
        controlPlane: { url: skewed.url, timeoutMs: 2000 },
        storage: { maxBytes: 16 * 1024 * 1024, reserveFreeBytes: 0 },
        outbox: { maxBytes: 1024 * 1024 },
      }),
    );
    const r = await runCli(['doctor', '--config', file]);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    const lines = r.stdout.split('\n');
    const line = (name: string) => lines.find((l) => l.slice(6).startsWith(name)) ?? '';
    assert.match(line('data-dir'), /^FAIL .* is world-writable \(mode 0777\)/);
    assert.match(line('storage'), /^FAIL .*over budget/);
    assert.match(line('broker'), /^FAIL .*ECONNREFUSED/);
    assert.match(line('control-plane'), /^PASS .*answered HTTP 200/);
    assert.match(line('clock'), /^FAIL .*(599|600|601) s ahead of the control plane/);
    assert.match(line('onnxruntime'), /^PASS/);
    assert.match(r.stdout, /4 checks failed/);
  });

  test('an invalid config fails the config check by key and skips what depends on it', async () => {
    const dir = tempDir('doctor');
    const file = join(dir, 'agent.json');
    writeFileSync(file, JSON.stringify({ http: { port: 'eighty' } }));
    const r = await runCli(['doctor', '--config', file, '--json']);
    assert.equal(r.code, 1);
    const checks = byName(JSON.parse(r.stdout) as DoctorReport);
    assert.equal(checks.config?.state, 'fail');
    assert.match(checks.config?.detail ?? '', /http\.port/);
    assert.equal(checks.broker?.state, 'skip');
    assert.equal(checks.clock?.state, 'pass');
  });

  test('an unreachable control plane fails with the cause', async () => {
    const dir = tempDir('doctor');
    const file = join(dir, 'agent.json');
    writeFileSync(
      file,
      JSON.stringify({
        dataDir: dir,
        uplink: { enabled: false },
        controlPlane: { url: 'http://127.0.0.1:9', timeoutMs: 1000 },
      }),
    );
    const r = await runCli(['doctor', '--config', file, '--json']);
    const checks = byName(JSON.parse(r.stdout) as DoctorReport);
    assert.equal(checks.broker?.state, 'skip');
    assert.equal(checks['control-plane']?.state, 'fail');
    assert.match(checks['control-plane']?.detail ?? '', /unreachable/);
    assert.equal(r.code, 1);
  });
});

describe('doctor: clock', () => {
  const now = new Date('2026-06-01T12:00:00Z');
  test('a clock that was never set fails', () => {
    assert.equal(checkClock(new Date('1970-01-01T00:01:00Z'), undefined).state, 'fail');
  });
  test('skew against the control plane: pass, warn, fail', () => {
    assert.equal(checkClock(now, new Date(now.getTime() - 1000)).state, 'pass');
    const warn = checkClock(now, new Date(now.getTime() + 45_000));
    assert.equal(warn.state, 'warn');
    assert.match(warn.detail, /45 s behind the control plane/);
    assert.equal(checkClock(now, new Date(now.getTime() - 10 * 60_000)).state, 'fail');
  });
});
