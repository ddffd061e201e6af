import type { ServerResponse } from 'node:http';
import { OutpostError } from '../../shared/errors.ts';
import type { Tensor } from '../../shared/tensor.ts';
import {
  decodeBinaryTensor,
  decodeJsonTensor,
  encodeBinaryTensor,
  type V2JsonTensor,
} from '../../shared/v2-codec.ts';
import { inferResponseJson, outputJson } from './v2-json-text.ts';

/** The header that marks a binary tensor body and says how long its JSON part is. */
export const HEADER_LENGTH = 'inference-header-content-length';

interface InferRequestJson {
  id?: unknown;
  inputs?: unknown;
  outputs?: unknown;
  parameters?: Record<string, unknown>;
}

export interface ParsedInfer {
  id: string | undefined;
  inputs: Record<string, Tensor>;
  /** The outputs asked for, in the order asked; undefined for all. */
  outputs: string[] | undefined;
  /** Whether an output goes back as raw binary. */
  binary: (name: string) => boolean;
  timeoutMs: number | undefined;
}

function parseJson(text: Buffer): InferRequestJson {
  let value: unknown;
  try {
    value = JSON.parse(text.toString('utf8'));
  } catch {
    throw new OutpostError('BAD_REQUEST', 'request body is not valid JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new OutpostError('BAD_REQUEST', 'request must be a JSON object');
  return value as InferRequestJson;
}

function isParams(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Parses a V2 infer request: plain JSON, or the binary tensor extension, where the first
 * `Inference-Header-Content-Length` bytes are the JSON and inputs with `binary_data_size`
 * take their raw bytes, in order, from the rest.
 */
export function parseInferRequest(body: Buffer, headerLength: string | string[] | undefined): ParsedInfer {
  let json: Buffer = body;
  let binary: Buffer | undefined;
  if (headerLength !== undefined) {
    const raw = Array.isArray(headerLength) ? headerLength[0] : headerLength;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 0 || n > body.length) {
      throw new OutpostError(
        'BAD_REQUEST',
        `Inference-Header-Content-Length ${raw} is not a length within the ${body.length}-byte body`,
      );
    }
    json = body.subarray(0, n);
    binary = body.subarray(n);
  }
  const request = parseJson(json);
  if (!Array.isArray(request.inputs) || request.inputs.length === 0)
    throw new OutpostError('BAD_REQUEST', 'request must have a non-empty "inputs" list');
  if (request.id !== undefined && typeof request.id !== 'string')
    throw new OutpostError('BAD_REQUEST', '"id" must be a string');
  const params = isParams(request.parameters) ? request.parameters : {};

  const inputs: Record<string, Tensor> = {};
  let offset = 0;
  for (const t of request.inputs as V2JsonTensor[]) {
    if (typeof t !== 'object' || t === null)
      throw new OutpostError('INVALID_INPUT', 'an input is not an object');
    if (typeof t.name === 'string' && inputs[t.name] !== undefined)
      throw new OutpostError('INVALID_INPUT', `input ${t.name} is given twice`);
    const size = isParams(t.parameters) ? t.parameters.binary_data_size : undefined;
    if (size !== undefined) {
      if (typeof size !== 'number' || !Number.isInteger(size) || size < 0)
        throw new OutpostError('INVALID_INPUT', `input ${t.name}: binary_data_size must be a byte count`);
      if (binary === undefined)
        throw new OutpostError(
          'INVALID_INPUT',
          `input ${t.name} has binary_data_size but the request has no Inference-Header-Content-Length`,
        );
      if (t.data !== undefined)
        throw new OutpostError('INVALID_INPUT', `input ${t.name} has both data and binary_data_size`);
      if (offset + size > binary.length)
        throw new OutpostError(
          'INVALID_INPUT',
          `input ${t.name}: binary_data_size ${size} runs past the end of the body`,
        );
      inputs[t.name] = decodeBinaryTensor(t, binary.subarray(offset, offset + size));
      offset += size;
    } else {
      inputs[t.name] = decodeJsonTensor(t);
    }
  }
  if (binary !== undefined && offset !== binary.length) {
    throw new OutpostError(
      'INVALID_INPUT',
      `${binary.length - offset} bytes of binary data are not claimed by any input's binary_data_size`,
    );
  }

  let outputs: string[] | undefined;
  const perOutput = new Map<string, boolean>();
  if (request.outputs !== undefined) {
    if (!Array.isArray(request.outputs))
      throw new OutpostError('BAD_REQUEST', '"outputs" must be a list of {name}');
    outputs = [];
    for (const o of request.outputs as Array<{ name?: unknown; parameters?: unknown }>) {
      if (typeof o !== 'object' || o === null || typeof o.name !== 'string')
        throw new OutpostError('BAD_REQUEST', 'every requested output needs a name');
      outputs.push(o.name);
      const b = isParams(o.parameters) ? o.parameters.binary_data : undefined;
      if (b !== undefined) perOutput.set(o.name, b === true);
    }
  }
  const binaryDefault = params.binary_data_output === true;
  let timeoutMs: number | undefined;
  // Triton's per-request `timeout` parameter is in microseconds.
  if (typeof params.timeout === 'number' && params.timeout > 0) timeoutMs = Math.ceil(params.timeout / 1000);
  return {
    id: request.id as string | undefined,
    inputs,
    outputs,
    binary: (name) => perOutput.get(name) ?? binaryDefault,
    timeoutMs,
  };
}

/** Writes the infer answer: JSON, or a JSON header followed by raw outputs when any is binary. */
export function sendInferResponse(
  res: ServerResponse,
  head: { model_name: string; model_version: string; id: string | undefined },
  outputs: Array<[string, Tensor]>,
  binary: (name: string) => boolean,
): void {
  const blobs: Buffer[] = [];
  const encoded: string[] = [];
  for (const [name, t] of outputs) {
    if (!binary(name)) {
      encoded.push(outputJson(name, t));
      continue;
    }
    const blob = encodeBinaryTensor(t);
    blobs.push(blob);
    encoded.push(outputJson(name, t, blob.length));
  }
  const header = inferResponseJson(head, encoded);
  const headerLength = Buffer.byteLength(header);
  if (blobs.length === 0) {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': headerLength });
    res.end(header);
    return;
  }
  const length = headerLength + blobs.reduce((n, b) => n + b.length, 0);
  res.writeHead(200, {
    'content-type': 'application/octet-stream',
    'content-length': length,
    [HEADER_LENGTH]: headerLength,
  });
  res.write(header);
  for (const b of blobs) res.write(b);
  res.end();
}
