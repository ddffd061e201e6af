import assert from 'node:assert/strict';
import { cpus } from 'node:os';
import { test } from 'node:test';
import { SystemSampler } from '../agent/telemetry/system-sampler.ts';
import { tempDir } from './helpers/tmp.ts';

function busyTicks(): { busy: number; idle: number } {
  let busy = 0;
  let idle = 0;
  for (const { times } of cpus()) {
    busy += times.user + times.nice + times.sys + times.irq;
    idle += times.idle;
  }
  return { busy, idle };
}

test('system samples run in a child process; CPU load and network rates cover the time since the previous sample', async () => {
  const sampler = new SystemSampler(tempDir('system-sample'));
  const first = await sampler.sample();
  assert.equal(first.cpu.cores.length, cpus().length);
  assert.ok(
    first.network.every((n) => n.rxPerSec === null),
    'no rate without a previous sample',
  );

  const before = busyTicks();
  const until = performance.now() + 600;
  while (performance.now() < until) Math.sqrt(Math.random());
  const second = await sampler.sample();
  const after = busyTicks();
  const expected = ((after.busy - before.busy) / (after.busy - before.busy + after.idle - before.idle)) * 100;
  assert.ok(second.cpu.loadPercent > 0 && second.cpu.loadPercent <= 100, String(second.cpu.loadPercent));
  assert.ok(
    Math.abs(second.cpu.loadPercent - expected) < 25,
    `load ${second.cpu.loadPercent}% over the interval, the kernel's counters say ${expected.toFixed(1)}%`,
  );
  const lo = second.network.find((n) => n.iface === 'lo') ?? second.network[0];
  assert.ok(lo !== undefined && typeof lo.rxPerSec === 'number' && lo.rxPerSec >= 0, JSON.stringify(lo));
  assert.ok(second.memory.totalBytes > 0 && second.disk.totalBytes > 0);
});

test('stop() ends a sample in flight and leaves no process behind', async () => {
  const sampler = new SystemSampler(tempDir('system-sample'));
  const inFlight = sampler.sample();
  await new Promise((r) => setTimeout(r, 50));
  await sampler.stop();
  await assert.rejects(inFlight, /system sample process exited \(SIGKILL\)/);
});

test('a sample that takes too long is killed and reported', async () => {
  const sampler = new SystemSampler(tempDir('system-sample'), 1);
  await assert.rejects(sampler.sample(), /took longer than 1 ms/);
});
