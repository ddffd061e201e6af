import { OutpostError } from './errors.ts';
import {
  allocate,
  DATATYPES,
  type Datatype,
  elementCount,
  type Tensor,
  type TensorData,
  toJsonArray,
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

function isDatatype(value: string): value is Datatype {
  return (DATATYPES as readonly string[]).includes(value);
}

/** Decodes a V2 JSON input tensor; `data` may be flat or nested (row-major). */
export function decodeJsonTensor(t: V2JsonTensor): Tensor {
  if (typeof t.name !== 'string') throw new OutpostError('INVALID_INPUT', 'an input has no name');
  if (typeof t.datatype !== 'string' || !isDatatype(t.datatype)) {
    throw new OutpostError('INVALID_INPUT', `input ${t.name}: unknown datatype ${String(t.datatype)}`);
  }
  if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isInteger(d) && d >= 0)) {
    throw new OutpostError('INVALID_INPUT', `input ${t.name}: shape must be a list of non-negative integers`);
  }
  const flat: unknown[] = [];
  flatten(t.data, flat);
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
      (data as BigInt64Array)[i] = BigInt(v);
    } else {
      if (typeof v !== 'number')
        throw new OutpostError('INVALID_INPUT', `input ${name}: ${datatype} elements must be numbers`);
      (data as Float32Array)[i] = v;
    }
  }
  return data;
}

export function encodeJsonTensor(name: string, t: Tensor): V2JsonTensor {
  const data = t.datatype === 'BOOL' ? Array.from(t.data as Uint8Array, (v) => v !== 0) : toJsonArray(t.data);
  return { name, datatype: t.datatype, shape: t.shape, data };
}
