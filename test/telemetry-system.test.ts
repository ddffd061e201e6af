import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, test } from 'node:test';
import si from 'systeminformation';
import { mountPoints, sampleLinux } from '../agent/telemetry/linux-system.ts';
import type { SystemFigures } from '../agent/telemetry/system-figures.ts';
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

/**
 * Processes this process started (from any thread) while `work` ran, read from /proc. The
 * test loader's esbuild service, which it starts when it likes, is not the sampler's.
 */
async function childrenSeenDuring<T>(work: Promise<T>): Promise<{ result: T; children: Set<string> }> {
  const children = new Set<string>();
  let done = false;
  const watching = (async () => {
    while (!done) {
      for (const task of readdirSync('/proc/self/task')) {
        const list = readFileSync(`/proc/self/task/${task}/children`, 'utf8').trim();
        for (const pid of list.split(/\s+/).filter(Boolean)) {
          const cmd = (() => {
            try {
              return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
            } catch {
              return '(gone)';
            }
          })();
          if (!/\/esbuild --service/.test(cmd)) children.add(`${pid} ${cmd}`);
        }
      }
      await new Promise((r) => setTimeout(r, 2));
    }
  })();
  try {
    return { result: await work, children };
  } finally {
    done = true;
    await watching;
  }
}

function put(root: string, path: string, body: string): void {
  const file = join(root, path);
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, body);
}

for (const source of ['proc', 'probe'] as const) {
  describe(`system samples (${source})`, () => {
    test('CPU load and network rates cover the time since the previous sample', async () => {
      const sampler = new SystemSampler(tempDir('system-sample'), 20_000, source);
      const { result: first, children } = await childrenSeenDuring(sampler.sample());
      assert.equal(first.cpu.cores.length, cpus().length);
      assert.ok(first.cpu.loadPercent >= 0 && first.cpu.loadPercent <= 100);
      assert.ok(
        first.network.every((n) => n.rxPerSec === null),
        'no rate without a previous sample',
      );
      if (source === 'proc') assert.equal(children.size, 0, `processes started: ${[...children]}`);
      else assert.ok(children.size > 0, 'the probe runs in a child process');

      const before = busyTicks();
      const until = performance.now() + 600;
      while (performance.now() < until) Math.sqrt(Math.random());
      const second = await sampler.sample();
      const after = busyTicks();
      const expected =
        ((after.busy - before.busy) / (after.busy - before.busy + after.idle - before.idle)) * 100;
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
      const sampler = new SystemSampler(tempDir('system-sample'), 20_000, source);
      const inFlight = sampler.sample();
      await new Promise((r) => setTimeout(r, 50));
      await sampler.stop();
      await assert.rejects(
        inFlight,
        source === 'probe' ? /system sample process exited \(SIGKILL\)/ : /sampler stopped/,
      );
    });
  });
}

test('a probe that takes too long is killed and reported', async () => {
  const sampler = new SystemSampler(tempDir('system-sample'), 1, 'probe');
  await assert.rejects(sampler.sample(), /took longer than 1 ms/);
});

test('on Linux the default source reads /proc and /sys; its figures agree with systeminformation', async () => {
  const dir = tempDir('system-sample');
  assert.equal(new SystemSampler(dir).source, process.platform === 'linux' ? 'proc' : 'probe');
  const [mine, mem, fs, net, temp] = await Promise.all([
    sampleLinux(dir),
    si.mem(),
    si.fsSize(),
    si.networkStats('*'),
    si.cpuTemperature(),
  ]);
  assert.equal(mine.memory.totalBytes, mem.total);
  assert.ok(
    Math.abs(mine.memory.availableBytes - mem.available) < mem.total * 0.05,
    `${mine.memory.availableBytes} vs ${mem.available}`,
  );
  const theirs = fs.filter((m) => dir === m.mount || dir.startsWith(m.mount === '/' ? '/' : `${m.mount}/`));
  const mount = theirs.sort((a, b) => b.mount.length - a.mount.length)[0];
  assert.ok(mount !== undefined);
  assert.equal(mine.disk.mount, mount.mount);
  assert.equal(mine.disk.totalBytes, mount.size);
  assert.ok(Math.abs(mine.disk.usedPercent - mount.use) < 1, `${mine.disk.usedPercent} vs ${mount.use}`);
  assert.deepEqual(mine.network.map((n) => n.iface).sort(), net.map((n) => n.iface).sort());
  for (const n of mine.network) {
    const other = net.find((x) => x.iface === n.iface);
    assert.equal(n.state, other?.operstate);
    assert.equal(n.rxErrors, other?.rx_errors);
  }
  assert.equal(mine.temperature.mainC === null, temp.main === null);
});

test('the /proc and /sys reader: CPU sensor first, the hottest as max, absent sensors skipped, old kernels, escaped mount points', async () => {
  const root = tempDir('fake-root');
  put(
    root,
    'proc/meminfo',
    'MemTotal:       1000 kB\nMemFree:         100 kB\nBuffers:          50 kB\nCached:          250 kB\n',
  );
  const dataDir = tempDir('data dir');
  const escaped = dataDir.replaceAll(' ', '\\040');
  put(
    root,
    'proc/self/mountinfo',
    `22 1 0:21 / / rw - ext4 /dev/root rw\n23 22 0:22 / ${escaped} rw - tmpfs tmpfs rw\n`,
  );
  put(root, 'sys/class/hwmon/hwmon0/name', 'nvme\n');
  put(root, 'sys/class/hwmon/hwmon0/temp1_input', '61500\n');
  put(root, 'sys/class/thermal/thermal_zone0/type', 'acpitz\n');
  put(root, 'sys/class/thermal/thermal_zone0/temp', '0\n');
  put(root, 'sys/class/thermal/thermal_zone1/type', 'cpu-thermal\n');
  put(root, 'sys/class/thermal/thermal_zone1/temp', '48312\n');
  put(root, 'sys/class/net/eth0/operstate', 'up\n');
  for (const [f, v] of [
    ['rx_bytes', '1234'],
    ['tx_bytes', '99'],
    ['rx_errors', '2'],
    ['tx_errors', '0'],
  ])
    put(root, `sys/class/net/eth0/statistics/${f}`, `${v}\n`);
  // wlan0 is listed but its counters cannot be read (gone since): left out, not zeroed.
  const figures: SystemFigures = await sampleLinux(dataDir, { root, interfaces: ['eth0', 'wlan0'] });
  assert.deepEqual(figures.memory, { totalBytes: 1024_000, availableBytes: 409_600, usedPercent: 60 });
  assert.deepEqual(figures.temperature, { mainC: 48.3, maxC: 61.5 });
  assert.equal(figures.disk.mount, dataDir);
  assert.ok(figures.disk.totalBytes > 0);
  assert.deepEqual(figures.network, [
    {
      iface: 'eth0',
      state: 'up',
      rxBytes: 1234,
      txBytes: 99,
      rxPerSec: null,
      txPerSec: null,
      rxErrors: 2,
      txErrors: 0,
    },
  ]);
  assert.deepEqual(mountPoints('1 0 0:1 / /mnt/a\\040b rw - ext4 x rw\n'), [{ mount: '/mnt/a b' }]);

  // No sensors and no readable /proc: nulls and zeros, not a failure.
  const empty = await sampleLinux(dataDir, { root: tempDir('empty-root'), interfaces: [] });
  assert.deepEqual(empty.temperature, { mainC: null, maxC: null });
  assert.equal(empty.memory.totalBytes, 0);
  assert.equal(empty.disk.mount, null);
  assert.ok(empty.disk.totalBytes > 0, 'statfs still gives the sizes');
});
