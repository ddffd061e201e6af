import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { exampleBundles, writeBundle } from '../deploy/examples/example-bundles.ts';
import { readBundle } from '../shared/bundle/read.ts';
import { MLP_LABELS, mlpClassifier, mlpV2 } from '../shared/onnx/models.ts';
import { apiAgent, baseUrl } from './helpers/api.ts';
import { tempDir } from './helpers/tmp.ts';

/** A copy of a bundle as a new version whose model file is garbage (its digest matches, so only loading fails). */
async function corruptBundle(
  dir: string,
  outDir: string,
  version: string,
  releaseCounter: number,
): Promise<string> {
  const manifest = JSON.parse(await readFile(join(dir, 'outpost.bundle.json'), 'utf8'));
  const garbage = Buffer.from('this is not an ONNX model '.repeat(40));
  const { mkdir } = await import('node:fs/promises');
  const target = join(outDir, `corrupt-${version}`);
  await mkdir(target, { recursive: true });
  await writeFile(join(target, manifest.model.file), garbage);
  manifest.version = version;
  manifest.releaseCounter = releaseCounter;
  manifest.model.size = garbage.length;
  manifest.model.sha256 = createHash('sha256').update(garbage).digest('hex');
  await writeFile(join(target, 'outpost.bundle.json'), JSON.stringify(manifest));
  return target;
}

test('a hot swap under load fails no request; a corrupt version leaves the old one serving; sessions are not churned', async () => {
  const dir = tempDir('swap');
  // A batch delay keeps requests waiting in v1's queue at the moment of the swap: the case that fails
  // if a version's sessions go before its queue is served.
  const batching = { maxBatchSize: 8, maxQueueDelayMs: 10 };
  const draft = { name: 'mlp-classifier', labels: [...MLP_LABELS], batching };
  const v1 = await writeBundle(mlpClassifier(), { ...draft, version: '1.0.0', releaseCounter: 1 }, dir);
  const v2 = await writeBundle(mlpV2(), { ...draft, version: '2.0.0', releaseCounter: 2 }, dir);
  const broken = await corruptBundle(v2.dir, dir, '3.0.0', 3);
  const agent = await apiAgent([v1.dir], { runtime: { workers: 2, keepVersions: 1 } });
  try {
    const url = `${baseUrl(agent)}/v2/models/mlp-classifier/infer`;
    const features = (mlpClassifier().sample(2, 5).features as { data: Float32Array }).data;
    const body = JSON.stringify({
      inputs: [{ name: 'features', datatype: 'FP32', shape: [2, 8], data: Array.from(features) }],
    });
    const versions = new Map<string, number>();
    const failures: string[] = [];
    let stop = false;
    const worker = async () => {
      while (!stop) {
        const res = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body,
        });
        const answer = (await res.json()) as { model_version?: string; error?: string };
        if (res.status !== 200) failures.push(`${res.status} ${answer.error}`);
        else versions.set(answer.model_version ?? '?', (versions.get(answer.model_version ?? '?') ?? 0) + 1);
      }
    };
    const hammer = Array.from({ length: 24 }, worker);
    const count = () => [...versions.values()].reduce((a, b) => a + b, 0);
    const waitForCount = async (n: number) => {
      while (count() < n && failures.length === 0) await new Promise((r) => setTimeout(r, 5));
    };

    await waitForCount(100);
    const swapped = await agent.registry.load(await readBundle(v2.dir));
    assert.equal(swapped.state, 'READY');
    assert.equal(agent.registry.current('mlp-classifier')?.version, '2.0.0');
    assert.equal(
      agent.registry.get('mlp-classifier', '1.0.0')?.state,
      'UNAVAILABLE',
      'v1 retired after the swap',
    );
    const afterSwap = count();
    await waitForCount(afterSwap + 100);

    await assert.rejects(
      agent.registry.load(await readBundle(broken)),
      /loading mlp-classifier@3.0.0 failed/,
    );
    assert.equal(agent.registry.get('mlp-classifier', '3.0.0')?.state, 'FAILED');
    assert.equal(agent.registry.current('mlp-classifier')?.version, '2.0.0', 'v2 keeps serving');
    const afterBroken = count();
    await waitForCount(afterBroken + 100);
    const stats1 = await agent.registry.sessionStats();
    await waitForCount(count() + 200);
    const stats2 = await agent.registry.sessionStats();
    stop = true;
    await Promise.all(hammer);

    assert.deepEqual(failures, [], 'no request failed during the swap');
    assert.ok((versions.get('1.0.0') ?? 0) >= 100, 'v1 served before the swap');
    assert.ok((versions.get('2.0.0') ?? 0) >= 300, 'v2 served after the swap');
    // Two workers: one session each for v1 and v2, v1's released; the corrupt one never opened.
    assert.deepEqual(stats1, { sessions: 2, created: 4, released: 2 });
    assert.deepEqual(stats2, stats1, 'hundreds of requests later, not one more session');
  } finally {
    await agent.stop();
  }
});

test('version policy: latest N keeps the newest N; pinned versions refuse others', async () => {
  const dir = tempDir('policy');
  const v1 = await exampleBundles.mlp(dir);
  const v2 = await exampleBundles.mlpV2(dir);
  const v3 = await exampleBundles.mlpV2(dir, '3.0.0', 3);
  const agent = await apiAgent([v1.dir], {
    runtime: {
      workers: 1,
      keepVersions: 2,
      versionPolicy: { 'string-echo': { specific: ['1.0.0'] } },
    },
  });
  try {
    const reg = agent.registry;
    await reg.load(await readBundle(v2.dir));
    assert.deepEqual(
      reg.versions('mlp-classifier').map((v) => [v.version, v.state]),
      [
        ['2.0.0', 'READY'],
        ['1.0.0', 'READY'],
      ],
    );
    // Both served by explicit version, the newest by default.
    const infer = (version?: string) =>
      reg.infer('mlp-classifier', version, {
        features: { datatype: 'FP32', shape: [1, 8], data: new Float32Array(8).fill(0.5) },
      });
    assert.equal((await infer('1.0.0')).model.version, '1.0.0');
    assert.equal((await infer()).model.version, '2.0.0');
    await reg.load(await readBundle(v3.dir));
    assert.deepEqual(
      reg.versions('mlp-classifier').map((v) => [v.version, v.state]),
      [
        ['3.0.0', 'READY'],
        ['2.0.0', 'READY'],
        ['1.0.0', 'UNAVAILABLE'],
      ],
    );
    // Loading the same version again is a no-op, not a second session.
    const again = await reg.load(await readBundle(v3.dir));
    assert.equal(again.state, 'READY');

    // Pinned: string-echo may only run 1.0.0.
    const pinnedDir = tempDir('pinned');
    const text = await exampleBundles.string(pinnedDir);
    await reg.load(await readBundle(text.dir));
    const manifestPath = join(text.dir, 'outpost.bundle.json');
    const manifest = JSON.parse(await readFile(manifestPath, 'utf8'));
    await writeFile(manifestPath, JSON.stringify({ ...manifest, version: '1.1.0', releaseCounter: 2 }));
    await assert.rejects(
      reg.load(await readBundle(text.dir)),
      /not allowed by the version policy.*specific \[1\.0\.0\]/,
    );
    assert.equal(reg.current('string-echo')?.version, '1.0.0');
    assert.deepEqual(reg.policy('mlp-classifier'), { latest: 2 });
  } finally {
    await agent.stop();
  }
});
