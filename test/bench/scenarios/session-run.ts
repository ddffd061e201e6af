import * as ort from 'onnxruntime-node';
import {
  type ExampleModel,
  linearRegression,
  logisticRegression,
  mlpClassifier,
  vibrationAnomaly,
} from '../../../shared/onnx/models.ts';
import { AGENT_DEFAULT_OPTIONS } from '../fixtures/ort-session.ts';
import { Histogram } from '../lib/histogram.ts';
import type { Scenario } from '../lib/scenario.ts';
import { interleaved } from '../lib/stable.ts';

function feedsOf(model: ExampleModel): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = {};
  for (const [name, t] of Object.entries(model.sample(1))) {
    feeds[name] = new ort.Tensor('float32', t.data as Float32Array, t.dims);
  }
  return feeds;
}

/** Times `session.run` one call at a time for `ms`, into a histogram of µs. */
async function window(session: ort.InferenceSession, feeds: Record<string, ort.Tensor>, ms: number) {
  const h = new Histogram();
  const end = performance.now() + ms;
  while (performance.now() < end) {
    const t0 = performance.now();
    const out = await session.run(feeds);
    h.record((performance.now() - t0) * 1000);
    for (const t of Object.values(out)) t.dispose();
  }
  return h;
}

export const sessionRun: Scenario = {
  name: 'session-run',
  description:
    'The floor: onnxruntime `session.run` of each example model, batch 1, one call at a time, in the ' +
    "bench process with the agent's default session options (1 intra-op and 1 inter-op thread, all " +
    'graph optimisations). No HTTP, no threads, no copies: nothing the agent does can be faster.',
  async run(ctx) {
    for (const make of [linearRegression, logisticRegression, mlpClassifier, vibrationAnomaly]) {
      const model = make();
      const session = await ort.InferenceSession.create(model.bytes, AGENT_DEFAULT_OPTIONS);
      const feeds = feedsOf(model);
      try {
        const result = await interleaved(
          [{ name: model.name, window: () => window(session, feeds, ctx.windowMs) }],
          {
            metric: (h) => h.quantile(0.5),
            minWindows: ctx.minWindows,
            maxWindows: ctx.maxWindows,
            warmup: async () => {
              await window(session, feeds, Math.min(500, ctx.windowMs));
            },
          },
        );
        const h = Histogram.merged(result.last[0] ?? []);
        ctx.log(
          `${model.name}: p50 ${h.quantile(0.5).toFixed(1)} µs over ${h.count} runs, ${result.windows} windows`,
        );
        for (const [q, label] of [
          [0.5, 'p50'],
          [0.99, 'p99'],
        ] as const) {
          ctx.record({
            metric: `${model.name} ${label}`,
            value: h.quantile(q),
            unit: 'µs',
            stable: result.stable,
          });
        }
      } finally {
        await session.release();
      }
    }
  },
};
