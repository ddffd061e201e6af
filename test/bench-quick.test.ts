import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { Histogram } from './bench/lib/histogram.ts';
import { measurement } from './bench/lib/scenario.ts';
import { interleaved, spreadOf } from './bench/lib/stable.ts';
import { scenarios } from './bench/scenarios/index.ts';
import { tempDir } from './helpers/tmp.ts';

const root = new URL('..', import.meta.url).pathname;

test('histogram percentiles are within 1% of the exact ones', () => {
  const h = new Histogram();
  const values = Array.from({ length: 10_000 }, (_, i) => 10 + i * 3.7);
  for (const v of values) h.record(v);
  for (const q of [0.5, 0.9, 0.99]) {
    const exact = values[Math.ceil(q * values.length) - 1] as number;
    const got = h.quantile(q);
    assert.ok(Math.abs(got - exact) / exact <= 0.01, `q${q}: got ${got}, exact ${exact}`);
  }
  const back = Histogram.from(JSON.parse(JSON.stringify(h.snapshot())));
  assert.equal(back.quantile(0.99), h.quantile(0.99));
  assert.equal(back.count, 10_000);
});

test('stable windows stop when the last three agree and interleave the sides', async () => {
  const order: string[] = [];
  const side = (name: string, values: number[]) => ({
    name,
    window: async () => {
      order.push(name);
      return values.shift() ?? 0;
    },
  });
  const result = await interleaved(
    [side('a', [100, 50, 101, 100, 99, 100]), side('b', [10, 10, 10, 10, 10, 10])],
    {
      metric: (v) => v,
      minWindows: 3,
      maxWindows: 10,
    },
  );
  assert.deepEqual(order.slice(0, 4), ['a', 'b', 'a', 'b']);
  assert.equal(result.windows, 5, 'windows 3..5 of side a are 101, 100, 99');
  assert.equal(result.stable, true);
  assert.deepEqual(result.last[0], [101, 100, 99]);
  const noisy = await interleaved([side('n', [100, 1000, 100, 1000, 100, 1000])], {
    metric: (v) => v,
    minWindows: 3,
    maxWindows: 4,
  });
  assert.equal(noisy.windows, 4);
  assert.equal(noisy.stable, false);
  // Pooling six: at least six windows run and six come back, though the first three agreed.
  const pooled = await interleaved([side('p', [5, 5, 5, 5.2, 5, 5, 5])], {
    metric: (v) => v,
    minWindows: 3,
    maxWindows: 10,
    pool: 6,
  });
  assert.equal(pooled.windows, 6);
  assert.deepEqual(pooled.last[0], [5, 5, 5, 5.2, 5, 5]);
  assert.equal(pooled.stable, true, 'stability is still judged on the last three');
  assert.ok(spreadOf([100, 120, 100]) > 0.1);
});

test('a measurement judges its target on the ratio or the value', () => {
  const m = measurement('s', {
    metric: 'x',
    value: 130,
    unit: 'MiB',
    baseline: 100,
    target: { on: 'ratio', op: '<=', limit: 1.3 },
  });
  assert.equal(m.ratio, 1.3);
  assert.equal(m.pass, true);
  assert.equal(m.target, 'ratio ≤ 1.3');
  const v = measurement('s', {
    metric: 'y',
    value: 6,
    unit: 'ms',
    target: { on: 'value', op: '<', limit: 5 },
  });
  assert.equal(v.pass, false);
  assert.equal(v.ratio, null);
});

test('npm run bench -- --quick runs every scenario and writes latest.json and latest.md', {
  timeout: 180_000,
}, () => {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
    scripts: Record<string, string>;
  };
  assert.equal(pkg.scripts.bench, 'tsx test/bench/run.ts');
  const out = tempDir('bench-quick');
  // The same command as the npm script (tsx test/bench/run.ts), without npm's own start-up.
  const run = spawnSync(process.execPath, ['--import', 'tsx', 'test/bench/run.ts', '--quick', '--out', out], {
    cwd: root,
    encoding: 'utf8',
    env: { ...process.env, NODE_NO_WARNINGS: '1' },
  });
  assert.equal(run.status, 0, `bench failed:\n${run.stderr}`);
  const rows = JSON.parse(readFileSync(join(out, 'latest.json'), 'utf8')) as Array<Record<string, unknown>>;
  assert.ok(Array.isArray(rows));
  for (const s of scenarios) {
    assert.ok(
      rows.some((r) => r.scenario === s.name),
      `scenario ${s.name} produced no measurement`,
    );
  }
  for (const r of rows) {
    for (const key of ['scenario', 'metric', 'value', 'unit', 'baseline', 'ratio', 'target', 'pass']) {
      assert.ok(key in r, `${String(r.metric)} lacks ${key}`);
    }
    assert.equal(typeof r.value, 'number');
    assert.ok(Number.isFinite(r.value), `${String(r.scenario)}/${String(r.metric)} is not a finite number`);
    assert.ok(r.pass === null || typeof r.pass === 'boolean');
    if (r.target !== null) assert.equal(typeof r.pass, 'boolean');
  }
  const count = (scenario: string) => rows.filter((r) => r.scenario === scenario).length;
  assert.equal(count('session-run'), 8, 'p50 and p99 of four models');
  assert.equal(count('v2-infer'), 24, 'throughput and three percentiles, two models, three concurrencies');
  const withTargets = rows
    .filter((r) => r.target !== null)
    .map((r) => `${String(r.scenario)}/${String(r.metric)}`);
  for (const expected of [
    'idle-rss/RSS idle',
    'hot-swap-rss/RSS growth',
    'startup/start to ready',
    'batching/mlp-classifier-wide c=64 throughput',
    'health-under-load//v2/health/live p99, workers saturated',
    'pipeline-throughput/predictions/s at the cloud subscriber',
    'pipeline-throughput/predictions/s vs the raw relay',
    'outbox-enqueue/enqueue rate',
    'backlog-drain/20,000-message backlog drain rate',
  ]) {
    assert.ok(
      withTargets.some((t) => t.startsWith(expected)),
      `no judged target for ${expected}`,
    );
  }
  const md = readFileSync(join(out, 'latest.md'), 'utf8');
  assert.match(md, /\| scenario \| metric \| value \| unit \| baseline \| ratio \| target \| pass \|/);
  assert.match(md, /cores/);
  for (const s of scenarios) assert.ok(md.includes(`| ${s.name} |`), `${s.name} missing from latest.md`);
});
