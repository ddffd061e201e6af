import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import type { AgentConfig } from '../agent/config.ts';
import { loadConfig } from '../agent/config.ts';
import { applyReload, changedKeys } from '../agent/lifecycle.ts';
import { RUN_HISTORY_FILE, type RunRecord } from '../agent/run-state.ts';
import { AgentProcess } from './fixtures/agent-process.ts';
import { tempDir } from './helpers/tmp.ts';

function baseConfig(dir: string): Record<string, unknown> {
  return {
    deviceId: 'reload-device',
    dataDir: join(dir, 'data'),
    http: { port: 0 },
    runtime: { workers: 1 },
    uplink: { enabled: false },
    sensors: { mqtt: 'off' },
    log: { level: 'info' },
  };
}

describe('lifecycle: SIGHUP and unclean exits', () => {
  const procs: AgentProcess[] = [];
  after(async () => {
    for (const p of procs) await p.close();
  });

  test('SIGHUP applies log.level, names what needs a restart, and survives an invalid file', async () => {
    const dir = tempDir('reload');
    const file = join(dir, 'agent.json');
    writeFileSync(file, JSON.stringify(baseConfig(dir)));
    const agent = new AgentProcess(['run', '--config', file]);
    procs.push(agent);
    const listening = await agent.waitForLine('local HTTP API listening');
    const port = listening.port as number;

    // A broken file: the running config stays, the agent keeps serving.
    writeFileSync(file, '{ "log": { "level": "loud" } ');
    agent.kill('SIGHUP');
    await agent.waitForLine('reload failed; keeping the running configuration');
    const live = await fetch(`http://127.0.0.1:${port}/v1/agent/status`);
    assert.equal(live.status, 200);

    writeFileSync(
      file,
      JSON.stringify({
        ...baseConfig(dir),
        log: { level: 'warn' },
        http: { port: 0, requestTimeoutMs: 1234 },
      }),
    );
    agent.kill('SIGHUP');
    const reloaded = await agent.waitForLine('reloading configuration');
    assert.deepEqual(reloaded.applied, ['log.level']);
    assert.deepEqual(reloaded.needsRestart, ['http.requestTimeoutMs']);
    await agent.waitForLine('these changes take effect after a restart');
    const mark = agent.lines.length;

    agent.kill('SIGTERM');
    assert.equal((await agent.exited).code, 0);
    // At warn, the info lines of the shutdown (root and component loggers) are gone.
    const after = agent.lines.slice(mark);
    assert.equal(after.filter((l) => l.level < 40).length, 0, JSON.stringify(after));
  });

  test('a killed agent is recorded as an unclean exit; the streak resets after a clean stop', async () => {
    const dir = tempDir('reload');
    const file = join(dir, 'agent.json');
    writeFileSync(file, JSON.stringify(baseConfig(dir)));
    for (let i = 0; i < 2; i++) {
      const p = new AgentProcess(['run', '--config', file]);
      procs.push(p);
      await p.waitForLine('agent ready');
      p.kill('SIGKILL');
      await p.exited;
    }
    const third = new AgentProcess(['run', '--config', file]);
    procs.push(third);
    const warned = await third.waitForLine('the previous run did not stop cleanly');
    assert.equal(warned.uncleanStreak, 2);
    await third.waitForLine('agent ready');
    third.kill('SIGTERM');
    assert.equal((await third.exited).code, 0);
    const history = JSON.parse(readFileSync(join(dir, 'data', RUN_HISTORY_FILE), 'utf8')) as RunRecord[];
    assert.deepEqual(
      history.map((h) => h.clean),
      [false, false, true],
    );
  });

  test('applyReload runs only the reloaders whose keys changed', () => {
    const dir = tempDir('reload');
    const prev = loadConfig({ overrides: { dataDir: dir } }) as AgentConfig;
    const next = loadConfig({
      overrides: { dataDir: dir, log: { level: 'debug' }, uplink: { keepaliveS: 60 } },
    });
    const applied: string[] = [];
    const result = applyReload(prev, next, [
      { keys: ['log.level'], apply: (c) => applied.push(c.log.level) },
      { keys: ['telemetry'], apply: () => applied.push('telemetry') },
    ]);
    assert.deepEqual(result, { applied: ['log.level'], needsRestart: ['uplink.keepaliveS'] });
    assert.deepEqual(applied, ['debug']);
    assert.deepEqual(changedKeys(prev, prev), []);
  });
});
