import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import cron from 'node-cron';
import { OutpostError } from '../shared/errors.ts';
import {
  type AnySchema,
  BooleanSchema,
  EnumSchema,
  type Infer,
  type Input,
  NumberSchema,
  ObjectSchema,
  type Shape,
  StringSchema,
  WrapperSchema,
  z,
} from '../shared/schema.ts';
import { isTopicLevel } from '../shared/topics.ts';
import { describeIssues } from '../shared/validate.ts';

/**
 * The one config schema. The TypeScript type is inferred from it, environment overrides are
 * derived from it, and it is validated once at boot and frozen. Defaults are the safe ones:
 * loopback HTTP, durable outbox, TLS verification on.
 */
const duration = z.number().int().min(0);

const tlsSchema = z
  .object({
    ca: z.string().optional(),
    cert: z.string().optional(),
    key: z.string().optional(),
    rejectUnauthorized: z.boolean().default(true),
  })
  .strict();

const mqttConnection = {
  url: z.string().regex(/^(mqtts?|wss?|tcp|ssl):\/\//, 'must be an mqtt://, mqtts://, ws:// or wss:// URL'),
  username: z.string().optional(),
  password: z.string().optional(),
  tls: tlsSchema.optional(),
};

const lineStreamSchema = z
  .object({
    /** A file, a FIFO, or `-` for the agent's stdin. */
    path: z.string().min(1),
    /** For a regular file: keep reading what is appended (like `tail -f`) instead of stopping at the end. */
    follow: z.boolean().default(true),
    /** For a regular file: start at its end rather than replaying what it already holds. */
    fromEnd: z.boolean().default(false),
    /** Longer lines are dropped and counted. */
    maxLineBytes: z
      .number()
      .int()
      .min(16)
      .default(64 * 1024),
  })
  .strict();

const cronExpression = z.string().refine((s) => cron.validate(s), 'must be a valid cron expression');

export const configSchema = z
  .object({
    deviceId: z
      .string()
      .refine(isTopicLevel, 'must be 1-128 letters, digits, . _ - (it becomes an MQTT topic level)')
      .default(() => defaultDeviceId()),
    dataDir: z.string().default('/var/lib/outpost'),
    /** The graceful shutdown's deadline; past it the agent exits non-zero (keep it below TimeoutStopSec). */
    shutdownDeadlineMs: z.number().int().min(100).max(600_000).default(20_000),
    controlPlane: z
      .object({
        /** The control plane's base URL, e.g. https://outpost.example.com; unset means none. */
        url: z
          .string()
          .regex(/^https?:\/\/[^/\s]+/, 'must be an http:// or https:// URL')
          .optional(),
        /** Per-request timeout for reachability checks and calls. */
        timeoutMs: z.number().int().min(100).default(10_000),
      })
      .strict()
      .prefault({}),
    storage: z
      .object({
        /** One budget for models, staging (downloads) and the outbox under dataDir. */
        maxBytes: z
          .number()
          .int()
          .min(16 * 1024 * 1024)
          .default(4 * 1024 * 1024 * 1024),
        /** Free space always left on the data directory's filesystem, whatever the budget says. */
        reserveFreeBytes: z
          .number()
          .int()
          .min(0)
          .default(256 * 1024 * 1024),
        /** Installed versions kept per model (the active one plus this many minus one for revert). */
        keepModelVersions: z.number().int().min(1).max(16).default(2),
      })
      .strict()
      .prefault({}),
    log: z
      .object({
        level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
      })
      .strict()
      .prefault({}),
    http: z
      .object({
        enabled: z.boolean().default(true),
        host: z.string().default('127.0.0.1'),
        port: z.number().int().min(0).max(65535).default(8470),
        /** Required when `host` is not a loopback address. */
        token: z.string().min(16, 'must be at least 16 characters').optional(),
        bodyLimitBytes: z
          .number()
          .int()
          .min(1024)
          .default(32 * 1024 * 1024),
        headersTimeoutMs: duration.default(10_000),
        requestTimeoutMs: duration.default(60_000),
        keepAliveTimeoutMs: duration.default(5_000),
        /**
         * `nodejs_gc_duration_seconds` on /metrics. Off by default: Node then reports every
         * garbage collection to JavaScript, which cost 17% of the MLP's V2 throughput at 32
         * clients on 2 cores.
         */
        gcMetrics: z.boolean().default(false),
      })
      .strict()
      .prefault({}),
    runtime: z
      .object({
        /** Inference worker threads; 0 means one per CPU core but one (the main thread keeps a core), at least one. */
        workers: z.number().int().min(0).max(64).default(0),
        intraOpThreads: z.number().int().min(0).max(64).default(1),
        interOpThreads: z.number().int().min(0).max(64).default(1),
        graphOptimizationLevel: z.enum(['disabled', 'basic', 'extended', 'all']).default('all'),
        executionMode: z.enum(['sequential', 'parallel']).default('sequential'),
        /**
         * Nice value of the inference threads (Linux; 0 = the agent's own). Above 0, the main
         * thread (HTTP, health probes, MQTT, updates) wins the CPU from inference when both
         * want it. Off by default: the nice value also counts against every other process in
         * the agent's scheduling group (its cgroup or session), and inference would yield to
         * them as well.
         */
        workerNice: z.number().int().min(0).max(19).default(0),
        /**
         * Installed bundles map their aligned large weights from the model file instead of
         * copying them (see shared/onnx/weights-layout.ts). Off: every model is read as a file.
         */
        mapWeights: z.boolean().default(true),
        /** Requests waiting per model before new ones are refused with 429. */
        queueLimit: z.number().int().min(1).default(1024),
        requestTimeoutMs: duration.default(10_000),
        /** Versions kept loaded per model: the newest N. */
        keepVersions: z.number().int().min(1).max(16).default(1),
        /** Per model name: `{latest: N}` or `{specific: ["1.2.0", …]}` (pinned), instead of keepVersions. */
        versionPolicy: z
          .record(
            z.string(),
            z.union([
              z.object({ latest: z.number().int().min(1).max(16) }).strict(),
              z.object({ specific: z.array(z.string().min(1)).min(1) }).strict(),
            ]),
          )
          .default({}),
        batching: z
          .object({
            /** Off: no model batches, whatever its manifest says. */
            enabled: z.boolean().default(true),
            /** For models with a dynamic first dimension and no `batching` in their manifest; 0 leaves them unbatched. */
            defaultMaxBatchSize: z.number().int().min(0).max(1024).default(0),
            defaultMaxQueueDelayMs: z.number().min(0).max(1000).default(1),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    models: z
      .object({
        /** Bundle directories loaded at boot (each holds outpost.bundle.json and the model). */
        bundles: z.array(z.string()).default([]),
      })
      .strict()
      .prefault({}),
    outbox: z
      .object({
        /** FULL survives power loss; NORMAL is faster and may lose the last commits on power loss. */
        synchronous: z.enum(['FULL', 'NORMAL']).default('FULL'),
        batchSize: z.number().int().min(1).max(10_000).default(256),
        maxDelayMs: duration.default(10),
        maxRows: z.number().int().min(100).default(2_000_000),
        maxBytes: z
          .number()
          .int()
          .min(1024 * 1024)
          .default(512 * 1024 * 1024),
        ttlMs: z
          .object({
            prediction: duration.default(7 * 24 * 3600_000),
            telemetry: duration.default(24 * 3600_000),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    uplink: z
      .object({
        enabled: z.boolean().default(true),
        ...mqttConnection,
        url: mqttConnection.url.default('mqtt://127.0.0.1:1883'),
        /** `auto` tries MQTT 5 and falls back to 3.1.1 when the broker refuses it. */
        protocol: z.enum(['auto', '5', '3.1.1']).default('auto'),
        keepaliveS: z.number().int().min(5).max(3600).default(30),
        /** Publishes awaiting PUBACK at once. */
        inflight: z.number().int().min(1).max(1000).default(100),
        backoffMinMs: duration.default(500),
        backoffMaxMs: duration.default(30_000),
      })
      .strict()
      .prefault({}),
    sensors: z
      .object({
        /** The local sensor bus: `uplink` shares the uplink's broker settings, `embedded` runs one in-process, or a broker of its own. */
        mqtt: z
          .union([
            z.literal('uplink'),
            z.literal('embedded'),
            z.object({ ...mqttConnection }).strict(),
            z.literal('off'),
          ])
          .default('uplink'),
        /** The in-process broker sensors publish to when `mqtt` is `embedded` (MQTT 3.1.1). */
        embeddedBroker: z
          .object({
            host: z.string().default('127.0.0.1'),
            port: z.number().int().min(1).max(65535).default(1884),
          })
          .strict()
          .prefault({}),
        /** Readings buffered per pipeline before new ones are dropped (and counted). */
        bufferLimit: z.number().int().min(1).default(10_000),
        /** A malformed-payload warning is logged at most once per this interval per pipeline. */
        malformedLogIntervalMs: duration.default(60_000),
        /** Named line streams (NDJSON or CSV) that pipelines with `source.kind: "lines"` read. */
        streams: z.record(z.string().regex(/^[A-Za-z0-9._-]{1,64}$/), lineStreamSchema).default({}),
      })
      .strict()
      .prefault({}),
    telemetry: z
      .object({
        enabled: z.boolean().default(true),
        /** node-cron expressions (6 fields allow seconds): when each kind of figure is sampled. */
        schedules: z
          .object({
            system: cronExpression.default('*/60 * * * * *'),
            runtime: cronExpression.default('*/60 * * * * *'),
            outbox: cronExpression.default('*/60 * * * * *'),
          })
          .strict()
          .prefault({}),
        /** QoS of telemetry messages (DESIGN: 0 or 1). */
        qos: z.union([z.literal(0), z.literal(1)]).default(1),
      })
      .strict()
      .prefault({}),
    /** Signed model updates: TUF image repository + director (off until provisioned). */
    updates: z
      .object({
        enabled: z.boolean().default(false),
        /** Base URL of the TUF repository: metadata under /metadata, targets under /targets. */
        repositoryUrl: z
          .string()
          .regex(/^https?:\/\//, 'must be an http(s) URL')
          .optional(),
        metadataUrl: z
          .string()
          .regex(/^https?:\/\//, 'must be an http(s) URL')
          .optional(),
        targetsUrl: z
          .string()
          .regex(/^https?:\/\//, 'must be an http(s) URL')
          .optional(),
        /** root.json pinned at provisioning; copied into the trust store on first boot only. */
        pinnedRoot: z.string().optional(),
        /** The director's desired-state document for this device; `{deviceId}` is substituted. */
        directorUrl: z
          .string()
          .regex(/^https?:\/\//, 'must be an http(s) URL')
          .optional(),
        /** Bearer token for the control plane (the device credential). */
        token: z.string().optional(),
        pollIntervalMs: z.number().int().min(1000).default(300_000),
        connectTimeoutMs: duration.default(10_000),
        idleTimeoutMs: duration.default(30_000),
        /** Below this rate over `rateWindowMs` a transfer is cut off (slow-retrieval attack). */
        minBytesPerSec: z.number().min(0).default(1024),
        rateWindowMs: z.number().int().min(100).default(30_000),
        retries: z.number().int().min(0).max(100).default(4),
        backoffMinMs: duration.default(1_000),
        backoffMaxMs: duration.default(60_000),
        crashLoop: z
          .object({
            maxUncleanStarts: z.number().int().min(1).default(3),
            windowMs: duration.default(600_000),
            stableAfterMs: duration.default(300_000),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    /** The control plane link: enrolment, desired-state polling, reports (off until configured). */
    sync: z
      .object({
        enabled: z.boolean().default(false),
        url: z
          .string()
          .regex(/^https?:\/\//, 'must be an http(s) URL')
          .default('http://127.0.0.1:8480'),
        /** Single-use; only needed until the device holds its credential (`<dataDir>/sync/credential.json`). */
        enrolmentToken: z.string().optional(),
        pollIntervalMs: z.number().int().min(100).default(30_000),
        backoffMinMs: duration.default(1_000),
        backoffMaxMs: duration.default(300_000),
        requestTimeoutMs: duration.default(15_000),
      })
      .strict()
      .prefault({}),
  })
  .strict()
  .superRefine((config, ctx) => {
    if (config.outbox.maxBytes > config.storage.maxBytes)
      ctx.addIssue({
        code: 'custom',
        path: ['outbox', 'maxBytes'],
        message: `must not exceed storage.maxBytes (${config.storage.maxBytes}); the outbox lives inside the storage budget`,
      });
  });

export type AgentConfig = Infer<typeof configSchema>;
export type AgentConfigInput = Input<typeof configSchema>;

function defaultDeviceId(): string {
  const cleaned = hostname()
    .replace(/[^A-Za-z0-9._-]/g, '-')
    .slice(0, 128);
  return cleaned === '' ? 'device' : cleaned;
}

/** `outbox.maxRows` → `OUTPOST_OUTBOX__MAX_ROWS`. */
export function envName(path: readonly string[]): string {
  return `OUTPOST_${path.map((p) => p.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()).join('__')}`;
}

interface Leaf {
  path: string[];
  kind: 'string' | 'number' | 'boolean' | 'json';
}

/** Walks the schema for every leaf that an environment variable may set. */
export function configLeaves(): Leaf[] {
  const leaves: Leaf[] = [];
  const visit = (schema: AnySchema, path: string[]): void => {
    const inner = unwrap(schema);
    if (inner instanceof ObjectSchema) {
      for (const [key, child] of Object.entries(inner.shape as Shape)) visit(child, [...path, key]);
      return;
    }
    let kind: Leaf['kind'] = 'json';
    if (inner instanceof StringSchema || inner instanceof EnumSchema) kind = 'string';
    else if (inner instanceof NumberSchema) kind = 'number';
    else if (inner instanceof BooleanSchema) kind = 'boolean';
    leaves.push({ path, kind });
  };
  visit(configSchema, []);
  return leaves;
}

function unwrap(schema: AnySchema): AnySchema {
  // Defaults, prefaults and optionals wrap the type that tells what an env value must be.
  let current = schema;
  while (current instanceof WrapperSchema) current = current.inner;
  return current;
}

function parseEnvValue(raw: string, kind: Leaf['kind'], name: string): unknown {
  switch (kind) {
    case 'string':
      return raw;
    case 'number': {
      const n = Number(raw);
      if (raw.trim() === '' || !Number.isFinite(n))
        throw configError([`${name}: must be a number, got "${raw}"`]);
      return n;
    }
    case 'boolean':
      if (raw === 'true' || raw === '1') return true;
      if (raw === 'false' || raw === '0') return false;
      throw configError([`${name}: must be true or false, got "${raw}"`]);
    case 'json':
      try {
        return JSON.parse(raw);
      } catch {
        // A union of a literal and an object (sensors.mqtt) takes the bare literal too.
        return raw;
      }
  }
}

function setPath(target: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    const next = node[key];
    if (typeof next !== 'object' || next === null || Array.isArray(next)) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[path[path.length - 1] as string] = value;
}

function configError(problems: string[]): OutpostError {
  return new OutpostError('CONFIG_INVALID', `invalid configuration: ${problems.join('; ')}`, {
    details: { problems },
  });
}

export interface LoadConfigOptions {
  file?: string;
  env?: NodeJS.ProcessEnv;
  /** Values that win over the file and the environment (tests, the demo). */
  overrides?: AgentConfigInput;
}

/** Reads the file, applies `OUTPOST_…` variables, validates, resolves paths, and freezes. */
export function loadConfig(options: LoadConfigOptions = {}): Readonly<AgentConfig> {
  let raw: Record<string, unknown> = {};
  let baseDir = process.cwd();
  if (options.file !== undefined) {
    let text: string;
    try {
      text = readFileSync(options.file, 'utf8');
    } catch (err) {
      throw new OutpostError('CONFIG_INVALID', `cannot read config file ${options.file}`, { cause: err });
    }
    try {
      raw = JSON.parse(text) as Record<string, unknown>;
    } catch (err) {
      throw new OutpostError(
        'CONFIG_INVALID',
        `config file ${options.file} is not valid JSON: ${String(err)}`,
        {
          cause: err,
        },
      );
    }
    baseDir = resolve(options.file, '..');
  }
  const env = options.env ?? {};
  const problems: string[] = [];
  for (const leaf of configLeaves()) {
    const name = envName(leaf.path);
    const value = env[name];
    if (value === undefined) continue;
    try {
      setPath(raw, leaf.path, parseEnvValue(value, leaf.kind, name));
    } catch (err) {
      problems.push(
        err instanceof OutpostError ? err.message.replace(/^invalid configuration: /, '') : String(err),
      );
    }
  }
  if (problems.length > 0) throw configError(problems);
  const merged = deepMerge(raw, (options.overrides ?? {}) as Record<string, unknown>);
  const result = configSchema.safeParse(merged);
  if (!result.success) throw configError(describeIssues(result.error));
  const config = result.data;
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(baseDir, p));
  config.dataDir = abs(config.dataDir);
  config.models.bundles = config.models.bundles.map(abs);
  if (config.updates.pinnedRoot !== undefined) config.updates.pinnedRoot = abs(config.updates.pinnedRoot);
  if (config.sync.enabled) {
    // The control plane hosts both the TUF repository and the director.
    const base = config.sync.url.replace(/\/$/, '');
    config.updates.repositoryUrl ??= `${base}/tuf`;
    config.updates.directorUrl ??= `${base}/v1/devices/{deviceId}/desired`;
  }
  if (config.updates.enabled) {
    const u = config.updates;
    const missing = [
      u.pinnedRoot === undefined ? 'updates.pinnedRoot' : undefined,
      u.directorUrl === undefined ? 'updates.directorUrl' : undefined,
      u.repositoryUrl === undefined && (u.metadataUrl === undefined || u.targetsUrl === undefined)
        ? 'updates.repositoryUrl'
        : undefined,
    ].filter((m) => m !== undefined);
    if (missing.length > 0)
      throw configError(missing.map((m) => `${m}: required when updates.enabled is true`));
  }
  for (const stream of Object.values(config.sensors.streams))
    if (stream.path !== '-') stream.path = abs(stream.path);
  if (!isLoopback(config.http.host) && config.http.enabled && config.http.token === undefined) {
    throw configError([
      `http.token: required when http.host is ${config.http.host} (not loopback); set ${envName(['http', 'token'])}`,
    ]);
  }
  return deepFreeze(config);
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.');
}

export function dataPath(config: Pick<AgentConfig, 'dataDir'>, ...parts: string[]): string {
  return join(config.dataDir, ...parts);
}

function deepMerge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(over)) {
    const existing = out[key];
    if (
      typeof value === 'object' &&
      value !== null &&
      !Array.isArray(value) &&
      typeof existing === 'object' &&
      existing !== null &&
      !Array.isArray(existing)
    ) {
      out[key] = deepMerge(existing as Record<string, unknown>, value as Record<string, unknown>);
    } else {
      out[key] = value;
    }
  }
  return out;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}
