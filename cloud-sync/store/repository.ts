/**
 * The control plane's storage contract. Everything above this interface (routes, director,
 * rollouts) is written against it, so a PostgreSQL implementation can replace the SQLite one
 * for a large fleet without touching them. Methods are synchronous because better-sqlite3 is;
 * a networked implementation would make them async behind the same names (the callers are few).
 */
export interface DeviceRecord {
  id: string;
  credentialHash: string;
  tags: Record<string, string>;
  arch: string | null;
  agentVersion: string | null;
  /** What the device last said it runs: the only source of truth for "installed". */
  installed: InstalledModel[];
  enrolledAt: number;
  lastSeenAt: number | null;
  online: boolean;
  /** Where `online` came from: 'http' (heartbeat/report) or 'mqtt' (retained status topic). */
  onlineSource: string | null;
}

export interface InstalledModel {
  name: string;
  version: string;
  sha256?: string | undefined;
  releaseCounter?: number | undefined;
  state?: string | undefined;
}

export interface EnrolmentTokenRecord {
  tokenHash: string;
  tags: Record<string, string>;
  createdAt: number;
  expiresAt: number;
  usedAt: number | null;
  usedBy: string | null;
}

export interface BundleRecord {
  name: string;
  version: string;
  releaseCounter: number;
  /** TUF target paths of this bundle's files, manifest first. */
  targets: string[];
  manifest: Record<string, unknown>;
  publishedAt: number;
}

/** One model a device should run, as assigned by the operator or a rollout. */
export interface AssignmentRecord {
  deviceId: string;
  model: string;
  version: string;
  rolloutId: string | null;
  assignedAt: number;
}

export type RolloutState = 'running' | 'paused' | 'aborted' | 'completed';
export type FailureAction = 'pause' | 'abort';

export interface RolloutRecord {
  id: string;
  bundle: string;
  version: string;
  selector: Record<string, string>;
  /** Cumulative percentages of the selected devices, ascending, ending at 100. */
  waves: number[];
  maxFailureRate: number;
  minReporting: number;
  soakMs: number;
  deviceTimeoutMs: number;
  onFailure: FailureAction;
  state: RolloutState;
  /** Index into `waves` of the wave in progress. */
  wave: number;
  waveStartedAt: number;
  /** Set when the wave's gate first passed; the wave advances once the soak has run from here. */
  soakStartedAt: number | null;
  createdAt: number;
  updatedAt: number;
  reason: string | null;
}

export type DeviceOutcome = 'pending' | 'success' | 'failure' | 'timeout';

export interface RolloutDeviceRecord {
  rolloutId: string;
  deviceId: string;
  wave: number;
  /** The version assigned before this rollout touched the device (null: none), for revert. */
  previousVersion: string | null;
  assignedAt: number | null;
  outcome: DeviceOutcome;
  outcomeAt: number | null;
  detail: string | null;
}

export interface EventRecord {
  id: number;
  ts: number;
  rolloutId: string | null;
  deviceId: string | null;
  type: string;
  from: string | null;
  to: string | null;
  reason: string;
}

export interface ReportRecord {
  deviceId: string;
  ts: number;
  kind: string;
  body: unknown;
}

export interface Repository {
  /** Runs `fn` atomically; nested calls join the outer transaction. */
  transaction<T>(fn: () => T): T;
  close(): void;
  schemaVersion(): number;

  createDevice(device: DeviceRecord): void;
  getDevice(id: string): DeviceRecord | undefined;
  getDeviceByCredential(hash: string): DeviceRecord | undefined;
  listDevices(): DeviceRecord[];
  updateDevice(id: string, patch: Partial<Omit<DeviceRecord, 'id'>>): void;
  deleteDevice(id: string): void;

  createEnrolmentToken(token: EnrolmentTokenRecord): void;
  /** Marks the token used by `deviceId` if it is unused and unexpired; true when it was. */
  consumeEnrolmentToken(tokenHash: string, deviceId: string, now: number): EnrolmentTokenRecord | undefined;

  putBundle(bundle: BundleRecord): void;
  getBundle(name: string, version: string): BundleRecord | undefined;
  listBundles(): BundleRecord[];

  getAssignments(deviceId: string): AssignmentRecord[];
  setAssignment(a: AssignmentRecord): void;
  clearAssignment(deviceId: string, model: string): void;
  /** A counter bumped on every change of a device's desired state; it versions the signed document. */
  desiredVersion(deviceId: string): number;
  bumpDesiredVersion(deviceId: string): number;

  createRollout(r: RolloutRecord): void;
  getRollout(id: string): RolloutRecord | undefined;
  listRollouts(): RolloutRecord[];
  updateRollout(id: string, patch: Partial<Omit<RolloutRecord, 'id'>>): void;
  addRolloutDevice(d: RolloutDeviceRecord): void;
  listRolloutDevices(rolloutId: string): RolloutDeviceRecord[];
  updateRolloutDevice(
    rolloutId: string,
    deviceId: string,
    patch: Partial<Omit<RolloutDeviceRecord, 'rolloutId' | 'deviceId'>>,
  ): void;

  addEvent(e: Omit<EventRecord, 'id'>): EventRecord;
  listEvents(filter: { rolloutId?: string; deviceId?: string; limit?: number }): EventRecord[];

  addReport(r: ReportRecord): void;
  listReports(deviceId: string, limit: number): ReportRecord[];
}
