import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { readFile, rename, symlink, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadConfig } from '../agent/config.ts';
import { WorkerPool } from '../agent/runtime/pool.ts';
import { exampleBundles } from '../deploy/examples/example-bundles.ts';
import { isOutpostError } from '../shared/errors.ts';
import { createJsonLogger } from '../shared/log.ts';
import { mlpClassifier, paddedModel, wideMlp } from '../shared/onnx/models.ts';
import { alignWeights } from '../shared/onnx/weights-layout.ts';
import { tempDir } from './helpers/tmp.ts';

const log = createJsonLogger({ level: 'silent' });

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
    // 128 bytes: copied with the message, cheaper than a transfer at that size.
    assert.equal(input.byteLength, data.byteLength, 'a small input is copied');
    const probs = result.outputs.probabilities?.data as Float32Array;
    assert.equal(probs.byteOffset, 0);
    assert.equal(probs.buffer.byteLength, probs.byteLength, 'each output owns its buffer');
    const want = mlpClassifier().reference({ features: { type: 'float', data, dims: [4, 8] } }).probabilities
      ?.data as Float32Array;
    for (let i = 0; i < want.length; i++)
      assert.ok(Math.abs((probs[i] as number) - (want[i] as number)) < 1e-5);
    assert.ok(result.computeUs >= 0);
    // 64 rows (2 KiB) go over by transfer; a view onto part of a buffer sends only its part.
    const big = (mlpClassifier().sample(64, 3).features as { data: Float32Array }).data;
    const bigInput = big.slice();
    await pool.run('mlp@1', { features: { datatype: 'FP32', shape: [64, 8], data: bigInput } });
    assert.equal(bigInput.byteLength, 0, 'a large input is transferred');
    const shared = new Float32Array(1024 * 1024);
    shared.set(big, 8);
    const view = shared.subarray(8, 8 + big.length);
    const viewed = await pool.run('mlp@1', { features: { datatype: 'FP32', shape: [64, 8], data: view } });
    assert.equal(shared.byteLength, 4 * 1024 * 1024, 'the buffer a view is part of stays with its owner');
    assert.equal(viewed.outputs.probabilities?.data.length, 64 * 3);
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

/** The nice value of one thread of this process, from the kernel (field 19 of its stat line). */
function threadNice(tid: number): number {
  const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]);
}

test('runtime.workerNice lowers the priority of the inference threads only, not of the main thread', {
  skip: process.platform !== 'linux' && 'thread priorities are read from /proc',
}, async () => {
  const mainNice = threadNice(process.pid);
  const want = Math.min(19, mainNice + 7);
  const options = {
    intraOpThreads: 1,
    interOpThreads: 1,
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
  } as const;
  const niced = new WorkerPool(2, options, log, { workerNice: want });
  const plain = new WorkerPool(1, options, log);
  niced.start();
  plain.start();
  try {
    // Each worker reports its thread at start; a load round trip means it has.
    const bundle = await exampleBundles.mlp(tempDir('pool-nice'));
    const model = join(bundle.dir, bundle.manifest.model.file);
    await niced.load('mlp@1', model);
    await plain.load('mlp@1', model);
    const threads = niced.threads();
    assert.equal(threads.length, 2);
    for (const t of threads) {
      assert.ok(t?.tid !== undefined && t.tid !== process.pid, 'a worker runs on a thread of its own');
      assert.equal(t.nice, want);
      assert.equal(threadNice(t.tid), want, `thread ${t.tid} runs at nice ${want}`);
    }
    const [own] = plain.threads();
    assert.ok(own?.tid !== undefined);
    assert.equal(threadNice(own.tid), mainNice, 'workerNice 0 leaves workers at the process priority');
    assert.equal(threadNice(process.pid), mainNice, 'the main thread keeps its priority');
    // Niced workers still serve.
    const result = await niced.run('mlp@1', {
      features: { datatype: 'FP32', shape: [1, 8], data: new Float32Array(8) },
    });
    assert.ok(result.outputs.probabilities !== undefined);
  } finally {
    await niced.stop();
    await plain.stop();
  }
});

test('stop() lets runs in flight finish and releases the sessions before the workers end', async () => {
  const bundle = await exampleBundles.mlp(tempDir('pool-stop'));
  const pool = new WorkerPool(
    1,
    { intraOpThreads: 1, interOpThreads: 1, graphOptimizationLevel: 'all', executionMode: 'sequential' },
    log,
  );
  pool.start();
  await pool.load('mlp@1', join(bundle.dir, bundle.manifest.model.file));
  const runs = Array.from({ length: 8 }, (_, i) =>
    pool.run('mlp@1', {
      features: {
        datatype: 'FP32',
        shape: [1, 8],
        data: (mlpClassifier().sample(1, i).features as { data: Float32Array }).data,
      },
    }),
  );
  await pool.stop();
  // Ending the thread under them would have failed them ("worker terminated").
  const settled = await Promise.allSettled(runs);
  assert.deepEqual(
    settled.map((s) => s.status),
    runs.map(() => 'fulfilled'),
  );
});

test('computeUs times each run alone: runs queued in one worker do not count the runs ahead of them', async () => {
  const dir = tempDir('pool-compute');
  const bundle = await exampleBundles.mlp(dir);
  const wide = wideMlp();
  const widePath = join(dir, 'wide.onnx');
  await writeFile(widePath, wide.bytes);
  const pool = new WorkerPool(
    1,
    { intraOpThreads: 1, interOpThreads: 1, graphOptimizationLevel: 'all', executionMode: 'sequential' },
    log,
  );
  pool.start();
  try {
    await pool.load('wide@1', widePath);
    await pool.load('mlp@1', join(bundle.dir, bundle.manifest.model.file));
    const feeds = () => ({
      features: {
        datatype: 'FP32' as const,
        shape: [1, 8],
        data: (wide.sample(1).features as { data: Float32Array }).data.slice(),
      },
    });
    await pool.run('wide@1', feeds());
    // All 16 reach the single worker in one go; it can only run them one after another.
    const t0 = performance.now();
    const results = await Promise.all(Array.from({ length: 16 }, () => pool.run('wide@1', feeds())));
    const wallUs = (performance.now() - t0) * 1000;
    const summed = results.reduce((n, r) => n + r.computeUs, 0);
    assert.ok(
      summed <= wallUs,
      `runs in one thread summed to ${summed} µs in ${wallUs.toFixed(0)} µs of wall time`,
    );
    // Runs sent before an unload finish on the session; one sent after it is refused, not run on a released session.
    const queued = Array.from({ length: 4 }, () => pool.run('mlp@1', feeds()));
    const unloading = pool.unload('mlp@1');
    const settled = await Promise.allSettled(queued);
    await unloading;
    assert.deepEqual(
      settled.map((s) => (s.status === 'rejected' ? String(s.reason) : s.status)),
      queued.map(() => 'fulfilled'),
    );
    await assert.rejects(pool.run('mlp@1', feeds()), (err) => isOutpostError(err));
  } finally {
    await pool.stop();
  }
});

/** Mappings of `path` in this process (the workers are its threads). */
function mappingsOf(path: string): number {
  return readFileSync('/proc/self/maps', 'utf8')
    .split('\n')
    .filter((l) => l.endsWith(` ${path}`)).length;
}

test('mapWeights maps a laid-out model from its file; the copy stays the default', {
  skip: process.platform !== 'linux' && 'mappings are read from /proc',
}, async () => {
  const dir = tempDir('pool-map');
  const padded = paddedModel(1024 * 1024);
  const path = join(dir, 'model.onnx');
  await writeFile(path, alignWeights(padded.bytes).bytes);
  const pool = new WorkerPool(
    1,
    { intraOpThreads: 1, interOpThreads: 1, graphOptimizationLevel: 'all', executionMode: 'sequential' },
    log,
  );
  pool.start();
  try {
    const copied = await pool.load('copied@1', path);
    assert.equal(copied.mappedBytes, 0);
    assert.equal(mappingsOf(path), 0, 'loaded from the file, nothing of it is mapped');
    const building = join(dir, 'building.onnx');
    await writeFile(building, await readFile(path));
    const final = join(dir, 'final.onnx');
    // As an install does: the workers read the file where it is, then it is renamed into place.
    const mapped = await pool.load('mapped@1', final, { readFrom: building, mapWeights: true });
    assert.ok(mapped.mappedBytes > 900 * 1024, `${mapped.mappedBytes} bytes mapped`);
    // The matrices are packed into onnxruntime's own layout and their mapping released; the
    // bias it adds as it is stays mapped.
    assert.ok(mappingsOf(building) >= 1);
    await rename(building, final);
    const feeds = padded.sample(4, 5);
    const x = (feeds.features as { data: Float32Array }).data;
    const want = padded.reference(feeds).probabilities?.data as Float32Array;
    for (const key of ['copied@1', 'mapped@1']) {
      const result = await pool.run(key, { features: { datatype: 'FP32', shape: [4, 8], data: x.slice() } });
      const got = result.outputs.probabilities?.data as Float32Array;
      for (let i = 0; i < want.length; i++)
        assert.ok(Math.abs((got[i] as number) - (want[i] as number)) < 1e-4, `${key} output ${i}`);
    }
    await pool.unload('mapped@1');
    assert.equal(mappingsOf(final) + mappingsOf(building), 0, 'unloading releases the mapping');

    // A model file that links out of its directory: onnxruntime will not map external data
    // there, and the model loads from the file as it would without mapWeights.
    const linkDir = tempDir('pool-map-link');
    await symlink(final, join(linkDir, 'model.onnx'));
    const linked = await pool.load('linked@1', join(linkDir, 'model.onnx'), { mapWeights: true });
    assert.equal(linked.mappedBytes, 0);
    assert.match(linked.mapError ?? '', /escapes|directory/i);
    const viaLink = await pool.run('linked@1', {
      features: { datatype: 'FP32', shape: [4, 8], data: x.slice() },
    });
    assert.equal(viaLink.outputs.probabilities?.data.length, 12);

    // A file that is not a model: the worker loads it as a file and onnxruntime says what is wrong.
    const garbage = join(dir, 'garbage.onnx');
    await writeFile(garbage, 'not a model');
    await assert.rejects(pool.load('bad@1', garbage, { mapWeights: true }), (err: unknown) =>
      isOutpostError(err, 'MODEL_LOAD_FAILED'),
    );
  } finally {
    await pool.stop();
  }
});
