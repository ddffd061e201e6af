import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type ExampleModel, mlpClassifier, WIDE_MLP_HIDDEN, wideMlp } from '../../../shared/onnx/models.ts';
import { mlpBundle } from '../lib/http-pair.ts';
import { closedLoop, combine, type LoadTarget } from '../lib/load.ts';
import type { BenchContext, Scenario } from '../lib/scenario.ts';
import { interleaved } from '../lib/stable.ts';
import { portOf, startAgent, v2Body, writeAgentConfig } from '../lib/subjects.ts';

const CONCURRENCY = 64;
const BATCHING = { maxBatchSize: 32, maxQueueDelayMs: 2 };

/** Whether the built agent reads the manifest's batching settings at all: said in the note, never used to fake a figure. */
async function agentReadsBatching(ctx: BenchContext): Promise<boolean> {
  const files = await readdir(join(ctx.buildDir, 'agent'), { recursive: true });
  for (const f of files) {
    if (!f.endsWith('.js')) continue;
    if ((await readFile(join(ctx.buildDir, 'agent', f), 'utf8')).includes('maxQueueDelayMs')) return true;
  }
  return false;
}

interface Compared {
  on: ReturnType<typeof combine>;
  off: ReturnType<typeof combine>;
  stable: boolean;
  notes: string[];
}

/** One model at CONCURRENCY: an agent with the manifest's batching set against one without it. */
async function compare(ctx: BenchContext, model: ExampleModel, tag: string): Promise<Compared> {
  const on = await mlpBundle(ctx, BATCHING, `${tag}-on`, model);
  const off = await mlpBundle(ctx, undefined, `${tag}-off`, model);
  const agentOn = await startAgent(ctx, await writeAgentConfig(ctx, `${tag}-agent-on`, [on.dir]));
  const agentOff = await startAgent(ctx, await writeAgentConfig(ctx, `${tag}-agent-off`, [off.dir]));
  const body = v2Body(model.sample(1));
  const target = (port: number): LoadTarget => ({
    port,
    path: `/v2/models/${model.name}/infer`,
    method: 'POST',
    body,
  });
  try {
    const result = await interleaved(
      [
        { name: 'on', window: () => closedLoop(target(portOf(agentOn)), CONCURRENCY, ctx.windowMs) },
        { name: 'off', window: () => closedLoop(target(portOf(agentOff)), CONCURRENCY, ctx.windowMs) },
      ],
      {
        metric: (r) => r.throughput,
        minWindows: ctx.minWindows,
        maxWindows: ctx.maxWindows,
        warmup: async (side) => {
          const port = portOf(side === 'on' ? agentOn : agentOff);
          await closedLoop(target(port), CONCURRENCY, Math.min(1_000, ctx.windowMs));
        },
      },
    );
    const withBatching = combine(result.last[0] ?? []);
    const without = combine(result.last[1] ?? []);
    const notes: string[] = [];
    if (withBatching.errors + without.errors > 0) {
      notes.push(
        `errors: on ${JSON.stringify(withBatching.statuses)}, off ${JSON.stringify(without.statuses)}`,
      );
    }
    return { on: withBatching, off: without, stable: result.stable, notes };
  } finally {
    // Two agents at a time, not four: the second pair should not share the CPU with idle ones.
    await Promise.all([agentOn.stop(), agentOff.stop()]);
  }
}

export const batching: Scenario = {
  name: 'batching',
  description:
    `Dynamic batching at concurrency ${CONCURRENCY} (closed loop, batch-1 V2 JSON requests): an agent whose ` +
    `bundle manifest sets batching ${JSON.stringify(BATCHING)}, against an agent whose manifest has no ` +
    'batching field (batching off); default worker count, windows alternate until three agree within 10%. ' +
    `Two MLPs with the same signature and verdicts: the wide one (8→${WIDE_MLP_HIDDEN}→${WIDE_MLP_HIDDEN}→3, ` +
    '17 MB of weights; a batch-1 run streams all of them from memory, which a batch shares) carries the ' +
    'target; the 8→16→3 example runs in about 20 µs, less than parsing its HTTP request, so batching can ' +
    'only save the per-request hop to the worker there, and its row is context.',
  async run(ctx) {
    const reads = await agentReadsBatching(ctx);
    const unread = reads
      ? []
      : [
          "this build's agent/ code never reads the manifest's batching field: batching is not implemented in it",
        ];
    const rows: [ExampleModel, string, boolean][] = [
      [wideMlp(), 'wide', true],
      [mlpClassifier(), 'example', false],
    ];
    for (const [model, tag, judged] of rows) {
      const r = await compare(ctx, model, tag);
      const notes = [...unread, ...r.notes];
      ctx.record({
        metric: `${model.name} c=${CONCURRENCY} throughput, batching on vs off`,
        value: r.on.throughput,
        unit: 'req/s',
        baseline: r.off.throughput,
        ...(judged ? { target: { on: 'ratio', op: '>=', limit: 3 } as const } : {}),
        stable: r.stable,
        ...(notes.length > 0 ? { note: notes.join('; ') } : {}),
      });
      ctx.record({
        metric: `${model.name} c=${CONCURRENCY} p99, batching on vs off`,
        value: r.on.latency.quantile(0.99) / 1000,
        unit: 'ms',
        baseline: r.off.latency.quantile(0.99) / 1000,
        stable: r.stable,
      });
    }
  },
};
