import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { pino } from 'pino';
import { loadConfig } from '../agent/config.ts';
import { WorkerPool } from '../agent/runtime/pool.ts';
import { exampleBundles } from '../deploy/examples/example-bundles.ts';
import { isOutpostError } from '../shared/errors.ts';
import { mlpClassifier } from '../shared/onnx/models.ts';
import { tempDir } from './helpers/tmp.ts';

const log = pino({ level: 'silent' });

test('the pool defaults to one worker per CPU core but one, and at least one', () => {
  assert.equal(WorkerPool.defaultSize(0), Math.max(1, availableParallelism() - 1));
  assert.equal(WorkerPool.defaultSize(0, 1), 1);
  assert.equal(WorkerPool.defaultSize(0, 2), 1);
  assert.equal(WorkerPool.defaultSize(0, 8), 7);
  assert.equal(WorkerPool.defaultSize(3, 2), 3);
  const config = loadConfig({ overrides: { dataDir: tempDir('pool-cfg') } });
  assert.equal(config.runtime.workers, 0, 'the config default means one per core but one');
});

test('workers take session options, tensors are transferred both ways, bad models fail to load cleanly', async () => {
  const dir = tempDir('pool');
  const bundle = await exampleBundles.mlp(dir);
  const pool = new WorkerPool(
    2,
    { intraOpThreads: 2, interOpThreads: 1, graphOptimizationLevel: 'disabled', executionMode: 'parallel' },
    log,
  );
  pool.start();
  try {
    assert.equal(pool.workerCount, 2);
    const meta = await pool.load('mlp@1', join(bundle.dir, bundle.manifest.model.file));
    assert.deepEqual(
      meta.inputs.map((i) => [i.name, i.datatype, i.shape, i.symbolic]),
      [['features', 'FP32', [-1, 8], ['batch', '']]],
    );
    const feeds = mlpClassifier().sample(4, 2);
    const data = (feeds.features as { data: Float32Array }).data.slice();
    const input = data.slice();
    const result = await pool.run('mlp@1', { features: { datatype: 'FP32', shape: [4, 8], data: input } });
    // The input buffer moved to the worker instead of being copied.
    assert.equal(input.byteLength, 0, 'input transferred');
    const probs = result.outputs.probabilities?.data as Float32Array;
    assert.equal(probs.byteOffset, 0);
    assert.equal(probs.buffer.byteLength, probs.byteLength, 'each output owns its buffer');
    const want = mlpClassifier().reference({ features: { type: 'float', data, dims: [4, 8] } }).probabilities
      ?.data as Float32Array;
    for (let i = 0; i < want.length; i++)
      assert.ok(Math.abs((probs[i] as number) - (want[i] as number)) < 1e-5);
    assert.ok(result.computeUs >= 0);
    assert.deepEqual(await pool.sessionStats(), { sessions: 2, created: 2, released: 0 });

    const garbage = join(dir, 'garbage.onnx');
    await writeFile(garbage, 'not a model');
    await assert.rejects(pool.load('bad@1', garbage), (err: unknown) =>
      isOutpostError(err, 'MODEL_LOAD_FAILED'),
    );
    await assert.rejects(
      pool.run('bad@1', { features: { datatype: 'FP32', shape: [1, 8], data: new Float32Array(8) } }),
      (err: unknown) => isOutpostError(err, 'MODEL_NOT_READY'),
    );
    await pool.unload('mlp@1');
    assert.deepEqual(await pool.sessionStats(), { sessions: 0, created: 2, released: 2 });
  } finally {
    await pool.stop();
  }
});
