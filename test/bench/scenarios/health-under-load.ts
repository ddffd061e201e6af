import { get } from 'node:http';
import { exampleBundles } from '../../../deploy/examples/example-bundles.ts';
import {
  type ExampleModel,
  simulateVibration,
  WIDE_MLP_HIDDEN,
  wideMlp,
  windowsToFeeds,
} from '../../../shared/onnx/models.ts';
import type { BenchChild } from '../lib/child.ts';
import { Histogram, type HistogramSnapshot } from '../lib/histogram.ts';
import { assertSameAnswers, mlpBundle, startBareServer } from '../lib/http-pair.ts';
import { closedLoop, type LoadResult } from '../lib/load.ts';
import { cpuSeconds } from '../lib/rss.ts';
import type { BenchContext, Scenario } from '../lib/scenario.ts';
import { interleaved, mean } from '../lib/stable.ts';
import {
  DEFAULT_WORKERS,
  portOf,
  startAgent,
  startFixture,
  v2Body,
  writeAgentConfig,
} from '../lib/subjects.ts';

const LOAD_CONCURRENCY = 32;
/** Windows per vibration request in the front-end load. */
const VIBRATION_BATCH = 4;

interface Load {
  path: string;
  body: Buffer;
  model: string;
}

interface Window {
  health: Histogram;
  healthErrors: number;
  infer: LoadResult;
  /** CPU cores the process under test used during the window. */
  cores: number;
  /** Share of the window the inference workers spent in session.run (the agent's own metric), or null. */
  workersBusy: number | null;
}

/** The agent's cumulative compute time for one model, from its Prometheus metrics. */
function computeSeconds(port: number, model: string): Promise<number> {
  return new Promise((resolve, reject) => {
    get({ host: '127.0.0.1', port, path: '/metrics' }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        text += chunk;
      });
      res.on('end', () => {
        let us = 0;
        for (const line of text.split('\n')) {
          if (line.startsWith('nv_inference_compute_infer_duration_us{') && line.includes(`model="${model}"`))
            us += Number(line.slice(line.lastIndexOf(' ') + 1));
        }
        resolve(us / 1e6);
      });
    }).on('error', reject);
  });
}

async function window(
  child: BenchChild,
  prober: BenchChild,
  load: Load,
  ms: number,
  isAgent: boolean,
): Promise<Window> {
  const port = portOf(child);
  const cpu0 = await cpuSeconds(child.pid);
  const busy0 = isAgent ? await computeSeconds(port, load.model) : 0;
  const t0 = performance.now();
  const [infer, probe] = await Promise.all([
    closedLoop({ port, path: load.path, method: 'POST', body: load.body }, LOAD_CONCURRENCY, ms),
    prober.command('probe', { port, path: '/v2/health/live', ms }),
  ]);
  const seconds = (performance.now() - t0) / 1000;
  const cores = (await cpuSeconds(child.pid)) - cpu0;
  const busy = isAgent
    ? ((await computeSeconds(port, load.model)) - busy0) / seconds / DEFAULT_WORKERS
    : null;
  return {
    health: Histogram.from(probe.latency as HistogramSnapshot),
    healthErrors: Number(probe.errors),
    infer,
    cores: cores / seconds,
    workersBusy: busy,
  };
}

/** Health latency under one load, agent against the bare server, recorded as p99 and p50 rows. */
async function measure(
  ctx: BenchContext,
  load: Load,
  agent: BenchChild,
  bare: BenchChild,
  prober: BenchChild,
  label: string,
  judged: boolean,
): Promise<void> {
  await assertSameAnswers(portOf(agent), portOf(bare), load.path, load.body);
  const result = await interleaved(
    [
      { name: 'agent', window: () => window(agent, prober, load, ctx.windowMs, true) },
      { name: 'bare', window: () => window(bare, prober, load, ctx.windowMs, false) },
    ],
    {
      metric: (w) => w.infer.throughput,
      minWindows: ctx.minWindows,
      maxWindows: ctx.maxWindows,
      warmup: async (side) => {
        await window(side === 'agent' ? agent : bare, prober, load, Math.min(1_000, ctx.windowMs), false);
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
  const busy = mean(pick(0).map((w) => w.workersBusy ?? 0));
  const errors = pick(0).reduce((n, w) => n + w.infer.errors + w.healthErrors, 0);
  ctx.record({
    metric: `/v2/health/live p99, ${label}`,
    value: a.p99,
    unit: 'ms',
    baseline: b.p99,
    ...(judged ? { target: { on: 'value', op: '<', limit: 5 } as const } : {}),
    stable: result.stable,
    note:
      `meanwhile inference ran at ${agentInfer.toFixed(0)} req/s (baseline ${bareInfer.toFixed(0)}), the agent's ` +
      `${DEFAULT_WORKERS} worker(s) spent ${(busy * 100).toFixed(0)}% of the time in session.run, and the agent ` +
      `used ${mean(pick(0).map((w) => w.cores)).toFixed(2)} CPU cores (baseline ` +
      `${mean(pick(1).map((w) => w.cores)).toFixed(2)})${errors > 0 ? `; ${errors} agent requests failed` : ''}`,
  });
  ctx.record({
    metric: `/v2/health/live p50, ${label}`,
    value: a.p50,
    unit: 'ms',
    baseline: b.p50,
    stable: result.stable,
  });
}

function loadOf(model: ExampleModel, body: Buffer): Load {
  return { path: `/v2/models/${model.name}/infer`, body, model: model.name };
}

export const healthUnderLoad: Scenario = {
  name: 'health-under-load',
  description:
    '`GET /v2/health/live` latency (one closed-loop client in its own process, so the load ' +
    "generator's event-loop lag is not counted) while " +
    `${LOAD_CONCURRENCY} closed-loop clients infer. Judged: the workers saturated, with batch-1 requests ` +
    `for the wide MLP (8→${WIDE_MLP_HIDDEN}→${WIDE_MLP_HIDDEN}→3, about 0.3 ms a run); the note shows the share ` +
    'of time the workers spent in session.run. Context: the HTTP front end saturated instead, with vibration ' +
    `requests of ${VIBRATION_BATCH} windows that cost the main thread more than the workers, so a health check ` +
    'queues behind inference requests on the event loop. Baseline: the bare node:http + onnxruntime server ' +
    'under the same load. The load generator shares the machine, so the CPU the agent used is shown as well.',
  async run(ctx) {
    const wide = wideMlp();
    const wideBundle = await mlpBundle(ctx, undefined, 'health-wide', wide);
    const vibration = await exampleBundles.vibration(`${ctx.tmpDir}/bundles`);
    const agent = await startAgent(
      ctx,
      await writeAgentConfig(ctx, 'agent', [wideBundle.dir, vibration.dir]),
    );
    const bare = await startBareServer(ctx, [wideBundle, vibration]);
    const prober = await startFixture(ctx, 'prober', []);
    await measure(ctx, loadOf(wide, v2Body(wide.sample(1))), agent, bare, prober, 'workers saturated', true);
    const windows = Array.from({ length: VIBRATION_BATCH }, (_, i) =>
      simulateVibration({ seed: i, fault: i % 2 === 1 }),
    );
    const vibrationLoad: Load = {
      path: '/v2/models/vibration-anomaly/infer',
      body: v2Body(windowsToFeeds(windows)),
      model: 'vibration-anomaly',
    };
    await measure(ctx, vibrationLoad, agent, bare, prober, 'HTTP front end saturated', false);
  },
};
