import { statfs } from 'node:fs/promises';
import { resolve, sep } from 'node:path';
import si from 'systeminformation';
import { round, type SystemFigures } from './system-figures.ts';

/** The mount that holds `path`: the longest mount point that is a prefix of it. */
function mountOf<T extends { mount: string }>(mounts: T[], path: string): T | undefined {
  const abs = resolve(path);
  let best: T | undefined;
  for (const m of mounts) {
    const prefix = m.mount.endsWith(sep) ? m.mount : `${m.mount}${sep}`;
    if (abs !== m.mount && !abs.startsWith(prefix)) continue;
    if (best === undefined || m.mount.length > best.mount.length) best = m;
  }
  return best;
}

/**
 * One sample of the box's health through systeminformation. Each part is read on its own so a
 * board without a temperature sensor or a container without network stats still reports the
 * rest. Free disk is that of the filesystem holding the data directory, which is what the outbox
 * and bundles fill. It runs in a fresh process each time (system-sampler.ts), where
 * systeminformation has no history: CPU load is systeminformation's own half-second measurement
 * only when `measureLoad` is set (the first sample); after that the caller derives loads and
 * rates from the counters of consecutive samples (`withRates`).
 */
export async function sampleSystem(dataDir: string, measureLoad: boolean): Promise<SystemFigures> {
  const [load, mem, temp, mounts, net, fsStat] = await Promise.allSettled([
    measureLoad ? si.currentLoad() : Promise.reject(new Error('measured by the caller')),
    si.mem(),
    si.cpuTemperature(),
    si.fsSize(),
    si.networkStats('*'),
    statfs(dataDir),
  ]);
  const figures: SystemFigures = {
    cpu: { loadPercent: 0, cores: [] },
    memory: { totalBytes: 0, availableBytes: 0, usedPercent: 0 },
    temperature: { mainC: null, maxC: null },
    disk: { path: dataDir, mount: null, totalBytes: 0, freeBytes: 0, usedPercent: 0 },
    network: [],
  };
  if (load.status === 'fulfilled') {
    figures.cpu = {
      loadPercent: round(load.value.currentLoad),
      cores: load.value.cpus.map((c) => round(c.load)),
    };
  }
  if (mem.status === 'fulfilled') {
    const m = mem.value;
    figures.memory = {
      totalBytes: m.total,
      availableBytes: m.available,
      usedPercent: m.total > 0 ? round(((m.total - m.available) / m.total) * 100) : 0,
    };
  }
  if (temp.status === 'fulfilled') {
    const t = temp.value;
    figures.temperature = {
      mainC: typeof t.main === 'number' ? t.main : null,
      maxC: typeof t.max === 'number' ? t.max : null,
    };
  }
  const mount = mounts.status === 'fulfilled' ? mountOf(mounts.value, dataDir) : undefined;
  if (mount !== undefined) {
    figures.disk = {
      path: dataDir,
      mount: mount.mount,
      totalBytes: mount.size,
      freeBytes: mount.available,
      usedPercent: round(mount.use),
    };
  } else if (fsStat.status === 'fulfilled') {
    // No `df` on the box (or an unusual mount table): the kernel's own figures for the directory.
    const s = fsStat.value;
    const total = s.blocks * s.bsize;
    const free = s.bavail * s.bsize;
    figures.disk = {
      path: dataDir,
      mount: null,
      totalBytes: total,
      freeBytes: free,
      usedPercent: total > 0 ? round(((total - free) / total) * 100) : 0,
    };
  }
  if (net.status === 'fulfilled') {
    figures.network = net.value.map((n) => ({
      iface: n.iface,
      state: n.operstate,
      rxBytes: n.rx_bytes,
      txBytes: n.tx_bytes,
      rxPerSec: null,
      txPerSec: null,
      rxErrors: n.rx_errors,
      txErrors: n.tx_errors,
    }));
  }
  return figures;
}
