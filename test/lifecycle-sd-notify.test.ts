import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { SdNotifier } from '../agent/sd-notify.ts';
import { createJsonLogger } from '../shared/log.ts';
import { ROOT } from './fixtures/agent-process.ts';
import { tempDir } from './helpers/tmp.ts';

const log = createJsonLogger({ level: 'silent' });

function available(cmd: string, args: string[]): boolean {
  try {
    execFileSync(cmd, args, { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const skip =
  available('python3', ['-c', 'import socket']) && available('systemd-notify', ['--help'])
    ? false
    : 'needs python3 and systemd-notify';

describe('sd_notify', () => {
  const children: ChildProcess[] = [];
  after(() => {
    for (const c of children) c.kill('SIGKILL');
  });

  test('delivers messages in order to a unix datagram socket and waits for the barrier', {
    skip,
  }, async () => {
    const path = join(tempDir('notify'), 'notify.sock');
    const listener = spawn('python3', [join(ROOT, 'test/fixtures/notify-listener.py'), path], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    children.push(listener);
    const got: string[] = [];
    listener.stdout?.on('data', (d: Buffer) => got.push(...d.toString().split('\n').filter(Boolean)));
    while (!got.includes('LISTENING')) await new Promise((r) => setTimeout(r, 10));
    const n = new SdNotifier({ log, env: { NOTIFY_SOCKET: path } });
    assert.equal(n.enabled, true);
    await Promise.all([n.ready('up'), n.notify('WATCHDOG=1'), n.stopping()]);
    // notify() resolves only after systemd-notify has exited, i.e. after the barrier round trip.
    const messages = got.filter((m) => m !== 'LISTENING' && !m.startsWith('BARRIER=1'));
    assert.deepEqual(messages, ['READY=1|STATUS=up', 'WATCHDOG=1', 'STOPPING=1|STATUS=stopping']);
  });

  test('without NOTIFY_SOCKET it does nothing; a missing sender is logged, never thrown', async () => {
    const off = new SdNotifier({ log, env: {} });
    assert.equal(off.enabled, false);
    await off.ready();
    const warnings: string[] = [];
    const capture = createJsonLogger({
      level: 'warn',
      destination: { write: (s: string) => warnings.push(s) },
    });
    const broken = new SdNotifier({
      log: capture,
      env: { NOTIFY_SOCKET: '/nonexistent' },
      command: '/nonexistent/systemd-notify',
    });
    await broken.ready();
    await broken.notify('WATCHDOG=1');
    assert.equal(warnings.length, 1, 'warned once');
    assert.match(warnings[0] as string, /sd_notify via \/nonexistent\/systemd-notify failed/);
  });

  test('the watchdog interval follows WATCHDOG_USEC, only for this PID', () => {
    const env = { NOTIFY_SOCKET: '/x', WATCHDOG_USEC: '30000000' };
    assert.equal(new SdNotifier({ log, env }).watchdogIntervalMs(), 30_000);
    assert.equal(
      new SdNotifier({ log, env: { ...env, WATCHDOG_PID: '42' }, pid: 42 }).watchdogIntervalMs(),
      30_000,
    );
    assert.equal(
      new SdNotifier({ log, env: { ...env, WATCHDOG_PID: '43' }, pid: 42 }).watchdogIntervalMs(),
      undefined,
    );
    assert.equal(new SdNotifier({ log, env: { NOTIFY_SOCKET: '/x' } }).watchdogIntervalMs(), undefined);
  });
});
