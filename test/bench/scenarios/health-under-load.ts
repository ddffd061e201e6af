import { exampleBundles } from '../../../deploy/examples/example-bundles.ts';
import { simulateVibration, windowsToFeeds } from '../../../shared/onnx/models.ts';
import type { BenchChild } from '../lib/child.ts';
import { Histogram, type HistogramSnapshot } from '../lib/histogram.ts';
import { assertSameAnswers, startBareServer } from '../lib/http-pair.ts';
import { closedLoop, type LoadResult } from '../lib/load.ts';
import { cpuSeconds } from '../lib/rss.ts';
import type { Scenario } from '../lib/scenario.ts';
import { interleaved, mean } from '../lib/stable.ts';
import { portOf, startAgent, startFixture, v2Body, writeAgentConfig } from '../lib/subjects.ts';

const LOAD_CONCURRENCY = 32;
/** The vibration model: the heavier of the two per request, so the workers have the most to do. */
const BATCH = 4;

interface Window {
  health: Histogram;
  healthErrors: number;
  infer: LoadResult;
  /** CPU cores the process under test used during the window. */
  cores: number;
}

async function window(child: BenchChild, prober: BenchChild, body: Buffer, ms: number): Promise<Window> {
  const port = portOf(child);
  const cpu0 = await cpuSeconds(child.pid);
  const t0 = performance.now();
  const [infer, probe] = await Promise.all([
    closedLoop(
      { port, path: '/v2/models/vibration-anomaly/infer', method: 'POST', body },
      LOAD_CONCURRENCY,
      ms,
    ),
    prober.command('probe', { port, path: '/v2/health/live', ms }),
  ]);
  const cores = (await cpuSeconds(child.pid)) - cpu0;
  return {
    health: Histogram.from(probe.latency as HistogramSnapshot),
    healthErrors: Number(probe.errors),
    infer,
    cores: cores / ((performance.now() - t0) / 1000),
  };
}

export const healthUnderLoad: Scenario = {
  name: 'health-under-load',
  description:
    '`GET /v2/health/live` latency (one closed-loop client in its own process, so the load ' +
    "generator's event-loop lag is not counted) while " +
    `${LOAD_CONCURRENCY} closed-loop clients send vibration anomaly inferences of ${BATCH} windows each: the ` +
    'main event loop must stay responsive while inference keeps the workers busy. Baseline: the bare ' +
    'node:http + onnxruntime server under the same load. The load generator shares the machine, so the ' +
    'CPU the agent used is shown as well.',
  async run(ctx) {
    const bundle = await exampleBundles.vibration(`${ctx.tmpDir}/bundles`);
    const agent = await startAgent(ctx, await writeAgentConfig(ctx, 'agent', [bundle.dir]));
    const bare = await startBareServer(ctx, [bundle]);
    const prober = await startFixture(ctx, 'prober', []);
    const body = v2Body(
      windowsToFeeds(
        Array.from({ length: BATCH }, (_, i) => simulateVibration({ seed: i, fault: i % 2 === 1 })),
      ),
    );
    await assertSameAnswers(portOf(agent), portOf(bare), '/v2/models/vibration-anomaly/infer', body);
    const result = await interleaved(
      [
        { name: 'agent', window: () => window(agent, prober, body, ctx.windowMs) },
        { name: 'bare', window: () => window(bare, prober, body, ctx.windowMs) },
      ],
      {
        metric: (w) => w.infer.throughput,
        minWindows: ctx.minWindows,
        maxWindows: ctx.maxWindows,
        warmup: async (side) => {
          await window(side === 'agent' ? agent : bare, prober, body, Math.min(1_000, ctx.windowMs));
        },
      },
    );
    const pick = (i: number) => result.last[i] ?? [];
    const healthOf = (ws: Window[]) => {
      const merged = Histogram.merged(ws.map((w) => w.health));
      return { p50: merged.quantile(0.5) / 1000, p99: merged.quantile(0.99) / 1000 };
    };
    const a = healthOf(pick(0));
    const b = healthOf(pick(1));
    const agentInfer = mean(pick(0).map((w) => w.infer.throughput));
    const bareInfer = mean(pick(1).map((w) => w.infer.throughput));
    const errors = pick(0).reduce((n, w) => n + w.infer.errors + w.healthErrors, 0);
    ctx.record({
      metric: '/v2/health/live p99 under inference load',
      value: a.p99,
      unit: 'ms',
      baseline: b.p99,
      target: { on: 'value', op: '<', limit: 5 },
      stable: result.stable,
      note:
        `meanwhile inference ran at ${agentInfer.toFixed(0)} req/s (baseline ${bareInfer.toFixed(0)}) and the agent ` +
        `used ${mean(pick(0).map((w) => w.cores)).toFixed(2)} CPU cores (baseline ` +
        `${mean(pick(1).map((w) => w.cores)).toFixed(2)})${errors > 0 ? `; ${errors} agent requests failed` : ''}`,
    });
    ctx.record({
      metric: '/v2/health/live p50 under inference load',
      value: a.p50,
      unit: 'ms',
      baseline: b.p50,
      stable: result.stable,
    });
  },
};
