import { readFileSync } from 'node:fs';
import { arch, availableParallelism, cpus, loadavg, release, totalmem } from 'node:os';

export interface Machine {
  cpu: string;
  cores: number;
  memoryGiB: number;
  node: string;
  os: string;
  arch: string;
  /** 1-minute load average when the run started: a busy neighbour shows here. */
  loadAvg1: number;
}

function cpuModel(): string {
  const fromOs = cpus()[0]?.model.trim();
  if (fromOs !== undefined && fromOs !== '') return fromOs;
  try {
    const match = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (match?.[1] !== undefined) return match[1].trim();
  } catch {
    // Not Linux or no /proc: fall through.
  }
  return 'unknown';
}

/** Read from the machine itself, so the table says where its numbers came from. */
export function describeMachine(): Machine {
  return {
    cpu: cpuModel(),
    cores: availableParallelism(),
    memoryGiB: Math.round((totalmem() / 1024 ** 3) * 10) / 10,
    node: process.version,
    os: `${process.platform} ${release()}`,
    arch: arch(),
    loadAvg1: Math.round((loadavg()[0] ?? 0) * 100) / 100,
  };
}
