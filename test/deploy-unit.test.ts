import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { ROOT } from './fixtures/agent-process.ts';
import { tempDir } from './helpers/tmp.ts';

const UNIT = join(ROOT, 'deploy/outpost-agent.service');
const analyze = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
const skip = analyze.status === 0 ? false : 'systemd-analyze is not installed';

/**
 * `systemd-analyze verify` checks that ExecStart's binary exists and is executable, so the
 * copy under test points at this node (the unit says /usr/bin/node, which install.sh rewrites
 * the same way). Warnings about unknown keys or bad values go to stderr with exit code 0, so
 * the test demands an empty stderr as well.
 */
function verify(unitText: string): { status: number | null; stderr: string } {
  const dir = tempDir('unit');
  const file = join(dir, 'outpost-agent.service');
  writeFileSync(file, unitText);
  const r = spawnSync('systemd-analyze', ['verify', file], { encoding: 'utf8' });
  return { status: r.status, stderr: r.stderr.trim() };
}

function withNode(text: string): string {
  return text.replace(/^ExecStart=\/usr\/bin\/node /m, `ExecStart=${process.execPath} `);
}

describe('systemd unit', { skip }, () => {
  const text = readFileSync(UNIT, 'utf8');

  test('passes systemd-analyze verify without a warning', () => {
    const r = verify(withNode(text));
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr, '');
  });

  test('the verify check catches a broken unit (so the test above can fail)', () => {
    const broken = verify(withNode(text).replace('Type=notify', 'Type=notifyy\nRestartt=always'));
    assert.match(broken.stderr, /Failed to parse service type/);
    assert.match(broken.stderr, /Unknown key 'Restartt'/);
    const missing = verify(text.replace(/^ExecStart=\/usr\/bin\/node /m, 'ExecStart=/nonexistent/node '));
    assert.notEqual(missing.status, 0);
  });

  test('is Type=notify with a watchdog, restarts on failure, runs as outpost, and is hardened', () => {
    const lines = new Set(text.split('\n').map((l) => l.trim()));
    for (const want of [
      'Type=notify',
      'NotifyAccess=all',
      'WatchdogSec=30s',
      'Restart=on-failure',
      'User=outpost',
      'ProtectSystem=strict',
      'ReadWritePaths=/var/lib/outpost',
      'NoNewPrivileges=true',
      'PrivateTmp=true',
      'ProtectHome=true',
      'CapabilityBoundingSet=',
      'SystemCallFilter=@system-service',
      'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6',
    ])
      assert.ok(lines.has(want), want);
    assert.ok(![...lines].some((l) => l.startsWith('MemoryDenyWriteExecute=')), 'V8 needs W+X memory');
    // The agent's own deadline must fire before systemd's SIGKILL.
    const stop = /^TimeoutStopSec=(\d+)s$/m.exec(text);
    assert.ok(stop !== null && Number(stop[1]) * 1000 > 20_000);
  });

  test('systemd-analyze security rates the exposure 2.0 or lower', () => {
    const r = spawnSync('systemd-analyze', ['security', '--offline=true', UNIT], { encoding: 'utf8' });
    const score = /Overall exposure level for outpost-agent\.service: (\d+\.\d+)/.exec(r.stdout);
    assert.ok(score !== null, r.stdout + r.stderr);
    assert.ok(Number(score[1]) <= 2.0, `exposure ${score[1]}`);
  });
});
