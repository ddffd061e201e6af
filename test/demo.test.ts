import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { tempDir } from './helpers/tmp.ts';

test('npm start demo prints live predictions and stops cleanly on SIGINT within 5 s', {
  timeout: 90_000,
}, async () => {
  const cwd = tempDir('demo-cwd');
  const root = new URL('..', import.meta.url).pathname;
  // Run from a temp cwd so the demo's data dir is throwaway; tsx resolves from the repo.
  const child = spawn(
    process.execPath,
    ['--import', import.meta.resolve('tsx'), `${root}deploy/demo/demo.ts`],
    {
      cwd,
      env: { ...process.env, NODE_NO_WARNINGS: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const deadline = Date.now() + 60_000;
  while (!/score\s+\d\.\d{4}.*predictions/.test(out)) {
    if (Date.now() > deadline || child.exitCode !== null) {
      child.kill('SIGKILL');
      assert.fail(`demo printed no predictions:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const sentAt = Date.now();
  child.kill('SIGINT');
  const code = await exited;
  const took = Date.now() - sentAt;
  assert.equal(code, 0, out);
  assert.ok(took < 5_000, `stopped in ${took} ms`);
  assert.match(out, /stopped cleanly/);
});
