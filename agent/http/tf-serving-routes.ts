import { OutpostError } from '../../shared/errors.ts';
import { type Datatype, elementCount, nest, type Tensor, tensorValues } from '../../shared/tensor.ts';
import { fill } from '../../shared/v2-codec.ts';
import type { IoMetadata } from '../runtime/protocol.ts';
import type { ModelRegistry, ModelVersion, VersionState } from '../runtime/registry.ts';
import type { Context, Router } from './router.ts';
import { sendJson } from './server.ts';
import { signatureOf } from './v2-routes.ts';

/**
 * TensorFlow Serving's REST API over the same registry. TF versions are integers: a bundle's
 * `releaseCounter` is its TF version. Requests without a version go to the current version.
 */
export interface TfDeps {
  registry: ModelRegistry;
}

const TF_STATE: Record<VersionState, string> = {
  LOADING: 'LOADING',
  READY: 'AVAILABLE',
  UNLOADING: 'UNLOADING',
  UNAVAILABLE: 'END',
  FAILED: 'END',
};

const TF_DTYPE: Record<Datatype, string> = {
  BOOL: 'DT_BOOL',
  UINT8: 'DT_UINT8',
  UINT16: 'DT_UINT16',
  UINT32: 'DT_UINT32',
  UINT64: 'DT_UINT64',
  INT8: 'DT_INT8',
  INT16: 'DT_INT16',
  INT32: 'DT_INT32',
  INT64: 'DT_INT64',
  FP16: 'DT_HALF',
  FP32: 'DT_FLOAT',
  FP64: 'DT_DOUBLE',
  BYTES: 'DT_STRING',
};

function parseBody(body: Buffer): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(body.toString('utf8'));
  } catch {
    throw new OutpostError('BAD_REQUEST', 'request body is not valid JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new OutpostError('BAD_REQUEST', 'request must be a JSON object');
  return value as Record<string, unknown>;
}

/** Walks nested lists: their shape and the leaves in row-major order; ragged lists are refused. */
function shapeAndLeaves(value: unknown, name: string): { shape: number[]; leaves: unknown[] } {
  const shape: number[] = [];
  let probe = value;
  while (Array.isArray(probe)) {
    shape.push(probe.length);
    probe = probe[0];
  }
  const leaves: unknown[] = [];
  const walk = (v: unknown, dim: number): void => {
    if (dim === shape.length) {
      if (Array.isArray(v)) throw new OutpostError('INVALID_INPUT', `input ${name} is a ragged list`);
      leaves.push(v);
      return;
    }
    if (!Array.isArray(v) || v.length !== shape[dim])
      throw new OutpostError('INVALID_INPUT', `input ${name} is a ragged list`);
    for (const x of v) walk(x, dim + 1);
  };
  walk(value, 0);
  return { shape, leaves };
}

/** `{"b64": "…"}` is how TF Serving carries bytes in JSON; the agent's BYTES are UTF-8 strings. */
function unwrapB64(leaves: unknown[], meta: IoMetadata): unknown[] {
  return leaves.map((v) => {
    if (typeof v === 'object' && v !== null && !Array.isArray(v) && 'b64' in v) {
      const b64 = (v as { b64: unknown }).b64;
      if (meta.datatype !== 'BYTES' || typeof b64 !== 'string')
        throw new OutpostError('INVALID_INPUT', `input ${meta.name}: {"b64": …} is only for string inputs`);
      return Buffer.from(b64, 'base64').toString('utf8');
    }
    return v;
  });
}

function toTensor(meta: IoMetadata, shape: number[], leaves: unknown[]): Tensor {
  if (leaves.length !== elementCount(shape))
    throw new OutpostError('INVALID_INPUT', `input ${meta.name} has no values`);
  return { datatype: meta.datatype, shape, data: fill(meta.name, meta.datatype, unwrapB64(leaves, meta)) };
}

function jsonValues(name: string, t: Tensor): unknown[] {
  const values = tensorValues(t);
  // TF Serving answers string outputs whose name ends in `_bytes` base64-wrapped.
  if (t.datatype === 'BYTES' && name.endsWith('_bytes'))
    return values.map((v) => ({ b64: Buffer.from(String(v), 'utf8').toString('base64') }));
  return values;
}

/** Row format: `instances` is a list of rows, each a value (one input) or an object keyed by input. */
function fromInstances(m: ModelVersion, instances: unknown[]): Record<string, Tensor> {
  if (instances.length === 0) throw new OutpostError('INVALID_INPUT', '"instances" is empty');
  const single = m.inputs.length === 1 ? (m.inputs[0] as IoMetadata) : undefined;
  const byObject = instances.every(
    (i) => typeof i === 'object' && i !== null && !Array.isArray(i) && !('b64' in i),
  );
  const out: Record<string, Tensor> = {};
  for (const meta of m.inputs) {
    const rows = instances.map((inst) => {
      if (byObject) {
        const v = (inst as Record<string, unknown>)[meta.name];
        if (v === undefined) throw new OutpostError('INVALID_INPUT', `an instance has no input ${meta.name}`);
        return v;
      }
      if (single === undefined)
        throw new OutpostError('INVALID_INPUT', 'the model has several inputs: each instance must name them');
      return inst;
    });
    const { shape, leaves } = shapeAndLeaves(rows, meta.name);
    out[meta.name] = toTensor(meta, shape, leaves);
  }
  if (byObject) {
    for (const inst of instances) {
      for (const k of Object.keys(inst as object)) {
        if (!m.inputs.some((i) => i.name === k))
          throw new OutpostError('INVALID_INPUT', `model ${m.key} has no input named ${k}`);
      }
    }
  }
  return out;
}

/** Columnar format: `inputs` is one value (one input) or an object of whole tensors keyed by input. */
function fromColumns(m: ModelVersion, inputs: unknown): Record<string, Tensor> {
  const named = typeof inputs === 'object' && inputs !== null && !Array.isArray(inputs) && !('b64' in inputs);
  if (!named && m.inputs.length !== 1)
    throw new OutpostError('INVALID_INPUT', 'the model has several inputs: "inputs" must name them');
  const out: Record<string, Tensor> = {};
  if (named) {
    for (const [name, value] of Object.entries(inputs as Record<string, unknown>)) {
      const meta = m.inputs.find((i) => i.name === name);
      if (meta === undefined)
        throw new OutpostError('INVALID_INPUT', `model ${m.key} has no input named ${name}`);
      const { shape, leaves } = shapeAndLeaves(value, name);
      out[name] = toTensor(meta, shape, leaves);
    }
    return out;
  }
  const meta = m.inputs[0] as IoMetadata;
  const { shape, leaves } = shapeAndLeaves(inputs, meta.name);
  out[meta.name] = toTensor(meta, shape, leaves);
  return out;
}

export function registerTfServing(router: Router, deps: TfDeps): void {
  const { registry } = deps;

  /** TF versions are release counters; a semver string is not a TF version. */
  const find = (ctx: Context): ModelVersion => {
    const { model = '', version } = ctx.params;
    if (registry.versions(model).length === 0)
      throw new OutpostError('MODEL_NOT_FOUND', `Servable not found for request: Latest(${model})`);
    if (version === undefined) {
      const current = registry.current(model);
      if (current === undefined)
        throw new OutpostError('MODEL_NOT_READY', `model ${model} has no available version`);
      return current;
    }
    const m = /^\d+$/.test(version)
      ? registry.versions(model).find((v) => v.releaseCounter === Number(version))
      : undefined;
    if (m === undefined)
      throw new OutpostError(
        'MODEL_NOT_FOUND',
        `Servable not found for request: Specific(${model}, ${version})`,
      );
    return m;
  };

  const status = (ctx: Context) => {
    const { model = '', version } = ctx.params;
    const list = version === undefined ? registry.versions(model) : [find(ctx)];
    if (list.length === 0)
      throw new OutpostError('MODEL_NOT_FOUND', `Could not find any versions of model ${model}`);
    sendJson(ctx.res, 200, {
      model_version_status: list.map((v) => ({
        version: String(v.releaseCounter),
        state: TF_STATE[v.state],
        status:
          v.state === 'FAILED'
            ? { error_code: 'UNKNOWN', error_message: v.reason ?? 'load failed' }
            : { error_code: 'OK', error_message: '' },
      })),
    });
  };
  router.get('/v1/models/{model}', status);
  router.get('/v1/models/{model}/versions/{version}', status);

  const metadata = (ctx: Context) => {
    const m = find(ctx);
    const sig = signatureOf(m);
    const describe = (list: typeof sig.inputs) =>
      Object.fromEntries(
        list.map((t) => [
          t.name,
          {
            dtype: TF_DTYPE[t.datatype as Datatype] ?? 'DT_INVALID',
            tensor_shape: { dim: t.shape.map((d) => ({ size: String(d), name: '' })), unknown_rank: false },
            name: t.name,
          },
        ]),
      );
    sendJson(ctx.res, 200, {
      model_spec: { name: m.name, signature_name: '', version: String(m.releaseCounter) },
      metadata: {
        signature_def: {
          signature_def: {
            serving_default: {
              inputs: describe(sig.inputs),
              outputs: describe(sig.outputs),
              method_name: 'tensorflow/serving/predict',
            },
          },
        },
      },
    });
  };
  router.get('/v1/models/{model}/metadata', metadata);
  router.get('/v1/models/{model}/versions/{version}/metadata', metadata);

  const predict = async (ctx: Context) => {
    const m = find(ctx);
    const body = parseBody(await ctx.body());
    const sig = body.signature_name;
    if (sig !== undefined && sig !== '' && sig !== 'serving_default')
      throw new OutpostError('INVALID_INPUT', `model ${m.name} has no signature ${String(sig)}`);
    const hasInstances = body.instances !== undefined;
    if (hasInstances === (body.inputs !== undefined))
      throw new OutpostError(
        'BAD_REQUEST',
        'give exactly one of "instances" (row format) or "inputs" (columnar)',
      );
    let inputs: Record<string, Tensor>;
    if (hasInstances) {
      if (!Array.isArray(body.instances)) throw new OutpostError('BAD_REQUEST', '"instances" must be a list');
      inputs = fromInstances(m, body.instances);
    } else {
      inputs = fromColumns(m, body.inputs);
    }
    // Unversioned requests resolve again at queue time so a hot swap cannot fail them.
    const result = await registry.infer(
      m.name,
      ctx.params.version === undefined ? undefined : m.version,
      inputs,
    );
    const names = result.model.outputs.map((o) => o.name).filter((n) => result.outputs[n] !== undefined);
    if (hasInstances) {
      const rows = (inputs[m.inputs[0]?.name ?? ''] as Tensor).shape[0] ?? 0;
      const perOutput = names.map((name) => {
        const t = result.outputs[name] as Tensor;
        if (t.shape[0] !== rows)
          throw new OutpostError('INFERENCE_FAILED', `output ${name} has no row per instance; use "inputs"`);
        const inner = t.shape.slice(1);
        const values = jsonValues(name, t);
        const size = elementCount(inner);
        return Array.from({ length: rows }, (_, r) => nest(values.slice(r * size, (r + 1) * size), inner));
      });
      const predictions = Array.from({ length: rows }, (_, r) =>
        names.length === 1
          ? perOutput[0]?.[r]
          : Object.fromEntries(names.map((n, i) => [n, perOutput[i]?.[r]])),
      );
      sendJson(ctx.res, 200, { predictions });
      return;
    }
    const columns = names.map((n) => {
      const t = result.outputs[n] as Tensor;
      return nest(jsonValues(n, t), t.shape);
    });
    sendJson(ctx.res, 200, {
      outputs: names.length === 1 ? columns[0] : Object.fromEntries(names.map((n, i) => [n, columns[i]])),
    });
  };
  router.post('/v1/models/{model}:predict', predict);
  router.post('/v1/models/{model}/versions/{version}:predict', predict);
}
