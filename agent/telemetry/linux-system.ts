import { readdir, readFile, realpath, statfs } from 'node:fs/promises';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { diskFromStatfs, emptyFigures, mountOf, round, type SystemFigures } from './system-figures.ts';

/** Sensors named like these hold the CPU's own temperature (x86, Raspberry Pi, most ARM SoCs). */
const CPU_SENSOR = /cpu|x86_pkg_temp|coretemp|k10temp|package|soc/i;

async function text(path: string): Promise<string | undefined> {
  return readFile(path, 'utf8').then(
    (t) => t.trim(),
    () => undefined,
  );
}

async function integer(path: string): Promise<number | undefined> {
  const t = await text(path);
  if (t === undefined || !/^-?\d+$/.test(t)) return undefined;
  return Number(t);
}

/** Fields of /proc/meminfo in bytes. */
function meminfo(body: string): Map<string, number> {
  const fields = new Map<string, number>();
  for (const line of body.split('\n')) {
    const m = /^(\w+):\s+(\d+)(\s+kB)?$/.exec(line.trim());
    if (m !== null) fields.set(m[1] as string, Number(m[2]) * (m[3] === undefined ? 1 : 1024));
  }
  return fields;
}

/** Mount points from /proc/self/mountinfo (field 5, octal escapes such as \040 undone). */
export function mountPoints(body: string): Array<{ mount: string }> {
  const mounts: Array<{ mount: string }> = [];
  for (const line of body.split('\n')) {
    const field = line.split(' ')[4];
    if (field === undefined || field === '') continue;
    mounts.push({
      mount: field.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8))),
    });
  }
  return mounts;
}

/** Readings in °C from hwmon sensors and thermal zones; out-of-range values (absent sensors report 0 or less, or nonsense) are left out. */
async function temperatures(root: string): Promise<Array<{ name: string; celsius: number }>> {
  const readings: Array<{ name: string; celsius: number }> = [];
  const add = (name: string, milli: number | undefined) => {
    if (milli === undefined) return;
    const c = milli / 1000;
    if (c > 0 && c < 150) readings.push({ name, celsius: round(c) });
  };
  const hwmon = join(root, 'sys/class/hwmon');
  for (const dir of await readdir(hwmon).catch(() => [] as string[])) {
    const base = join(hwmon, dir);
    const name = (await text(join(base, 'name'))) ?? dir;
    const inputs = (await readdir(base).catch(() => [] as string[])).filter((f) => /^temp\d+_input$/.test(f));
    for (const f of inputs.sort()) add(name, await integer(join(base, f)));
  }
  const thermal = join(root, 'sys/class/thermal');
  const zones = (await readdir(thermal).catch(() => [] as string[])).filter((d) =>
    d.startsWith('thermal_zone'),
  );
  for (const zone of zones.sort((a, b) => a.localeCompare(b, 'en', { numeric: true }))) {
    const base = join(thermal, zone);
    add((await text(join(base, 'type'))) ?? zone, await integer(join(base, 'temp')));
  }
  return readings;
}

/**
 * A system sample on Linux from /proc and /sys, read in the agent's own process: memory from
 * /proc/meminfo, temperatures from hwmon and thermal zones, the data directory's filesystem
 * from its mount and statfs, and the byte and error counters of the interfaces that have an
 * address (the ones Node's os.networkInterfaces() lists). The files are small and the reads
 * asynchronous, so nothing here stalls the event loop and no process is started; CPU load and
 * rates are the caller's (withRates). `root` is where /proc and /sys are found and `interfaces`
 * which ones to read (tests pass a tree and names of their own).
 */
export async function sampleLinux(
  dataDir: string,
  { root = '/', interfaces }: { root?: string; interfaces?: readonly string[] } = {},
): Promise<SystemFigures> {
  const figures = emptyFigures(dataDir);
  const [mem, temps, disk, network] = await Promise.all([
    text(join(root, 'proc/meminfo')),
    temperatures(root),
    (async () => {
      const s = await statfs(dataDir);
      const mounts = mountPoints((await text(join(root, 'proc/self/mountinfo'))) ?? '');
      const at = await realpath(dataDir).catch(() => dataDir);
      return diskFromStatfs(dataDir, mountOf(mounts, at)?.mount ?? null, s);
    })().catch(() => undefined),
    networkCounters(root, interfaces ?? Object.keys(networkInterfaces())),
  ]);
  if (mem !== undefined) {
    const f = meminfo(mem);
    const total = f.get('MemTotal') ?? 0;
    // MemAvailable is in every kernel since 3.14; older ones get free + buffers + page cache.
    const available =
      f.get('MemAvailable') ?? (f.get('MemFree') ?? 0) + (f.get('Buffers') ?? 0) + (f.get('Cached') ?? 0);
    figures.memory = {
      totalBytes: total,
      availableBytes: available,
      usedPercent: total > 0 ? round(((total - available) / total) * 100) : 0,
    };
  }
  if (temps.length > 0) {
    const main = temps.find((t) => CPU_SENSOR.test(t.name)) ?? temps[0];
    figures.temperature = {
      mainC: main?.celsius ?? null,
      maxC: Math.max(...temps.map((t) => t.celsius)),
    };
  }
  if (disk !== undefined) figures.disk = disk;
  figures.network = network;
  return figures;
}

async function networkCounters(
  root: string,
  interfaces: readonly string[],
): Promise<SystemFigures['network']> {
  const out: SystemFigures['network'] = [];
  for (const iface of interfaces) {
    const base = join(root, 'sys/class/net', iface);
    const stat = (name: string) => integer(join(base, 'statistics', name));
    const [state, rx, tx, rxErrors, txErrors] = await Promise.all([
      text(join(base, 'operstate')),
      stat('rx_bytes'),
      stat('tx_bytes'),
      stat('rx_errors'),
      stat('tx_errors'),
    ]);
    if (rx === undefined || tx === undefined) continue;
    out.push({
      iface,
      state: state ?? 'unknown',
      rxBytes: rx,
      txBytes: tx,
      rxPerSec: null,
      txPerSec: null,
      rxErrors: rxErrors ?? 0,
      txErrors: txErrors ?? 0,
    });
  }
  return out;
}
