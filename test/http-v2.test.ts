import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Agent } from '../agent/main.ts';
import { exampleBundles, writeBundle } from '../deploy/examples/example-bundles.ts';
import { readBundle } from '../shared/bundle/read.ts';
import { GraphBuilder } from '../shared/onnx/builder.ts';
import { type ExampleModel, MLP_LABELS, mlpClassifier, stringEcho } from '../shared/onnx/models.ts';
import { apiAgent, baseUrl, binaryBody, getJson, postJson, splitBinaryAnswer } from './helpers/api.ts';
import { tempDir } from './helpers/tmp.ts';

let agent: Agent;
let url: string;

before(async () => {
  const dir = tempDir('bundles');
  const mlp = await exampleBundles.mlp(dir);
  const text = await exampleBundles.string(dir);
  agent = await apiAgent([mlp.dir, text.dir], { runtime: { workers: 1, queueLimit: 8 } });
  url = baseUrl(agent);
});

after(async () => {
  await agent?.stop();
});

const mlpRows = (rows: number) => {
  const feeds = mlpClassifier().sample(rows, 21);
  const features = feeds.features as { data: Float32Array; dims: number[] };
  return { data: features.data, reference: mlpClassifier().reference(feeds) };
};

test('health, server metadata and extensions', async () => {
  assert.deepEqual((await getJson(`${url}/v2/health/live`)).body, { live: true });
  const ready = await getJson(`${url}/v2/health/ready`);
  assert.equal(ready.status, 200);
  const server = await getJson(`${url}/v2`);
  assert.equal(server.body.name, 'outpost');
  assert.ok((server.body.extensions as string[]).includes('binary_tensor_data'));
  assert.ok((server.body.extensions as string[]).includes('model_repository'));
});

test('model metadata maps ONNX types and symbolic dims, platform onnx_onnxv1', async () => {
  const mlp = await getJson(`${url}/v2/models/mlp-classifier`);
  assert.equal(mlp.status, 200);
  assert.deepEqual(mlp.body, {
    name: 'mlp-classifier',
    versions: ['1.0.0'],
    platform: 'onnx_onnxv1',
    inputs: [{ name: 'features', datatype: 'FP32', shape: [-1, 8] }],
    outputs: [
      { name: 'logits', datatype: 'FP32', shape: [-1, 3] },
      { name: 'probabilities', datatype: 'FP32', shape: [-1, 3] },
    ],
  });
  const text = await getJson(`${url}/v2/models/string-echo/versions/1.0.0`);
  assert.deepEqual(text.body.outputs, [
    { name: 'echo', datatype: 'BYTES', shape: [-1] },
    { name: 'label_id', datatype: 'INT64', shape: [-1] },
    { name: 'known', datatype: 'BOOL', shape: [-1] },
  ]);
  assert.equal((await getJson(`${url}/v2/models/nope`)).status, 404);
  assert.equal((await getJson(`${url}/v2/models/mlp-classifier/versions/9.9.9`)).status, 404);
  const ready = await getJson(`${url}/v2/models/mlp-classifier/ready`);
  assert.equal(ready.status, 200);
  assert.equal(ready.body.ready, true);
  assert.equal((await getJson(`${url}/v2/models/mlp-classifier/versions/1.0.0/ready`)).status, 200);
  assert.equal((await getJson(`${url}/v2/models/nope/ready`)).status, 404);
});

test('JSON infer: id echoed, nested or flat data, outputs filter', async () => {
  const { data, reference } = mlpRows(2);
  const flat = await postJson(`${url}/v2/models/mlp-classifier/infer`, {
    id: 'req-7',
    inputs: [{ name: 'features', datatype: 'FP32', shape: [2, 8], data: Array.from(data) }],
  });
  assert.equal(flat.status, 200, flat.body.error);
  assert.equal(flat.body.id, 'req-7');
  assert.equal(flat.body.model_name, 'mlp-classifier');
  assert.equal(flat.body.model_version, '1.0.0');
  const outputs = flat.body.outputs as Array<{ name: string; shape: number[]; data: number[] }>;
  assert.deepEqual(
    outputs.map((o) => o.name),
    ['logits', 'probabilities'],
  );
  const probs = outputs[1] as { shape: number[]; data: number[] };
  assert.deepEqual(probs.shape, [2, 3]);
  const want = reference.probabilities?.data as Float32Array;
  probs.data.forEach((v, i) => {
    assert.ok(Math.abs(v - (want[i] as number)) < 1e-5);
  });

  const nested = await postJson(`${url}/v2/models/mlp-classifier/versions/1.0.0/infer`, {
    inputs: [
      {
        name: 'features',
        datatype: 'FP32',
        shape: [2, 8],
        data: [Array.from(data.subarray(0, 8)), Array.from(data.subarray(8))],
      },
    ],
    outputs: [{ name: 'probabilities' }],
  });
  assert.equal(nested.status, 200, nested.body.error);
  assert.equal(nested.body.id, undefined);
  const only = nested.body.outputs as Array<{ name: string; data: number[] }>;
  assert.deepEqual(
    only.map((o) => o.name),
    ['probabilities'],
  );
  assert.deepEqual(only[0]?.data, probs.data);
});

test('BYTES in and out, INT64 and BOOL outputs', async () => {
  const texts = [...MLP_LABELS, 'hello', 'Ünïcødé ✓'];
  const res = await postJson(`${url}/v2/models/string-echo/infer`, {
    inputs: [{ name: 'text', datatype: 'BYTES', shape: [texts.length], data: texts }],
  });
  assert.equal(res.status, 200, res.body.error);
  const out = Object.fromEntries(
    (res.body.outputs as Array<{ name: string; datatype: string; data: unknown[] }>).map((o) => [o.name, o]),
  );
  assert.deepEqual(out.echo?.data, texts);
  assert.equal(out.echo?.datatype, 'BYTES');
  assert.deepEqual(out.label_id?.data, [0, 1, 2, -1, -1]);
  assert.equal(out.label_id?.datatype, 'INT64');
  assert.deepEqual(out.known?.data, [true, true, true, false, false]);
  const ref = stringEcho().reference({ text: { type: 'string', data: texts, dims: [texts.length] } });
  assert.deepEqual(Array.from(ref.label_id?.data as BigInt64Array, Number), out.label_id?.data);
});

test('binary tensor extension: binary inputs, binary_data_output, per-output binary_data, BYTES', async () => {
  const { data } = mlpRows(3);
  const json = await postJson(`${url}/v2/models/mlp-classifier/infer`, {
    inputs: [{ name: 'features', datatype: 'FP32', shape: [3, 8], data: Array.from(data) }],
  });
  const jsonOut = json.body.outputs as Array<{ name: string; data: number[] }>;

  const blob = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const { body, headerLength } = binaryBody(
    {
      id: 'bin',
      inputs: [
        { name: 'features', datatype: 'FP32', shape: [3, 8], parameters: { binary_data_size: blob.length } },
      ],
      parameters: { binary_data_output: true },
    },
    [blob],
  );
  const res = await fetch(`${url}/v2/models/mlp-classifier/infer`, {
    method: 'POST',
    headers: {
      'content-type': 'application/octet-stream',
      'inference-header-content-length': String(headerLength),
    },
    body,
  });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'application/octet-stream');
  const raw = Buffer.from(await res.arrayBuffer());
  const answer = splitBinaryAnswer(raw, Number(res.headers.get('inference-header-content-length')));
  assert.equal(answer.header.id, 'bin');
  for (const o of answer.header.outputs) {
    assert.equal(o.data, undefined);
    const bytes = answer.blobs.get(o.name) as Buffer;
    const values = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
    assert.deepEqual(Array.from(values), jsonOut.find((j) => j.name === o.name)?.data);
  }

  // Per output: probabilities binary, logits JSON.
  const mixed = binaryBody(
    {
      inputs: [
        { name: 'features', datatype: 'FP32', shape: [3, 8], parameters: { binary_data_size: blob.length } },
      ],
      outputs: [
        { name: 'logits', parameters: { binary_data: false } },
        { name: 'probabilities', parameters: { binary_data: true } },
      ],
    },
    [blob],
  );
  const res2 = await fetch(`${url}/v2/models/mlp-classifier/infer`, {
    method: 'POST',
    headers: { 'inference-header-content-length': String(mixed.headerLength) },
    body: mixed.body,
  });
  const answer2 = splitBinaryAnswer(
    Buffer.from(await res2.arrayBuffer()),
    Number(res2.headers.get('inference-header-content-length')),
  );
  assert.deepEqual(answer2.header.outputs[0]?.data, jsonOut[0]?.data);
  assert.deepEqual([...answer2.blobs.keys()], ['probabilities']);

  // BYTES both ways: 4-byte little-endian length prefixes.
  const texts = ['fault', '', 'Ünïcødé ✓'];
  const encoded = Buffer.concat(
    texts.flatMap((t) => {
      const b = Buffer.from(t);
      const len = Buffer.alloc(4);
      len.writeUInt32LE(b.length);
      return [len, b];
    }),
  );
  const strBody = binaryBody(
    {
      inputs: [
        { name: 'text', datatype: 'BYTES', shape: [3], parameters: { binary_data_size: encoded.length } },
      ],
      outputs: [{ name: 'echo', parameters: { binary_data: true } }, { name: 'label_id' }],
    },
    [encoded],
  );
  const res3 = await fetch(`${url}/v2/models/string-echo/infer`, {
    method: 'POST',
    headers: { 'inference-header-content-length': String(strBody.headerLength) },
    body: strBody.body,
  });
  assert.equal(res3.status, 200);
  const answer3 = splitBinaryAnswer(
    Buffer.from(await res3.arrayBuffer()),
    Number(res3.headers.get('inference-header-content-length')),
  );
  assert.deepEqual(answer3.blobs.get('echo'), encoded);
  assert.deepEqual(answer3.header.outputs.find((o) => o.name === 'label_id')?.data, [2, -1, -1]);
});

test('bad requests get {"error"} with 400, 404, 405', async () => {
  const infer = `${url}/v2/models/mlp-classifier/infer`;
  const cases: Array<[unknown, RegExp]> = [
    [
      { inputs: [{ name: 'features', datatype: 'FP64', shape: [1, 8], data: new Array(8).fill(0) }] },
      /must be FP32/,
    ],
    [
      { inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 7], data: new Array(7).fill(0) }] },
      /shape/,
    ],
    [
      { inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 8], data: new Array(9).fill(0) }] },
      /9 values/,
    ],
    [
      { inputs: [{ name: 'other', datatype: 'FP32', shape: [1, 8], data: new Array(8).fill(0) }] },
      /no input named other/,
    ],
    [{ inputs: [{ name: 'features', datatype: 'FLOAT', shape: [1, 8], data: [] }] }, /unknown datatype/],
    [
      { inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 8], data: new Array(8).fill('x') }] },
      /numbers/,
    ],
    [
      {
        inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 8], data: new Array(8).fill(0) }],
        outputs: [{ name: 'nope' }],
      },
      /no output named nope/,
    ],
    [{ nothing: true }, /inputs/],
  ];
  for (const [body, message] of cases) {
    const res = await postJson(infer, body);
    assert.equal(res.status, 400, JSON.stringify(body));
    assert.match(res.body.error ?? '', message);
  }
  const garbage = await fetch(infer, { method: 'POST', body: '{not json' });
  assert.equal(garbage.status, 400);
  assert.match(((await garbage.json()) as { error: string }).error, /JSON/);
  const shortBinary = await fetch(infer, {
    method: 'POST',
    headers: { 'inference-header-content-length': '9999' },
    body: '{}',
  });
  assert.equal(shortBinary.status, 400);
  const unknown = await postJson(`${url}/v2/models/nope/infer`, { inputs: [] });
  assert.equal(unknown.status, 404);
  assert.match(unknown.body.error ?? '', /nope/);
  const wrongMethod = await fetch(infer);
  assert.equal(wrongMethod.status, 405);
});

test('repository index lists models with version and state', async () => {
  const res = await postJson(`${url}/v2/repository/index`, {});
  assert.equal(res.status, 200);
  assert.deepEqual(res.body, [
    { name: 'mlp-classifier', version: '1.0.0', state: 'READY', reason: '' },
    { name: 'string-echo', version: '1.0.0', state: 'READY', reason: '' },
  ]);
  const empty = await fetch(`${url}/v2/repository/index`, { method: 'POST' });
  assert.equal(empty.status, 200);
});

/** x [n] → y [2, n/2]: onnxruntime fails at run time when n is odd. */
function pairsModel(): ExampleModel {
  const g = new GraphBuilder('pairs')
    .input('x', 'float', ['n'])
    .output('y', 'float', [2, 'half'])
    .initializer('shape', BigInt64Array.of(2n, -1n), [2])
    .node('Reshape', ['x', 'shape'], ['y']);
  return {
    name: 'pairs',
    description: 'reshapes x into two rows',
    bytes: g.toBytes(),
    inputs: g.inputs,
    outputs: g.outputs,
    reference: (feeds) => ({
      y: { ...(feeds.x as { type: 'float'; data: Float32Array; dims: number[] }), dims: [2, 1] },
    }),
    sample: () => ({ x: { type: 'float', data: Float32Array.of(1, 2), dims: [2] } }),
  };
}

test('a failure inside onnxruntime answers 500 with its message and counts as BACKEND', async () => {
  const built = await writeBundle(
    pairsModel(),
    { name: 'pairs', version: '1.0.0', releaseCounter: 1 },
    tempDir('pairs'),
  );
  await agent.registry.load(await readBundle(built.dir));
  const ok = await postJson(`${url}/v2/models/pairs/infer`, {
    inputs: [{ name: 'x', datatype: 'FP32', shape: [4], data: [1, 2, 3, 4] }],
  });
  assert.equal(ok.status, 200, ok.body.error);
  assert.deepEqual((ok.body.outputs as Array<{ shape: number[] }>)[0]?.shape, [2, 2]);
  const odd = await postJson(`${url}/v2/models/pairs/infer`, {
    inputs: [{ name: 'x', datatype: 'FP32', shape: [3], data: [1, 2, 3] }],
  });
  assert.equal(odd.status, 500);
  assert.match(odd.body.error ?? '', /reshape|Reshape|shape/);
  const metrics = await (await fetch(`${url}/metrics`)).text();
  assert.match(metrics, /nv_inference_request_failure\{model="pairs",version="1\.0\.0",reason="BACKEND"\} 1/);
  await agent.registry.unload('pairs', '1.0.0');
});
