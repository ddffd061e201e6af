import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import type { Agent } from '../agent/main.ts';
import { type ExampleBundle, exampleBundles } from '../deploy/examples/example-bundles.ts';
import {
  type ExampleModel,
  type Feeds,
  linearRegression,
  logisticRegression,
  mlpClassifier,
  mlpV2,
  stringEcho,
  vibrationAnomaly,
} from '../shared/onnx/models.ts';
import { apiAgent, baseUrl, binaryBody, postJson, splitBinaryAnswer } from './helpers/api.ts';
import { tempDir } from './helpers/tmp.ts';

/**
 * The golden test: for every example model the same inputs go through V2 JSON, V2 binary, TF
 * predict (row and columnar) and a direct onnxruntime `session.run` in this process; every path
 * must give exactly the same values and shapes.
 */
interface Case {
  model: ExampleModel;
  bundle: ExampleBundle;
}

type Flat = { shape: number[]; values: Array<number | string | boolean> };

let agent: Agent;
let url: string;
const cases: Case[] = [];

before(async () => {
  const dir = tempDir('golden');
  cases.push(
    { model: mlpClassifier(), bundle: await exampleBundles.mlp(dir) },
    { model: mlpV2(), bundle: await exampleBundles.mlpV2(dir) },
    { model: linearRegression(), bundle: await exampleBundles.linear(dir) },
    { model: logisticRegression(), bundle: await exampleBundles.logistic(dir) },
    { model: stringEcho(), bundle: await exampleBundles.string(dir) },
    { model: vibrationAnomaly(), bundle: await exampleBundles.vibration(dir) },
  );
  agent = await apiAgent(
    cases.map((c) => c.bundle.dir),
    { runtime: { workers: 1, keepVersions: 2 } },
  );
  url = baseUrl(agent);
});

after(async () => {
  await agent?.stop();
});

const V2_TYPE: Record<string, string> = { float: 'FP32', int64: 'INT64', bool: 'BOOL', string: 'BYTES' };

function jsValues(data: unknown, type: string): Array<number | string | boolean> {
  if (data instanceof Float64Array) throw new Error('unexpected float64 data');
  if (type === 'bool') return Array.from(data as Uint8Array, (v) => v !== 0);
  if (type === 'int64') return Array.from(data as BigInt64Array, Number);
  if (type === 'string') return [...(data as string[])];
  return Array.from(data as Float32Array);
}

function rawBytes(data: unknown, type: string): Buffer {
  if (type === 'string') {
    return Buffer.concat(
      (data as string[]).flatMap((s) => {
        const b = Buffer.from(s);
        const len = Buffer.alloc(4);
        len.writeUInt32LE(b.length);
        return [len, b];
      }),
    );
  }
  const view = data as Float32Array;
  return Buffer.from(view.buffer, view.byteOffset, view.byteLength);
}

function fromRaw(buf: Buffer, datatype: string): Array<number | string | boolean> {
  const copy = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length);
  switch (datatype) {
    case 'FP32':
      return Array.from(new Float32Array(copy));
    case 'INT64':
      return Array.from(new BigInt64Array(copy), Number);
    case 'BOOL':
      return Array.from(new Uint8Array(copy), (v) => v !== 0);
    case 'BYTES': {
      const out: string[] = [];
      for (let o = 0; o < buf.length; ) {
        const n = buf.readUInt32LE(o);
        out.push(buf.toString('utf8', o + 4, o + 4 + n));
        o += 4 + n;
      }
      return out;
    }
    default:
      throw new Error(`unexpected datatype ${datatype}`);
  }
}

async function direct(c: Case, feeds: Feeds): Promise<Record<string, Flat>> {
  const session = await ort.InferenceSession.create(c.bundle.dir + '/' + c.bundle.manifest.model.file);
  try {
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const [name, t] of Object.entries(feeds)) {
      const type = t.type === 'float' ? 'float32' : t.type;
      ortFeeds[name] = new ort.Tensor(type as 'float32', t.data as Float32Array, t.dims);
    }
    const result = await session.run(ortFeeds);
    const out: Record<string, Flat> = {};
    for (const [name, t] of Object.entries(result)) {
      out[name] = { shape: [...t.dims], values: jsValues(t.data, t.type) };
    }
    return out;
  } finally {
    await session.release();
  }
}

function flattenNested(value: unknown, out: unknown[] = []): unknown[] {
  if (Array.isArray(value)) for (const v of value) flattenNested(v, out);
  else out.push(value);
  return out;
}

function shapeOfNested(value: unknown): number[] {
  const shape: number[] = [];
  while (Array.isArray(value)) {
    shape.push(value.length);
    value = value[0];
  }
  return shape;
}

async function viaV2Json(c: Case, feeds: Feeds): Promise<Record<string, Flat>> {
  const { name, version } = c.bundle.manifest;
  const res = await postJson(`${url}/v2/models/${name}/versions/${version}/infer`, {
    inputs: Object.entries(feeds).map(([n, t]) => ({
      name: n,
      datatype: V2_TYPE[t.type],
      shape: t.dims,
      data: jsValues(t.data, t.type),
    })),
  });
  assert.equal(res.status, 200, res.body.error);
  const out: Record<string, Flat> = {};
  for (const o of res.body.outputs as Array<{ name: string; shape: number[]; data: Flat['values'] }>) {
    out[o.name] = { shape: o.shape, values: o.data };
  }
  return out;
}

async function viaV2Binary(c: Case, feeds: Feeds): Promise<Record<string, Flat>> {
  const { name, version } = c.bundle.manifest;
  const blobs = Object.values(feeds).map((t) => rawBytes(t.data, t.type));
  const { body, headerLength } = binaryBody(
    {
      inputs: Object.entries(feeds).map(([n, t], i) => ({
        name: n,
        datatype: V2_TYPE[t.type],
        shape: t.dims,
        parameters: { binary_data_size: blobs[i]?.length },
      })),
      parameters: { binary_data_output: true },
    },
    blobs,
  );
  const res = await fetch(`${url}/v2/models/${name}/versions/${version}/infer`, {
    method: 'POST',
    headers: { 'inference-header-content-length': String(headerLength) },
    body,
  });
  assert.equal(res.status, 200);
  const answer = splitBinaryAnswer(
    Buffer.from(await res.arrayBuffer()),
    Number(res.headers.get('inference-header-content-length')),
  );
  const out: Record<string, Flat> = {};
  for (const o of answer.header.outputs) {
    out[o.name] = { shape: o.shape, values: fromRaw(answer.blobs.get(o.name) as Buffer, o.datatype) };
  }
  return out;
}

/** Row format: one instance per row, each the row's nested values (one input) or keyed by input. */
async function viaTfInstances(c: Case, feeds: Feeds): Promise<Record<string, Flat>> {
  const entries = Object.entries(feeds);
  const rows = entries[0]?.[1].dims[0] ?? 0;
  const rowOf = (t: Feeds[string], r: number) => {
    const size = t.dims.slice(1).reduce((a, b) => a * b, 1);
    const values = jsValues(t.data, t.type).slice(r * size, (r + 1) * size);
    return t.dims.length === 1 ? values[0] : nestRow(values, t.dims.slice(1));
  };
  const instances = Array.from({ length: rows }, (_, r) =>
    entries.length === 1
      ? rowOf(entries[0]![1], r)
      : Object.fromEntries(entries.map(([n, t]) => [n, rowOf(t, r)])),
  );
  const res = await postJson(
    `${url}/v1/models/${c.bundle.manifest.name}/versions/${c.bundle.manifest.releaseCounter}:predict`,
    { instances },
  );
  assert.equal(res.status, 200, res.body.error);
  const predictions = res.body.predictions as unknown[];
  assert.equal(predictions.length, rows);
  const names = c.model.outputs.map((o) => o.name);
  const out: Record<string, Flat> = {};
  for (const n of names) {
    const perRow = predictions.map((p) => (names.length === 1 ? p : (p as Record<string, unknown>)[n]));
    out[n] = { shape: [rows, ...shapeOfNested(perRow[0])], values: flattenNested(perRow) as Flat['values'] };
  }
  return out;
}

function nestRow(values: unknown[], shape: number[]): unknown {
  if (shape.length === 1) return values;
  const stride = shape.slice(1).reduce((a, b) => a * b, 1);
  return Array.from({ length: shape[0] ?? 0 }, (_, i) =>
    nestRow(values.slice(i * stride, (i + 1) * stride), shape.slice(1)),
  );
}

async function viaTfColumns(c: Case, feeds: Feeds): Promise<Record<string, Flat>> {
  const entries = Object.entries(feeds);
  const col = (t: Feeds[string]) => nestRow(jsValues(t.data, t.type), t.dims);
  const inputs =
    entries.length === 1 ? col(entries[0]![1]) : Object.fromEntries(entries.map(([n, t]) => [n, col(t)]));
  const res = await postJson(
    `${url}/v1/models/${c.bundle.manifest.name}/versions/${c.bundle.manifest.releaseCounter}:predict`,
    {
      inputs,
    },
  );
  assert.equal(res.status, 200, res.body.error);
  const names = c.model.outputs.map((o) => o.name);
  const outputs = res.body.outputs as unknown;
  const out: Record<string, Flat> = {};
  for (const n of names) {
    const v = names.length === 1 ? outputs : (outputs as Record<string, unknown>)[n];
    out[n] = { shape: shapeOfNested(v), values: flattenNested(v) as Flat['values'] };
  }
  return out;
}

test('every example model answers identically through V2 JSON, V2 binary, TF predict and session.run', async () => {
  assert.equal(cases.length, 6);
  for (const c of cases) {
    const label = `${c.bundle.manifest.name}@${c.bundle.manifest.version}`;
    const feeds = c.model.sample(3, 1234);
    const want = await direct(c, feeds);
    assert.deepEqual(Object.keys(want).sort(), c.model.outputs.map((o) => o.name).sort(), label);
    const paths = {
      'V2 JSON': await viaV2Json(c, feeds),
      'V2 binary': await viaV2Binary(c, feeds),
      'TF instances': await viaTfInstances(c, feeds),
      'TF inputs': await viaTfColumns(c, feeds),
    };
    for (const [path, got] of Object.entries(paths)) {
      for (const [name, expected] of Object.entries(want)) {
        const actual = got[name];
        assert.ok(actual !== undefined, `${label} ${path}: output ${name} missing`);
        assert.deepEqual(actual.shape, expected.shape, `${label} ${path}: ${name} shape`);
        assert.deepEqual(actual.values, expected.values, `${label} ${path}: ${name} values`);
      }
    }
  }
});
