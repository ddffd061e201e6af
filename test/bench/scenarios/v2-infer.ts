import { exampleBundles } from '../../../deploy/examples/example-bundles.ts';
import { mlpClassifier, simulateVibration, windowsToFeeds } from '../../../shared/onnx/models.ts';
import { assertSameAnswers, mlpBundle, recordLoad, startBareServer } from '../lib/http-pair.ts';
import { closedLoop, type LoadTarget } from '../lib/load.ts';
import type { Scenario } from '../lib/scenario.ts';
import { interleaved } from '../lib/stable.ts';
import { DEFAULT_WORKERS, portOf, startAgent, v2Body, writeAgentConfig } from '../lib/subjects.ts';

export const v2Infer: Scenario = {
  name: 'v2-infer',
  description:
    'Open Inference Protocol JSON inference over HTTP (`POST /v2/models/{m}/infer`, batch 1) against a ' +
    `bare node:http + onnxruntime server written in the bench, both as child processes with ${DEFAULT_WORKERS} ` +
    'inference worker threads (the baseline runs sessions in workers too: on the main thread `session.run` ' +
    'would block every other request and use one core, a design the agent must not be flattered by). ' +
    'Closed-loop clients at concurrency 1, 8 and 32 over keep-alive connections, for the MLP (batching off ' +
    'in its manifest, so both sides do one run per request) and the vibration anomaly model; windows ' +
    'alternate agent, baseline until three agree within 10% on throughput; at least six of each run, and ' +
    'throughput and percentiles are read from the last six of each side together (a p99 from three ' +
    '2-second windows moved by a third when the host stalled one of them).',
  async run(ctx) {
    const mlp = await mlpBundle(ctx, undefined, 'plain');
    const vibration = await exampleBundles.vibration(`${ctx.tmpDir}/bundles-vibration`);
    const config = await writeAgentConfig(ctx, 'agent', [mlp.dir, vibration.dir]);
    const agent = await startAgent(ctx, config);
    const bare = await startBareServer(ctx, [mlp, vibration]);
    const cases = [
      { model: 'mlp-classifier', body: v2Body(mlpClassifier().sample(1)) },
      { model: 'vibration-anomaly', body: v2Body(windowsToFeeds([simulateVibration({ seed: 3 })])) },
    ];
    for (const { model, body } of cases) {
      const path = `/v2/models/${model}/infer`;
      const target = (port: number): LoadTarget => ({ port, path, method: 'POST', body });
      await assertSameAnswers(portOf(agent), portOf(bare), path, body);
      for (const concurrency of [1, 8, 32]) {
        const result = await interleaved(
          [
            { name: 'agent', window: () => closedLoop(target(portOf(agent)), concurrency, ctx.windowMs) },
            { name: 'bare', window: () => closedLoop(target(portOf(bare)), concurrency, ctx.windowMs) },
          ],
          {
            metric: (r) => r.throughput,
            minWindows: ctx.minWindows,
            maxWindows: ctx.maxWindows,
            pool: ctx.quick ? 3 : 6,
            warmup: async (side) => {
              const port = side === 'agent' ? portOf(agent) : portOf(bare);
              await closedLoop(target(port), concurrency, Math.min(1_000, ctx.windowMs));
            },
          },
        );
        const { subject, baseline } = recordLoad(ctx, `${model} c=${concurrency}`, result, {
          throughput: 0.8,
          p99: 1.5,
        });
        ctx.log(
          `${model} c=${concurrency}: agent ${subject.throughput.toFixed(0)} req/s, ` +
            `bare ${baseline.throughput.toFixed(0)} req/s (${result.windows} windows)`,
        );
      }
    }
  },
};
