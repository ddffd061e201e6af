import assert from 'node:assert/strict';
import { test } from 'node:test';
import { inferResponseJson, outputJson } from '../agent/http/v2-json-text.ts';
import { isOutpostError } from '../shared/errors.ts';
import { DATATYPES, type Datatype, floatToHalf, halfToFloat, type Tensor } from '../shared/tensor.ts';
import {
  decodeBinaryTensor,
  decodeJsonTensor,
  encodeBinaryTensor,
  encodeJsonTensor,
} from '../shared/v2-codec.ts';

const SAMPLES: Record<Datatype, unknown[]> = {
  BOOL: [true, false, true, true],
  UINT8: [0, 1, 200, 255],
  UINT16: [0, 1, 60000, 65535],
  UINT32: [0, 1, 4000000000, 7],
  UINT64: [0, 1, 2 ** 40, 9],
  INT8: [-128, -1, 0, 127],
  INT16: [-32768, -2, 3, 32767],
  INT32: [-2147483648, -3, 4, 2147483647],
  INT64: [-(2 ** 50), -1, 0, 2 ** 50],
  FP16: [1, -2.5, 0.0999755859375, 65504],
  FP32: [1.5, -0.25, 3.4028234663852886e38, 1.401298464324817e-45],
  FP64: [Math.PI, -1e300, 5e-324, 0],
  BYTES: ['', 'a', 'Ünïcødé ✓', 'x'.repeat(300)],
};

test('every V2 datatype round-trips through JSON (flat and nested) and the binary layout', () => {
  for (const datatype of DATATYPES) {
    const data = SAMPLES[datatype];
    const flat = decodeJsonTensor({ name: 'x', datatype, shape: [2, 2], data });
    assert.deepEqual(encodeJsonTensor('x', flat).data, data, `${datatype} JSON`);
    const nested = decodeJsonTensor({
      name: 'x',
      datatype,
      shape: [2, 2],
      data: [data.slice(0, 2), data.slice(2)],
    });
    assert.deepEqual(encodeJsonTensor('x', nested).data, data, `${datatype} nested JSON`);
    const raw = encodeBinaryTensor(flat);
    // The raw bytes start at an odd offset inside a larger body: decoding must not assume alignment.
    const body = Buffer.concat([Buffer.from([7]), raw]);
    const back = decodeBinaryTensor({ name: 'x', datatype, shape: [2, 2] }, body.subarray(1));
    assert.deepEqual(encodeJsonTensor('x', back).data, data, `${datatype} binary`);
    assert.equal(back.data.length, 4);
  }
});

test('infer answers written as text are byte for byte what JSON.stringify gives for the same objects', () => {
  const specials: Tensor[] = [
    {
      datatype: 'FP32',
      shape: [5],
      data: new Float32Array([Number.NaN, Number.POSITIVE_INFINITY, -0, 0.1, -1e-7]),
    },
    { datatype: 'FP64', shape: [3], data: new Float64Array([Number.NEGATIVE_INFINITY, 1e21, 123456789.125]) },
    { datatype: 'FP16', shape: [2], data: new Uint16Array([0x7c00, 0x7e00]) },
    { datatype: 'FP32', shape: [0], data: new Float32Array(0) },
    { datatype: 'BYTES', shape: [2], data: ['"quoted"\n', '\u0000 ✓'] },
  ];
  for (const datatype of DATATYPES) {
    const t = decodeJsonTensor({ name: 'x', datatype, shape: [2, 2], data: SAMPLES[datatype] });
    specials.push(t);
  }
  for (const [i, t] of specials.entries()) {
    const name = `out "${i}"`;
    assert.equal(outputJson(name, t), JSON.stringify(encodeJsonTensor(name, t)), `${t.datatype} #${i}`);
    const binary = { name, datatype: t.datatype, shape: t.shape, parameters: { binary_data_size: 16 } };
    assert.equal(outputJson(name, t, 16), JSON.stringify(binary));
  }
  const outputs = specials.map((t, i) => encodeJsonTensor(`o${i}`, t));
  for (const id of [undefined, 'req "1" ✓']) {
    const head = { model_name: 'm\\x', model_version: '1.0.0', id };
    const want = JSON.stringify({
      model_name: head.model_name,
      model_version: head.model_version,
      ...(id === undefined ? {} : { id }),
      outputs,
    });
    const got = inferResponseJson(
      head,
      specials.map((t, i) => outputJson(`o${i}`, t)),
    );
    assert.equal(got, want);
  }
});

test('FP16 conversion rounds to nearest even and keeps specials', () => {
  assert.equal(floatToHalf(1), 0x3c00);
  assert.equal(floatToHalf(-2), 0xc000);
  assert.equal(floatToHalf(65504), 0x7bff);
  assert.equal(floatToHalf(65520), 0x7c00, 'rounds up to infinity');
  assert.equal(floatToHalf(Number.POSITIVE_INFINITY), 0x7c00);
  assert.ok(Number.isNaN(halfToFloat(floatToHalf(Number.NaN))));
  assert.equal(floatToHalf(2 ** -24), 0x0001, 'smallest subnormal');
  assert.equal(floatToHalf(2 ** -26), 0, 'underflows to zero');
  assert.equal(floatToHalf(1 + 2 ** -11), 0x3c00, 'tie rounds to even');
  assert.equal(floatToHalf(1 + 3 * 2 ** -11), 0x3c02, 'tie rounds to even (up)');
  for (let bits = 0; bits < 0x7c00; bits += 37) assert.equal(floatToHalf(halfToFloat(bits)), bits);
});

test('malformed tensors are refused with INVALID_INPUT', () => {
  const bad: Array<[() => unknown, RegExp]> = [
    [() => decodeJsonTensor({ name: 'x', datatype: 'INT32', shape: [2], data: [1.5, 2] }), /integers/],
    [() => decodeJsonTensor({ name: 'x', datatype: 'UINT64', shape: [1], data: [-1] }), /negative/],
    [() => decodeJsonTensor({ name: 'x', datatype: 'BOOL', shape: [1], data: ['yes'] }), /true or false/],
    [() => decodeJsonTensor({ name: 'x', datatype: 'BYTES', shape: [1], data: [3] }), /strings/],
    [() => decodeJsonTensor({ name: 'x', datatype: 'FP32', shape: [-1], data: [] }), /non-negative/],
    [() => decodeJsonTensor({ name: 'x', datatype: 'FP32', shape: [2] }), /no data/],
    [() => decodeBinaryTensor({ name: 'x', datatype: 'FP32', shape: [2] }, Buffer.alloc(7)), /needs 8/],
    [
      () => decodeBinaryTensor({ name: 'x', datatype: 'BYTES', shape: [1] }, Buffer.from([5, 0, 0, 0, 65])),
      /past/,
    ],
    [
      () => decodeBinaryTensor({ name: 'x', datatype: 'BYTES', shape: [2] }, Buffer.from([1, 0, 0, 0, 65])),
      /needs 2/,
    ],
  ];
  for (const [fn, message] of bad) {
    assert.throws(fn, (err: unknown) => isOutpostError(err, 'INVALID_INPUT') && message.test(err.message));
  }
});
