import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import ort from 'onnxruntime-node';
import { attr, GraphBuilder } from '../shared/onnx/builder.ts';
import { parseArgs, writeExamples } from '../shared/onnx/make-examples.ts';
import {
  brokenMlp,
  type ExampleModel,
  type Feeds,
  linearRegression,
  logisticRegression,
  MLP_LABELS,
  mlpClassifier,
  mlpV2,
  paddedModel,
  type RefTensor,
  simulateVibration,
  stringEcho,
  VIBRATION_ANOMALY_THRESHOLD,
  vibrationAnomaly,
  WIDE_MLP_HIDDEN,
  wideMlp,
  windowsToFeeds,
} from '../shared/onnx/models.ts';
import { onnxType } from '../shared/onnx/onnx-schema.ts';

type OrtTensor = InstanceType<typeof ort.Tensor>;

const RTOL = 1e-4;
const ATOL = 1e-6;

function toOrt(t: RefTensor): OrtTensor {
  switch (t.type) {
    case 'float':
      return new ort.Tensor('float32', t.data, t.dims);
    case 'int64':
      return new ort.Tensor('int64', t.data, t.dims);
    case 'bool':
      return new ort.Tensor('bool', t.data, t.dims);
    case 'string':
      return new ort.Tensor('string', t.data, t.dims);
  }
}

async function load(model: ExampleModel): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(Buffer.from(model.bytes));
}

async function run(session: ort.InferenceSession, feeds: Feeds): Promise<Record<string, OrtTensor>> {
  const ortFeeds = Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, toOrt(v)]));
  return session.run(ortFeeds);
}

function floats(t: OrtTensor | RefTensor | undefined): Float32Array {
  assert.ok(t?.data instanceof Float32Array, 'expected float32 data');
  return t.data;
}

function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, label: string): void {
  assert.equal(actual.length, expected.length, `${label}: length`);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i] ?? Number.NaN;
    const e = expected[i] ?? Number.NaN;
    assert.ok(Math.abs(a - e) <= ATOL + RTOL * Math.abs(e), `${label}[${i}]: got ${a}, expected ${e}`);
  }
}

function assertMatchesReference(model: ExampleModel, actual: Record<string, OrtTensor>, feeds: Feeds): void {
  const expected = model.reference(feeds);
  for (const spec of model.outputs) {
    const a = actual[spec.name];
    const e = expected[spec.name];
    assert.ok(a && e, `${model.name}: output ${spec.name} missing`);
    const label = `${model.name}.${spec.name}`;
    assert.deepEqual([...a.dims], e.dims, `${label}: dims`);
    switch (e.type) {
      case 'float':
        assert.equal(a.type, 'float32', label);
        assertClose(floats(a), e.data, label);
        break;
      case 'int64':
        assert.equal(a.type, 'int64', label);
        assert.deepEqual([...(a.data as BigInt64Array)], [...e.data], label);
        break;
      case 'bool':
        assert.equal(a.type, 'bool', label);
        assert.deepEqual([...(a.data as Uint8Array)].map(Number), [...e.data], label);
        break;
      case 'string':
        assert.equal(a.type, 'string', label);
        assert.deepEqual(a.data, e.data, label);
        break;
    }
  }
}

const MODELS: [string, () => ExampleModel][] = [
  ['linearRegression', linearRegression],
  ['logisticRegression', logisticRegression],
  ['mlpClassifier', mlpClassifier],
  ['mlpV2', mlpV2],
  ['brokenMlp', brokenMlp],
  ['vibrationAnomaly', vibrationAnomaly],
  ['stringEcho', stringEcho],
  ['paddedModel (2 MB)', () => paddedModel(2 * 1024 * 1024)],
  ['wideMlp', wideMlp],
];

for (const [label, build] of MODELS) {
  test(`${label}: onnxruntime matches the reference at batch 1 and 4`, async () => {
    const model = build();
    const session = await load(model);
    for (const [batch, seed] of [
      [1, 5],
      [4, 6],
      [4, 99],
    ] as const) {
      const feeds = model.sample(batch, seed);
      assertMatchesReference(model, await run(session, feeds), feeds);
    }
  });

  test(`${label}: metadata reports the declared signature with a symbolic batch`, async () => {
    const model = build();
    const session = await load(model);
    assert.deepEqual(
      session.inputNames,
      model.inputs.map((i) => i.name),
    );
    assert.deepEqual(
      session.outputNames,
      model.outputs.map((o) => o.name),
    );
    for (const [meta, spec] of [
      ...session.inputMetadata.map((m, i) => [m, model.inputs[i]] as const),
      ...session.outputMetadata.map((m, i) => [m, model.outputs[i]] as const),
    ]) {
      assert.ok(meta.isTensor && spec);
      assert.equal(meta.shape[0], 'batch');
      assert.deepEqual([...meta.shape], spec.shape);
      assert.equal(meta.type, spec.type === 'float' ? 'float32' : spec.type);
    }
  });
}

test('linearRegression computes the documented formula', async () => {
  const model = linearRegression();
  const out = await run(await load(model), {
    x: { type: 'float', data: Float32Array.of(1, 2, 3, 0, 0, 0), dims: [2, 3] },
  });
  assertClose(floats(out['y']), [2 - 2 + 1.5 + 0.25, 0.25], 'y');
});

test('mlpClassifier labels follow feature severity; v2 agrees, broken does not', async () => {
  const feeds = mlpClassifier().sample(6);
  const outputs = await Promise.all(
    [mlpClassifier(), mlpV2(), brokenMlp()].map(async (m) => run(await load(m), feeds)),
  );
  const [v1, v2, broken] = outputs.map((o) => floats(o['probabilities']));
  assert.ok(v1 && v2 && broken);
  const argmax = (p: Float32Array, row: number) => {
    const r = [...p.subarray(row * 3, row * 3 + 3)];
    return MLP_LABELS[r.indexOf(Math.max(...r))];
  };
  const rows = [0, 1, 2, 3, 4, 5];
  assert.deepEqual(
    rows.map((r) => argmax(v1, r)),
    ['normal', 'warning', 'fault', 'normal', 'warning', 'fault'],
  );
  assert.deepEqual(
    rows.map((r) => argmax(v2, r)),
    rows.map((r) => argmax(v1, r)),
  );
  assert.ok(
    v1.some((p, i) => Math.abs(p - (v2[i] ?? 0)) > 1e-3),
    'v2 should differ numerically from v1',
  );
  assert.ok(rows.every((r) => argmax(broken, r) === 'fault'));
  assert.ok(Math.max(...v1.map((p, i) => Math.abs(p - (broken[i] ?? 0)))) > 0.5);
});

test('vibrationAnomaly scores clean windows below and faulty windows above the threshold', async () => {
  const session = await load(vibrationAnomaly());
  const clean = Array.from({ length: 16 }, (_, i) =>
    simulateVibration({ fault: false, seed: 100 + i, t0: i * 0.37 }),
  );
  const faulty = Array.from({ length: 16 }, (_, i) =>
    simulateVibration({ fault: true, seed: 200 + i, t0: i * 0.29 }),
  );
  assert.equal(clean[0]?.length, 64);
  assert.equal(clean[0]?.[0]?.length, 3);
  const score = async (windows: number[][][]) =>
    floats((await run(session, windowsToFeeds(windows)))['score']);
  const cleanScores = await score(clean);
  const faultyScores = await score(faulty);
  for (const s of cleanScores) assert.ok(s < VIBRATION_ANOMALY_THRESHOLD / 5, `clean score ${s}`);
  for (const s of faultyScores) assert.ok(s > VIBRATION_ANOMALY_THRESHOLD * 2, `faulty score ${s}`);
  const batch1 = await score([faulty[3] ?? []]);
  assertClose(batch1, [faultyScores[3] ?? 0], 'batch-1 score equals batched score');
});

test('simulateVibration is deterministic per seed and continuous in t0', () => {
  assert.deepEqual(simulateVibration({ seed: 4, t0: 1 }), simulateVibration({ seed: 4, t0: 1 }));
  assert.notDeepEqual(simulateVibration({ seed: 4 }), simulateVibration({ seed: 5 }));
  // Half a window later, the same machine's waveform lines up again apart from sensor noise.
  const first = simulateVibration({ seed: 4, t0: 0 });
  const later = simulateVibration({ seed: 4, t0: 32 / 800 });
  for (let n = 0; n < 32; n++) {
    for (let a = 0; a < 3; a++) {
      const diff = Math.abs((first[n + 32]?.[a] ?? 0) - (later[n]?.[a] ?? 0));
      assert.ok(diff < 0.15, `sample ${n} axis ${a} jumps by ${diff}`);
    }
  }
});

test('stringEcho round-trips strings and maps labels', async () => {
  const model = stringEcho();
  const text = ['fault', 'Ünïcødé ✓', '', 'normal', 'warning', 'FAULT'];
  const feeds: Feeds = { text: { type: 'string', data: text, dims: [text.length] } };
  const out = await run(await load(model), feeds);
  assert.deepEqual(out['echo']?.data, text);
  const labelIds = out['label_id']?.data;
  const known = out['known']?.data;
  assert.ok(labelIds instanceof BigInt64Array && known instanceof Uint8Array);
  assert.deepEqual([...labelIds], [2n, -1n, -1n, 0n, 1n, -1n]);
  assert.deepEqual([...known], [1, 0, 0, 1, 1, 0]);
  assertMatchesReference(model, out, feeds);
});

test('paddedModel defaults to ~50 MB and still runs', async () => {
  const model = paddedModel();
  const target = 50 * 1024 * 1024;
  assert.ok(Math.abs(model.bytes.length - target) < target * 0.01, `size ${model.bytes.length}`);
  const feeds = model.sample(2);
  const out = await run(await load(model), feeds);
  const v1 = await run(await load(mlpClassifier()), feeds);
  const v1p = floats(v1['probabilities']);
  const maxDiff = Math.max(...floats(out['probabilities']).map((p, i) => Math.abs(p - (v1p[i] ?? 0))));
  assert.ok(maxDiff < 0.01, `padded model should predict like v1, max diff ${maxDiff}`);
});

test('wideMlp has two hidden layers of WIDE_MLP_HIDDEN units and predicts like v1', async () => {
  const model = wideMlp();
  const weights = 4 * (8 * WIDE_MLP_HIDDEN + WIDE_MLP_HIDDEN * WIDE_MLP_HIDDEN + WIDE_MLP_HIDDEN * 3);
  assert.ok(model.bytes.length > weights, `size ${model.bytes.length}`);
  const feeds = model.sample(6);
  const wide = floats((await run(await load(model), feeds))['probabilities']);
  const v1 = floats((await run(await load(mlpClassifier()), feeds))['probabilities']);
  const maxDiff = Math.max(...wide.map((p, i) => Math.abs(p - (v1[i] ?? 0))));
  assert.ok(maxDiff < 0.02, `the wide model should predict like v1, max diff ${maxDiff}`);
});

interface DecodedModel {
  irVersion: number;
  producerName: string;
  opsetImport: { domain: string; version: number }[];
  graph: {
    initializer: { dims: number[]; dataType: number; rawData: Uint8Array }[];
    input: { type: { tensorType: { shape: { dim: Record<string, unknown>[] } } } }[];
  };
}

function decode(bytes: Uint8Array): DecodedModel {
  const type = onnxType('ModelProto');
  return type.toObject(type.decode(bytes), { longs: Number }) as DecodedModel;
}

test('builder writes the ONNX envelope: IR 8, producer, opsets, little-endian raw_data', () => {
  const g = new GraphBuilder('g')
    .input('a', 'float', ['n', 2])
    .output('b', 'float', ['n', 2])
    .initializer('w', Float32Array.of(1.5, -2), [2])
    .node('Mul', ['a', 'w'], ['b'], { attributes: { note: attr.string('x'), k: attr.floats([0.5]) } });
  const decoded = decode(g.toBytes());
  assert.equal(decoded.irVersion, 8);
  assert.equal(decoded.producerName, 'outpost');
  assert.deepEqual(decoded.opsetImport, [{ domain: '', version: 17 }]);
  const init = decoded.graph.initializer[0];
  assert.ok(init);
  assert.deepEqual(init.dims, [2]);
  assert.equal(init.dataType, 1);
  assert.deepEqual([...init.rawData], [0x00, 0x00, 0xc0, 0x3f, 0x00, 0x00, 0x00, 0xc0]);
  assert.deepEqual(decoded.graph.input[0]?.type.tensorType.shape.dim, [{ dimParam: 'n' }, { dimValue: 2 }]);
  assert.deepEqual(decode(stringEcho().bytes).opsetImport, [
    { domain: '', version: 17 },
    { domain: 'ai.onnx.ml', version: 3 },
  ]);
});

test('models are byte-for-byte deterministic', () => {
  for (const [label, build] of MODELS) assert.deepEqual(build().bytes, build().bytes, label);
});

test('builder rejects miswired graphs', () => {
  const g = new GraphBuilder('g').input('a', 'float', [1]);
  assert.throws(() => g.node('Relu', ['missing'], ['b']), /not defined/);
  assert.throws(() => g.initializer('w', new Float32Array(3), [2, 2]), /need 4 values/);
  assert.throws(() => g.input('a', 'float', [1]), /defined twice/);
  assert.throws(() => new GraphBuilder('h').output('y', 'float', [1]).toBytes(), /never produced/);
});

test('make-examples writes loadable models', async () => {
  assert.deepEqual(parseArgs(['out', '--padded-mb', '3']), {
    outDir: path.resolve('out'),
    paddedMegabytes: 3,
  });
  assert.throws(() => parseArgs(['--bogus']), /unknown option/);
  const dir = await mkdtemp(path.join(tmpdir(), 'outpost-models-'));
  try {
    const written = await writeExamples(dir);
    assert.equal(written.length, 7);
    for (const file of written) {
      const session = await ort.InferenceSession.create(await readFile(file.path));
      assert.ok(session.inputNames.length > 0, file.path);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
