import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { RequestOutcome } from '../agent/runtime/observer.ts';
import { WorkerPool } from '../agent/runtime/pool.ts';
import { ModelRegistry } from '../agent/runtime/registry.ts';
import { writeBundle } from '../deploy/examples/example-bundles.ts';
import { readBundle } from '../shared/bundle/read.ts';
import { isOutpostError } from '../shared/errors.ts';
import { createJsonLogger } from '../shared/log.ts';
import { MLP_FEATURES, mlpClassifier } from '../shared/onnx/models.ts';
import type { Tensor } from '../shared/tensor.ts';
import { tempDir } from './helpers/tmp.ts';

const log = createJsonLogger({ level: 'silent' });
let pool: WorkerPool;
const executions: Array<{ model: string; rows: number; requests: number }> = [];
const requests: Array<{ model: string; outcome: RequestOutcome }> = [];

before(() => {
  pool = new WorkerPool(
    1,
    { intraOpThreads: 1, interOpThreads: 1, graphOptimizationLevel: 'all', executionMode: 'sequential' },
    log,
  );
  pool.start();
});

after(async () => {
  await pool.stop();
});

function registry(
  options: { queueLimit?: number; requestTimeoutMs?: number; batchingEnabled?: boolean } = {},
) {
  return new ModelRegistry(pool, log, {
    keepVersions: 1,
    ...options,
    observer: {
      request: (model, version, outcome) => requests.push({ model: `${model}@${version}`, outcome }),
      execution: (model, version, rows, n) =>
        executions.push({ model: `${model}@${version}`, rows, requests: n }),
    },
  });
}

/** The MLP under its own name with a given batch policy. */
async function mlpBundle(
  name: string,
  batching: { maxBatchSize: number; maxQueueDelayMs: number } | undefined,
) {
  const built = await writeBundle(
    mlpClassifier(),
    { name, version: '1.0.0', releaseCounter: 1, ...(batching === undefined ? {} : { batching }) },
    tempDir('batching'),
  );
  return readBundle(built.dir);
}

function rows(n: number, seed: number): { tensor: Tensor; data: Float32Array } {
  const feeds = mlpClassifier().sample(n, seed);
  const data = (feeds.features as { data: Float32Array }).data;
  return { tensor: { datatype: 'FP32', shape: [n, MLP_FEATURES], data: data.slice() }, data };
}

function expected(data: Float32Array, n: number): Float32Array {
  const ref = mlpClassifier().reference({ features: { type: 'float', data, dims: [n, MLP_FEATURES] } });
  return ref.probabilities?.data as Float32Array;
}

test('requests are joined into batches up to maxBatchSize and split back to their senders', async () => {
  const reg = registry();
  const model = await reg.load(await mlpBundle('batched', { maxBatchSize: 16, maxQueueDelayMs: 400 }));
  assert.deepEqual(model.batching, { maxBatchSize: 16, maxQueueDelayMs: 400 });
  executions.length = 0;
  // 40 one-row requests queued in the same tick: a full batch of 16 leaves at once, the next 16
  // fill while it runs, and the last 8 leave when the oldest has waited 400 ms. (The delay is
  // long so that a busy test machine pausing this thread cannot age the queue mid-loop.)
  const inputs = Array.from({ length: 40 }, (_, i) => rows(1, 100 + i));
  const results = await Promise.all(
    inputs.map((r) => reg.infer('batched', undefined, { features: r.tensor }, ['probabilities'])),
  );
  assert.deepEqual(
    executions.filter((e) => e.model === 'batched@1.0.0').map((e) => e.rows),
    [16, 16, 8],
  );
  results.forEach((res, i) => {
    const got = res.outputs.probabilities?.data as Float32Array;
    const want = expected((inputs[i] as { data: Float32Array }).data, 1);
    assert.deepEqual(res.outputs.probabilities?.shape, [1, 3]);
    assert.equal(res.outputs.logits, undefined, 'only the requested output');
    for (let k = 0; k < 3; k++)
      assert.ok(Math.abs((got[k] as number) - (want[k] as number)) < 1e-5, `request ${i}`);
  });
  await reg.unload('batched', '1.0.0');
});

test('requests of several rows batch by rows and keep their own rows', async () => {
  const reg = registry();
  await reg.load(await mlpBundle('multirow', { maxBatchSize: 8, maxQueueDelayMs: 300 }));
  executions.length = 0;
  const sizes = [3, 4, 2, 5, 1, 9];
  const inputs = sizes.map((n, i) => ({ n, ...rows(n, 300 + i) }));
  const results = await Promise.all(
    inputs.map((r) => reg.infer('multirow', undefined, { features: r.tensor })),
  );
  const batches = executions.filter((e) => e.model === 'multirow@1.0.0');
  // 3+4 (the 2 would overflow 8), 2+5+1, then 9 alone: larger than a batch, it runs by itself.
  assert.deepEqual(
    batches.map((e) => e.rows),
    [7, 8, 9],
  );
  results.forEach((res, i) => {
    const { n, data } = inputs[i] as { n: number; data: Float32Array };
    assert.deepEqual(res.outputs.probabilities?.shape, [n, 3]);
    const got = res.outputs.probabilities?.data as Float32Array;
    const want = expected(data, n);
    for (let k = 0; k < want.length; k++)
      assert.ok(Math.abs((got[k] as number) - (want[k] as number)) < 1e-5);
  });
  await reg.unload('multirow', '1.0.0');
});

test('batching turned off globally runs every request on its own', async () => {
  const reg = registry({ batchingEnabled: false });
  const model = await reg.load(await mlpBundle('unbatched', { maxBatchSize: 16, maxQueueDelayMs: 50 }));
  assert.equal(model.batching, undefined);
  executions.length = 0;
  await Promise.all(
    Array.from({ length: 10 }, (_, i) => reg.infer('unbatched', undefined, { features: rows(1, i).tensor })),
  );
  const batches = executions.filter((e) => e.model === 'unbatched@1.0.0');
  assert.equal(batches.length, 10);
  assert.ok(batches.every((e) => e.rows === 1));
  await reg.unload('unbatched', '1.0.0');
});

test('a full queue refuses with QUEUE_FULL (429); the accepted requests are served', async () => {
  const reg = registry({ queueLimit: 4 });
  await reg.load(await mlpBundle('bounded', { maxBatchSize: 16, maxQueueDelayMs: 150 }));
  requests.length = 0;
  const settled = await Promise.allSettled(
    Array.from({ length: 7 }, (_, i) => reg.infer('bounded', undefined, { features: rows(1, i).tensor })),
  );
  const refused = settled.filter((s) => s.status === 'rejected');
  assert.equal(refused.length, 3);
  for (const r of refused) {
    const err = (r as PromiseRejectedResult).reason;
    assert.ok(isOutpostError(err, 'QUEUE_FULL'));
    assert.equal(err.status, 429);
  }
  assert.equal(settled.filter((s) => s.status === 'fulfilled').length, 4);
  const failures = requests.filter((r) => r.model === 'bounded@1.0.0' && !r.outcome.ok);
  assert.deepEqual(
    failures.map((f) => f.outcome.reason),
    ['REJECTED', 'REJECTED', 'REJECTED'],
  );
  await reg.unload('bounded', '1.0.0');
});

test('a request not answered within its timeout fails with TIMEOUT (504) and never runs', async () => {
  const reg = registry({ requestTimeoutMs: 80 });
  await reg.load(await mlpBundle('slow', { maxBatchSize: 16, maxQueueDelayMs: 1000 }));
  executions.length = 0;
  const started = Date.now();
  await assert.rejects(
    reg.infer('slow', undefined, { features: rows(1, 1).tensor }),
    (err: unknown) => isOutpostError(err, 'TIMEOUT') && err.status === 504,
  );
  const took = Date.now() - started;
  assert.ok(took >= 75 && took < 900, `timed out after ${took} ms`);
  // A shorter per-request timeout wins over the configured one.
  await assert.rejects(
    reg.infer('slow', undefined, { features: rows(1, 2).tensor }, undefined, { timeoutMs: 10 }),
    /within 10 ms/,
  );
  assert.equal(executions.filter((e) => e.model === 'slow@1.0.0').length, 0, 'expired requests are not run');
  assert.equal(reg.pending('slow@1.0.0'), 0);
  await reg.unload('slow', '1.0.0');
});

test('unloading a version first serves what it has queued, without waiting for the batch delay', async () => {
  const reg = registry();
  await reg.load(await mlpBundle('draining', { maxBatchSize: 64, maxQueueDelayMs: 1000 }));
  const started = Date.now();
  const pending = Array.from({ length: 5 }, (_, i) =>
    reg.infer('draining', undefined, { features: rows(1, i).tensor }),
  );
  assert.equal(reg.pending('draining@1.0.0'), 5);
  await reg.unload('draining', '1.0.0');
  const results = await Promise.all(pending);
  assert.equal(results.length, 5);
  assert.ok(Date.now() - started < 900, 'drained without waiting the full delay');
  assert.equal(reg.get('draining', '1.0.0')?.state, 'UNAVAILABLE');
  await assert.rejects(reg.infer('draining', '1.0.0', { features: rows(1, 9).tensor }), (err: unknown) =>
    isOutpostError(err, 'MODEL_NOT_READY'),
  );
});
