import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { waitFor } from './helpers/agent.ts';
import { tempDir } from './helpers/tmp.ts';

/** `npm start`: the whole loop comes up, the first rollout lands, and Ctrl-C ends it within 5 s. */
test('the demo publishes and rolls out a signed bundle, and stops on SIGINT within 5 s', async () => {
  const demo = join(import.meta.dirname, '..', 'deploy', 'demo', 'demo.ts');
  // A temp working directory keeps the demo's data out of the checkout.
  // Without NODE_TEST_CONTEXT: the demo is a program under test, not a test file.
  const { NODE_TEST_CONTEXT: _, ...env } = process.env;
  const child = spawn(process.execPath, ['--import', import.meta.resolve('tsx'), demo], {
    cwd: tempDir('demo-run'),
    env: { ...env, NODE_NO_WARNINGS: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  try {
    await waitFor(
      () => out.includes('all 1 devices run vibration-anomaly@1.0.0'),
      'the first rollout to complete',
      60_000,
    );
    await waitFor(
      () => /predictions {2}model 1\.0\.0/.test(out),
      'predictions from the rolled-out model',
      20_000,
    );
    const t0 = Date.now();
    child.kill('SIGINT');
    assert.equal(await exited, 0);
    assert.ok(Date.now() - t0 < 5_000, `stopped in ${Date.now() - t0} ms`);
    assert.match(out, /stopped cleanly/);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
});
