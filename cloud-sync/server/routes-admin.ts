import type { FastifyInstance } from 'fastify';
import { OutpostError } from '../../shared/errors.ts';
import { z } from '../../shared/schema.ts';
import { parseOrThrow } from '../../shared/validate.ts';
import { parseDuration, parseRate, parseSelector, parseWaves } from '../rollout/plan.ts';
import { checkOperator } from './auth.ts';
import type { Services } from './services.ts';

const tags = z.record(z.string().regex(/^[A-Za-z0-9._-]{1,64}$/), z.string().max(128));

const tokenBody = z
  .object({ tags: tags.default({}), ttl: z.union([z.string(), z.number()]).optional() })
  .strict();

const rolloutBody = z
  .object({
    /** `NAME@VERSION` */
    bundle: z.string().regex(/^[^@\s]+@[^@\s]+$/, 'must be NAME@VERSION'),
    selector: z.union([z.string(), tags]).default('*'),
    waves: z.union([z.string(), z.array(z.number())]).default('1,10,50,100'),
    maxFailureRate: z.union([z.string(), z.number()]).default('5%'),
    minReporting: z.number().int().min(1).default(1),
    soak: z.union([z.string(), z.number()]).default('10m'),
    deviceTimeout: z.union([z.string(), z.number()]).optional(),
    onFailure: z.enum(['pause', 'abort']).default('abort'),
  })
  .strict();

const reasonBody = z.object({ reason: z.string().max(500).optional() }).strict();

/** The operator's API: everything here needs the operator token. */
export function registerAdminRoutes(app: FastifyInstance, s: Services): void {
  app.register(async (admin) => {
    admin.addHook('onRequest', async (req) => checkOperator(req, s.operatorToken));

    admin.post('/v1/admin/enrolment-tokens', async (req, reply) => {
      const body = parseOrThrow(tokenBody, req.body ?? {}, 'enrolment token');
      const ttl = body.ttl === undefined ? undefined : parseDuration(body.ttl);
      return reply.code(201).send(s.devices.createEnrolmentToken(body.tags, ttl));
    });

    admin.get('/v1/admin/devices', async () => s.repo.listDevices().map((d) => s.devices.view(d)));

    admin.get<{ Params: { id: string } }>('/v1/admin/devices/:id', async (req) => {
      const d = s.devices.get(req.params.id);
      return {
        ...s.devices.view(d),
        assignments: s.director.assignments(d.id),
        reports: s.repo.listReports(d.id, 20),
        events: s.repo.listEvents({ deviceId: d.id, limit: 100 }),
      };
    });

    admin.patch<{ Params: { id: string } }>('/v1/admin/devices/:id', async (req) => {
      const body = parseOrThrow(z.object({ tags }).strict(), req.body, 'device update');
      s.devices.get(req.params.id);
      s.repo.updateDevice(req.params.id, { tags: body.tags });
      return s.devices.view(s.devices.get(req.params.id));
    });

    admin.delete<{ Params: { id: string } }>('/v1/admin/devices/:id', async (req, reply) => {
      s.devices.get(req.params.id);
      s.repo.deleteDevice(req.params.id);
      s.director.forget(req.params.id);
      return reply.code(204).send();
    });

    /** Direct assignment outside a rollout (a lab box, a first install). */
    admin.put<{ Params: { id: string; model: string } }>(
      '/v1/admin/devices/:id/assignments/:model',
      async (req) => {
        const body = parseOrThrow(
          z.object({ version: z.string().nullable() }).strict(),
          req.body,
          'assignment',
        );
        s.devices.get(req.params.id);
        s.director.assign(req.params.id, req.params.model, body.version, null);
        return { assignments: s.director.assignments(req.params.id) };
      },
    );

    admin.post('/v1/admin/rollouts', async (req, reply) => {
      const body = parseOrThrow(rolloutBody, req.body, 'rollout');
      const at = body.bundle.lastIndexOf('@');
      const rollout = s.rollouts.create({
        bundle: body.bundle.slice(0, at),
        version: body.bundle.slice(at + 1),
        selector: typeof body.selector === 'string' ? parseSelector(body.selector) : body.selector,
        waves: parseWaves(body.waves),
        maxFailureRate: parseRate(body.maxFailureRate),
        minReporting: body.minReporting,
        soakMs: parseDuration(body.soak),
        deviceTimeoutMs:
          body.deviceTimeout === undefined ? s.defaultDeviceTimeoutMs : parseDuration(body.deviceTimeout),
        onFailure: body.onFailure,
      });
      return reply.code(201).send(s.rollouts.status(rollout.id));
    });

    admin.get('/v1/admin/rollouts', async () => s.repo.listRollouts());

    admin.get<{ Params: { id: string } }>('/v1/admin/rollouts/:id', async (req) =>
      s.rollouts.status(req.params.id),
    );

    for (const action of ['pause', 'resume', 'abort'] as const) {
      admin.post<{ Params: { id: string } }>(`/v1/admin/rollouts/:id/${action}`, async (req) => {
        const body = parseOrThrow(reasonBody, req.body ?? {}, action);
        const past = { pause: 'paused', resume: 'resumed', abort: 'aborted' }[action];
        const reason = body.reason === undefined ? undefined : `${past} by operator: ${body.reason}`;
        if (action === 'pause') s.rollouts.pause(req.params.id, reason);
        else if (action === 'resume') s.rollouts.resume(req.params.id, reason);
        else s.rollouts.abort(req.params.id, reason);
        return s.rollouts.status(req.params.id);
      });
    }

    admin.get<{ Querystring: { limit?: string } }>('/v1/admin/events', async (req) => {
      const limit = req.query.limit === undefined ? 200 : Number(req.query.limit);
      if (!Number.isInteger(limit) || limit < 1 || limit > 10_000)
        throw new OutpostError('BAD_REQUEST', 'limit must be 1-10000');
      return s.repo.listEvents({ limit });
    });
  });
}
