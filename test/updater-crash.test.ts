import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { cp } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { INSTALL_STEPS } from '../agent/updater/installer.ts';
import { readBundle } from '../shared/bundle/read.ts';
import { tempDir } from './helpers/tmp.ts';
import { events, inferOk, MODEL, UpdateFixture } from './helpers/update-fixture.ts';

const CHILD = new URL('./helpers/update-child.ts', import.meta.url).pathname;

interface ChildRun {
  child: ChildProcess;
  lines: string[];
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  waitLine(prefix: string): Promise<string>;
}

function runChild(config: unknown, env: Record<string, string> = {}): ChildRun {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD], {
    env: { ...process.env, NODE_NO_WARNINGS: '1', OUTPOST_CHILD_CONFIG: JSON.stringify(config), ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines: string[] = [];
  const waiters: Array<() => void> = [];
  let buf = '';
  child.stdout?.on('data', (d: Buffer) => {
    buf += d.toString();
    let i = buf.indexOf('\n');
    while (i >= 0) {
      lines.push(buf.slice(0, i));
      buf = buf.slice(i + 1);
      i = buf.indexOf('\n');
    }
    for (const w of waiters.splice(0)) w();
  });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => {
      for (const w of waiters.splice(0)) w();
      resolve({ code, signal });
    }),
  );
  return {
    child,
    lines,
    exit,
    async waitLine(prefix) {
      for (;;) {
        const found = lines.find((l) => l.startsWith(prefix));
        if (found !== undefined) return found;
        if (child.exitCode !== null || child.signalCode !== null)
          throw new Error(`child exited without printing "${prefix}": ${lines.join(' | ')}`);
        await new Promise<void>((r) => waiters.push(r));
      }
    },
  };
}

describe('updater: power loss and crash loops', () => {
  const fx = new UpdateFixture();
  let baseDir: string;
  /** One killed child per install step, started together (4 at a time) since each takes seconds to boot. */
  const killed = new Map<
    string,
    Promise<{ dataDir: string; signal: NodeJS.Signals | null; lines: string[] }>
  >();

  before(async () => {
    await fx.start();
    await fx.publish('mlp');
    await fx.direct([[MODEL, '1.0.0']], { expiresDays: 30 });
    baseDir = tempDir('upd-base');
    const agent = fx.agent({ dataDir: baseDir });
    await agent.start();
    assert.deepEqual((await agent.updater!.checkNow()).failed, []);
    await agent.stop();
    await fx.publish('mlpV2');
    await fx.direct([[MODEL, '2.0.0']], { expiresDays: 30 });
    const queue: Array<Promise<void>> = [];
    for (const step of INSTALL_STEPS) {
      const gate = queue.length >= 4 ? queue[queue.length - 4] : undefined;
      const result = (async () => {
        await gate;
        const dataDir = await deviceWithV1();
        const run = runChild(fx.agentConfig({ dataDir }), { OUTPOST_UPDATER_FAULT: `kill:${step}` });
        const { signal } = await run.exit;
        return { dataDir, signal, lines: run.lines };
      })();
      killed.set(step, result);
      queue.push(
        result.then(
          () => undefined,
          () => undefined,
        ),
      );
    }
  });
  after(() => fx.stop());

  /** A copy of the data dir of a device serving 1.0.0, as if it had just rebooted cleanly. */
  async function deviceWithV1(): Promise<string> {
    const dir = tempDir('upd-dev');
    await cp(baseDir, dir, { recursive: true });
    return dir;
  }

  for (const step of INSTALL_STEPS) {
    test(`SIGKILL at "${step}" leaves 1.0.0 or 2.0.0 serving, whole, and the next check completes`, async () => {
      const { dataDir, signal, lines } = await killed.get(step)!;
      assert.equal(signal, 'SIGKILL', `the child died at ${step}: ${lines.join(' | ')}`);

      const agent = fx.agent({ dataDir });
      await agent.start();
      const serving = agent.registry.current(MODEL);
      assert.ok(serving, 'a model serves after the crash');
      const expected = INSTALL_STEPS.indexOf(step) >= INSTALL_STEPS.indexOf('committed') ? '2.0.0' : '1.0.0';
      assert.equal(serving.version, expected);
      // Whole: the bundle on disk verifies against its manifest.
      await readBundle(serving.bundle.dir);
      assert.ok(['1.0.0', '2.0.0'].includes(await inferOk(agent)));
      const outcome = await agent.updater!.checkNow();
      assert.deepEqual(outcome.failed, []);
      assert.equal(await inferOk(agent), '2.0.0');
      await agent.stop();
    });
  }

  test('an agent that crash-loops after an activation reverts to the previous version and reports it', async () => {
    const dataDir = await deviceWithV1();
    const config = fx.agentConfig({ dataDir, updates: { crashLoop: { maxUncleanStarts: 2 } } });
    // Activation, then the power goes: the first unclean stop.
    const first = runChild(config, { OUTPOST_UPDATER_FAULT: 'kill:activated' });
    assert.equal((await first.exit).signal, 'SIGKILL');
    // The new version comes up and the agent dies again: the second unclean stop.
    const second = runChild(config, { OUTPOST_CHILD_CHECK: '0' });
    assert.equal(await second.waitLine('ready'), 'ready 2.0.0');
    second.child.kill('SIGKILL');
    await second.exit;
    // Third start: two unclean starts within the window → back to 1.0.0 before loading.
    const third = runChild(config, { OUTPOST_CHILD_CHECK: '0' });
    assert.equal(await third.waitLine('ready'), 'ready 1.0.0');
    third.child.kill('SIGKILL');
    await third.exit;

    const agent = fx.agent({ dataDir, updates: { crashLoop: { maxUncleanStarts: 2 } } });
    await agent.start();
    assert.equal(await inferOk(agent), '1.0.0');
    const reverted = (await events(agent)).find((e) => e.type === 'update-reverted');
    assert.equal(reverted?.body['reason'], 'crash-loop');
    assert.equal(reverted?.body['from'], '2.0.0');
    const st = agent.status().updates!;
    assert.equal(st.models[MODEL]?.current.version, '1.0.0');
    assert.equal(Object.values(st.rejected)[0]?.version, '2.0.0');
    // The director still names 2.0.0; the device does not take it again.
    const outcome = await agent.updater!.checkNow();
    assert.match(outcome.failed[0]?.error ?? '', /refused earlier: crash loop/);
    assert.equal(await inferOk(agent), '1.0.0');
    await agent.stop();
    assert.ok(join(dataDir).length > 0);
  });
});
