import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { exampleBundles } from '../deploy/examples/example-bundles.ts';
import { waitFor } from './helpers/agent.ts';
import { freePort } from './helpers/broker.ts';
import { tempDir } from './helpers/tmp.ts';

const run = promisify(execFile);
const CLI = join(import.meta.dirname, '..', 'cloud-sync', 'cli.ts');
const TOKEN = 'cli-operator-token-0123456789';

describe('outpost CLI against `outpost serve`', () => {
  const dataDir = tempDir('cli-cp');
  let port: number;
  let server: ChildProcess;
  let stdout = '';
  const env = () => ({
    ...process.env,
    OUTPOST_OPERATOR_TOKEN: TOKEN,
    OUTPOST_URL: `http://127.0.0.1:${port}`,
    NODE_NO_WARNINGS: '1',
  });
  const outpost = (...args: string[]) =>
    run(process.execPath, ['--import', 'tsx', CLI, ...args], { env: env() });

  before(async () => {
    port = await freePort();
    // The operator's own tooling makes the keys and the repository; serve takes both as they are.
    await outpost('keys', 'init', '--dir', join(dataDir, 'keys'), '--repo', join(dataDir, 'repo'));
    const args = [
      'serve',
      '--port',
      String(port),
      '--data-dir',
      dataDir,
      '--keys',
      join(dataDir, 'keys'),
      '--repo',
      join(dataDir, 'repo'),
    ];
    server = spawn(process.execPath, ['--import', 'tsx', CLI, ...args], {
      env: env(),
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    server.stdout?.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    await waitFor(
      async () => (await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => undefined))?.ok === true,
      'serve up',
      20_000,
    );
  });
  after(() => {
    if (server.exitCode === null) server.kill('SIGKILL');
  });

  test('publish, devices and rollout subcommands talk to the control plane; logs are JSON lines', async () => {
    const bundle = await exampleBundles.mlp(tempDir('cli-bundles'));
    const pub = await outpost('publish', bundle.dir, '--keys', join(dataDir, 'keys'));
    assert.match(pub.stdout, /published mlp-classifier@1\.0\.0 \(targets v2\)/);
    const tok = await outpost('devices', 'token', '--tag', 'site=lab');
    assert.match(tok.stdout.trim(), /^oet_/);
    const enrol = await fetch(`http://127.0.0.1:${port}/v1/enrol`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token: tok.stdout.trim(), deviceId: 'cli-dev' }),
    });
    assert.equal(enrol.status, 201);
    const list = await outpost('devices', 'list');
    assert.match(list.stdout, /cli-dev\s+online/);
    const created = await outpost(
      'rollout',
      'create',
      '--bundle',
      'mlp-classifier@1.0.0',
      '--selector',
      'site=lab',
      '--waves',
      '50,100',
      '--max-failure-rate',
      '5%',
      '--min-reporting',
      '1',
      '--soak',
      '10m',
    );
    assert.match(created.stdout, /RUNNING \(wave 1\/2\)/);
    const id = /rollout (\S+)/.exec(created.stdout)?.[1] as string;
    const aborted = await outpost('rollout', 'abort', id, '--reason', 'lunch');
    assert.match(aborted.stdout, /ABORTED/);
    assert.match(aborted.stdout, /aborted by operator: lunch/);
    await assert.rejects(
      run(process.execPath, ['--import', 'tsx', CLI, 'devices', 'list'], {
        env: { ...env(), OUTPOST_OPERATOR_TOKEN: 'wrong-wrong-wrong-wrong' },
      }),
      /401/,
    );
    const line = stdout.split('\n').find((l) => l.includes('control plane ready'));
    assert.ok(line !== undefined && JSON.parse(line).service === 'outpost-control-plane');
  });

  test('SIGTERM stops the control plane cleanly', async () => {
    const exited = new Promise<number | null>((resolve) => server.once('exit', (code) => resolve(code)));
    const t0 = Date.now();
    server.kill('SIGTERM');
    assert.equal(await exited, 0);
    assert.ok(Date.now() - t0 < 5_000);
  });
});
