import { join } from 'node:path';
import { type ExampleBundle, exampleBundles } from '../../../deploy/examples/example-bundles.ts';
import { mlpClassifier } from '../../../shared/onnx/models.ts';
import type { BenchChild } from '../lib/child.ts';
import { sendSequentially } from '../lib/load.ts';
import { type Memory, MiB, sampleMemory } from '../lib/rss.ts';
import type { Scenario } from '../lib/scenario.ts';
import { portOf, startAgent, startFixture, v2Body, writeAgentConfig } from '../lib/subjects.ts';

const SETTLE_MS = 300;

/** GC on the main thread, let native frees land, then read: growth that remains is kept memory, not garbage. */
async function settled(child: BenchChild): Promise<Memory> {
  await child.command('gc');
  await new Promise((r) => setTimeout(r, SETTLE_MS));
  return sampleMemory(child.pid, 5, 40);
}

export const hotSwapRss: Scenario = {
  name: 'hot-swap-rss',
  description:
    'RSS growth over hot swaps of the MLP model: the agent (child process, default workers, ' +
    'keepVersions 1) loads v(n+1) through its ModelRegistry, which then unloads v(n); after each swap ' +
    '200 inferences (50 in a quick run) run over HTTP, the main thread collects garbage and RSS is read. Growth ' +
    'is measured from after the first swap (the first swap settles the arenas) to after the last. The ' +
    "baseline is a bare onnxruntime process doing the same create-new/run/release-old cycle: onnxruntime's " +
    'own cost of a swap. Swaps alternate between the two processes (A, B, A, B).',
  async run(ctx) {
    const swaps = ctx.quick ? 3 : 10;
    const runsPerSwap = ctx.quick ? 50 : 200;
    const dir = join(ctx.tmpDir, 'bundles');
    const bundles: ExampleBundle[] = [];
    for (let n = 1; n <= swaps + 1; n++) {
      const make = n % 2 === 1 ? exampleBundles.mlp : exampleBundles.mlpV2;
      bundles.push(await make(dir, `${n}.0.0`, n));
    }
    const first = bundles[0] as ExampleBundle;
    const config = await writeAgentConfig(ctx, 'agent', [first.dir], { keepVersions: 1 });
    const agent = await startAgent(ctx, config, ['--expose-gc']);
    const bare = await startFixture(
      ctx,
      'bare-ort',
      [join(first.dir, first.manifest.model.file)],
      ['--expose-gc'],
    );
    const body = v2Body(mlpClassifier().sample(1));
    const target = {
      port: portOf(agent),
      path: '/v2/models/mlp-classifier/infer',
      method: 'POST' as const,
      body,
    };
    const infer = () => sendSequentially(target, runsPerSwap);
    await infer();
    await bare.command('run', { runs: runsPerSwap });
    const agentRss: number[] = [MiB((await settled(agent)).rssKiB)];
    const bareRss: number[] = [MiB((await settled(bare)).rssKiB)];
    for (let n = 1; n <= swaps; n++) {
      const next = bundles[n] as ExampleBundle;
      const reply = await agent.command('load', { dir: next.dir });
      const serving = (reply.models as Array<{ version: string; state: string }>).filter(
        (m) => m.state === 'READY',
      );
      if (serving.length !== 1 || serving[0]?.version !== next.manifest.version) {
        throw new Error(
          `after swap ${n} the agent serves ${JSON.stringify(serving)}, not ${next.manifest.version} alone`,
        );
      }
      await infer();
      agentRss.push(MiB((await settled(agent)).rssKiB));
      await bare.command('swap', { path: join(next.dir, next.manifest.model.file), runs: runsPerSwap });
      bareRss.push(MiB((await settled(bare)).rssKiB));
    }
    ctx.log(`agent RSS MiB: ${agentRss.map((v) => v.toFixed(1)).join(' ')}`);
    ctx.log(`bare RSS MiB: ${bareRss.map((v) => v.toFixed(1)).join(' ')}`);
    const growth = (series: number[]) => {
      const from = series[1] as number;
      const to = series[series.length - 1] as number;
      return ((to - from) / from) * 100;
    };
    const agentGrowth = growth(agentRss);
    const bareGrowth = growth(bareRss);
    ctx.record({
      metric: `RSS growth, swap 1 → swap ${swaps}`,
      value: agentGrowth,
      unit: '%',
      baseline: bareGrowth,
      target: { on: 'value', op: '<', limit: 5 },
      note:
        `agent RSS after load and each swap (MiB): ${agentRss.map((v) => v.toFixed(1)).join(', ')}; ` +
        `baseline: ${bareRss.map((v) => v.toFixed(1)).join(', ')}`,
    });
    ctx.record({
      metric: `RSS after swap ${swaps}`,
      value: agentRss[agentRss.length - 1] as number,
      unit: 'MiB',
      baseline: bareRss[bareRss.length - 1] as number,
    });
  },
};
