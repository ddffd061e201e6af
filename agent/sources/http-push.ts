import { OutpostError } from '../../shared/errors.ts';
import type { Router } from '../http/router.ts';
import { sendJson } from '../http/server.ts';
import type { PipelineManager } from '../pipeline/manager.ts';

const KEY = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * `POST /v1/sensors/{source}`: readings pushed over HTTP into the pipeline whose source is
 * `{kind: "http", name: source}`. The answer waits until every window the body completed is
 * committed to the outbox, so a 2xx means nothing can be lost any more; a client that gets
 * 429/503 sends the same body again later.
 *
 * The sensor key is the record's `keyField` (JSON) or `keyColumn` (CSV), else `?key=`, else the
 * source name.
 */
export function registerSensorRoutes(router: Router, pipelines: PipelineManager): void {
  router.post('/v1/sensors/{source}', async (ctx) => {
    const name = ctx.params.source ?? '';
    const runner = pipelines.httpSource(name);
    if (runner === undefined) {
      ctx.req.resume();
      throw new OutpostError('NOT_FOUND', `no pipeline reads the HTTP source ${name}`);
    }
    const key = ctx.url.searchParams.get('key') ?? name;
    if (!KEY.test(key)) {
      ctx.req.resume();
      throw new OutpostError('BAD_REQUEST', 'key must be 1-128 letters, digits, . _ : -');
    }
    const body = await ctx.body();
    const result = await runner.ingest(key, body);
    if (result.stopped === true)
      throw new OutpostError('SHUTTING_DOWN', `the pipeline for ${name} is stopping; send again later`);
    if (result.malformed !== undefined)
      throw new OutpostError('INVALID_INPUT', `malformed sensor payload: ${result.malformed}`);
    if (result.failed > 0) {
      // Inference or the commit failed (e.g. the outbox is full of control messages): retryable.
      throw new OutpostError(
        'NOT_COMMITTED',
        `${result.failed} of ${result.windows} windows could not be committed; send again later`,
      );
    }
    if (result.dropped > 0 && result.committed === 0 && result.windows > 0) {
      throw new OutpostError(
        'QUEUE_FULL',
        `${result.dropped} windows dropped (rate limit or inference behind)`,
      );
    }
    sendJson(ctx.res, 200, result);
  });
}
