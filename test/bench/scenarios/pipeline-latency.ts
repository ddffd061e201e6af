import { Histogram } from '../lib/histogram.ts';
import { type LatencyResult, openLoopMqtt } from '../lib/mqtt-load.ts';
import { PIPELINE_SETUP, startPipelineRig } from '../lib/pipeline-rig.ts';
import type { Scenario } from '../lib/scenario.ts';
import { interleaved } from '../lib/stable.ts';

const RATE = 1_000;

function merged(results: LatencyResult[]): { latency: Histogram; sent: number; received: number } {
  return {
    latency: Histogram.merged(results.map((r) => r.latency)),
    sent: results.reduce((a, r) => a + r.sent, 0),
    received: results.reduce((a, r) => a + r.received, 0),
  };
}

export const pipelineLatency: Scenario = {
  name: 'pipeline-latency',
  description:
    `End-to-end latency, sensor publish → prediction at the cloud subscriber, at a steady ${RATE} ` +
    `readings/s (open loop: readings go out on schedule whatever the agent does, each timed from its ` +
    `scheduled send time; the prediction is matched to its reading by the value it carries). ${PIPELINE_SETUP} ` +
    'Agent and relay windows alternate until the p50s of the last three agree within 20%; percentiles are ' +
    'read from the last three windows of each side together.',
  async run(ctx) {
    const rig = await startPipelineRig(ctx);
    const windowMs = ctx.quick ? 500 : 5_000;
    const sides = [
      { name: 'agent', path: rig.agentPath, readingOf: rig.agentReading },
      { name: 'relay', path: rig.relayPath, readingOf: rig.relayReading },
    ];
    const result = await interleaved(
      sides.map((s) => ({ name: s.name, window: () => openLoopMqtt(s.path, RATE, windowMs, s.readingOf) })),
      {
        metric: (r) => r.latency.quantile(0.5),
        tolerance: 0.2,
        minWindows: ctx.minWindows,
        maxWindows: ctx.quick ? ctx.maxWindows : 6,
        warmup: async (name) => {
          const side = sides.find((s) => s.name === name);
          if (side !== undefined)
            await openLoopMqtt(side.path, RATE, ctx.quick ? 200 : 2_000, side.readingOf);
        },
      },
    );
    const agent = merged(result.last[0] ?? []);
    const relay = merged(result.last[1] ?? []);
    ctx.log(
      `agent p50 ${(agent.latency.quantile(0.5) / 1000).toFixed(2)} ms p99 ${(agent.latency.quantile(0.99) / 1000).toFixed(2)} ms; ` +
        `relay p50 ${(relay.latency.quantile(0.5) / 1000).toFixed(2)} ms p99 ${(relay.latency.quantile(0.99) / 1000).toFixed(2)} ms`,
    );
    const missing = agent.sent - agent.received + (relay.sent - relay.received);
    const note =
      `${agent.received} predictions over ${result.windows} windows of ${windowMs} ms per side` +
      (missing > 0
        ? `; without a result within 5 s: agent ${agent.sent - agent.received}, relay ${relay.sent - relay.received}`
        : '');
    ctx.record({
      metric: `end-to-end p50 at ${RATE} readings/s`,
      value: agent.latency.quantile(0.5) / 1000,
      unit: 'ms',
      baseline: relay.latency.quantile(0.5) / 1000,
      stable: result.stable,
      note,
    });
    ctx.record({
      metric: `end-to-end p99 at ${RATE} readings/s`,
      value: agent.latency.quantile(0.99) / 1000,
      unit: 'ms',
      baseline: relay.latency.quantile(0.99) / 1000,
      stable: result.stable,
    });
  },
};
