import type { FastifyInstance } from 'fastify';
import { bearer } from './auth.ts';
import type { Services } from './services.ts';

/**
 * The device API. A device authenticates with the credential it got at enrolment and may
 * only touch its own resources: the credential's device must be the one in the URL.
 */
export function registerDeviceRoutes(app: FastifyInstance, s: Services): void {
  app.post('/v1/enrol', async (req, reply) => {
    const result = s.devices.enrol(req.body);
    return reply.code(201).send(result);
  });

  app.get<{ Params: { id: string } }>('/v1/devices/:id/desired', async (req, reply) => {
    const device = s.devices.authenticate(bearer(req), req.params.id);
    s.repo.updateDevice(device.id, { lastSeenAt: s.now() });
    const { doc, etag } = s.director.desired(device.id);
    reply.header('etag', etag).header('cache-control', 'no-cache');
    if (req.headers['if-none-match'] === etag) return reply.code(304).send();
    return reply.send(doc);
  });

  app.post<{ Params: { id: string } }>('/v1/devices/:id/report', async (req, reply) => {
    const device = s.devices.authenticate(bearer(req), req.params.id);
    s.devices.report(device, req.body ?? {});
    return reply.code(204).send();
  });

  app.post<{ Params: { id: string } }>('/v1/devices/:id/heartbeat', async (req, reply) => {
    const device = s.devices.authenticate(bearer(req), req.params.id);
    s.repo.updateDevice(device.id, { lastSeenAt: s.now() });
    return reply.code(204).send();
  });
}
