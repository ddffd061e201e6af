import { join } from 'node:path';
import { type ExampleBundle, writeBundle } from '../../../deploy/examples/example-bundles.ts';
import { type ExampleModel, MLP_LABELS, mlpClassifier } from '../../../shared/onnx/models.ts';
import type { BenchChild } from './child.ts';
import { combine, type LoadResult } from './load.ts';
import type { BenchContext } from './scenario.ts';
import type { StableResult } from './stable.ts';
import { DEFAULT_WORKERS, startFixture } from './subjects.ts';

/** An MLP bundle (the example by default) with dynamic batching set as given, or without the field (batching off). */
export function mlpBundle(
  ctx: BenchContext,
  batching: { maxBatchSize: number; maxQueueDelayMs: number } | undefined,
  tag: string,
  model: ExampleModel = mlpClassifier(),
): Promise<ExampleBundle> {
  return writeBundle(
    model,
    {
      name: model.name,
      version: '1.0.0',
      releaseCounter: 1,
      labels: [...MLP_LABELS],
      ...(batching === undefined ? {} : { batching }),
    },
    join(ctx.tmpDir, `bundles-${tag}`),
  );
}

/** The bare node:http + onnxruntime server with the same worker count the agent defaults to. */
export function startBareServer(ctx: BenchContext, bundles: readonly ExampleBundle[]): Promise<BenchChild> {
  const models = bundles.map((b) => `${b.manifest.name}=${join(b.dir, b.manifest.model.file)}`);
  return startFixture(ctx, 'bare-server', [String(DEFAULT_WORKERS), ...models]);
}

/** Throughput and latency rows for one subject/baseline comparison judged by `interleaved`. */
export function recordLoad(
  ctx: BenchContext,
  label: string,
  result: StableResult<LoadResult>,
  targets: { throughput?: number; p99?: number } = {},
): { subject: LoadResult; baseline: LoadResult } {
  const subject = combine(result.last[0] ?? []);
  const baseline = combine(result.last[1] ?? []);
  const errors =
    subject.errors + baseline.errors > 0
      ? `errors: agent ${JSON.stringify(subject.statuses)}, baseline ${JSON.stringify(baseline.statuses)}`
      : undefined;
  ctx.record({
    metric: `${label} throughput`,
    value: subject.throughput,
    unit: 'req/s',
    baseline: baseline.throughput,
    ...(targets.throughput === undefined
      ? {}
      : { target: { on: 'ratio', op: '>=', limit: targets.throughput } }),
    stable: result.stable,
    ...(errors === undefined ? {} : { note: errors }),
  });
  for (const [q, name] of [
    [0.5, 'p50'],
    [0.9, 'p90'],
    [0.99, 'p99'],
  ] as const) {
    ctx.record({
      metric: `${label} ${name}`,
      value: subject.latency.quantile(q) / 1000,
      unit: 'ms',
      baseline: baseline.latency.quantile(q) / 1000,
      ...(name === 'p99' && targets.p99 !== undefined
        ? { target: { on: 'ratio', op: '<=', limit: targets.p99 } }
        : {}),
      stable: result.stable,
    });
  }
  return { subject, baseline };
}

interface V2Answer {
  outputs: Array<{ name: string; shape: number[]; data: number[] }>;
}

/**
 * Checks that the agent and the baseline answer a request with the same outputs before their
 * speed is compared: a baseline that skipped work (or a broken agent answering fast) would make
 * every ratio meaningless.
 */
export async function assertSameAnswers(
  agentPort: number,
  barePort: number,
  path: string,
  body: Buffer,
): Promise<void> {
  const ask = async (port: number) => {
    const res = await fetch(`http://127.0.0.1:${port}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
    });
    if (res.status !== 200)
      throw new Error(`${path} on port ${port} answered ${res.status}: ${await res.text()}`);
    const answer = (await res.json()) as V2Answer;
    return new Map(answer.outputs.map((o) => [o.name, o]));
  };
  const [a, b] = await Promise.all([ask(agentPort), ask(barePort)]);
  if (a.size !== b.size) throw new Error(`${path}: the agent gave ${a.size} outputs, the baseline ${b.size}`);
  for (const [name, out] of a) {
    const other = b.get(name);
    const same =
      other !== undefined &&
      JSON.stringify(other.shape) === JSON.stringify(out.shape) &&
      other.data.length === out.data.length &&
      out.data.every((v, i) => Math.abs(v - (other.data[i] as number)) <= 1e-6 * Math.max(1, Math.abs(v)));
    if (!same) throw new Error(`${path}: output ${name} differs between the agent and the baseline`);
  }
}
