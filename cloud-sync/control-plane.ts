import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import cron, { type ScheduledTask } from 'node-cron';
import { errorMessage, isOutpostError } from '../shared/errors.ts';
import { readKeyFile, type SigningKey } from '../shared/tuf/index.ts';
import { KeyStore } from './cli/key-store.ts';
import { Director } from './director/director.ts';
import { DeviceService } from './fleet/devices.ts';
import { MqttLink } from './fleet/mqtt-link.ts';
import { createLogger, type Logger } from './log.ts';
import { RolloutEngine } from './rollout/engine.ts';
import type { ControlPlaneConfig } from './server/config.ts';
import { openApiDocument } from './server/openapi.ts';
import { registerAdminRoutes } from './server/routes-admin.ts';
import { registerDeviceRoutes } from './server/routes-device.ts';
import { registerTufRoutes } from './server/routes-tuf.ts';
import type { Services } from './server/services.ts';
import type { Repository } from './store/repository.ts';
import { SqliteRepository } from './store/sqlite.ts';
import { TufHost } from './tuf/repo-host.ts';

export interface ControlPlaneDeps {
  logger?: Logger;
  /** The clock every timer-driven decision reads (soak, timeouts, expiry); tests move it. */
  now?: () => number;
  /** Online keys already in memory (tests, the demo); otherwise read from the configured files. */
  keys?: OnlineKeys;
  /** A repository other than the default SQLite file (a PostgreSQL one, say). */
  repository?: Repository;
}

export interface OnlineKeys {
  snapshot: SigningKey[];
  timestamp: SigningKey[];
  director: SigningKey[];
}

/** The online keys: from an `outpost keys init` directory when `keysDir` is set, else from the key files. */
async function loadOnlineKeys(config: ControlPlaneConfig): Promise<OnlineKeys> {
  if (config.keysDir !== undefined) {
    const store = await KeyStore.open(config.keysDir);
    return {
      snapshot: await store.signers('snapshot'),
      timestamp: await store.signers('timestamp'),
      director: await store.signers('director'),
    };
  }
  return {
    snapshot: [await readKeyFile(config.tuf.snapshotKey as string)],
    timestamp: [await readKeyFile(config.tuf.timestampKey as string)],
    director: [await readKeyFile(config.director.key as string)],
  };
}

export interface ControlPlane {
  readonly log: Logger;
  /** Set once started. */
  url: string;
  port: number;
  services: Services | undefined;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** The control plane's composition root: builds every part from a validated config; nothing runs until start(). */
export function createControlPlane(config: ControlPlaneConfig, deps: ControlPlaneDeps = {}): ControlPlane {
  const log = deps.logger ?? createLogger(config.log.level);
  const now = deps.now ?? Date.now;
  let app: FastifyInstance | undefined;
  let repo: Repository | undefined;
  let rollouts: RolloutEngine | undefined;
  let mqttLink: MqttLink | undefined;
  let refreshTask: ScheduledTask | undefined;

  const cp: ControlPlane = {
    log,
    url: '',
    port: 0,
    services: undefined,
    async start() {
      const keys = deps.keys ?? (await loadOnlineKeys(config));
      repo = deps.repository ?? new SqliteRepository(config.database.path as string, now());
      const tuf = new TufHost({
        dir: config.tuf.dir as string,
        snapshotKeys: keys.snapshot,
        timestampKeys: keys.timestamp,
        snapshotExpiryMs: config.tuf.snapshotExpiry,
        timestampExpiryMs: config.tuf.timestampExpiry,
        log: log.child({ component: 'tuf' }),
        now,
      });
      await tuf.load();
      if (config.mqtt !== undefined) {
        mqttLink = new MqttLink({
          ...config.mqtt,
          log: log.child({ component: 'mqtt' }),
          onStatus: (deviceId, status) => devices.mqttStatus(deviceId, status),
        });
      }
      const director = new Director({
        repo,
        tuf,
        keys: keys.director,
        expiryMs: config.director.expiry,
        now,
        log: log.child({ component: 'director' }),
        onChange: (deviceId) => mqttLink?.nudge(deviceId),
      });
      rollouts = new RolloutEngine({
        repo,
        director,
        now,
        log: log.child({ component: 'rollouts' }),
        tickMs: config.rollouts.tickMs,
      });
      const devices = new DeviceService({
        repo,
        rollouts,
        now,
        log: log.child({ component: 'devices' }),
        offlineAfterMs: config.devices.offlineAfter,
        tokenTtlMs: config.devices.enrolmentTokenTtl,
      });
      const services: Services = {
        operatorToken: config.operatorToken,
        repo,
        tuf,
        director,
        rollouts,
        devices,
        now,
        log,
        maxUploadBytes: config.tuf.maxUploadBytes,
        defaultDeviceTimeoutMs: config.rollouts.deviceTimeout,
      };
      cp.services = services;

      const server = Fastify({
        loggerInstance: log.child({ component: 'http' }) as unknown as FastifyBaseLogger,
        bodyLimit: 4 * 1024 * 1024,
      });
      app = server;
      server.setErrorHandler((err, req, reply) => {
        if (isOutpostError(err)) {
          if (err.status >= 500) req.log.error({ err }, 'request failed');
          return reply.code(err.status).send({ error: err.message, code: err.code });
        }
        const status = (err as { statusCode?: number }).statusCode ?? 500;
        if (status >= 500) req.log.error({ err }, 'request failed');
        return reply.code(status).send({ error: status >= 500 ? 'internal error' : errorMessage(err) });
      });
      server.setNotFoundHandler((req, reply) =>
        reply.code(404).send({ error: `no route ${req.method} ${req.url}` }),
      );
      server.get('/healthz', async () => ({ ok: true }));
      const openapi = openApiDocument();
      server.get('/openapi.json', async () => openapi);
      registerDeviceRoutes(server, services);
      registerTufRoutes(server, services);
      registerAdminRoutes(server, services);
      await server.listen({ host: config.host, port: config.port });
      const address = server.server.address();
      cp.port = typeof address === 'object' && address !== null ? address.port : config.port;
      const host = config.host.includes(':') ? `[${config.host}]` : config.host;
      cp.url = config.publicUrl ?? `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${cp.port}`;

      rollouts.start();
      mqttLink?.start();
      refreshTask = cron.schedule(config.tuf.refreshCron, async () => {
        try {
          await tuf.refresh();
        } catch (err) {
          log.error({ err }, 'timestamp refresh failed');
        }
      });
      // A restart after a long stop may find the timestamp close to expiry: refresh at once.
      await tuf.refresh();
      log.info({ url: cp.url, schema: repo.schemaVersion(), tuf: tuf.status() }, 'control plane ready');
    },
    async stop() {
      await refreshTask?.destroy();
      refreshTask = undefined;
      rollouts?.stop();
      await mqttLink?.stop();
      await app?.close();
      app = undefined;
      repo?.close();
      log.info('control plane stopped');
    },
  };
  return cp;
}
