import { spawnSync } from 'node:child_process';
/**
 * `npm run bench [-- --quick] [-- --only NAME[,NAME]] [-- --out DIR] [-- --readme]`: runs the scenarios,
 * each against its baseline in this same run, and writes `latest.json` and `latest.md` to
 * test/bench/results (or DIR), and with --readme the README's Performance table. Exit code 1 when a scenario could not run; a missed target is
 * reported in the table, not by the exit code (timings on a shared machine are not a test).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { buildForBench, removeBuild } from './lib/build.ts';
import { describeMachine } from './lib/machine.ts';
import { updateReadme, writeResults } from './lib/report.ts';
import { type BenchContext, type Measurement, measurement } from './lib/scenario.ts';
import { scenarios } from './scenarios/index.ts';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string', multiple: true },
    out: { type: 'string' },
    list: { type: 'boolean', default: false },
    readme: { type: 'boolean', default: false },
  },
});

if (values.list) {
  for (const s of scenarios) console.log(`${s.name}\t${s.description}`);
  process.exit(0);
}

const only = (values.only ?? []).flatMap((o) => o.split(',')).filter((o) => o !== '');
const unknown = only.filter((o) => !scenarios.some((s) => s.name === o));
if (unknown.length > 0) {
  console.error(`unknown scenario ${unknown.join(', ')}; known: ${scenarios.map((s) => s.name).join(', ')}`);
  process.exit(2);
}
const selected = only.length === 0 ? scenarios : scenarios.filter((s) => only.includes(s.name));
const quick = values.quick === true;
const outDir = values.out ?? fileURLToPath(new URL('./results/', import.meta.url));
const machine = describeMachine();
const startedAt = new Date();
const log = (m: string) => console.error(`[bench] ${m}`);
log(
  `${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB, Node ${machine.node}, load ${machine.loadAvg1}`,
);
const buildStarted = performance.now();
const buildDir = await buildForBench();
log(
  `built the agent and fixtures to JavaScript in ${((performance.now() - buildStarted) / 1000).toFixed(1)} s`,
);

const rows: Measurement[] = [];
const failures: Record<string, string> = {};
const descriptions: Record<string, string> = {};
for (const scenario of selected) {
  descriptions[scenario.name] = scenario.description;
  const tmpDir = await mkdtemp(join(tmpdir(), `outpost-bench-${scenario.name}-`));
  const cleanups: Array<() => Promise<void> | void> = [];
  const ctx: BenchContext = {
    quick,
    buildDir,
    tmpDir,
    windowMs: quick ? 100 : 2_000,
    minWindows: 3,
    maxWindows: quick ? 3 : 10,
    record(input) {
      const m = measurement(scenario.name, input);
      rows.push(m);
      return m;
    },
    log: (m) => log(`${scenario.name}: ${m}`),
    defer: (fn) => cleanups.push(fn),
  };
  const t0 = performance.now();
  log(`${scenario.name}: start`);
  try {
    await scenario.run(ctx);
  } catch (err) {
    failures[scenario.name] = err instanceof Error ? err.message : String(err);
    log(`${scenario.name}: FAILED ${failures[scenario.name]}`);
  } finally {
    for (const fn of cleanups.reverse()) {
      try {
        await fn();
      } catch (err) {
        log(`${scenario.name}: cleanup failed: ${String(err)}`);
      }
    }
    await rm(tmpDir, { recursive: true, force: true });
  }
  log(`${scenario.name}: done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

await removeBuild(buildDir);
const info = {
  machine,
  quick,
  startedAt: startedAt.toISOString(),
  durationS: (Date.now() - startedAt.getTime()) / 1000,
  descriptions,
  failures,
};
await writeResults(outDir, rows, info);
if (values.readme === true) {
  if (quick || only.length > 0) log('--readme ignored: the README shows a full run of every scenario only');
  else {
    const readme = fileURLToPath(new URL('../../README.md', import.meta.url));
    await updateReadme(readme, rows, info);
    // The table is written plainly; Biome (which `npm test` runs) aligns it like the rest.
    spawnSync(
      process.execPath,
      [fileURLToPath(import.meta.resolve('@biomejs/biome/bin/biome')), 'format', '--write', readme],
      {
        stdio: 'ignore',
      },
    );
    log('updated the Performance table in README.md');
  }
}
log(`wrote ${join(outDir, 'latest.json')} and latest.md (${rows.length} measurements)`);
const missed = rows.filter((r) => r.pass === false);
if (missed.length > 0) log(`targets missed: ${missed.map((r) => `${r.scenario}/${r.metric}`).join('; ')}`);
process.exitCode = Object.keys(failures).length > 0 ? 1 : 0;
