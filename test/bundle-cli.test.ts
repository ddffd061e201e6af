import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { mlpClassifier, paddedModel } from '../shared/onnx/models.ts';
import { alignWeights, weightlessModel } from '../shared/onnx/weights-layout.ts';
import { parseTargets } from '../shared/tuf/index.ts';
import { outpost } from './helpers/cli.ts';
import { tempDir } from './helpers/tmp.ts';

describe('outpost bundle', () => {
  const dir = tempDir('cli-bundle');
  const model = mlpClassifier();
  const draft = {
    name: 'mlp-classifier',
    version: '1.2.0',
    releaseCounter: 4,
    sample: {
      inputs: { features: { shape: [1, 8], data: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8] } },
      tolerance: { abs: 1e-4, rel: 1e-3 },
    },
  };

  test('build fills digest, size and signature from the model and records the sample outputs', async () => {
    await writeFile(join(dir, 'model.onnx'), model.bytes);
    await writeFile(join(dir, 'draft.json'), JSON.stringify(draft));
    const out = join(dir, 'bundle');
    const r = outpost(
      'bundle',
      'build',
      '--model',
      join(dir, 'model.onnx'),
      '--manifest',
      join(dir, 'draft.json'),
      '--out',
      out,
    );
    assert.equal(r.code, 0, r.stderr);
    const m = JSON.parse(await readFile(join(out, 'outpost.bundle.json'), 'utf8'));
    assert.equal(m.model.size, model.bytes.length);
    assert.match(m.model.sha256, /^[0-9a-f]{64}$/);
    assert.deepEqual(m.signature.inputs[0], { name: 'features', datatype: 'FP32', shape: [-1, 8] });
    assert.ok(Object.keys(m.sample.outputs).length > 0);
    const inspect = outpost('bundle', 'inspect', out);
    assert.equal(inspect.code, 0, inspect.stderr);
    assert.match(inspect.stdout, /mlp-classifier@1\.2\.0\s+release 4/);
    assert.match(inspect.stdout, /input\s+features\s+FP32 \[-1, 8\]/);
  });

  test('build lays large weights out for mapping; --no-align keeps the model byte for byte', async () => {
    // Two weight matrices of at least 64 KiB; the bias is smaller and stays as it is.
    const padded = paddedModel(512 * 1024).bytes;
    await writeFile(join(dir, 'padded.onnx'), padded);
    await writeFile(join(dir, 'draft.json'), JSON.stringify(draft));
    const build = (out: string, ...extra: string[]) =>
      outpost(
        'bundle',
        'build',
        '--model',
        join(dir, 'padded.onnx'),
        '--manifest',
        join(dir, 'draft.json'),
        '--out',
        join(dir, out),
        ...extra,
      );
    const laid = build('laid');
    assert.equal(laid.code, 0, laid.stderr);
    assert.match(laid.stdout, /2 large weight tensor\(s\) aligned/);
    const bytes = await readFile(join(dir, 'laid', 'model.onnx'));
    assert.deepEqual(bytes, Buffer.from(alignWeights(padded).bytes));
    const m = JSON.parse(await readFile(join(dir, 'laid', 'outpost.bundle.json'), 'utf8'));
    assert.equal(m.model.size, bytes.length, 'the manifest describes the file the bundle holds');
    assert.equal(weightlessModel(join(dir, 'laid', 'model.onnx'))?.tensors, 2);
    const verbatim = build('verbatim', '--no-align');
    assert.equal(verbatim.code, 0, verbatim.stderr);
    assert.doesNotMatch(verbatim.stdout, /aligned/);
    assert.deepEqual(await readFile(join(dir, 'verbatim', 'model.onnx')), Buffer.from(padded));
    assert.equal(outpost('bundle', 'inspect', join(dir, 'laid')).code, 0);
  });

  test('build refuses a draft whose expected sample outputs do not match', async () => {
    const wrong = {
      ...draft,
      sample: { ...draft.sample, outputs: { probabilities: { shape: [1, 3], data: [1, 0, 0] } } },
    };
    await writeFile(join(dir, 'wrong.json'), JSON.stringify(wrong));
    const r = outpost(
      'bundle',
      'build',
      '--model',
      join(dir, 'model.onnx'),
      '--manifest',
      join(dir, 'wrong.json'),
      '--out',
      join(dir, 'nope'),
    );
    assert.equal(r.code, 1);
    assert.match(r.stderr, /OUTPOST_ERR_BUNDLE_INVALID: the sample does not (match|run)/);
  });

  test('inspect refuses a bundle whose model does not match its manifest', async () => {
    const out = join(dir, 'bundle');
    const bytes = await readFile(join(out, 'model.onnx'));
    const m = JSON.parse(await readFile(join(out, 'outpost.bundle.json'), 'utf8'));
    const t = join(dir, 'tampered');
    await mkdir(t);
    bytes[bytes.length - 1] = (bytes[bytes.length - 1] ?? 0) ^ 1;
    await writeFile(join(t, 'model.onnx'), bytes);
    await writeFile(join(t, 'outpost.bundle.json'), JSON.stringify(m));
    const r = outpost('bundle', 'inspect', t);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /has sha256 [0-9a-f]+, manifest says/);
  });

  test('sign adds the bundle to a TUF repository as manifest and model targets with its release fields', async () => {
    const keys = join(dir, 'keys');
    const repo = join(dir, 'repo');
    assert.equal(outpost('keys', 'init', '--dir', keys, '--repo', repo).code, 0);
    const r = outpost('bundle', 'sign', join(dir, 'bundle'), '--keys', keys, '--repo', repo);
    assert.equal(r.code, 0, r.stderr);
    const targets = parseTargets(await readFile(join(repo, 'metadata', 'targets.json')));
    const model = targets.signed.targets['mlp-classifier/1.2.0/model.onnx'];
    const manifest = targets.signed.targets['mlp-classifier/1.2.0/outpost.bundle.json'];
    assert.equal(model?.custom['releaseCounter'], 4);
    assert.equal(manifest?.custom['kind'], 'manifest');
    assert.equal(model?.length, mlpClassifier().bytes.length);
  });
});
