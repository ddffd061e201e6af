import { join } from 'node:path';
import { exampleBundles } from '../../../deploy/examples/example-bundles.ts';
import type { BenchChild } from '../lib/child.ts';
import { MiB, readMemory, sampleMemory } from '../lib/rss.ts';
import type { Scenario } from '../lib/scenario.ts';
import { interleaved, mean } from '../lib/stable.ts';
import { DEFAULT_WORKERS, startFixture, startService, writeAgentConfig } from '../lib/subjects.ts';

const JUST_STARTED_MS = 1_000;
/** Telemetry runs this often in the measured agents, so its periodic work is part of "idle". */
const TELEMETRY_EVERY_S = 10;

/**
 * Waits until every process's RSS has settled: V8's memory reducer shrinks a heap some
 * 10–40 s after its last burst of allocation (start-up here), so RSS a second after "ready"
 * is the start-up transient, not what an idle agent holds. Settled: the last `span` samples
 * (2 s apart) within 2% of each other, after at least `minMs`; never longer than `maxMs`.
 */
async function settle(children: BenchChild[], minMs: number, maxMs: number, span = 6): Promise<number> {
  const t0 = Date.now();
  const history: number[][] = children.map(() => []);
  for (;;) {
    await new Promise((r) => setTimeout(r, 2_000));
    const now = await Promise.all(children.map((c) => readMemory(c.pid)));
    now.forEach((m, i) => {
      history[i]?.push(m.rssKiB);
    });
    const elapsed = Date.now() - t0;
    const steady = history.every((h) => {
      const last = h.slice(-span);
      return last.length === span && Math.max(...last) / Math.min(...last) <= 1.02;
    });
    if ((steady && elapsed >= minMs) || elapsed >= maxMs) return elapsed;
  }
}

export const idleRss: Scenario = {
  name: 'idle-rss',
  description:
    'Resident memory of the idle agent as systemd runs it (`outpost-agent run --config FILE`, built JS; SQLite outbox open, HTTP ' +
    `listening, telemetry sampled every ${TELEMETRY_EVERY_S} s into the outbox, no MQTT) with the example ` +
    'vibration anomaly bundle loaded, against a bare Node process holding one onnxruntime session of ' +
    'the same model. Idle means settled: every process is sampled every 2 s until its RSS holds within ' +
    "2% for 12 s (at least 45 s, at most 120 s), since V8's memory reducer shrinks the heap some " +
    '10–40 s after start-up; then sampled alternately (agent, baseline, …) until three windows agree ' +
    'within 10%. RSS one second after "ready" is reported as context. The agent keeps one session ' +
    'per inference worker thread, each in its own V8 isolate, so it is measured at its default ' +
    'worker count and with one worker more.',
  async run(ctx) {
    const bundle = await exampleBundles.vibration(join(ctx.tmpDir, 'bundles'));
    const modelPath = join(bundle.dir, bundle.manifest.model.file);
    const more = DEFAULT_WORKERS + 1;
    const subjects = [
      { label: `workers=${DEFAULT_WORKERS} (default)`, workers: 0 },
      { label: `workers=${more}`, workers: more },
    ];
    const every = `*/${TELEMETRY_EVERY_S} * * * * *`;
    const configs = await Promise.all(
      subjects.map((s) =>
        writeAgentConfig(ctx, `agent-w${s.workers}`, [bundle.dir], { workers: s.workers }, 'info', {
          telemetry: { schedules: { system: every, runtime: every, outbox: every } },
        }),
      ),
    );
    const [agents, bare, empty, imports] = await Promise.all([
      Promise.all(configs.map((c) => startService(ctx, c))),
      startFixture(ctx, 'bare-ort', [modelPath]),
      startFixture(ctx, 'idle-node', []),
      startFixture(ctx, 'agent-imports', []),
    ]);
    const all = [...agents, bare, empty, imports];
    const sides = all.map((child, i) => ({
      name: String(i),
      window: () => sampleMemory(child.pid, 5, 50),
    }));
    const measure = () =>
      interleaved(sides, {
        metric: (m) => m.rssKiB,
        minWindows: ctx.minWindows,
        maxWindows: ctx.maxWindows,
      });

    await new Promise((r) => setTimeout(r, JUST_STARTED_MS));
    const started = await measure();
    const settledMs = ctx.quick ? 0 : await settle(all, 45_000, 120_000);
    const result = ctx.quick ? started : await measure();

    const avg = (r: typeof result, i: number, key: 'rssKiB' | 'pssKiB') =>
      MiB(mean((r.last[i] ?? []).map((m) => m[key])));
    const baseRss = avg(result, agents.length, 'rssKiB');
    const basePss = avg(result, agents.length, 'pssKiB');
    ctx.record({
      metric: 'RSS idle, empty Node process (context)',
      value: avg(result, agents.length + 1, 'rssKiB'),
      unit: 'MiB',
      baseline: baseRss,
      stable: result.stable,
      note: 'what Node alone costs, beside the bare onnxruntime process that is the baseline',
    });
    ctx.record({
      metric: "RSS idle, the agent's modules imported, nothing started (context)",
      value: avg(result, agents.length + 2, 'rssKiB'),
      unit: 'MiB',
      baseline: baseRss,
      stable: result.stable,
      note:
        "what the main thread's code costs before any worker, session or database exists; the " +
        'updater (tuf-js, got), mqtt.js and the embedded broker load only when configured',
    });
    ctx.record({
      metric: `RSS 1 s after ready, workers=${DEFAULT_WORKERS} (default) (context)`,
      value: avg(started, 0, 'rssKiB'),
      unit: 'MiB',
      baseline: avg(started, agents.length, 'rssKiB'),
      stable: started.stable,
      note: 'the start-up transient, before V8 shrinks the heap',
    });
    const perWorker = (avg(result, 1, 'rssKiB') - avg(result, 0, 'rssKiB')) / (more - DEFAULT_WORKERS);
    subjects.forEach((s, i) => {
      const isDefault = s.workers === 0;
      ctx.record({
        metric: `RSS idle, ${s.label}`,
        value: avg(result, i, 'rssKiB'),
        unit: 'MiB',
        baseline: baseRss,
        ...(isDefault ? { target: { on: 'ratio', op: '<=', limit: 1.3 } as const } : {}),
        stable: result.stable,
        note: isDefault
          ? `settled after ${(settledMs / 1000).toFixed(0)} s`
          : `each inference worker more adds ${perWorker.toFixed(1)} MiB (a V8 isolate plus its own onnxruntime session)`,
      });
      ctx.record({
        metric: `PSS idle, ${s.label}`,
        value: avg(result, i, 'pssKiB'),
        unit: 'MiB',
        baseline: basePss,
        stable: result.stable,
      });
    });
  },
};
