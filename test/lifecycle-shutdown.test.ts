import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { RUN_HISTORY_FILE, RUN_STATE_FILE, type RunRecord } from '../agent/run-state.ts';
import { AgentProcess, ROOT } from './fixtures/agent-process.ts';
import { startBroker, type TestBroker } from './helpers/broker.ts';
import { tempDir } from './helpers/tmp.ts';

function hasPython(): boolean {
  try {
    execFileSync('python3', ['-c', 'import socket; socket.AF_UNIX'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function hasSystemdNotify(): boolean {
  try {
    execFileSync('systemd-notify', ['--help'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function writeConfig(dir: string, broker: TestBroker, extra: Record<string, unknown> = {}): string {
  const file = join(dir, 'agent.json');
  writeFileSync(
    file,
    JSON.stringify({
      deviceId: 'lifecycle-device',
      dataDir: join(dir, 'data'),
      http: { port: 0 },
      runtime: { workers: 1 },
      uplink: { url: broker.url, backoffMinMs: 100 },
      shutdownDeadlineMs: 10_000,
      ...extra,
    }),
  );
  return file;
}

/** The real systemd-notify talking to a real unix datagram socket (python3 plays PID 1). */
class NotifyListener {
  readonly messages: string[] = [];
  readonly child: ChildProcess;
  constructor(readonly path: string) {
    this.child = spawn('python3', [join(ROOT, 'test/fixtures/notify-listener.py'), path], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let buffer = '';
    this.child.stdout?.on('data', (d: Buffer) => {
      buffer += d.toString();
      const parts = buffer.split('\n');
      buffer = parts.pop() ?? '';
      this.messages.push(...parts);
    });
  }
  async waitFor(check: (m: string[]) => boolean, what: string, timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!check(this.messages)) {
      if (Date.now() > deadline)
        throw new Error(`notify: timed out waiting for ${what}; got ${this.messages}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  stop(): void {
    this.child.kill('SIGKILL');
  }
}

describe('lifecycle: SIGTERM', () => {
  let broker: TestBroker;
  const cleanups: Array<() => Promise<void> | void> = [];
  before(async () => {
    broker = await startBroker();
  });
  after(async () => {
    for (const c of cleanups.reverse()) await c();
    await broker.stop();
  });

  test('sends READY, WATCHDOG and STOPPING over NOTIFY_SOCKET and shuts down in order, exit 0', {
    skip: !hasPython() || !hasSystemdNotify() ? 'needs python3 and systemd-notify' : false,
  }, async () => {
    const dir = tempDir('lifecycle');
    const listener = new NotifyListener(join(dir, 'notify.sock'));
    cleanups.push(() => listener.stop());
    await listener.waitFor((m) => m.includes('LISTENING'), 'listener');
    const agent = new AgentProcess(['run', '--config', writeConfig(dir, broker)], {
      NOTIFY_SOCKET: listener.path,
      WATCHDOG_USEC: '300000',
    });
    cleanups.push(() => agent.close());
    await agent.waitForLine('uplink connected');
    await listener.waitFor((m) => m.some((x) => x.startsWith('READY=1')), 'READY=1');
    await listener.waitFor((m) => m.filter((x) => x === 'WATCHDOG=1').length >= 2, 'two WATCHDOG=1');
    assert.ok(existsSync(join(dir, 'data', RUN_STATE_FILE)), 'run-state file exists while running');

    const sentAt = Date.now();
    agent.kill('SIGTERM');
    const { code } = await agent.exited;
    assert.equal(code, 0, agent.stderr);
    assert.ok(Date.now() - sentAt < 10_000, 'within the deadline');

    await listener.waitFor((m) => m.includes('STOPPING=1|STATUS=stopping'), 'STOPPING=1');
    const m = listener.messages;
    const ready = m.findIndex((x) => x.startsWith('READY=1'));
    const stopping = m.indexOf('STOPPING=1|STATUS=stopping');
    assert.ok(ready < stopping, `READY before STOPPING: ${m}`);
    assert.ok(!m.slice(stopping).includes('WATCHDOG=1'), 'no watchdog pings after STOPPING');

    const order = [
      agent.index('shutting down'),
      ...['intake stopped', 'inference drained', 'outbox batch flushed', 'mqtt ended', 'sqlite closed'].map(
        (step) => agent.index('shutdown step', (l) => l.step === step),
      ),
      agent.index('agent stopped'),
      agent.index('shutdown complete'),
    ];
    assert.ok(
      order.every((i, k) => i >= 0 && (k === 0 || i > (order[k - 1] as number))),
      `log order ${order}`,
    );
    assert.ok(!existsSync(join(dir, 'data', RUN_STATE_FILE)), 'a clean stop removes run-state');
    const history = JSON.parse(readFileSync(join(dir, 'data', RUN_HISTORY_FILE), 'utf8')) as RunRecord[];
    assert.equal(history.at(-1)?.clean, true);
  });

  test('a shutdown past its deadline takes the forced path: exit 1, run recorded as unclean', async () => {
    const dir = tempDir('lifecycle');
    const config = writeConfig(dir, broker, { shutdownDeadlineMs: 500 });
    const slow = new AgentProcess(
      ['--config', config],
      { SLOW_STOP_MS: '30000' },
      join(ROOT, 'test/fixtures/slow-stop-agent.ts'),
    );
    cleanups.push(() => slow.close());
    await slow.waitForLine('agent ready');
    const sentAt = Date.now();
    slow.kill('SIGTERM');
    const { code, signal } = await slow.exited;
    const took = Date.now() - sentAt;
    assert.equal(code, 1, `exit code ${code}, signal ${signal}`);
    assert.ok(took >= 500 && took < 5_000, `forced exit after ${took} ms`);
    assert.ok(slow.index('graceful shutdown missed its deadline; exiting') >= 0);
    assert.ok(existsSync(join(dir, 'data', RUN_STATE_FILE)), 'run-state stays: the run did not end cleanly');

    // The next start sees it.
    const next = new AgentProcess(['run', '--config', config]);
    cleanups.push(() => next.close());
    const warned = await next.waitForLine('the previous run did not stop cleanly');
    assert.equal(warned.uncleanStreak, 1);
    await next.waitForLine('agent ready');
    next.kill('SIGTERM');
    const after = await next.exited;
    assert.equal(
      after.code,
      0,
      `exit code ${after.code}, signal ${after.signal}; stderr: ${next.stderr.slice(-2000)}`,
    );
    const history = JSON.parse(readFileSync(join(dir, 'data', RUN_HISTORY_FILE), 'utf8')) as RunRecord[];
    assert.deepEqual(
      history.map((h) => h.clean),
      [false, true],
    );
  });
});
