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

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** IEEE 754 binary32 → binary16 bits, rounding to nearest even (FP16 travels as Uint16 bit patterns). */
export function floatToHalf(value: number): number {
  f32[0] = value;
  const x = u32[0] as number;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rest = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rest > mid || (rest === mid && (half & 1) === 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  // A carry out of the mantissa rolls into the exponent, up to infinity: that is correct rounding.
  if (rest > 0x1000 || (rest === 0x1000 && (half & 1) === 1)) half++;
  return sign | half;
}

/** binary16 bits → number. */
export function halfToFloat(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >>> 10) & 0x1f;
  const mant = bits & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant === 0 ? sign * Number.POSITIVE_INFINITY : Number.NaN;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** The values of a tensor as JSON scalars in the V2/TF sense: FP16 decoded, BOOL as booleans. */
export function tensorValues(t: Tensor): Array<number | string | boolean> {
  if (t.datatype === 'FP16') return Array.from(t.data as Uint16Array, halfToFloat);
  if (t.datatype === 'BOOL') return Array.from(t.data as Uint8Array, (v) => v !== 0);
  return toJsonArray(t.data);
}

/** Row-major flat values → nested lists of the given shape (TF Serving answers nested). */
export function nest<T>(flat: readonly T[], shape: readonly number[]): unknown {
  if (shape.length === 0) return flat[0];
  const build = (offset: number, dim: number): unknown => {
    const size = shape[dim] as number;
    if (dim === shape.length - 1) return flat.slice(offset, offset + size);
    const stride = elementCount(shape.slice(dim + 1));
    const out: unknown[] = [];
    for (let i = 0; i < size; i++) out.push(build(offset + i * stride, dim + 1));
    return out;
  };
  return build(0, 0);
}

/** Joins tensors along the first dimension into one fresh buffer (dynamic batching). */
export function concatRows(parts: readonly Tensor[]): Tensor {
  const first = parts[0];
  if (first === undefined) throw new Error('concatRows needs at least one tensor');
  const rows = parts.reduce((n, t) => n + (t.shape[0] ?? 0), 0);
  const shape = [rows, ...first.shape.slice(1)];
  const total = parts.reduce((n, t) => n + t.data.length, 0);
  const data = allocate(first.datatype, total);
  let offset = 0;
  for (const t of parts) {
    if (Array.isArray(data)) {
      const src = t.data as string[];
      for (let i = 0; i < src.length; i++) data[offset + i] = src[i] as string;
    } else {
      (data as Float32Array).set(t.data as Float32Array, offset);
    }
    offset += t.data.length;
  }
  return { datatype: first.datatype, shape, data };
}

/** The rows [start, start+count) of a tensor; typed arrays are views, not copies. */
export function sliceRows(t: Tensor, start: number, count: number): Tensor {
  const rowSize = elementCount(t.shape.slice(1));
  const from = start * rowSize;
  const to = from + count * rowSize;
  const data = Array.isArray(t.data) ? t.data.slice(from, to) : t.data.subarray(from, to);
  return { datatype: t.datatype, shape: [count, ...t.shape.slice(1)], data: data as TensorData };
}
