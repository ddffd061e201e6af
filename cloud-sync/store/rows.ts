import type { DeviceRecord, EventRecord, RolloutDeviceRecord, RolloutRecord } from './repository.ts';

/** Row ↔ record mapping for the SQLite repository: JSON columns, nullable numbers, camelCase. */
export type Row = Record<string, unknown>;

export const json = (v: unknown): string => JSON.stringify(v);
export const parse = <T>(v: unknown): T => JSON.parse(String(v)) as T;
export const num = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));
export const str = (v: unknown): string | null => (v === null || v === undefined ? null : String(v));

/** Column names for the camelCase fields that `update*` patches may set. */
export const DEVICE_COLUMNS: Record<string, [string, (v: unknown) => unknown]> = {
  credentialHash: ['credential_hash', (v) => v],
  tags: ['tags', json],
  arch: ['arch', (v) => v],
  agentVersion: ['agent_version', (v) => v],
  installed: ['installed', json],
  enrolledAt: ['enrolled_at', (v) => v],
  lastSeenAt: ['last_seen_at', (v) => v],
  online: ['online', (v) => (v === true ? 1 : 0)],
  onlineSource: ['online_source', (v) => v],
};
export const ROLLOUT_COLUMNS: Record<string, [string, (v: unknown) => unknown]> = {
  state: ['state', (v) => v],
  wave: ['wave', (v) => v],
  waveStartedAt: ['wave_started_at', (v) => v],
  soakStartedAt: ['soak_started_at', (v) => v],
  updatedAt: ['updated_at', (v) => v],
  reason: ['reason', (v) => v],
};
export const ROLLOUT_DEVICE_COLUMNS: Record<string, [string, (v: unknown) => unknown]> = {
  wave: ['wave', (v) => v],
  previousVersion: ['previous_version', (v) => v],
  assignedAt: ['assigned_at', (v) => v],
  outcome: ['outcome', (v) => v],
  outcomeAt: ['outcome_at', (v) => v],
  detail: ['detail', (v) => v],
};

export function toDevice(r: Row): DeviceRecord {
  return {
    id: String(r.id),
    credentialHash: String(r.credential_hash),
    tags: parse(r.tags),
    arch: str(r.arch),
    agentVersion: str(r.agent_version),
    installed: parse(r.installed),
    enrolledAt: Number(r.enrolled_at),
    lastSeenAt: num(r.last_seen_at),
    online: r.online === 1,
    onlineSource: str(r.online_source),
  };
}

export function toRollout(r: Row): RolloutRecord {
  return {
    id: String(r.id),
    bundle: String(r.bundle),
    version: String(r.version),
    selector: parse(r.selector),
    waves: parse(r.waves),
    maxFailureRate: Number(r.max_failure_rate),
    minReporting: Number(r.min_reporting),
    soakMs: Number(r.soak_ms),
    deviceTimeoutMs: Number(r.device_timeout_ms),
    onFailure: String(r.on_failure) as RolloutRecord['onFailure'],
    state: String(r.state) as RolloutRecord['state'],
    wave: Number(r.wave),
    waveStartedAt: Number(r.wave_started_at),
    soakStartedAt: num(r.soak_started_at),
    createdAt: Number(r.created_at),
    updatedAt: Number(r.updated_at),
    reason: str(r.reason),
  };
}

export function toRolloutDevice(r: Row): RolloutDeviceRecord {
  return {
    rolloutId: String(r.rollout_id),
    deviceId: String(r.device_id),
    wave: Number(r.wave),
    previousVersion: str(r.previous_version),
    assignedAt: num(r.assigned_at),
    outcome: String(r.outcome) as RolloutDeviceRecord['outcome'],
    outcomeAt: num(r.outcome_at),
    detail: str(r.detail),
  };
}

export function toEvent(r: Row): EventRecord {
  return {
    id: Number(r.id),
    ts: Number(r.ts),
    rolloutId: str(r.rollout_id),
    deviceId: str(r.device_id),
    type: String(r.type),
    from: str(r.from_state),
    to: str(r.to_state),
    reason: String(r.reason),
  };
}
