import { OutpostError } from '../../shared/errors.ts';
import { type Infer, z } from '../../shared/schema.ts';
import { isTopicLevel } from '../../shared/topics.ts';
import { parseOrThrow } from '../../shared/validate.ts';
import type { Logger } from '../log.ts';
import type { RolloutEngine } from '../rollout/engine.ts';
import { hashSecret, newSecret } from '../server/auth.ts';
import type { DeviceRecord, InstalledModel, Repository } from '../store/repository.ts';

const installedSchema = z
  .object({
    name: z.string().min(1).max(128),
    version: z.string().min(1).max(64),
    sha256: z.string().max(64).optional(),
    releaseCounter: z.number().int().min(0).optional(),
    state: z.string().max(32).optional(),
  })
  .strip();

export const reportSchema = z
  .object({
    agentVersion: z.string().max(64).optional(),
    arch: z.string().max(32).optional(),
    /** What the device runs now, from its own registry: the control plane's only record of it. */
    installed: z.array(installedSchema).max(256).optional(),
    /** Install outcomes since the last report. */
    outcomes: z
      .array(
        z
          .object({
            model: z.string().min(1).max(128),
            version: z.string().min(1).max(64),
            ok: z.boolean(),
            detail: z.string().max(2000).default(''),
          })
          .strip(),
      )
      .max(64)
      .optional(),
    /** The desired-state version the device has processed. */
    desiredVersion: z.number().int().min(0).optional(),
  })
  .strict();

export type DeviceReport = Infer<typeof reportSchema>;

export const enrolSchema = z
  .object({
    token: z.string().min(1).max(256),
    deviceId: z
      .string()
      .refine(isTopicLevel, 'must be 1-128 letters, digits, . _ - (it becomes an MQTT topic level)'),
    arch: z.string().max(32).optional(),
    agentVersion: z.string().max(64).optional(),
  })
  .strict();

export interface DeviceView extends Omit<DeviceRecord, 'credentialHash'> {
  presence: 'online' | 'offline';
}

/** Enrolment, reports and presence of devices. */
export class DeviceService {
  constructor(
    private readonly options: {
      repo: Repository;
      rollouts: RolloutEngine;
      now: () => number;
      log: Logger;
      offlineAfterMs: number;
      tokenTtlMs: number;
    },
  ) {}

  createEnrolmentToken(tags: Record<string, string>, ttlMs?: number): { token: string; expiresAt: number } {
    const { repo, now } = this.options;
    const token = newSecret('oet');
    const expiresAt = now() + (ttlMs ?? this.options.tokenTtlMs);
    repo.createEnrolmentToken({
      tokenHash: hashSecret(token),
      tags,
      createdAt: now(),
      expiresAt,
      usedAt: null,
      usedBy: null,
    });
    return { token, expiresAt };
  }

  /** Single-use: the token is consumed in the same transaction that creates the device. */
  enrol(body: unknown): { deviceId: string; credential: string } {
    const req = parseOrThrow(enrolSchema, body, 'enrolment');
    const { repo, now, log } = this.options;
    const credential = newSecret('odc');
    repo.transaction(() => {
      if (repo.getDevice(req.deviceId) !== undefined)
        throw new OutpostError('CONFLICT', `device ${req.deviceId} is already enrolled`);
      const token = repo.consumeEnrolmentToken(hashSecret(req.token), req.deviceId, now());
      if (token === undefined)
        throw new OutpostError('UNAUTHORIZED', 'enrolment token unknown, expired or already used');
      repo.createDevice({
        id: req.deviceId,
        credentialHash: hashSecret(credential),
        tags: token.tags,
        arch: req.arch ?? null,
        agentVersion: req.agentVersion ?? null,
        installed: [],
        enrolledAt: now(),
        lastSeenAt: now(),
        online: false,
        onlineSource: 'http',
      });
      repo.addEvent({
        ts: now(),
        rolloutId: null,
        deviceId: req.deviceId,
        type: 'enrolled',
        from: null,
        to: null,
        reason: `enrolled with tags ${JSON.stringify(token.tags)}`,
      });
    });
    log.info({ deviceId: req.deviceId }, 'device enrolled');
    return { deviceId: req.deviceId, credential };
  }

  /** The device a credential belongs to; it must be the one the URL names. */
  authenticate(credential: string | undefined, deviceId: string): DeviceRecord {
    if (credential === undefined) throw new OutpostError('UNAUTHORIZED', 'device credential required');
    const device = this.options.repo.getDeviceByCredential(hashSecret(credential));
    if (device === undefined) throw new OutpostError('UNAUTHORIZED', 'unknown device credential');
    if (device.id !== deviceId)
      throw new OutpostError('FORBIDDEN', `this credential belongs to ${device.id}, not ${deviceId}`);
    return device;
  }

  report(device: DeviceRecord, body: unknown): void {
    const report = parseOrThrow(reportSchema, body, 'report');
    const { repo, now, rollouts } = this.options;
    repo.transaction(() => {
      const patch: Partial<DeviceRecord> = { lastSeenAt: now() };
      if (report.agentVersion !== undefined) patch.agentVersion = report.agentVersion;
      if (report.arch !== undefined) patch.arch = report.arch;
      if (report.installed !== undefined) patch.installed = report.installed as InstalledModel[];
      repo.updateDevice(device.id, patch);
      if (report.installed !== undefined || (report.outcomes?.length ?? 0) > 0)
        repo.addReport({ deviceId: device.id, ts: now(), kind: 'report', body: report });
      for (const o of report.outcomes ?? []) {
        repo.addEvent({
          ts: now(),
          rolloutId: null,
          deviceId: device.id,
          type: o.ok ? 'install-succeeded' : 'install-failed',
          from: null,
          to: `${o.model}@${o.version}`,
          reason: o.detail === '' ? (o.ok ? 'installed' : 'failed') : o.detail,
        });
        rollouts.recordOutcome(
          device.id,
          o.model,
          o.version,
          o.ok,
          o.detail === '' ? 'install failed' : o.detail,
        );
      }
    });
  }

  /** Presence and inventory from the retained MQTT status topic. */
  mqttStatus(
    deviceId: string,
    status: { state?: unknown; agentVersion?: unknown; arch?: unknown; models?: unknown },
  ): void {
    const { repo, now } = this.options;
    if (repo.getDevice(deviceId) === undefined) return;
    const patch: Partial<DeviceRecord> = { online: status.state === 'online', onlineSource: 'mqtt' };
    if (status.state === 'online') patch.lastSeenAt = now();
    if (typeof status.agentVersion === 'string') patch.agentVersion = status.agentVersion;
    if (typeof status.arch === 'string') patch.arch = status.arch;
    // The birth message lists the models serving, as the device's registry sees them.
    if (status.state === 'online' && Array.isArray(status.models)) {
      const models = status.models.filter(
        (m): m is { name: string; version: string; sha256?: string } =>
          typeof m === 'object' && m !== null && typeof m.name === 'string' && typeof m.version === 'string',
      );
      patch.installed = models.map((m) => ({
        name: m.name,
        version: m.version,
        ...(typeof m.sha256 === 'string' ? { sha256: m.sha256 } : {}),
        state: 'READY',
      }));
    }
    repo.updateDevice(deviceId, patch);
  }

  view(d: DeviceRecord): DeviceView {
    const { credentialHash: _hidden, ...rest } = d;
    const recent = d.lastSeenAt !== null && this.options.now() - d.lastSeenAt < this.options.offlineAfterMs;
    // MQTT's Last Will says "offline" the moment the connection drops; trust it over an old HTTP poll.
    const online = d.onlineSource === 'mqtt' ? d.online : recent;
    return { ...rest, presence: online ? 'online' : 'offline' };
  }

  get(id: string): DeviceRecord {
    const d = this.options.repo.getDevice(id);
    if (d === undefined) throw new OutpostError('NOT_FOUND', `no device ${id}`);
    return d;
  }
}
