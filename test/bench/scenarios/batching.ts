import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { mlpClassifier } from '../../../shared/onnx/models.ts';
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

export const batching: Scenario = {
  name: 'batching',
  description:
    `Dynamic batching: the MLP at concurrency ${CONCURRENCY} (closed loop, batch-1 V2 JSON requests) in an ` +
    `agent whose bundle manifest sets batching ${JSON.stringify(BATCHING)}, against an agent whose manifest ` +
    'has no batching field (batching off). Both agents are child processes with the default worker count; ' +
    'windows alternate until three agree within 10%.',
  async run(ctx) {
    const on = await mlpBundle(ctx, BATCHING, 'on');
    const off = await mlpBundle(ctx, undefined, 'off');
    const agentOn = await startAgent(ctx, await writeAgentConfig(ctx, 'agent-on', [on.dir]));
    const agentOff = await startAgent(ctx, await writeAgentConfig(ctx, 'agent-off', [off.dir]));
    const body = v2Body(mlpClassifier().sample(1));
    const target = (port: number): LoadTarget => ({
      port,
      path: '/v2/models/mlp-classifier/infer',
      method: 'POST',
      body,
    });
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
    const reads = await agentReadsBatching(ctx);
    const notes: string[] = [];
    if (!reads)
      notes.push(
        "this build's agent/ code never reads the manifest's batching field: batching is not implemented in it",
      );
    if (withBatching.errors + without.errors > 0) {
      notes.push(
        `errors: on ${JSON.stringify(withBatching.statuses)}, off ${JSON.stringify(without.statuses)}`,
      );
    }
    ctx.record({
      metric: `mlp-classifier c=${CONCURRENCY} throughput, batching on vs off`,
      value: withBatching.throughput,
      unit: 'req/s',
      baseline: without.throughput,
      target: { on: 'ratio', op: '>=', limit: 3 },
      stable: result.stable,
      ...(notes.length > 0 ? { note: notes.join('; ') } : {}),
    });
    ctx.record({
      metric: `mlp-classifier c=${CONCURRENCY} p99, batching on vs off`,
      value: withBatching.latency.quantile(0.99) / 1000,
      unit: 'ms',
      baseline: without.latency.quantile(0.99) / 1000,
      stable: result.stable,
    });
  },
};
