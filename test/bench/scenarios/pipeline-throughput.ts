import { closedLoopMqtt, type ThroughputResult } from '../lib/mqtt-load.ts';
import { PIPELINE_SETUP, startPipelineRig } from '../lib/pipeline-rig.ts';
import type { Scenario } from '../lib/scenario.ts';
import { interleaved, mean } from '../lib/stable.ts';

/**
 * Readings in the pipe at once: enough to keep batching, the outbox and the uplink window busy,
 * and below runtime.queueLimit (1024), beyond which the pipeline's inferences are refused.
 */
const OUTSTANDING = 1_000;

function summarize(results: ThroughputResult[]): { throughput: number; lost: number } {
  return {
    throughput: mean(results.map((r) => r.throughput)),
    lost: results.reduce((a, r) => a + r.lost, 0),
  };
}

export const pipelineThroughput: Scenario = {
  name: 'pipeline-throughput',
  description:
    `Sensor → prediction → uplink throughput: ${PIPELINE_SETUP} Closed loop: ${OUTSTANDING} readings ` +
    '(250 in a quick run) outstanding, each result arriving at the cloud subscriber releases the next reading; the figure is ' +
    'results/s at the cloud subscriber. Agent and relay windows alternate until three agree within 10%.',
  async run(ctx) {
    const rigStarted = performance.now();
    const rig = await startPipelineRig(ctx);
    ctx.log(`broker, agent and relay up in ${((performance.now() - rigStarted) / 1000).toFixed(1)} s`);
    const windowMs = ctx.quick ? 400 : 3_000;
    // A quick run keeps fewer readings in the pipe: each window waits for its outstanding results.
    const outstanding = ctx.quick ? 250 : OUTSTANDING;
    const sides = [
      { name: 'agent', path: rig.agentPath },
      { name: 'relay', path: rig.relayPath },
    ];
    const result = await interleaved(
      sides.map((s) => ({ name: s.name, window: () => closedLoopMqtt(s.path, outstanding, windowMs) })),
      {
        metric: (r) => r.throughput,
        minWindows: ctx.minWindows,
        maxWindows: ctx.maxWindows,
        warmup: async (name) => {
          const side = sides.find((s) => s.name === name);
          if (side !== undefined) await closedLoopMqtt(side.path, outstanding, ctx.quick ? 200 : 2_000);
        },
      },
    );
    const agent = summarize(result.last[0] ?? []);
    const relay = summarize(result.last[1] ?? []);
    const status = (await rig.agent.command('status')).status as {
      outbox: { enqueued: number; sent: number; rows: number };
      pipelines: Record<string, { errors: number; droppedBuffer: number }>;
    };
    ctx.log(
      `agent ${agent.throughput.toFixed(0)}/s, relay ${relay.throughput.toFixed(0)}/s, ` +
        `windows ${result.windows}, outbox ${JSON.stringify(status.outbox)}, pipelines ${JSON.stringify(status.pipelines)}`,
    );
    const failed = Object.values(status.pipelines).reduce((a, p) => a + p.errors + p.droppedBuffer, 0);
    const lostNote =
      (failed > 0 ? `; windows the pipeline failed or dropped: ${failed}` : '') +
      (agent.lost + relay.lost > 0
        ? `; readings without a result within 5 s of a window's end: agent ${agent.lost}, relay ${relay.lost}`
        : '');
    const note = `${outstanding} readings outstanding, windows of ${windowMs} ms, ${result.windows} per side; outbox after the run: enqueued ${status.outbox.enqueued}, sent ${status.outbox.sent}, rows ${status.outbox.rows}${lostNote}`;
    ctx.record({
      metric: 'predictions/s at the cloud subscriber',
      value: agent.throughput,
      unit: 'msg/s',
      baseline: relay.throughput,
      target: { on: 'value', op: '>=', limit: 5_000 },
      stable: result.stable,
      note,
    });
    ctx.record({
      metric: 'predictions/s vs the raw relay',
      value: agent.throughput,
      unit: 'msg/s',
      baseline: relay.throughput,
      target: { on: 'ratio', op: '>=', limit: 0.5 },
      stable: result.stable,
    });
  },
};
