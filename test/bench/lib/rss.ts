import { readFile } from 'node:fs/promises';
import { median } from './stable.ts';

export interface Memory {
  /** Resident set size (VmRSS), KiB: what `top` and the OOM killer see. */
  rssKiB: number;
  /** Proportional set size, KiB: shared library pages split among the processes mapping them. */
  pssKiB: number;
}

function field(text: string, name: string): number {
  const match = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text);
  if (match === null) throw new Error(`no ${name} in /proc status text`);
  return Number(match[1]);
}

/** Reads a process's memory from /proc (Linux only). */
export async function readMemory(pid: number): Promise<Memory> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const rollup = await readFile(`/proc/${pid}/smaps_rollup`, 'utf8');
  return { rssKiB: field(status, 'VmRSS'), pssKiB: field(rollup, 'Pss') };
}

/** The median of several samples, so one sample caught mid-allocation does not decide. */
export async function sampleMemory(pid: number, samples = 5, intervalMs = 50): Promise<Memory> {
  const taken: Memory[] = [];
  for (let i = 0; i < samples; i++) {
    if (i > 0) await new Promise((r) => setTimeout(r, intervalMs));
    taken.push(await readMemory(pid));
  }
  return { rssKiB: median(taken.map((m) => m.rssKiB)), pssKiB: median(taken.map((m) => m.pssKiB)) };
}

export const MiB = (kib: number): number => kib / 1024;

/** CPU time (user + system) a process has used so far, in seconds, from /proc/PID/stat. */
export async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces) start after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  return ticks / 100; // USER_HZ is 100 on Linux (x86-64 and arm64).
}
