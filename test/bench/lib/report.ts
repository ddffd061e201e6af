import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Machine } from './machine.ts';
import type { Measurement } from './scenario.ts';

export interface RunInfo {
  machine: Machine;
  quick: boolean;
  startedAt: string;
  durationS: number;
  descriptions: Record<string, string>;
  failures: Record<string, string>;
}

function fmt(n: number | null): string {
  if (n === null || !Number.isFinite(n)) return '–';
  const abs = Math.abs(n);
  if (abs >= 1000) return n.toFixed(0);
  if (abs >= 100) return n.toFixed(1);
  if (abs >= 1) return n.toFixed(2);
  return n.toPrecision(3);
}

export function machineLine(m: Machine): string {
  return `${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB, Node ${m.node}, ${m.os} ${m.arch}`;
}

export function table(rows: readonly Measurement[]): string[] {
  const out = [
    '| scenario | metric | value | unit | baseline | ratio | target | pass |',
    '| --- | --- | ---: | --- | ---: | ---: | --- | --- |',
  ];
  for (const r of rows) {
    const pass = r.pass === null ? '' : r.pass ? 'yes' : '**no**';
    const flag = r.stable === false ? ' (unsettled)' : '';
    out.push(
      `| ${r.scenario} | ${r.metric}${flag} | ${fmt(r.value)} | ${r.unit} | ${fmt(r.baseline)} | ${fmt(r.ratio)} | ${r.target ?? ''} | ${pass} |`,
    );
  }
  return out;
}

/** Replaces the marked machine line and table in the README with this run's (`--readme`). */
export async function updateReadme(path: string, rows: readonly Measurement[], info: RunInfo): Promise<void> {
  let text = await readFile(path, 'utf8');
  const put = (name: string, body: string) => {
    const re = new RegExp(`(<!-- bench:${name} -->)[\\s\\S]*?(<!-- /bench:${name} -->)`);
    if (!re.test(text)) throw new Error(`${path} has no <!-- bench:${name} --> block`);
    text = text.replace(re, (_, open: string, close: string) => `${open}${body}${close}`);
  };
  put(
    'machine',
    `${machineLine(info.machine)}; load average ${info.machine.loadAvg1} at the start, ${info.startedAt.slice(0, 10)}`,
  );
  put('table', `\n${table(rows).join('\n')}\n`);
  await writeFile(path, text);
}

export function markdown(rows: readonly Measurement[], info: RunInfo): string {
  const m = info.machine;
  const out: string[] = [
    `# Benchmark results${info.quick ? ' (quick run: short windows, not for publishing)' : ''}`,
    '',
    `Run ${info.startedAt}, ${info.durationS.toFixed(0)} s. Machine: ${machineLine(m)}; ` +
      `1-min load average at start ${m.loadAvg1}.`,
    '',
    ...table(rows),
  ];
  const notes = rows.filter((r) => r.note !== undefined);
  if (notes.length > 0) {
    out.push('', '## Notes', '');
    for (const r of notes) out.push(`- **${r.scenario} / ${r.metric}**: ${r.note}`);
  }
  out.push('', '## Scenarios', '');
  for (const [name, text] of Object.entries(info.descriptions)) out.push(`- **${name}**: ${text}`);
  const failed = Object.entries(info.failures);
  if (failed.length > 0) {
    out.push('', '## Scenarios that failed to run', '');
    for (const [name, err] of failed) out.push(`- **${name}**: ${err}`);
  }
  return `${out.join('\n')}\n`;
}

/** Writes `latest.json` (the list of measurements) and `latest.md` beside it, each atomically. */
export async function writeResults(dir: string, rows: readonly Measurement[], info: RunInfo): Promise<void> {
  await mkdir(dir, { recursive: true });
  const put = async (name: string, text: string) => {
    const tmp = join(dir, `${name}.tmp`);
    await writeFile(tmp, text);
    await rename(tmp, join(dir, name));
  };
  await put('latest.json', `${JSON.stringify(rows, null, 2)}\n`);
  await put('latest.md', markdown(rows, info));
}
