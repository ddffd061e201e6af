import { readFileSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { OutpostError } from '../../shared/errors.ts';
import { type Infer, type Input, z } from '../../shared/schema.ts';
import { describeIssues } from '../../shared/validate.ts';
import { parseDuration } from '../rollout/plan.ts';

const duration = z.union([z.number().int().min(0), z.string()]).transform((v, ctx) => {
  try {
    return parseDuration(v);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
    return z.NEVER;
  }
});

/** The control plane's one config schema; safe defaults: loopback, auth on, SQLite in the data dir. */
export const controlPlaneSchema = z
  .object({
    host: z.string().default('127.0.0.1'),
    port: z.number().int().min(0).max(65535).default(8480),
    /** Public base URL devices use (behind a proxy it differs from host:port). */
    publicUrl: z.string().url().optional(),
    dataDir: z.string().default('./outpost-control-plane'),
    /** Bearer token of the admin API (`OUTPOST_OPERATOR_TOKEN`). */
    operatorToken: z.string().min(16, 'must be at least 16 characters'),
    /** An `outpost keys init` directory holding the online keys (snapshot, timestamp, director). */
    keysDir: z.string().optional(),
    log: z
      .object({
        level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
      })
      .strict()
      .prefault({}),
    database: z
      .object({ kind: z.literal('sqlite').default('sqlite'), path: z.string().optional() })
      .strict()
      .prefault({}),
    tuf: z
      .object({
        /** The repository directory (metadata/ and targets/); default `<dataDir>/tuf`. */
        dir: z.string().optional(),
        /** The online keys, as `outpost keys init` writes them. */
        snapshotKey: z.string().optional(),
        timestampKey: z.string().optional(),
        snapshotExpiry: duration.default(7 * 86_400_000),
        timestampExpiry: duration.default(86_400_000),
        /** How often the cron job checks whether the timestamp needs re-signing. */
        refreshCron: z.string().default('*/5 * * * *'),
        maxUploadBytes: z
          .number()
          .int()
          .min(1024)
          .default(2 * 1024 ** 3),
      })
      .strict()
      .prefault({}),
    director: z
      .object({ key: z.string().optional(), expiry: duration.default(7 * 86_400_000) })
      .strict()
      .prefault({}),
    rollouts: z
      .object({
        tickMs: z.number().int().min(10).default(1000),
        deviceTimeout: duration.default(30 * 60_000),
      })
      .strict()
      .prefault({}),
    devices: z
      .object({
        /** A device not heard from (HTTP or MQTT) for this long counts as offline. */
        offlineAfter: duration.default(5 * 60_000),
        enrolmentTokenTtl: duration.default(24 * 3_600_000),
      })
      .strict()
      .prefault({}),
    /** Given a broker, the control plane follows device status topics and sends `cmd/sync`. */
    mqtt: z
      .object({
        url: z.string().regex(/^(mqtts?|wss?|tcp|ssl):\/\//),
        username: z.string().optional(),
        password: z.string().optional(),
      })
      .strict()
      .optional(),
  })
  .strict();

export type ControlPlaneConfig = Infer<typeof controlPlaneSchema>;
export type ControlPlaneConfigInput = Input<typeof controlPlaneSchema>;

/** Reads an optional JSON file, applies OUTPOST_CP_* variables for the common keys, validates once. */
export function loadControlPlaneConfig(options: {
  file?: string;
  env?: NodeJS.ProcessEnv;
  overrides?: Partial<ControlPlaneConfigInput>;
}): ControlPlaneConfig {
  let raw: Record<string, unknown> = {};
  let base = process.cwd();
  if (options.file !== undefined) {
    try {
      raw = JSON.parse(readFileSync(options.file, 'utf8')) as Record<string, unknown>;
    } catch (err) {
      throw new OutpostError('CONFIG_INVALID', `cannot read config file ${options.file}: ${String(err)}`, {
        cause: err,
      });
    }
    base = resolve(options.file, '..');
  }
  const env = options.env ?? {};
  if (env.OUTPOST_OPERATOR_TOKEN !== undefined) raw.operatorToken = env.OUTPOST_OPERATOR_TOKEN;
  if (env.OUTPOST_CP_HOST !== undefined) raw.host = env.OUTPOST_CP_HOST;
  if (env.OUTPOST_CP_PORT !== undefined) raw.port = Number(env.OUTPOST_CP_PORT);
  if (env.OUTPOST_CP_DATA_DIR !== undefined) raw.dataDir = env.OUTPOST_CP_DATA_DIR;
  if (env.OUTPOST_CP_MQTT_URL !== undefined)
    raw.mqtt = { ...(raw.mqtt as object | undefined), url: env.OUTPOST_CP_MQTT_URL };
  const merged = { ...raw, ...(options.overrides ?? {}) };
  const result = controlPlaneSchema.safeParse(merged);
  if (!result.success)
    throw new OutpostError(
      'CONFIG_INVALID',
      `invalid control plane configuration: ${describeIssues(result.error).join('; ')}`,
    );
  const config = result.data;
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(base, p));
  config.dataDir = abs(config.dataDir);
  config.database.path = abs(config.database.path ?? join(config.dataDir, 'control-plane.db'));
  config.tuf.dir = abs(config.tuf.dir ?? join(config.dataDir, 'tuf'));
  const keys = join(config.dataDir, 'keys');
  config.tuf.snapshotKey = abs(config.tuf.snapshotKey ?? join(keys, 'snapshot.key'));
  config.tuf.timestampKey = abs(config.tuf.timestampKey ?? join(keys, 'timestamp.key'));
  config.director.key = abs(config.director.key ?? join(keys, 'director.key'));
  if (config.keysDir !== undefined) config.keysDir = abs(config.keysDir);
  return config;
}
