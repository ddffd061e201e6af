import { OutpostError } from '../../shared/errors.ts';
import type { Tensor } from '../../shared/tensor.ts';
import type { ModelRegistry, ModelVersion } from '../runtime/registry.ts';
import type { Context, Router } from './router.ts';
import { sendJson } from './server.ts';
import { HEADER_LENGTH, parseInferRequest, sendInferResponse } from './v2-infer-body.ts';

export interface V2Deps {
  registry: ModelRegistry;
  agentVersion: string;
  /** False while starting or shutting down: readiness probes answer 503. */
  ready: () => boolean;
}

export const V2_EXTENSIONS = ['binary_tensor_data', 'model_repository', 'parameters'] as const;

/** A version's inputs and outputs: from its session when it has been loaded, else from its manifest. */
export function signatureOf(m: ModelVersion) {
  const strip = (list: ReadonlyArray<{ name: string; datatype: string; shape: number[] }>) =>
    list.map((i) => ({ name: i.name, datatype: i.datatype, shape: i.shape }));
  const sig = m.bundle.manifest.signature;
  return {
    inputs: strip(m.inputs.length > 0 ? m.inputs : sig.inputs),
    outputs: strip(m.outputs.length > 0 ? m.outputs : sig.outputs),
  };
}

function notFound(model: string | undefined, version: string | undefined): OutpostError {
  return new OutpostError(
    'MODEL_NOT_FOUND',
    version === undefined ? `model ${model} not found` : `model ${model} version ${version} not found`,
  );
}

/** Open Inference Protocol (KServe V2) REST: health, server and model metadata, inference, repository index. */
export function registerV2(router: Router, deps: V2Deps): void {
  const { registry } = deps;
  const find = (ctx: Context): ModelVersion => {
    const { model, version } = ctx.params;
    const m = registry.get(model ?? '', version);
    if (m === undefined) {
      // A model whose versions exist but none is ready is there, just not servable.
      if (version === undefined && registry.versions(model ?? '').length > 0)
        throw new OutpostError('MODEL_NOT_READY', `model ${model} has no ready version`);
      throw notFound(model, version);
    }
    return m;
  };

  router.get('/v2/health/live', ({ res }) => sendJson(res, 200, { live: true }));
  router.get('/v2/health/ready', ({ res }) => {
    const ready = deps.ready() && registry.names().every((n) => registry.current(n) !== undefined);
    sendJson(res, ready ? 200 : 503, { ready });
  });
  router.get('/v2', ({ res }) =>
    sendJson(res, 200, { name: 'outpost', version: deps.agentVersion, extensions: [...V2_EXTENSIONS] }),
  );

  const metadata = (ctx: Context) => {
    const m = find(ctx);
    sendJson(ctx.res, 200, {
      name: m.name,
      versions: registry
        .versions(m.name)
        .filter((v) => v.state === 'READY')
        .map((v) => v.version),
      platform: 'onnx_onnxv1',
      ...signatureOf(m),
    });
  };
  router.get('/v2/models/{model}', metadata);
  router.get('/v2/models/{model}/versions/{version}', metadata);

  const ready = (ctx: Context) => {
    const { model, version } = ctx.params;
    const m = registry.get(model ?? '', version);
    if (m === undefined && registry.versions(model ?? '').length === 0) throw notFound(model, version);
    if (m === undefined && version !== undefined) throw notFound(model, version);
    const ok = m?.state === 'READY';
    sendJson(ctx.res, ok ? 200 : 503, { name: model, ...(m ? { version: m.version } : {}), ready: ok });
  };
  router.get('/v2/models/{model}/ready', ready);
  router.get('/v2/models/{model}/versions/{version}/ready', ready);

  const infer = async (ctx: Context) => {
    const { model, version } = ctx.params;
    find(ctx);
    const request = parseInferRequest(await ctx.body(), ctx.req.headers[HEADER_LENGTH]);
    // The version is resolved again inside infer, in the same step that queues the request:
    // a hot swap between the two lookups must not turn into a failed request.
    const result = await registry.infer(
      model ?? '',
      version,
      request.inputs,
      request.outputs,
      request.timeoutMs === undefined ? {} : { timeoutMs: request.timeoutMs },
    );
    const order = request.outputs ?? result.model.outputs.map((o) => o.name);
    const outputs: Array<[string, Tensor]> = [];
    for (const name of order) {
      const t = result.outputs[name];
      if (t !== undefined) outputs.push([name, t]);
    }
    sendInferResponse(
      ctx.res,
      { model_name: result.model.name, model_version: result.model.version, id: request.id },
      outputs,
      request.binary,
    );
  };
  router.post('/v2/models/{model}/infer', infer);
  router.post('/v2/models/{model}/versions/{version}/infer', infer);

  router.post('/v2/repository/index', async (ctx) => {
    const body = await ctx.body();
    let onlyReady = false;
    if (body.length > 0) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(body.toString('utf8'));
      } catch {
        throw new OutpostError('BAD_REQUEST', 'request body is not valid JSON');
      }
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
        throw new OutpostError('BAD_REQUEST', 'request must be a JSON object');
      onlyReady = (parsed as { ready?: unknown }).ready === true;
    }
    const models = registry
      .all()
      .filter((m) => !onlyReady || m.state === 'READY')
      .map((m) => ({
        name: m.name,
        version: m.version,
        state: m.state === 'FAILED' ? 'UNAVAILABLE' : m.state,
        reason: m.reason ?? (m.state === 'UNAVAILABLE' ? 'unloaded' : ''),
      }));
    sendJson(ctx.res, 200, models);
  });
}
