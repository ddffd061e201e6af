import { join } from 'node:path';
import { exampleBundles } from '../../../deploy/examples/example-bundles.ts';
import { BenchChild } from '../lib/child.ts';
import type { Scenario } from '../lib/scenario.ts';
import { interleaved, mean } from '../lib/stable.ts';
import { agentReadyLine, fixture, writeAgentConfig } from '../lib/subjects.ts';

/** Starts a process, takes the time to its ready line, stops it: one window. */
async function timeStart(script: string, args: string[], ready?: (line: string) => boolean): Promise<number> {
  const child = await BenchChild.start(script, args, ready === undefined ? {} : { ready });
  const ms = child.readyMs;
  await child.stop();
  return ms;
}

export const startup: Scenario = {
  name: 'startup',
  description:
    'Process start to ready: `outpost-agent run --config FILE` (the built CLI, as systemd starts it) with ' +
    'the vibration anomaly bundle already on disk, timed from spawn to its "agent ready" log line (bundle ' +
    'read and digest-checked, model loaded in every worker, SQLite outbox open, HTTP listening). Baseline: ' +
    'a bare Node process that creates one onnxruntime session of the same model. Starts alternate.',
  async run(ctx) {
    const bundle = await exampleBundles.vibration(join(ctx.tmpDir, 'bundles'));
    const config = await writeAgentConfig(ctx, 'agent', [bundle.dir], {}, 'info');
    const cli = join(ctx.buildDir, 'agent', 'cli.js');
    const modelPath = join(bundle.dir, bundle.manifest.model.file);
    // The first start creates the data dir and the outbox database: a device has them after its first boot.
    await timeStart(cli, ['run', '--config', config], agentReadyLine);
    const result = await interleaved(
      [
        { name: 'agent', window: () => timeStart(cli, ['run', '--config', config], agentReadyLine) },
        { name: 'bare', window: () => timeStart(fixture(ctx, 'bare-ort'), [modelPath]) },
      ],
      { metric: (ms) => ms, minWindows: ctx.minWindows, maxWindows: ctx.maxWindows },
    );
    const agentMs = mean(result.last[0] ?? []);
    const bareMs = mean(result.last[1] ?? []);
    ctx.log(`agent ${agentMs.toFixed(0)} ms, bare ${bareMs.toFixed(0)} ms over ${result.windows} windows`);
    ctx.record({
      metric: 'start to ready, cached bundle',
      value: agentMs,
      unit: 'ms',
      baseline: bareMs,
      target: { on: 'value', op: '<=', limit: 1500 },
      stable: result.stable,
    });
  },
};
