import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Agent } from '../agent/main.ts';
import { exampleBundles } from '../deploy/examples/example-bundles.ts';
import { readBundle } from '../shared/bundle/read.ts';
import { apiAgent, baseUrl, getJson, postJson } from './helpers/api.ts';
import { tempDir } from './helpers/tmp.ts';

let agent: Agent;
let url: string;

before(async () => {
  const dir = tempDir('bundles');
  const mlp = await exampleBundles.mlp(dir);
  const text = await exampleBundles.string(dir);
  const linear = await exampleBundles.linear(dir);
  agent = await apiAgent([mlp.dir, text.dir, linear.dir], { runtime: { workers: 1, keepVersions: 2 } });
  await agent.registry.load(await readBundle((await exampleBundles.mlpV2(dir)).dir));
  url = baseUrl(agent);
});

after(async () => {
  await agent?.stop();
});

test('model status lists versions (release counters) with their state', async () => {
  const all = await getJson(`${url}/v1/models/mlp-classifier`);
  assert.equal(all.status, 200);
  assert.deepEqual(all.body, {
    model_version_status: [
      { version: '2', state: 'AVAILABLE', status: { error_code: 'OK', error_message: '' } },
      { version: '1', state: 'AVAILABLE', status: { error_code: 'OK', error_message: '' } },
    ],
  });
  const one = await getJson(`${url}/v1/models/mlp-classifier/versions/1`);
  assert.deepEqual(one.body.model_version_status, [
    { version: '1', state: 'AVAILABLE', status: { error_code: 'OK', error_message: '' } },
  ]);
  await agent.registry.unload('mlp-classifier', '1.0.0');
  const after = await getJson(`${url}/v1/models/mlp-classifier/versions/1`);
  assert.equal((after.body.model_version_status as Array<{ state: string }>)[0]?.state, 'END');
  // An unloaded version asked for by name is there but not servable: 503 with Retry-After.
  const stale = await postJson(`${url}/v2/models/mlp-classifier/versions/1.0.0/infer`, {
    inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 8], data: new Array(8).fill(0.5) }],
  });
  assert.equal(stale.status, 503);
  assert.equal(stale.headers.get('retry-after'), '1');
  assert.match(stale.body.error ?? '', /UNAVAILABLE/);
  assert.equal(
    (
      await postJson(`${url}/v1/models/mlp-classifier/versions/1:predict`, {
        instances: [[0, 0, 0, 0, 0, 0, 0, 0]],
      })
    ).status,
    503,
  );
  assert.equal((await getJson(`${url}/v1/models/nope`)).status, 404);
  assert.equal((await getJson(`${url}/v1/models/mlp-classifier/versions/7`)).status, 404);
  assert.equal((await getJson(`${url}/v1/models/mlp-classifier/versions/1.0.0`)).status, 404);
});

test('metadata is a signature_def with dtypes and -1 for dynamic dims', async () => {
  const res = await getJson(`${url}/v1/models/string-echo/metadata`);
  assert.equal(res.status, 200);
  assert.deepEqual(res.body.model_spec, { name: 'string-echo', signature_name: '', version: '1' });
  const sig = (res.body.metadata as { signature_def: { signature_def: Record<string, unknown> } })
    .signature_def.signature_def.serving_default as {
    inputs: Record<string, unknown>;
    outputs: Record<string, { dtype: string }>;
    method_name: string;
  };
  assert.deepEqual(sig.inputs.text, {
    dtype: 'DT_STRING',
    tensor_shape: { dim: [{ size: '-1', name: '' }], unknown_rank: false },
    name: 'text',
  });
  assert.equal(sig.outputs.label_id?.dtype, 'DT_INT64');
  assert.equal(sig.outputs.known?.dtype, 'DT_BOOL');
  assert.equal(sig.method_name, 'tensorflow/serving/predict');
  const versioned = await getJson(`${url}/v1/models/mlp-classifier/versions/2/metadata`);
  assert.equal((versioned.body.model_spec as { version: string }).version, '2');
  assert.equal((await getJson(`${url}/v1/models/nope/metadata`)).status, 404);
});

test('predict: instances answer predictions, inputs answer outputs', async () => {
  const rows = await postJson(`${url}/v1/models/linear-regression:predict`, {
    instances: [
      [1, 0, 0],
      [0, 1, 0],
    ],
  });
  assert.equal(rows.status, 200, rows.body.error);
  // y = 2·x0 - x1 + 0.5·x2 + 0.25
  assert.deepEqual(rows.body, { predictions: [[2.25], [-0.75]] });
  const named = await postJson(`${url}/v1/models/linear-regression:predict`, {
    signature_name: 'serving_default',
    instances: [{ x: [0, 0, 2] }],
  });
  assert.deepEqual(named.body, { predictions: [[1.25]] });
  const cols = await postJson(`${url}/v1/models/linear-regression/versions/1:predict`, {
    inputs: { x: [[1, 1, 1]] },
  });
  assert.deepEqual(cols.body, { outputs: [[1.75]] });
  const bare = await postJson(`${url}/v1/models/linear-regression:predict`, { inputs: [[0, 0, 0]] });
  assert.deepEqual(bare.body, { outputs: [[0.25]] });

  const multi = await postJson(`${url}/v1/models/string-echo:predict`, {
    instances: ['fault', { b64: Buffer.from('warning').toString('base64') }, 'other'],
  });
  assert.equal(multi.status, 200, multi.body.error);
  assert.deepEqual(multi.body.predictions, [
    { echo: 'fault', label_id: 2, known: true },
    { echo: 'warning', label_id: 1, known: true },
    { echo: 'other', label_id: -1, known: false },
  ]);
  const columnar = await postJson(`${url}/v1/models/string-echo:predict`, { inputs: { text: ['normal'] } });
  assert.deepEqual(columnar.body.outputs, { echo: ['normal'], label_id: [0], known: [true] });
});

test('predict errors: unknown model or version 404, bad bodies 400', async () => {
  const body = { instances: [[1, 2, 3]] };
  assert.equal((await postJson(`${url}/v1/models/nope:predict`, body)).status, 404);
  assert.equal((await postJson(`${url}/v1/models/linear-regression/versions/9:predict`, body)).status, 404);
  const cases: unknown[] = [
    {},
    { instances: [[1, 2]] },
    {
      instances: [
        [1, 2, 3],
        [1, 2],
      ],
    },
    { instances: [[1, 2, 3]], inputs: [[1, 2, 3]] },
    { instances: [{ y: [1, 2, 3] }] },
    { instances: [['a', 'b', 'c']] },
    { instances: [[1, 2, 3]], signature_name: 'other' },
    { instances: [[{ b64: 'AA==' }, 1, 2]] },
  ];
  for (const c of cases) {
    const res = await postJson(`${url}/v1/models/linear-regression:predict`, c);
    assert.equal(res.status, 400, `${JSON.stringify(c)} → ${res.status} ${res.body.error}`);
    assert.equal(typeof res.body.error, 'string');
  }
});
