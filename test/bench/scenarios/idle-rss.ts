import { join } from 'node:path';
import { exampleBundles } from '../../../deploy/examples/example-bundles.ts';
import { MiB, sampleMemory } from '../lib/rss.ts';
import type { Scenario } from '../lib/scenario.ts';
import { interleaved, mean } from '../lib/stable.ts';
import { DEFAULT_WORKERS, startAgent, startFixture, writeAgentConfig } from '../lib/subjects.ts';

const SETTLE_MS = 1_000;

export const idleRss: Scenario = {
  name: 'idle-rss',
  description:
    'Resident memory of the idle agent (built JS, as the service runs; SQLite outbox open, HTTP ' +
    'listening, no MQTT) with the example vibration anomaly bundle loaded, against a bare Node process ' +
    'holding one onnxruntime session of the same model. Sampled alternately (agent, baseline, …) until ' +
    'three windows agree within 10%. The agent keeps one session per inference worker thread, each ' +
    'in its own V8 isolate, so it is measured at its default worker count and with runtime.workers=1.',
  async run(ctx) {
    const bundle = await exampleBundles.vibration(join(ctx.tmpDir, 'bundles'));
    const modelPath = join(bundle.dir, bundle.manifest.model.file);
    const subjects = [
      { label: `workers=${DEFAULT_WORKERS} (default)`, workers: 0 },
      { label: 'workers=1', workers: 1 },
    ];
    const configs = await Promise.all(
      subjects.map((s) => writeAgentConfig(ctx, `agent-w${s.workers}`, [bundle.dir], { workers: s.workers })),
    );
    const [agents, bare, empty, imports] = await Promise.all([
      Promise.all(configs.map((c) => startAgent(ctx, c))),
      startFixture(ctx, 'bare-ort', [modelPath]),
      startFixture(ctx, 'idle-node', []),
      startFixture(ctx, 'agent-imports', []),
    ]);
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    const sides = [...agents, bare, empty, imports].map((child, i) => ({
      name: String(i),
      window: () => sampleMemory(child.pid, 5, 50),
    }));
    const result = await interleaved(sides, {
      metric: (m) => m.rssKiB,
      minWindows: ctx.minWindows,
      maxWindows: ctx.maxWindows,
    });
    const avg = (i: number, key: 'rssKiB' | 'pssKiB') => MiB(mean((result.last[i] ?? []).map((m) => m[key])));
    const baseRss = avg(agents.length, 'rssKiB');
    const basePss = avg(agents.length, 'pssKiB');
    const perWorker =
      DEFAULT_WORKERS > 1 ? (avg(0, 'rssKiB') - avg(1, 'rssKiB')) / (DEFAULT_WORKERS - 1) : Number.NaN;
    ctx.record({
      metric: 'RSS idle, empty Node process (context)',
      value: avg(agents.length + 1, 'rssKiB'),
      unit: 'MiB',
      baseline: baseRss,
      stable: result.stable,
      note: 'what Node alone costs, beside the bare onnxruntime process that is the baseline',
    });
    ctx.record({
      metric: "RSS idle, the agent's modules imported, nothing started (context)",
      value: avg(agents.length + 2, 'rssKiB'),
      unit: 'MiB',
      baseline: baseRss,
      stable: result.stable,
      note: "what the main thread's code costs before any worker, session or database exists",
    });
    subjects.forEach((s, i) => {
      const isDefault = s.workers === 0;
      ctx.record({
        metric: `RSS idle, ${s.label}`,
        value: avg(i, 'rssKiB'),
        unit: 'MiB',
        baseline: baseRss,
        ...(isDefault ? { target: { on: 'ratio', op: '<=', limit: 1.3 } as const } : {}),
        stable: result.stable,
        ...(isDefault && Number.isFinite(perWorker)
          ? {
              note:
                `each inference worker beyond the first adds ${perWorker.toFixed(1)} MiB ` +
                '(a V8 isolate plus its own onnxruntime session and arena)',
            }
          : {}),
      });
      ctx.record({
        metric: `PSS idle, ${s.label}`,
        value: avg(i, 'pssKiB'),
        unit: 'MiB',
        baseline: basePss,
        stable: result.stable,
      });
    });
  },
};
