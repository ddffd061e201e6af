import { statfs } from 'node:fs/promises';
import si from 'systeminformation';
import { diskFromStatfs, emptyFigures, mountOf, round, type SystemFigures } from './system-figures.ts';

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
  const figures = emptyFigures(dataDir);
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
    figures.disk = diskFromStatfs(dataDir, null, fsStat.value);
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
