import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isOutpostError } from '../shared/errors.ts';
import { DATATYPES, type Datatype, floatToHalf, halfToFloat } from '../shared/tensor.ts';
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
