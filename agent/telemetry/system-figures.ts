import { cpus } from 'node:os';
import { resolve, sep } from 'node:path';

/**
 * The figures of a system sample and the arithmetic that turns consecutive samples into loads
 * and rates. Kept apart from system.ts so the agent's main thread, which only keeps the
 * counters, never loads systeminformation (the probe process does).
 */
export interface SystemFigures {
  /** Busy share over the time since the previous sample (the first sample measures half a second itself). */
  cpu: { loadPercent: number; cores: number[] };
  memory: { totalBytes: number; availableBytes: number; usedPercent: number };
  /** Celsius; null where the board has no readable sensor. */
  temperature: { mainC: number | null; maxC: number | null };
  disk: { path: string; mount: string | null; totalBytes: number; freeBytes: number; usedPercent: number };
  network: Array<{
    iface: string;
    state: string;
    rxBytes: number;
    txBytes: number;
    /** Over the time since the previous sample; null for the first one. */
    rxPerSec: number | null;
    txPerSec: number | null;
    rxErrors: number;
    txErrors: number;
  }>;
}

/** A sample with nothing read yet: what a part that cannot be read leaves in place. */
export function emptyFigures(dataDir: string): SystemFigures {
  return {
    cpu: { loadPercent: 0, cores: [] },
    memory: { totalBytes: 0, availableBytes: 0, usedPercent: 0 },
    temperature: { mainC: null, maxC: null },
    disk: { path: dataDir, mount: null, totalBytes: 0, freeBytes: 0, usedPercent: 0 },
    network: [],
  };
}

/** Cumulative counters behind a sample's loads and rates, kept for the next sample. */
export interface SystemCounters {
  atMs: number;
  /** CPU time since boot, busy and idle, per core (Node's os.cpus(), as systeminformation reads it). */
  cores: Array<{ busy: number; idle: number }>;
  /** Bytes since the interface came up. */
  network: Record<string, { rx: number; tx: number }>;
}

export function cpuCounters(): SystemCounters['cores'] {
  return cpus().map(({ times: t }) => ({ busy: t.user + t.nice + t.sys + t.irq, idle: t.idle }));
}

export function round(n: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

function busyShare(
  now: { busy: number; idle: number },
  then: { busy: number; idle: number } | undefined,
): number {
  if (then === undefined) return 0;
  const busy = now.busy - then.busy;
  const total = busy + now.idle - then.idle;
  return total > 0 ? round((busy / total) * 100) : 0;
}

/**
 * Fills CPU load and network rates over the time since `previous` (the counters of the sample
 * before); without one, what the sample measured itself stays. Returns the counters to keep.
 */
export function withRates(
  figures: SystemFigures,
  cores: SystemCounters['cores'],
  atMs: number,
  previous: SystemCounters | undefined,
): SystemCounters {
  const counters: SystemCounters = { atMs, cores, network: {} };
  for (const n of figures.network) counters.network[n.iface] = { rx: n.rxBytes, tx: n.txBytes };
  if (previous === undefined) return counters;
  const sum = (list: SystemCounters['cores']) =>
    list.reduce((a, c) => ({ busy: a.busy + c.busy, idle: a.idle + c.idle }), { busy: 0, idle: 0 });
  figures.cpu = {
    loadPercent: busyShare(sum(cores), sum(previous.cores)),
    cores: cores.map((c, i) => busyShare(c, previous.cores[i])),
  };
  const seconds = (atMs - previous.atMs) / 1000;
  const rate = (now: number, then: number | undefined) =>
    then === undefined || seconds <= 0 || now < then ? null : round((now - then) / seconds);
  for (const n of figures.network) {
    const then = previous.network[n.iface];
    n.rxPerSec = rate(n.rxBytes, then?.rx);
    n.txPerSec = rate(n.txBytes, then?.tx);
  }
  return counters;
}

/** The mount that holds `path`: the longest mount point that is a prefix of it. */
export function mountOf<T extends { mount: string }>(mounts: T[], path: string): T | undefined {
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
 * The figures of the filesystem holding `path` from statfs: free is what an unprivileged
 * writer may still use, and the used share is df's (used / (used + available)), so the blocks
 * kept for root count neither as used nor as free.
 */
export function diskFromStatfs(
  path: string,
  mount: string | null,
  s: { blocks: number; bfree: number; bavail: number; bsize: number },
): SystemFigures['disk'] {
  const used = (s.blocks - s.bfree) * s.bsize;
  const free = s.bavail * s.bsize;
  return {
    path,
    mount,
    totalBytes: s.blocks * s.bsize,
    freeBytes: free,
    usedPercent: used + free > 0 ? round((used / (used + free)) * 100) : 0,
  };
}
