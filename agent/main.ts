import { randomUUID } from 'node:crypto';
import { arch } from 'node:os';
import { readBundle } from '../shared/bundle/read.ts';
import { EnvelopeFactory } from '../shared/envelope.ts';
import { OutpostError } from '../shared/errors.ts';
import { OUTPOST_VERSION } from '../shared/version.ts';
import { type EmbeddedBroker, startEmbeddedBroker } from './broker/embedded.ts';
import { CommandDispatcher } from './commands.ts';
import { type AgentConfig, dataPath } from './config.ts';
import { AgentMetrics } from './http/metrics.ts';
import { Router } from './http/router.ts';
import { HttpServer, sendJson } from './http/server.ts';
import { registerTfServing } from './http/tf-serving-routes.ts';
import { registerV2 } from './http/v2-routes.ts';
import { createLogger, type Logger } from './log.ts';
import { Outbox } from './outbox/outbox.ts';
import { PipelineManager } from './pipeline/manager.ts';
import { Publisher } from './publisher.ts';
import type { InferenceObserver } from './runtime/observer.ts';
import { WorkerPool } from './runtime/pool.ts';
import { ModelRegistry } from './runtime/registry.ts';
import { registerSensorRoutes } from './sources/http-push.ts';
import { LineStreamSource } from './sources/line-stream.ts';
import { MqttSensorBus } from './sources/mqtt-bus.ts';
import { StorageBudget } from './storage/budget.ts';
import { readCredential } from './sync/credentials.ts';
import { SyncClient } from './sync/sync-client.ts';
import { UpdaterBridge } from './sync/updater-bridge.ts';
import { InferenceStats } from './telemetry/inference-stats.ts';
import { Telemetry } from './telemetry/telemetry.ts';
import { faultsFromEnv } from './updater/faults.ts';
import type { Updater, UpdaterStatus } from './updater/updater.ts';
import { Uplink } from './uplink/uplink.ts';

export interface AgentDeps {
  logger?: Logger;
  now?: () => number;
  /** Storage budget hook for updates: throw to refuse an install needing `bytes`. */
  ensureSpace?: (bytes: number) => Promise<void> | void;
}

export interface Agent {
  readonly config: Readonly<AgentConfig>;
  readonly bootId: string;
  readonly log: Logger;
  readonly registry: ModelRegistry;
  readonly outbox: Outbox;
  readonly publisher: Publisher;
  readonly uplink: Uplink | undefined;
  readonly pipelines: PipelineManager;
  readonly http: HttpServer | undefined;
  /** The one storage budget for models, staging and the outbox (the updater calls ensure()). */
  readonly storage: StorageBudget;
  readonly updater: Updater | undefined;
  readonly telemetry: Telemetry | undefined;
  readonly commands: CommandDispatcher;
  readonly lineStreams: ReadonlyMap<string, LineStreamSource>;
  /** The HTTP port actually bound (differs from the config when it asked for port 0). */
  httpPort: number | undefined;
  start(): Promise<void>;
  /** Graceful shutdown in order: intake, inference, outbox batch, MQTT, SQLite. */
  stop(): Promise<void>;
  status(): AgentStatus;
  /** Records a sync with the control plane for status (`result` e.g. "ok" or an error message). */
  recordSync(at: Date, result: string): void;
}

export interface AgentStatus {
  deviceId: string;
  bootId: string;
  agentVersion: string;
  arch: string;
  state: 'starting' | 'running' | 'stopping' | 'stopped';
  models: Array<{ name: string; version: string; state: string; releaseCounter: number; sha256: string }>;
  outbox: ReturnType<Outbox['stats']>;
  uplink:
    | {
        state: string;
        protocol: string;
        inflight: number;
        lastError?: string | undefined;
        connectedAt?: string | undefined;
        published: number;
        acked: number;
      }
    | undefined;
  /** The last sync with the control plane: from the sync client when it runs, else the updater. */
  sync: {
    lastSyncAt: string | undefined;
    lastResult: string | undefined;
    enrolled?: boolean;
    desiredVersion?: number | undefined;
  };
  pipelines: ReturnType<PipelineManager['stats']>;
  updates?: UpdaterStatus | undefined;
}

/** The composition root: builds every part of the agent from a validated config. Nothing starts until start(). */
export function createAgent(config: Readonly<AgentConfig>, deps: AgentDeps = {}): Agent {
  const log = deps.logger ?? createLogger(config.log.level);
  const bootId = randomUUID();
  const envelopes = new EnvelopeFactory({ deviceId: config.deviceId, bootId }, deps.now);
  const outbox = new Outbox({
    path: dataPath(config, 'outbox.db'),
    bootId,
    synchronous: config.outbox.synchronous,
    batchSize: config.outbox.batchSize,
    maxDelayMs: config.outbox.maxDelayMs,
    maxRows: config.outbox.maxRows,
    maxBytes: config.outbox.maxBytes,
    ttlMs: config.outbox.ttlMs,
    log: log.child({ component: 'outbox' }),
    ...(deps.now === undefined ? {} : { now: deps.now }),
  });
  const pool = new WorkerPool(
    WorkerPool.defaultSize(config.runtime.workers),
    {
      intraOpThreads: config.runtime.intraOpThreads,
      interOpThreads: config.runtime.interOpThreads,
      graphOptimizationLevel: config.runtime.graphOptimizationLevel,
      executionMode: config.runtime.executionMode,
    },
    log.child({ component: 'runtime' }),
    { workerNice: config.runtime.workerNice, mapWeights: config.runtime.mapWeights },
  );
  // Read at scrape time only, after the registry below exists.
  const metrics: AgentMetrics = new AgentMetrics(
    {
      versions: () =>
        registry.all().map((m) => ({
          name: m.name,
          version: m.version,
          state: m.state,
          pending: registry.pending(m.key),
        })),
    },
    { gcPauses: config.http.gcMetrics },
  );
  // Every inference, from the HTTP API or a pipeline, feeds both the Prometheus metrics and the
  // per-model figures sent in telemetry.
  const inference = new InferenceStats();
  const observer: InferenceObserver = {
    request(model, version, outcome) {
      metrics.request(model, version, outcome);
      inference.record(model, outcome.totalUs / 1000, outcome.ok);
    },
    execution: (model, version, rows) => metrics.execution(model, version, rows),
  };
  const { batching } = config.runtime;
  const registry: ModelRegistry = new ModelRegistry(pool, log.child({ component: 'registry' }), {
    keepVersions: config.runtime.keepVersions,
    versionPolicy: config.runtime.versionPolicy,
    queueLimit: config.runtime.queueLimit,
    requestTimeoutMs: config.runtime.requestTimeoutMs,
    batchingEnabled: batching.enabled,
    defaultBatching:
      batching.defaultMaxBatchSize > 1
        ? { maxBatchSize: batching.defaultMaxBatchSize, maxQueueDelayMs: batching.defaultMaxQueueDelayMs }
        : undefined,
    observer,
  });
  const publisher = new Publisher(config.deviceId, envelopes, outbox);
  const storage = new StorageBudget({
    dataDir: config.dataDir,
    maxBytes: config.storage.maxBytes,
    reserveFreeBytes: config.storage.reserveFreeBytes,
    log: log.child({ component: 'storage' }),
  });
  let state: AgentStatus['state'] = 'starting';
  const syncRecord: AgentStatus['sync'] = { lastSyncAt: undefined, lastResult: undefined };

  const modelList = () =>
    registry
      .all()
      .filter((m) => m.state === 'READY')
      .map((m) => ({ name: m.name, version: m.version, sha256: m.ref.sha256 }));

  const uplink = config.uplink.enabled
    ? new Uplink({
        ...config.uplink,
        deviceId: config.deviceId,
        bootId,
        outbox,
        log: log.child({ component: 'uplink' }),
        birth: () => ({ agentVersion: OUTPOST_VERSION, arch: arch(), models: modelList() }),
      })
    : undefined;
  const embedded = config.sensors.embeddedBroker;
  const sensorConnection =
    config.sensors.mqtt === 'off'
      ? undefined
      : config.sensors.mqtt === 'uplink'
        ? config.uplink
        : config.sensors.mqtt === 'embedded'
          ? { url: `mqtt://${embedded.host === '0.0.0.0' ? '127.0.0.1' : embedded.host}:${embedded.port}` }
          : config.sensors.mqtt;
  let embeddedBroker: EmbeddedBroker | undefined;
  const bus =
    sensorConnection === undefined
      ? undefined
      : new MqttSensorBus(
          sensorConnection,
          `outpost-${config.deviceId}-sensors`,
          log.child({ component: 'sensors' }),
        );
  const pipelines = new PipelineManager({
    registry,
    publisher,
    bus,
    log: log.child({ component: 'pipeline' }),
    // Windows in flight beyond the model's request queue would only be refused by it.
    bufferLimit: Math.min(config.sensors.bufferLimit, config.runtime.queueLimit),
    logIntervalMs: config.sensors.malformedLogIntervalMs,
  });
  // Fault injection for tests, read when the agent is built (the updater itself is built in start()).
  const faultEnv = process.env.OUTPOST_UPDATER_FAULT;
  const updaterFaults = faultEnv === undefined ? undefined : faultsFromEnv(faultEnv);
  // The updater's code (tuf-js, got, the TUF metadata models) is loaded only when updates are on.
  const makeUpdater = async (token: string | undefined): Promise<Updater> => {
    const { Updater } = await import('./updater/updater.ts');
    return new Updater({
      config: token === undefined ? config.updates : { ...config.updates, token },
      deviceId: config.deviceId,
      dataDir: config.dataDir,
      registry,
      publisher,
      log: log.child({ component: 'updater' }),
      arch: arch(),
      agentVersion: OUTPOST_VERSION,
      ...(deps.now === undefined ? {} : { now: deps.now }),
      // One budget for models, staging and the outbox: a download that would crowd out the
      // outbox is refused before it starts.
      ensureSpace:
        deps.ensureSpace ??
        (async (bytes: number) => {
          await storage.ensure(bytes, 'model download');
        }),
      ...(updaterFaults === undefined ? {} : { faults: updaterFaults }),
    });
  };
  // With sync on, the updater fetches the director with the enrolment credential; before the
  // first enrolment there is none, so the updater is built when the sync client enrols.
  const credentialPath = dataPath(config, 'sync', 'credential.json');
  const credential = config.sync.enabled ? readCredential(credentialPath)?.credential : undefined;
  // Built in start(): its modules load on demand.
  const updaterAtStart =
    config.updates.enabled &&
    (!config.sync.enabled || credential !== undefined || config.updates.token !== undefined);
  let updater: Updater | undefined;
  const sync = config.sync.enabled
    ? new SyncClient({
        ...config.sync,
        deviceId: config.deviceId,
        credentialPath,
        arch: arch(),
        agentVersion: OUTPOST_VERSION,
        handler: new UpdaterBridge(() => updater, registry),
        log: log.child({ component: 'sync' }),
        onEnrolled: async (cred) => {
          if (updater !== undefined || !config.updates.enabled) return;
          const late = await makeUpdater(cred.credential);
          for (const dir of await late.prepareBoot())
            await registry.load(await readBundle(dir), { mapWeights: true });
          late.start();
          updater = late;
        },
      })
    : undefined;
  const lineStreams = new Map<string, LineStreamSource>();
  for (const [name, stream] of Object.entries(config.sensors.streams)) {
    lineStreams.set(
      name,
      new LineStreamSource({
        name,
        ...stream,
        log: log.child({ component: 'line-stream', stream: name }),
        deliver: (line) => {
          const runners = pipelines.lineStreamRunners(name);
          if (runners.length === 0) return undefined;
          return Promise.all(runners.map((r) => r.ingest(name, line)));
        },
      }),
    );
  }
  const commands = new CommandDispatcher(publisher, log.child({ component: 'commands' }));
  const syncStatus = (): AgentStatus['sync'] => {
    if (sync !== undefined) {
      const last = sync.lastSyncAt;
      return {
        enrolled: sync.enrolled,
        lastSyncAt: last === undefined ? undefined : new Date(last).toISOString(),
        lastResult:
          sync.lastError !== undefined ? `error: ${sync.lastError}` : last === undefined ? undefined : 'ok',
        desiredVersion: sync.desiredVersion,
      };
    }
    const u = updater?.status();
    if (u?.lastCheckAt === undefined) return { ...syncRecord };
    const o = u.lastOutcome;
    const result =
      u.lastError !== undefined
        ? `error: ${u.lastError}`
        : o === undefined
          ? 'checked'
          : o.upToDate
            ? 'up to date'
            : `installed ${o.installed.length}, failed ${o.failed.length}`;
    return { lastSyncAt: new Date(u.lastCheckAt).toISOString(), lastResult: result };
  };

  const status = (): AgentStatus => ({
    deviceId: config.deviceId,
    bootId,
    agentVersion: OUTPOST_VERSION,
    arch: arch(),
    state,
    models: registry.all().map((m) => ({
      name: m.name,
      version: m.version,
      state: m.state,
      releaseCounter: m.releaseCounter,
      sha256: m.ref.sha256,
    })),
    outbox: outbox.stats(),
    uplink:
      uplink === undefined
        ? undefined
        : {
            state: uplink.state,
            protocol: uplink.protocol === 5 ? '5' : '3.1.1',
            inflight: uplink.inflightCount,
            lastError: uplink.lastError,
            connectedAt:
              uplink.connectedAt === undefined ? undefined : new Date(uplink.connectedAt).toISOString(),
            published: uplink.counters.published,
            acked: uplink.counters.acked,
          },
    pipelines: pipelines.stats(),
    sync: syncStatus(),
    updates: updater?.status(),
  });
  commands.register('status', () => status());
  if (sync !== undefined) commands.register('sync', () => sync.syncNow());
  else if (updaterAtStart)
    commands.register('sync', () => {
      if (updater === undefined) throw new OutpostError('CONFLICT', 'the updater has not started yet');
      return updater.checkNow();
    });
  uplink?.on('command', (cmd) => {
    commands.handle(cmd).catch((err: unknown) => log.error({ err }, 'command reply failed'));
  });
  registry.on('changed', () => uplink?.refreshBirth());

  const telemetry = config.telemetry.enabled
    ? new Telemetry({
        schedules: config.telemetry.schedules,
        qos: config.telemetry.qos,
        dataDir: config.dataDir,
        publisher,
        inference,
        outbox: () => ({
          ...outbox.stats(),
          uplink:
            uplink === undefined
              ? undefined
              : { state: uplink.state, inflight: uplink.inflightCount, ...uplink.counters },
        }),
        runtime: () => ({
          pipelines: pipelines.stats(),
          lineStreams: Object.fromEntries([...lineStreams].map(([n, l]) => [n, { ...l.counters }])),
        }),
        log: log.child({ component: 'telemetry' }),
      })
    : undefined;

  const router = new Router();
  registerSensorRoutes(router, pipelines);
  registerV2(router, { registry, agentVersion: OUTPOST_VERSION, ready: () => state === 'running' });
  registerTfServing(router, { registry });
  router.get('/v1/agent/status', ({ res }) => sendJson(res, 200, status()));
  router.get('/metrics', async ({ res }) => {
    const { contentType, body } = await metrics.render();
    res.writeHead(200, { 'content-type': contentType, 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
  const http = config.http.enabled
    ? new HttpServer(router, {
        ...config.http,
        log: log.child({ component: 'http' }),
        public: ['/v2/health/live'],
        onResponse: (method, route, code, seconds) => metrics.http(method, route, code, seconds),
      })
    : undefined;

  const agent: Agent = {
    config,
    bootId,
    log,
    registry,
    outbox,
    publisher,
    uplink,
    pipelines,
    http,
    storage,
    get updater() {
      return updater;
    },
    telemetry,
    commands,
    lineStreams,
    httpPort: undefined,
    status,
    recordSync(at, result) {
      syncRecord.lastSyncAt = at.toISOString();
      syncRecord.lastResult = result;
    },
    async start() {
      log.info({ deviceId: config.deviceId, bootId, version: OUTPOST_VERSION }, 'agent starting');
      outbox.start();
      metrics.start();
      pool.start();
      if (updaterAtStart) updater = await makeUpdater(credential);
      const installed = (await updater?.prepareBoot()) ?? [];
      // Installed bundles are the agent's own files, replaced only by rename: their weights are
      // mapped. Configured bundle directories are the operator's, who may rewrite them in place.
      const boot = [
        ...config.models.bundles.map((dir) => ({ dir, mapWeights: false })),
        ...installed.map((dir) => ({ dir, mapWeights: true })),
      ];
      for (const { dir, mapWeights } of boot) {
        try {
          await registry.load(await readBundle(dir), { mapWeights });
        } catch (err) {
          log.error({ err, bundle: dir }, 'bundle failed to load');
        }
      }
      if (config.sensors.mqtt === 'embedded') {
        embeddedBroker = await startEmbeddedBroker({ host: embedded.host, port: embedded.port });
        log.info({ url: embeddedBroker.url }, 'embedded sensor broker listening');
      }
      await bus?.start();
      pipelines.start();
      for (const l of lineStreams.values()) l.start();
      uplink?.start();
      telemetry?.start();
      if (http !== undefined) agent.httpPort = await http.start();
      updater?.start();
      sync?.start();
      state = 'running';
      log.info({ models: modelList().length }, 'agent ready');
    },
    async stop() {
      if (state === 'stopped' || state === 'stopping') return;
      state = 'stopping';
      log.info('agent stopping');
      // Each step logs `shutdown step` so an operator (and the lifecycle test) can see the order.
      const step = (name: string) => log.info({ step: name }, 'shutdown step');
      await sync?.stop();
      await updater?.stop();
      await telemetry?.stop();
      await bus?.stop();
      await embeddedBroker?.stop();
      await Promise.all([...lineStreams.values()].map((l) => l.stop()));
      await http?.stop();
      step('intake stopped');
      await pipelines.stop();
      registry.stop();
      await pool.stop();
      step('inference drained');
      outbox.flush();
      step('outbox batch flushed');
      await uplink?.stop();
      step('mqtt ended');
      outbox.stop();
      metrics.stop();
      step('sqlite closed');
      state = 'stopped';
      log.info('agent stopped');
    },
  };
  return agent;
}
