import { halfToFloat, type Tensor } from '../../shared/tensor.ts';

/**
 * The JSON text of V2 infer answers, written directly. It is byte for byte what
 * `JSON.stringify` gives for the same answer built as objects (`encodeJsonTensor`): numbers as
 * JavaScript prints them, NaN and ±Infinity as null, BOOL as true/false, FP16 decoded, 64-bit
 * integers as numbers. Building the plain arrays and objects first (Array.from over a typed
 * array, then the generic stringifier) cost more on the main thread than the rest of the answer.
 */
function numbers(data: ArrayLike<number>): string {
  let out = '';
  for (let i = 0; i < data.length; i++) {
    const v = data[i] as number;
    const text = Number.isFinite(v) ? `${v}` : 'null';
    out = i === 0 ? text : `${out},${text}`;
  }
  return out;
}

function mapped<T>(data: ArrayLike<T>, each: (v: T) => string): string {
  let out = '';
  for (let i = 0; i < data.length; i++) {
    const text = each(data[i] as T);
    out = i === 0 ? text : `${out},${text}`;
  }
  return out;
}

const finite = (v: number): string => (Number.isFinite(v) ? `${v}` : 'null');

/** The `data` array of a tensor, as JSON. */
export function tensorDataJson(t: Tensor): string {
  const d = t.data;
  if (Array.isArray(d)) return JSON.stringify(d);
  if (t.datatype === 'BOOL') return `[${mapped(d as Uint8Array, (v) => (v !== 0 ? 'true' : 'false'))}]`;
  if (t.datatype === 'FP16') return `[${mapped(d as Uint16Array, (v) => finite(halfToFloat(v)))}]`;
  if (d instanceof BigInt64Array || d instanceof BigUint64Array)
    return `[${mapped<bigint>(d, (v) => finite(Number(v)))}]`;
  return `[${numbers(d)}]`;
}

/** One entry of `outputs`: with its data, or (binary extension) with the size of its raw bytes. */
export function outputJson(name: string, t: Tensor, binarySize?: number): string {
  const head = `{"name":${JSON.stringify(name)},"datatype":"${t.datatype}","shape":[${t.shape.join(',')}]`;
  if (binarySize !== undefined) return `${head},"parameters":{"binary_data_size":${binarySize}}}`;
  return `${head},"data":${tensorDataJson(t)}}`;
}

/** The whole answer, given its outputs already as JSON entries. */
export function inferResponseJson(
  head: { model_name: string; model_version: string; id: string | undefined },
  outputs: readonly string[],
): string {
  const id = head.id === undefined ? '' : `,"id":${JSON.stringify(head.id)}`;
  return `{"model_name":${JSON.stringify(head.model_name)},"model_version":${JSON.stringify(head.model_version)}${id},"outputs":[${outputs.join(',')}]}`;
}
