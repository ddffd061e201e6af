import { OutpostError } from '../../shared/errors.ts';
import type { Tensor } from '../../shared/tensor.ts';
import { decodeJsonTensor, encodeJsonTensor, type V2JsonTensor } from '../../shared/v2-codec.ts';
import type { ModelRegistry, ModelVersion } from '../runtime/registry.ts';
import type { Context, Router } from './router.ts';
import { sendJson } from './server.ts';

export interface V2Deps {
  registry: ModelRegistry;
  agentVersion: string;
  /** False while starting or shutting down: readiness probes answer 503. */
  ready: () => boolean;
}

interface InferRequest {
  id?: string;
  inputs?: V2JsonTensor[];
  outputs?: Array<{ name: string; parameters?: Record<string, unknown> }>;
  parameters?: Record<string, unknown>;
}

function modelMetadata(m: ModelVersion, versions: string[]) {
  return {
    name: m.name,
    versions,
    platform: 'onnx_onnxv1',
    inputs: m.inputs.map((i) => ({ name: i.name, datatype: i.datatype, shape: i.shape })),
    outputs: m.outputs.map((o) => ({ name: o.name, datatype: o.datatype, shape: o.shape })),
  };
}

function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    throw new OutpostError('BAD_REQUEST', 'request body is not valid JSON');
  }
}

/** Open Inference Protocol (KServe V2) REST: health, server and model metadata, JSON inference. */
export function registerV2(router: Router, deps: V2Deps): void {
  const { registry } = deps;
  const find = (ctx: Context): ModelVersion => {
    const { model, version } = ctx.params;
    const m = registry.get(model ?? '', version);
    if (m === undefined) {
      throw new OutpostError(
        'MODEL_NOT_FOUND',
        version === undefined ? `model ${model} not found` : `model ${model} version ${version} not found`,
      );
    }
    return m;
  };

  router.get('/v2/health/live', ({ res }) => sendJson(res, 200, { live: true }));
  router.get('/v2/health/ready', ({ res }) => {
    const ready = deps.ready() && registry.names().every((n) => registry.current(n) !== undefined);
    sendJson(res, ready ? 200 : 503, { ready });
  });
  router.get('/v2', ({ res }) =>
    sendJson(res, 200, { name: 'outpost', version: deps.agentVersion, extensions: [] }),
  );

  const metadata = (ctx: Context) => {
    const m = find(ctx);
    sendJson(
      ctx.res,
      200,
      modelMetadata(
        m,
        registry.versions(m.name).map((v) => v.version),
      ),
    );
  };
  router.get('/v2/models/{model}', metadata);
  router.get('/v2/models/{model}/versions/{version}', metadata);

  const ready = (ctx: Context) => {
    const m = find(ctx);
    const ok = m.state === 'READY';
    sendJson(ctx.res, ok ? 200 : 503, { name: m.name, ready: ok });
  };
  router.get('/v2/models/{model}/ready', ready);
  router.get('/v2/models/{model}/versions/{version}/ready', ready);

  const infer = async (ctx: Context) => {
    const m = find(ctx);
    const request = parseJson(await ctx.body()) as InferRequest;
    if (typeof request !== 'object' || request === null || !Array.isArray(request.inputs)) {
      throw new OutpostError('BAD_REQUEST', 'request must be an object with an "inputs" list');
    }
    const inputs: Record<string, Tensor> = {};
    for (const t of request.inputs) inputs[t.name] = decodeJsonTensor(t);
    const wanted = request.outputs?.map((o) => o.name);
    const result = await registry.infer(m.name, m.version, inputs, wanted);
    sendJson(ctx.res, 200, {
      model_name: result.model.name,
      model_version: result.model.version,
      ...(request.id === undefined ? {} : { id: request.id }),
      outputs: Object.entries(result.outputs).map(([name, t]) => encodeJsonTensor(name, t)),
    });
  };
  router.post('/v2/models/{model}/infer', infer);
  router.post('/v2/models/{model}/versions/{version}/infer', infer);
}
