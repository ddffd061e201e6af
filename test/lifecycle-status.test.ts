import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import type { AgentStatus } from '../agent/main.ts';
import { runCli } from './fixtures/agent-process.ts';
import { testAgent, waitFor } from './helpers/agent.ts';
import { startBroker } from './helpers/broker.ts';
import { tempDir } from './helpers/tmp.ts';

describe('outpost-agent status', () => {
  const stops: Array<() => Promise<void>> = [];
  after(async () => {
    for (const s of stops.reverse()) await s();
  });

  test('summarises models, outbox depth, uplink state and last sync from the running agent', async () => {
    const broker = await startBroker();
    stops.push(() => broker.stop());
    const agent = testAgent({ uplink: { url: broker.url }, sensors: { mqtt: 'off' } });
    await agent.start();
    stops.push(() => agent.stop());
    await waitFor(() => agent.uplink?.state === 'connected', 'uplink connected');
    await broker.stop();
    await waitFor(() => agent.uplink?.state !== 'connected', 'uplink down');
    await Promise.all([0, 1, 2].map((i) => agent.publisher.event('test', { i })));
    agent.recordSync(new Date('2026-11-29T10:00:00Z'), 'ok');

    const file = join(tempDir('status'), 'agent.json');
    writeFileSync(file, JSON.stringify({ http: { port: agent.httpPort } }));
    const human = await runCli(['status', '--config', file]);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /^device {4}test-device /m);
    assert.match(human.stdout, /^models {4}none loaded/m);
    assert.match(human.stdout, /^outbox {4}[1-9]\d* messages waiting/m);
    assert.match(human.stdout, /^uplink {4}(waiting|connecting), MQTT/m);
    assert.match(human.stdout, /^last sync 2026-11-29T10:00:00\.000Z \(ok\)/m);

    const json = await runCli(['status', '--config', file, '--json']);
    const status = JSON.parse(json.stdout) as AgentStatus;
    assert.ok(status.outbox.rows >= 3);
    assert.equal(status.sync.lastResult, 'ok');
  });

  test('says clearly when no agent is running', async () => {
    const file = join(tempDir('status'), 'agent.json');
    writeFileSync(file, JSON.stringify({ http: { port: 9 } }));
    const r = await runCli(['status', '--config', file]);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /the agent is not answering at http:\/\/127\.0\.0\.1:9\/v1\/agent\/status; is outpost-agent running\?/,
    );
  });
});
