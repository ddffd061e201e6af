/**
 * Tensors as they cross the agent: V2 (Open Inference Protocol) datatype names, a shape and
 * a flat typed array. ONNX element types map onto V2 datatypes one to one.
 */
export const DATATYPES = [
  'BOOL',
  'UINT8',
  'UINT16',
  'UINT32',
  'UINT64',
  'INT8',
  'INT16',
  'INT32',
  'INT64',
  'FP16',
  'FP32',
  'FP64',
  'BYTES',
] as const;
export type Datatype = (typeof DATATYPES)[number];

export type TensorData =
  | Float32Array
  | Float64Array
  | Int8Array
  | Int16Array
  | Int32Array
  | BigInt64Array
  | Uint8Array
  | Uint16Array
  | Uint32Array
  | BigUint64Array
  | string[];

export interface Tensor {
  datatype: Datatype;
  shape: number[];
  data: TensorData;
}

/** onnxruntime's element type names → V2 datatypes. */
const ORT_TO_V2: Record<string, Datatype> = {
  bool: 'BOOL',
  uint8: 'UINT8',
  uint16: 'UINT16',
  uint32: 'UINT32',
  uint64: 'UINT64',
  int8: 'INT8',
  int16: 'INT16',
  int32: 'INT32',
  int64: 'INT64',
  float16: 'FP16',
  float32: 'FP32',
  float64: 'FP64',
  string: 'BYTES',
};
const V2_TO_ORT = Object.fromEntries(Object.entries(ORT_TO_V2).map(([k, v]) => [v, k])) as Record<
  Datatype,
  string
>;

export function ortTypeToDatatype(type: string): Datatype | undefined {
  return ORT_TO_V2[type];
}

export function datatypeToOrtType(datatype: Datatype): string {
  return V2_TO_ORT[datatype];
}

/** Bytes per element; BYTES has no fixed size. */
export function datatypeSize(datatype: Datatype): number | undefined {
  switch (datatype) {
    case 'BOOL':
    case 'UINT8':
    case 'INT8':
      return 1;
    case 'UINT16':
    case 'INT16':
    case 'FP16':
      return 2;
    case 'UINT32':
    case 'INT32':
    case 'FP32':
      return 4;
    case 'UINT64':
    case 'INT64':
    case 'FP64':
      return 8;
    case 'BYTES':
      return undefined;
  }
}

export function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Allocates the typed array for a datatype; FP16 travels as raw Uint16 bit patterns. */
export function allocate(datatype: Datatype, length: number): TensorData {
  switch (datatype) {
    case 'BOOL':
    case 'UINT8':
      return new Uint8Array(length);
    case 'INT8':
      return new Int8Array(length);
    case 'UINT16':
    case 'FP16':
      return new Uint16Array(length);
    case 'INT16':
      return new Int16Array(length);
    case 'UINT32':
      return new Uint32Array(length);
    case 'INT32':
      return new Int32Array(length);
    case 'UINT64':
      return new BigUint64Array(length);
    case 'INT64':
      return new BigInt64Array(length);
    case 'FP32':
      return new Float32Array(length);
    case 'FP64':
      return new Float64Array(length);
    case 'BYTES':
      return new Array<string>(length).fill('');
  }
}

/** Plain numbers (or strings) for JSON answers; 64-bit integers become numbers when safe. */
export function toJsonArray(data: TensorData): Array<number | string | boolean> {
  if (Array.isArray(data)) return data;
  if (data instanceof BigInt64Array || data instanceof BigUint64Array) {
    return Array.from(data, (v) => Number(v));
  }
  return Array.from(data as ArrayLike<number>);
}
