import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, test } from 'node:test';
import ort from 'onnxruntime-node';
import { GraphBuilder } from '../shared/onnx/builder.ts';
import { linearRegression, paddedModel } from '../shared/onnx/models.ts';
import { onnxType } from '../shared/onnx/onnx-schema.ts';
import {
  alignWeights,
  LayoutError,
  MAPPED_MIN_BYTES,
  WEIGHT_ALIGN,
  weightlessModel,
} from '../shared/onnx/weights-layout.ts';
import { tempDir } from './helpers/tmp.ts';

interface Initializer {
  name: string;
  dims: number[];
  rawData?: Uint8Array;
  externalData?: Array<{ key: string; value: string }>;
  dataLocation?: number;
}

function initializers(bytes: Uint8Array): Initializer[] {
  const model = onnxType('ModelProto').toObject(onnxType('ModelProto').decode(bytes), {
    longs: Number,
    defaults: false,
  }) as { graph: { initializer: Initializer[] } };
  return model.graph.initializer;
}

/** The same model with an unknown field of `size` bytes in front: every offset moves, the meaning does not. */
function shifted(model: Uint8Array, size: number): Uint8Array {
  // Field 1807, wire type 2 (tag 0xfa 0x70), a 1-byte length, then size - 3 bytes.
  const field = Buffer.alloc(size);
  field.set([0xfa, 0x70, size - 3], 0);
  return Buffer.concat([field, model]);
}

async function outputs(
  model: Uint8Array | string,
  options: ort.InferenceSession.SessionOptions = {},
): Promise<Record<string, number[]>> {
  const session =
    typeof model === 'string'
      ? await ort.InferenceSession.create(model, options)
      : await ort.InferenceSession.create(model, options);
  try {
    const x = Float32Array.from({ length: 16 }, (_, i) => Math.sin(i) * 2);
    const result = await session.run({
      [session.inputNames[0] as string]: new ort.Tensor('float32', x, [2, 8]),
    });
    return Object.fromEntries(
      Object.entries(result).map(([k, t]) => [k, Array.from(t.data as Float32Array)]),
    );
  } finally {
    await session.release();
  }
}

describe('model weights laid out for mapping', () => {
  // About 1 MiB: three initializers of at least 64 KiB (two weight matrices and a bias).
  const model = paddedModel(1024 * 1024).bytes;
  const large = initializers(model).filter((t) => (t.rawData?.length ?? 0) >= MAPPED_MIN_BYTES);

  test('alignWeights puts each large initializer at an aligned offset and changes nothing else', async () => {
    assert.equal(large.length, 3);
    const dir = tempDir('layout');
    // The example's offsets are whatever they are; move them off alignment on purpose.
    const source = shifted(model, 4 + WEIGHT_ALIGN);
    assert.equal(weightlessModel(write(dir, 'source.onnx', source)), undefined, 'nothing aligned to map');
    const { bytes, aligned } = alignWeights(source);
    assert.equal(aligned, 3);
    assert.ok(bytes.length - source.length <= 3 * (WEIGHT_ALIGN + 4), 'padding only');
    // The same tensors with the same bytes, in the order they were.
    const before = initializers(source);
    const after = initializers(bytes);
    assert.deepEqual(
      after.map((t) => [t.name, t.dims, Buffer.from(t.rawData ?? [])]),
      before.map((t) => [t.name, t.dims, Buffer.from(t.rawData ?? [])]),
    );
    for (const t of large) {
      const at = Buffer.from(bytes).indexOf(Buffer.from(t.rawData as Uint8Array));
      assert.ok(at > 0 && at % WEIGHT_ALIGN === 0, `${t.name} data at ${at}`);
    }
    // onnxruntime reads the padding as an unknown field and answers exactly as before.
    assert.deepEqual(await outputs(bytes), await outputs(source));
    // Laying out a laid-out model changes nothing.
    assert.deepEqual(Buffer.from(alignWeights(bytes).bytes), Buffer.from(bytes));
    // Shifted again by a few bytes, it is realigned: the old padding goes, new padding comes.
    const again = alignWeights(shifted(bytes, 7));
    assert.equal(again.aligned, 3);
    // The padding field's tag (field 20304, length-delimited) is there.
    assert.ok(Buffer.from(again.bytes).indexOf(Buffer.from([0x82, 0xf5, 0x09])) > 0);
    assert.deepEqual(await outputs(again.bytes), await outputs(source));
  });

  test('weightlessModel names the aligned weights as byte ranges of the model file, and the session maps them', async () => {
    const dir = tempDir('layout');
    const path = write(dir, 'model.onnx', alignWeights(model).bytes);
    const file = readFileSync(path);
    const w = weightlessModel(path);
    assert.ok(w !== undefined);
    assert.equal(w.tensors, 3);
    assert.ok(w.bytes.length < 4096, `${w.bytes.length} bytes without the weights`);
    let mapped = 0;
    for (const t of initializers(w.bytes)) {
      const original = large.find((l) => l.name === t.name);
      if (original === undefined) {
        assert.notEqual(t.dataLocation, 1, `${t.name} is small and stays inline`);
        continue;
      }
      assert.equal(t.dataLocation, 1);
      const ext = Object.fromEntries((t.externalData ?? []).map((e) => [e.key, e.value]));
      assert.equal(ext['location'], 'model.onnx');
      const offset = Number(ext['offset']);
      const length = Number(ext['length']);
      assert.equal(offset % WEIGHT_ALIGN, 0);
      assert.deepEqual(file.subarray(offset, offset + length), Buffer.from(original.rawData as Uint8Array));
      mapped += length;
    }
    assert.equal(mapped, w.mappedBytes);
    const folder = { extra: { session: { model_external_initializers_file_folder_path: dirname(path) } } };
    assert.deepEqual(await outputs(w.bytes, folder), await outputs(path));
    // Another directory does not hold the file: onnxruntime says so rather than reading elsewhere.
    const elsewhere = {
      extra: { session: { model_external_initializers_file_folder_path: tempDir('layout') } },
    };
    await assert.rejects(ort.InferenceSession.create(w.bytes, elsewhere), /does not exist|external data/i);
  });

  test('small models are left as they are and nothing is mapped', () => {
    const small = linearRegression().bytes;
    const laid = alignWeights(small);
    assert.equal(laid.aligned, 0);
    assert.deepEqual(Buffer.from(laid.bytes), Buffer.from(small));
    assert.equal(weightlessModel(write(tempDir('layout'), 'model.onnx', small)), undefined);
  });

  test('a model with some large weights left unaligned is not mapped at all', () => {
    // Only the largest initializer laid out; the other two stay where they are.
    const biggest = Math.max(...large.map((t) => t.rawData?.length ?? 0));
    const source = shifted(model, 4 + WEIGHT_ALIGN);
    const partly = alignWeights(source, { minBytes: biggest });
    assert.equal(partly.aligned, 1);
    const offsets = large.map((t) => Buffer.from(partly.bytes).indexOf(Buffer.from(t.rawData as Uint8Array)));
    assert.equal(offsets.filter((o) => o % WEIGHT_ALIGN === 0).length, 1, `offsets ${offsets}`);
    const path = write(tempDir('layout'), 'model.onnx', partly.bytes);
    assert.equal(weightlessModel(path, { minBytes: biggest })?.tensors, 1);
    assert.equal(weightlessModel(path), undefined);
  });

  test('fields it skips are not judged; tags and lengths are read as protobuf reads them', async () => {
    const dir = tempDir('layout');
    // model_version = -1: a 10-byte varint, which means nothing to the layout.
    const negative = Buffer.concat([Buffer.from([0x28, ...Array(9).fill(0xff), 0x01]), model]);
    const laid = alignWeights(negative);
    assert.equal(laid.aligned, 3);
    assert.equal(weightlessModel(write(dir, 'negative.onnx', laid.bytes))?.tensors, 3);
    assert.deepEqual(await outputs(laid.bytes), await outputs(model));
    // A tag past 32 bits: protobuf would read the low 32 (here raw_data); the walker refuses it
    // rather than take it for another field.
    const wide = Buffer.concat([model, Buffer.from([0xca, 0x80, 0x80, 0x80, 0x10, 0x00])]);
    assert.throws(() => alignWeights(wide), /out of range/);
    assert.throws(() => weightlessModel(write(dir, 'wide.onnx', wide)), LayoutError);
  });

  test('a graph whose length sits at a varint boundary is laid out with a longer length prefix', async () => {
    // One initializer; depending on the shift, the laid-out graph ends just under or over 2^21
    // bytes, where its length prefix goes from 3 bytes to 4.
    const elements = (2 ** 21 - 140) / 4;
    const g = new GraphBuilder('boundary')
      .input('x', 'float', [1, elements])
      .output('y', 'float', [1, elements])
      .initializer(
        'w',
        Float32Array.from({ length: elements }, (_, i) => (i % 7) - 3),
        [1, elements],
      )
      .node('Add', ['x', 'w'], ['y'])
      .toBytes();
    /** The graph field's length and the size of its prefix. */
    const graphLength = (bytes: Uint8Array) => {
      const at = Buffer.from(bytes).indexOf(0x3a); // ModelProto.graph, wire type 2
      let n = 0;
      let i = at + 1;
      for (let scale = 1; ; scale *= 128) {
        const byte = bytes[i++] as number;
        n += (byte & 0x7f) * scale;
        if (byte < 0x80) return { n, prefix: i - at - 1 };
      }
    };
    // A length under 2^21 in a 4-byte prefix: with 3 bytes the padding would have grown past it.
    const padded: number[] = [];
    for (let shift = 4; shift < 4 + WEIGHT_ALIGN; shift++) {
      const laid = alignWeights(shifted(g, shift));
      assert.equal(laid.aligned, 1, `shift ${shift}`);
      const { n, prefix } = graphLength(laid.bytes.subarray(shift));
      assert.equal(prefix, n < 2 ** 21 ? prefix : 4);
      if (n < 2 ** 21 && prefix === 4) padded.push(shift);
    }
    assert.ok(padded.length > 0, 'some shift reaches the boundary');
    // onnxruntime reads the longer prefix as it reads a minimal one.
    const x = new Float32Array(elements).fill(1);
    const session = await ort.InferenceSession.create(alignWeights(shifted(g, padded[0] as number)).bytes);
    const y = (await session.run({ x: new ort.Tensor('float32', x, [1, elements]) })).y?.data as Float32Array;
    assert.deepEqual([y[0], y[1], y[6]], [-2, -1, 4]);
    await session.release();
  });

  test('what is not a protobuf it can walk is a LayoutError, not a guess', () => {
    const dir = tempDir('layout');
    assert.throws(
      () => weightlessModel(write(dir, 'text.onnx', Buffer.from('not a model at all'))),
      LayoutError,
    );
    // Cut inside the weights: a field runs past the end of the file.
    const laid = alignWeights(model).bytes;
    assert.throws(
      () => weightlessModel(write(dir, 'cut.onnx', laid.subarray(0, laid.length >> 1))),
      LayoutError,
    );
    assert.throws(() => alignWeights(Buffer.from([0x0b, 0x01])), LayoutError, 'groups are not ONNX');
  });
});

function write(dir: string, name: string, bytes: Uint8Array): string {
  const path = join(dir, name);
  writeFileSync(path, bytes);
  return path;
}
