import { randomUUID } from 'node:crypto';
import { arch } from 'node:os';
import { readBundle } from '../shared/bundle/read.ts';
import { EnvelopeFactory } from '../shared/envelope.ts';
import { OUTPOST_VERSION } from '../shared/version.ts';
import { type EmbeddedBroker, startEmbeddedBroker } from './broker/embedded.ts';
import { CommandDispatcher } from './commands.ts';
import { type AgentConfig, dataPath } from './config.ts';
import { Router } from './http/router.ts';
import { HttpServer, sendJson } from './http/server.ts';
import { registerV2 } from './http/v2-routes.ts';
import { createLogger, type Logger } from './log.ts';
import { Outbox } from './outbox/outbox.ts';
import { PipelineManager } from './pipeline/manager.ts';
import { Publisher } from './publisher.ts';
import { WorkerPool } from './runtime/pool.ts';
import { ModelRegistry } from './runtime/registry.ts';
import { registerSensorRoutes } from './sources/http-push.ts';
import { LineStreamSource } from './sources/line-stream.ts';
import { MqttSensorBus } from './sources/mqtt-bus.ts';
import { InferenceStats } from './telemetry/inference-stats.ts';
import { Telemetry } from './telemetry/telemetry.ts';
import { Uplink } from './uplink/uplink.ts';

export interface AgentDeps {
  logger?: Logger;
  now?: () => number;
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
  readonly telemetry: Telemetry | undefined;
  readonly commands: CommandDispatcher;
  readonly lineStreams: ReadonlyMap<string, LineStreamSource>;
  /** The HTTP port actually bound (differs from the config when it asked for port 0). */
  httpPort: number | undefined;
  start(): Promise<void>;
  /** Graceful shutdown in order: intake, inference, outbox batch, MQTT, SQLite. */
  stop(): Promise<void>;
  status(): AgentStatus;
}

export interface AgentStatus {
  deviceId: string;
  bootId: string;
  agentVersion: string;
  arch: string;
  state: 'starting' | 'running' | 'stopping' | 'stopped';
  models: Array<{ name: string; version: string; state: string; releaseCounter: number; sha256: string }>;
  outbox: ReturnType<Outbox['stats']>;
  uplink: { state: string; protocol: string; inflight: number; lastError?: string | undefined } | undefined;
  pipelines: ReturnType<PipelineManager['stats']>;
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
  );
  const registry = new ModelRegistry(pool, log.child({ component: 'registry' }), config.runtime.keepVersions);
  const publisher = new Publisher(config.deviceId, envelopes, outbox);
  let state: AgentStatus['state'] = 'starting';

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
  const inference = new InferenceStats();
  const pipelines = new PipelineManager({
    registry,
    publisher,
    bus,
    log: log.child({ component: 'pipeline' }),
    bufferLimit: config.sensors.bufferLimit,
    logIntervalMs: config.sensors.malformedLogIntervalMs,
    observe: (model, ms, ok) => inference.record(model, ms, ok),
  });
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
          },
    pipelines: pipelines.stats(),
  });
  commands.register('status', () => status());
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
  router.get('/v1/agent/status', ({ res }) => sendJson(res, 200, status()));
  const http = config.http.enabled
    ? new HttpServer(router, {
        ...config.http,
        log: log.child({ component: 'http' }),
        public: ['/v2/health/live'],
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
    telemetry,
    commands,
    lineStreams,
    httpPort: undefined,
    status,
    async start() {
      log.info({ deviceId: config.deviceId, bootId, version: OUTPOST_VERSION }, 'agent starting');
      outbox.start();
      pool.start();
      for (const dir of config.models.bundles) {
        try {
          await registry.load(await readBundle(dir));
        } catch (err) {
          log.error({ err, bundle: dir }, 'bundle failed to load');
        }
      }
      if (config.sensors.mqtt === 'embedded') {
        embeddedBroker = await startEmbeddedBroker({ host: embedded.host, port: embedded.port });
        log.info({ url: embeddedBroker.url }, 'embedded sensor broker listening');
      }
      bus?.start();
      pipelines.start();
      for (const l of lineStreams.values()) l.start();
      uplink?.start();
      telemetry?.start();
      if (http !== undefined) agent.httpPort = await http.start();
      state = 'running';
      log.info({ models: modelList().length }, 'agent ready');
    },
    async stop() {
      if (state === 'stopped' || state === 'stopping') return;
      state = 'stopping';
      log.info('agent stopping');
      await telemetry?.stop();
      await bus?.stop();
      await embeddedBroker?.stop();
      await Promise.all([...lineStreams.values()].map((l) => l.stop()));
      await http?.stop();
      await pipelines.stop();
      outbox.flush();
      await uplink?.stop();
      await pool.stop();
      outbox.stop();
      state = 'stopped';
      log.info('agent stopped');
    },
  };
  return agent;
}
