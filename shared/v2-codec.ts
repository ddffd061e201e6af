import { OutpostError } from './errors.ts';
import {
  allocate,
  DATATYPES,
  type Datatype,
  datatypeSize,
  elementCount,
  floatToHalf,
  type Tensor,
  type TensorData,
  tensorValues,
} from './tensor.ts';

/** A tensor as it appears in an Open Inference Protocol (KServe V2) JSON body. */
export interface V2JsonTensor {
  name: string;
  datatype: string;
  shape: number[];
  data?: unknown;
  parameters?: Record<string, unknown>;
}

function flatten(data: unknown, out: unknown[]): void {
  if (Array.isArray(data)) for (const d of data) flatten(d, out);
  else out.push(data);
}

export function isDatatype(value: string): value is Datatype {
  return (DATATYPES as readonly string[]).includes(value);
}

/** Checks the name, datatype and shape of a V2 input tensor header. */
export function checkTensorHeader(t: V2JsonTensor): asserts t is V2JsonTensor & { datatype: Datatype } {
  if (typeof t !== 'object' || t === null || typeof t.name !== 'string')
    throw new OutpostError('INVALID_INPUT', 'an input has no name');
  if (typeof t.datatype !== 'string' || !isDatatype(t.datatype)) {
    throw new OutpostError('INVALID_INPUT', `input ${t.name}: unknown datatype ${String(t.datatype)}`);
  }
  if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isInteger(d) && d >= 0)) {
    throw new OutpostError('INVALID_INPUT', `input ${t.name}: shape must be a list of non-negative integers`);
  }
}

/** Decodes a V2 JSON input tensor; `data` may be flat or nested (row-major). */
export function decodeJsonTensor(t: V2JsonTensor): Tensor {
  checkTensorHeader(t);
  if (t.data === undefined) throw new OutpostError('INVALID_INPUT', `input ${t.name} has no data`);
  // Most bodies send the data flat: then it is used as it is, without a copy.
  let flat: readonly unknown[];
  if (Array.isArray(t.data) && !t.data.some(Array.isArray)) flat = t.data;
  else {
    const out: unknown[] = [];
    flatten(t.data, out);
    flat = out;
  }
  const n = elementCount(t.shape);
  if (flat.length !== n) {
    throw new OutpostError(
      'INVALID_INPUT',
      `input ${t.name}: ${flat.length} values for shape [${t.shape.join(',')}] (needs ${n})`,
    );
  }
  return { datatype: t.datatype, shape: t.shape, data: fill(t.name, t.datatype, flat) };
}

export function fill(name: string, datatype: Datatype, flat: readonly unknown[]): TensorData {
  if (datatype === 'FP32' || datatype === 'FP64') return fillFloats(name, datatype, flat);
  const data = allocate(datatype, flat.length);
  for (let i = 0; i < flat.length; i++) {
    const v = flat[i];
    if (datatype === 'BYTES') {
      if (typeof v !== 'string')
        throw new OutpostError('INVALID_INPUT', `input ${name}: BYTES elements must be strings`);
      (data as string[])[i] = v;
    } else if (datatype === 'BOOL') {
      if (typeof v !== 'boolean' && v !== 0 && v !== 1)
        throw new OutpostError('INVALID_INPUT', `input ${name}: BOOL elements must be true or false`);
      (data as Uint8Array)[i] = v === true || v === 1 ? 1 : 0;
    } else if (datatype === 'INT64' || datatype === 'UINT64') {
      if (typeof v !== 'number' || !Number.isInteger(v))
        throw new OutpostError('INVALID_INPUT', `input ${name}: ${datatype} elements must be integers`);
      if (datatype === 'UINT64' && v < 0)
        throw new OutpostError('INVALID_INPUT', `input ${name}: UINT64 elements must not be negative`);
      (data as BigInt64Array)[i] = BigInt(v);
    } else if (datatype === 'FP16') {
      if (typeof v !== 'number')
        throw new OutpostError('INVALID_INPUT', `input ${name}: FP16 elements must be numbers`);
      (data as Uint16Array)[i] = floatToHalf(v);
    } else {
      if (typeof v !== 'number')
        throw new OutpostError('INVALID_INPUT', `input ${name}: ${datatype} elements must be numbers`);
      if (!datatype.startsWith('FP') && !Number.isInteger(v))
        throw new OutpostError('INVALID_INPUT', `input ${name}: ${datatype} elements must be integers`);
      (data as Float32Array)[i] = v;
    }
  }
  return data;
}

/** The common case on its own: one type check per value and no per-value datatype dispatch. */
function fillFloats(name: string, datatype: 'FP32' | 'FP64', flat: readonly unknown[]): TensorData {
  const data = datatype === 'FP32' ? new Float32Array(flat.length) : new Float64Array(flat.length);
  for (let i = 0; i < flat.length; i++) {
    const v = flat[i];
    if (typeof v !== 'number')
      throw new OutpostError('INVALID_INPUT', `input ${name}: ${datatype} elements must be numbers`);
    data[i] = v;
  }
  return data;
}

export function encodeJsonTensor(name: string, t: Tensor): V2JsonTensor {
  return { name, datatype: t.datatype, shape: t.shape, data: tensorValues(t) };
}

/**
 * The binary tensor extension's raw layout: fixed-size types little-endian, BOOL one byte,
 * FP16 its bit pattern, BYTES each element as a 4-byte little-endian length and its bytes.
 */
export function encodeBinaryTensor(t: Tensor): Buffer {
  if (Array.isArray(t.data)) {
    const parts: Buffer[] = [];
    for (const s of t.data) {
      const bytes = Buffer.from(s, 'utf8');
      const len = Buffer.allocUnsafe(4);
      len.writeUInt32LE(bytes.length, 0);
      parts.push(len, bytes);
    }
    return Buffer.concat(parts);
  }
  // Typed arrays are little-endian on every platform the agent supports (x64, arm64).
  return Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

/** Decodes one input's raw bytes (a slice of the request body) into a fresh, transferable array. */
export function decodeBinaryTensor(header: V2JsonTensor, raw: Buffer): Tensor {
  checkTensorHeader(header);
  const { name, datatype, shape } = header;
  const n = elementCount(shape);
  if (datatype === 'BYTES') {
    const data: string[] = [];
    let offset = 0;
    while (offset < raw.length) {
      if (offset + 4 > raw.length)
        throw new OutpostError('INVALID_INPUT', `input ${name}: BYTES element length is cut short`);
      const len = raw.readUInt32LE(offset);
      offset += 4;
      if (offset + len > raw.length)
        throw new OutpostError('INVALID_INPUT', `input ${name}: BYTES element runs past binary_data_size`);
      data.push(raw.toString('utf8', offset, offset + len));
      offset += len;
    }
    if (data.length !== n) {
      throw new OutpostError(
        'INVALID_INPUT',
        `input ${name}: ${data.length} BYTES elements for shape [${shape.join(',')}] (needs ${n})`,
      );
    }
    return { datatype, shape, data };
  }
  const size = datatypeSize(datatype) as number;
  if (raw.length !== n * size) {
    throw new OutpostError(
      'INVALID_INPUT',
      `input ${name}: binary_data_size is ${raw.length} bytes, shape [${shape.join(',')}] of ${datatype} needs ${n * size}`,
    );
  }
  const data = allocate(datatype, n) as Exclude<TensorData, string[]>;
  // Copying also aligns the values: a body slice may start at any byte offset.
  new Uint8Array(data.buffer).set(raw);
  return { datatype, shape, data };
}
