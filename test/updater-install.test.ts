import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Agent } from '../agent/main.ts';
import { partFileName } from '../agent/updater/installer.ts';
import { writeBundle } from '../deploy/examples/example-bundles.ts';
import { buildBundle } from '../shared/bundle/build.ts';
import { paddedModel } from '../shared/onnx/models.ts';
import { tempDir } from './helpers/tmp.ts';
import { events, inferOk, MODEL, UpdateFixture } from './helpers/update-fixture.ts';

describe('updater: install, switch, revert on a failed sample', () => {
  const fx = new UpdateFixture();
  let agent: Agent;

  before(async () => {
    await fx.start();
    await fx.publish('mlp');
    await fx.direct([[MODEL, '1.0.0']]);
    agent = fx.agent();
    await agent.start();
    await agent.updater!.checkNow();
  });
  after(() => fx.stop());

  test('the first bundle the director names is installed from TUF and serves', async () => {
    assert.equal(await inferOk(agent), '1.0.0');
    const st = agent.status().updates!;
    assert.equal(st.models[MODEL]?.current.version, '1.0.0');
    assert.ok(
      (await events(agent)).some((e) => e.type === 'update-activated' && e.body['version'] === '1.0.0'),
    );
  });

  test('an update switches with no failed request and keeps the previous version on disk', async () => {
    await fx.publish('mlpV2');
    await fx.direct([[MODEL, '2.0.0']]);
    let ok = 0;
    const failures: unknown[] = [];
    let running = true;
    const load = (async () => {
      while (running) {
        await inferOk(agent).then(
          () => ok++,
          (err: unknown) => failures.push(err),
        );
      }
    })();
    const outcome = await agent.updater!.checkNow();
    running = false;
    await load;
    assert.deepEqual(outcome.failed, []);
    assert.deepEqual(outcome.installed, [`${MODEL}@2.0.0`]);
    assert.deepEqual(failures, []);
    assert.ok(ok > 0);
    assert.equal(await inferOk(agent), '2.0.0');
    const m = agent.status().updates!.models[MODEL]!;
    assert.equal(m.previous?.version, '1.0.0');
    assert.ok(existsSync(join(agent.config.dataDir, m.previous!.dir)));
    const steps = (await events(agent))
      .filter((e) => e.type === 'update-progress' && e.body['target'] === `${MODEL}@2.0.0`)
      .map((e) => e.body['step']);
    // The directory is made durable while the model loads and its sample runs; it is renamed
    // into place ('written') once both are done.
    assert.deepEqual(steps, [
      'space',
      'manifest',
      'download',
      'loaded',
      'checked',
      'written',
      'committed',
      'activated',
    ]);
  });

  test('a model that loads but fails its sample is reverted, reported and not retried', async () => {
    await fx.publish('mlpBroken');
    await fx.direct([[MODEL, '3.0.0']]);
    const outcome = await agent.updater!.checkNow();
    assert.equal(outcome.failed.length, 1);
    assert.match(outcome.failed[0]!.error, /sample check failed/);
    assert.equal(await inferOk(agent), '2.0.0');
    assert.equal(agent.registry.get(MODEL, '3.0.0')?.state, 'UNAVAILABLE');
    const dirs = await readdir(join(agent.config.dataDir, 'bundles', MODEL));
    assert.deepEqual(
      dirs.filter((d) => d.startsWith('3.0.0')),
      [],
      'the rejected bundle leaves no directory',
    );
    const reverted = (await events(agent)).find((e) => e.type === 'update-reverted');
    assert.equal(reverted?.body['reason'], 'sample-check');
    assert.equal(agent.status().updates!.models[MODEL]?.current.version, '2.0.0');
    const again = await agent.updater!.checkNow();
    assert.match(again.failed[0]!.error, /refused earlier/);
    assert.equal(await inferOk(agent), '2.0.0');
  });

  test('installFromTuf (the benchmark entry point) verifies, installs and activates a named bundle', async () => {
    await fx.publish('mlpV2', '2.1.0', 5);
    await agent.updater!.installFromTuf(MODEL, '2.1.0');
    assert.equal(await inferOk(agent), '2.1.0');
    assert.equal(agent.status().updates!.models[MODEL]?.previous?.version, '2.0.0');
  });

  test('a check removes partial downloads that no wanted target resumes from', async () => {
    await fx.direct([[MODEL, '2.1.0']]);
    const staging = agent.updater!.installer.stagingDir();
    const stale = partFileName(MODEL, '0.9.0', 'ab'.repeat(32));
    const wanted = { name: MODEL, version: '4.0.0', sha256: 'cd'.repeat(32) };
    for (const f of [stale, `${stale}.json`, partFileName('other', '1.0.0', 'ef'.repeat(32))])
      await writeFile(join(staging, f), 'partial');
    // A target the director names and is not installed yet keeps its partial file.
    await writeFile(join(staging, partFileName(wanted.name, wanted.version, wanted.sha256)), 'partial');
    assert.deepEqual(
      await agent.updater!.installer.pruneStaging([wanted]),
      [`${stale}`, `${stale}.json`, partFileName('other', '1.0.0', 'ef'.repeat(32))].sort(),
    );
    assert.deepEqual(await readdir(staging), [partFileName(wanted.name, wanted.version, wanted.sha256)]);
    // The director names 2.1.0, which is installed: nothing is left to resume.
    const outcome = await agent.updater!.checkNow();
    assert.equal(outcome.upToDate, true);
    assert.deepEqual(await readdir(staging), []);
    assert.equal(await inferOk(agent), '2.1.0');
  });
});

const mlpSample = { inputs: { features: { shape: [1, 8], data: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8] } } };

describe('updater: installed models map their weights', () => {
  const fx = new UpdateFixture();
  after(() => fx.stop());

  test('a laid-out bundle is installed with its weights mapped, and loads so again after a restart', async () => {
    await fx.start();
    const agent = await fx.deviceServingV1();
    // The example MLP has no initializer large enough to map.
    assert.equal(agent.registry.get(MODEL, '1.0.0')?.mappedBytes, 0);
    const padded = await writeBundle(
      paddedModel(1024 * 1024),
      { name: MODEL, version: '1.1.0', releaseCounter: 2 },
      tempDir('padded'),
    );
    await fx.repo.publishBundle(padded.dir, fx.signers);
    await agent.updater!.installFromTuf(MODEL, '1.1.0');
    assert.equal(await inferOk(agent), '1.1.0');
    const mapped = agent.registry.get(MODEL, '1.1.0')?.mappedBytes ?? 0;
    assert.ok(mapped > 900 * 1024, `${mapped} bytes mapped`);
    // The same device after a restart: the installed bundle is loaded from the store, mapped.
    await agent.stop();
    const again = fx.agent({ dataDir: agent.config.dataDir });
    await again.start();
    assert.equal(await inferOk(again), '1.1.0');
    assert.equal(again.registry.get(MODEL, '1.1.0')?.mappedBytes, mapped);
    // runtime.mapWeights off: read as a file, as every model was before.
    await again.stop();
    const unmapped = fx.agent({ dataDir: agent.config.dataDir, runtime: { workers: 1, mapWeights: false } });
    await unmapped.start();
    assert.equal(await inferOk(unmapped), '1.1.0');
    assert.equal(unmapped.registry.get(MODEL, '1.1.0')?.mappedBytes, 0);
  });

  test('a bundle built without the layout is installed and read as a file', async () => {
    const agent = await fx.deviceServingV1();
    const dir = tempDir('verbatim');
    await writeFile(join(dir, 'source.onnx'), paddedModel(1024 * 1024).bytes);
    const draft = { name: MODEL, version: '1.2.0', releaseCounter: 3, sample: mlpSample };
    await buildBundle(join(dir, 'source.onnx'), draft, join(dir, 'bundle'), { alignWeights: false });
    await fx.repo.publishBundle(join(dir, 'bundle'), fx.signers);
    await agent.updater!.installFromTuf(MODEL, '1.2.0');
    assert.equal(await inferOk(agent), '1.2.0');
    assert.equal(agent.registry.get(MODEL, '1.2.0')?.mappedBytes, 0);
  });
});
