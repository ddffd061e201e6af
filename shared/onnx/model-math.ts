/**
 * Plain-TypeScript numerics behind the example models: a seeded PRNG so weights are identical on
 * every machine, and float64 reference kernels that tests use as an independent check on ORT.
 */
import type { ValueSpec } from './builder.ts';

/** Mirrors what onnxruntime-node hands back, so outputs compare without conversion (bool is bytes). */
export type RefTensor =
  | { type: 'float'; data: Float32Array; dims: number[] }
  | { type: 'int64'; data: BigInt64Array; dims: number[] }
  | { type: 'bool'; data: Uint8Array; dims: number[] }
  | { type: 'string'; data: string[]; dims: number[] };

/** Named tensors, the shape of both a model's feeds and its reference outputs. */
export type Feeds = Record<string, RefTensor>;

export interface ExampleModel {
  name: string;
  description: string;
  bytes: Uint8Array;
  inputs: ValueSpec[];
  outputs: ValueSpec[];
  /** Expected outputs computed without ONNX, for every declared output. */
  reference(feeds: Feeds): Feeds;
  /** Deterministic, representative feeds with the given batch size. */
  sample(batch: number, seed?: number): Feeds;
}

/** mulberry32: tiny, fast and good enough for weights; not for anything security related. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard normal samples via Box-Muller on top of `seededRandom`. */
export function seededGaussian(seed: number): () => number {
  const uniform = seededRandom(seed);
  return () => {
    const u = Math.max(uniform(), 1e-12);
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * uniform());
  };
}

export function uniformArray(length: number, seed: number, scale: number): Float32Array {
  const next = seededRandom(seed);
  const out = new Float32Array(length);
  for (let i = 0; i < length; i++) out[i] = (next() * 2 - 1) * scale;
  return out;
}

export function floatTensor(data: ArrayLike<number>, dims: number[]): RefTensor {
  return { type: 'float', data: Float32Array.from(data), dims: [...dims] };
}

export function floatInput(feeds: Feeds, name: string): { data: Float32Array; dims: number[] } {
  const t = feeds[name];
  if (t?.type !== 'float') throw new Error(`expected a float tensor named '${name}'`);
  return t;
}

export function stringInput(feeds: Feeds, name: string): { data: string[]; dims: number[] } {
  const t = feeds[name];
  if (t?.type !== 'string') throw new Error(`expected a string tensor named '${name}'`);
  return t;
}

/**
 * y[b, j] = sum_i x[b, i] * w[i, j] + bias[j], accumulated in float64. `w` is row-major
 * [inDim, outDim], the layout MatMul and Gemm (transB=0) consume.
 */
export function dense(
  x: ArrayLike<number>,
  batch: number,
  w: Float32Array,
  bias: Float32Array,
  inDim: number,
  outDim: number,
): Float64Array {
  if (x.length !== batch * inDim) throw new Error(`dense: expected ${batch}x${inDim} inputs`);
  const y = new Float64Array(batch * outDim);
  for (let b = 0; b < batch; b++) {
    const row = b * outDim;
    for (let j = 0; j < outDim; j++) y[row + j] = bias[j] ?? 0;
    for (let i = 0; i < inDim; i++) {
      const xi = x[b * inDim + i] ?? 0;
      if (xi === 0) continue;
      const wRow = i * outDim;
      for (let j = 0; j < outDim; j++) y[row + j] = (y[row + j] ?? 0) + xi * (w[wRow + j] ?? 0);
    }
  }
  return y;
}

export function relu(values: Float64Array): Float64Array {
  return values.map((v) => Math.max(v, 0));
}

export function sigmoid(v: number): number {
  return 1 / (1 + Math.exp(-v));
}

/** Softmax over the last axis of a row-major [rows, width] matrix. */
export function softmaxRows(values: Float64Array, width: number): Float64Array {
  const out = new Float64Array(values.length);
  for (let start = 0; start < values.length; start += width) {
    const row = values.subarray(start, start + width);
    const max = Math.max(...row);
    let sum = 0;
    for (let j = 0; j < width; j++) {
      const e = Math.exp((row[j] ?? 0) - max);
      out[start + j] = e;
      sum += e;
    }
    for (let j = 0; j < width; j++) out[start + j] = (out[start + j] ?? 0) / sum;
  }
  return out;
}

/** Row-major transpose of a [rows, cols] matrix. */
export function transpose(m: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(m.length);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) out[c * rows + r] = m[r * cols + c] ?? 0;
  }
  return out;
}
