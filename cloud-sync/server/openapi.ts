import { OUTPOST_VERSION } from '../../shared/version.ts';

const json = (schema: Record<string, unknown> = { type: 'object' }) => ({ 'application/json': { schema } });
const error = { description: 'error', content: json({ $ref: '#/components/schemas/Error' }) };
const ok = (description: string, schema?: Record<string, unknown>) => ({
  description,
  content: json(schema),
});
const admin = [{ operator: [] }];
const device = [{ device: [] }];
const idParam = { name: 'id', in: 'path', required: true, schema: { type: 'string' } };

/** The control plane's API, as an OpenAPI 3.1 document served at /openapi.json. */
export function openApiDocument(): Record<string, unknown> {
  return {
    openapi: '3.1.0',
    info: {
      title: 'Outpost control plane',
      version: OUTPOST_VERSION,
      description:
        'Fleet, TUF hosting, director and staged rollouts. Admin routes need the operator token; device routes the credential a device got at enrolment.',
    },
    components: {
      securitySchemes: {
        operator: { type: 'http', scheme: 'bearer', description: 'the operator token' },
        device: { type: 'http', scheme: 'bearer', description: 'the per-device credential from /v1/enrol' },
      },
      schemas: {
        Error: {
          type: 'object',
          required: ['error'],
          properties: { error: { type: 'string' }, code: { type: 'string' } },
        },
        Report: {
          type: 'object',
          properties: {
            agentVersion: { type: 'string' },
            arch: { type: 'string' },
            installed: {
              type: 'array',
              items: {
                type: 'object',
                required: ['name', 'version'],
                properties: {
                  name: { type: 'string' },
                  version: { type: 'string' },
                  sha256: { type: 'string' },
                  releaseCounter: { type: 'integer' },
                  state: { type: 'string' },
                },
              },
            },
            outcomes: {
              type: 'array',
              items: {
                type: 'object',
                required: ['model', 'version', 'ok'],
                properties: {
                  model: { type: 'string' },
                  version: { type: 'string' },
                  ok: { type: 'boolean' },
                  detail: { type: 'string' },
                },
              },
            },
            desiredVersion: { type: 'integer' },
          },
        },
        Rollout: {
          type: 'object',
          required: ['bundle'],
          properties: {
            bundle: { type: 'string', description: 'NAME@VERSION' },
            selector: { type: 'string', description: 'tag=value[,tag=value]; * for all' },
            waves: { type: 'string', description: 'cumulative percentages, e.g. 1,10,50,100' },
            maxFailureRate: { type: 'string', description: 'e.g. 5%' },
            minReporting: { type: 'integer' },
            soak: { type: 'string', description: 'e.g. 10m' },
            deviceTimeout: { type: 'string', description: 'a silent device counts as failed after this' },
            onFailure: { type: 'string', enum: ['pause', 'abort'] },
          },
        },
      },
    },
    paths: {
      '/healthz': { get: { summary: 'liveness', responses: { 200: ok('alive') } } },
      '/openapi.json': { get: { summary: 'this document', responses: { 200: ok('OpenAPI 3.1') } } },
      '/tuf/metadata/{file}': {
        get: {
          summary: 'TUF metadata (N.root.json, N.targets.json, N.snapshot.json, timestamp.json)',
          responses: { 200: ok('metadata'), 404: error },
        },
      },
      '/tuf/targets/{path}': {
        get: {
          summary: 'a target, by its consistent-snapshot name <dir>/<sha256>.<name>; Range supported',
          responses: { 200: { description: 'bytes' }, 206: { description: 'range' }, 404: error },
        },
      },
      '/v1/enrol': {
        post: {
          summary: 'enrol a device with a single-use token; returns its credential (shown once)',
          requestBody: {
            content: json({
              type: 'object',
              required: ['token', 'deviceId'],
              properties: {
                token: { type: 'string' },
                deviceId: { type: 'string' },
                arch: { type: 'string' },
                agentVersion: { type: 'string' },
              },
            }),
          },
          responses: {
            201: ok('enrolled', {
              type: 'object',
              properties: { deviceId: { type: 'string' }, credential: { type: 'string' } },
            }),
            401: error,
            409: error,
          },
        },
      },
      '/v1/devices/{id}/desired': {
        get: {
          summary: "the device's signed desired state (director document); If-None-Match → 304",
          security: device,
          parameters: [idParam, { name: 'If-None-Match', in: 'header', schema: { type: 'string' } }],
          responses: {
            200: ok('director document'),
            304: { description: 'unchanged' },
            401: error,
            403: error,
          },
        },
      },
      '/v1/devices/{id}/report': {
        post: {
          summary: 'installed state and install outcomes',
          security: device,
          parameters: [idParam],
          requestBody: { content: json({ $ref: '#/components/schemas/Report' }) },
          responses: { 204: { description: 'recorded' }, 400: error, 401: error, 403: error },
        },
      },
      '/v1/devices/{id}/heartbeat': {
        post: {
          summary: 'I am alive',
          security: device,
          parameters: [idParam],
          responses: { 204: { description: 'recorded' } },
        },
      },
      '/v1/admin/enrolment-tokens': {
        post: {
          summary: 'a single-use enrolment token with the tags the device will get',
          security: admin,
          responses: { 201: ok('token (shown once)') },
        },
      },
      '/v1/admin/devices': {
        get: {
          summary: 'devices with tags, inventory and presence',
          security: admin,
          responses: { 200: ok('devices') },
        },
      },
      '/v1/admin/devices/{id}': {
        get: {
          summary: 'one device with assignments, reports and events',
          security: admin,
          parameters: [idParam],
          responses: { 200: ok('device'), 404: error },
        },
        patch: {
          summary: 'set tags',
          security: admin,
          parameters: [idParam],
          responses: { 200: ok('device') },
        },
        delete: {
          summary: 'forget a device (revokes its credential)',
          security: admin,
          parameters: [idParam],
          responses: { 204: { description: 'deleted' } },
        },
      },
      '/v1/admin/devices/{id}/assignments/{model}': {
        put: {
          summary: 'assign a version outside a rollout (null clears)',
          security: admin,
          parameters: [idParam],
          responses: { 200: ok('assignments') },
        },
      },
      '/v1/admin/tuf': {
        get: {
          summary: 'versions and timestamp expiry of the served metadata',
          security: admin,
          responses: { 200: ok('status') },
        },
      },
      '/v1/admin/uploads/{sha256}': {
        put: {
          summary: 'stage target content (application/octet-stream), checked against its sha256',
          security: admin,
          responses: { 201: ok('staged'), 400: error, 413: error },
        },
      },
      '/v1/admin/publish': {
        post: {
          summary: 'accept targets metadata signed offline; snapshot and timestamp are signed online',
          security: admin,
          responses: { 200: ok('published'), 403: error, 409: error },
        },
      },
      '/v1/admin/tuf/root': {
        post: {
          summary: 'accept the next root (signed by old and new root keys)',
          security: admin,
          responses: { 200: ok('root version') },
        },
      },
      '/v1/admin/bundles': {
        get: { summary: 'published bundles', security: admin, responses: { 200: ok('bundles') } },
      },
      '/v1/admin/rollouts': {
        get: { summary: 'rollouts', security: admin, responses: { 200: ok('rollouts') } },
        post: {
          summary: 'create a staged rollout',
          security: admin,
          requestBody: { content: json({ $ref: '#/components/schemas/Rollout' }) },
          responses: { 201: ok('rollout status'), 404: error, 409: error },
        },
      },
      '/v1/admin/rollouts/{id}': {
        get: {
          summary: 'status: waves, per-device outcomes, events',
          security: admin,
          parameters: [idParam],
          responses: { 200: ok('status') },
        },
      },
      '/v1/admin/rollouts/{id}/pause': {
        post: {
          summary: 'pause',
          security: admin,
          parameters: [idParam],
          responses: { 200: ok('status'), 409: error },
        },
      },
      '/v1/admin/rollouts/{id}/resume': {
        post: {
          summary: 'resume',
          security: admin,
          parameters: [idParam],
          responses: { 200: ok('status'), 409: error },
        },
      },
      '/v1/admin/rollouts/{id}/abort': {
        post: {
          summary: 'abort and revert desired state',
          security: admin,
          parameters: [idParam],
          responses: { 200: ok('status'), 409: error },
        },
      },
      '/v1/admin/events': {
        get: { summary: 'recent events', security: admin, responses: { 200: ok('events') } },
      },
    },
  };
}
