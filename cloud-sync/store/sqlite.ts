import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database, { type Database as Db, type Statement } from 'better-sqlite3';
import { migrateControlPlane } from './migrations.ts';
import type {
  AssignmentRecord,
  BundleRecord,
  DeviceRecord,
  EnrolmentTokenRecord,
  EventRecord,
  ReportRecord,
  Repository,
  RolloutDeviceRecord,
  RolloutRecord,
} from './repository.ts';

import {
  DEVICE_COLUMNS,
  json,
  num,
  parse,
  ROLLOUT_COLUMNS,
  ROLLOUT_DEVICE_COLUMNS,
  type Row,
  str,
  toDevice,
  toEvent,
  toRollout,
  toRolloutDevice,
} from './rows.ts';

/**
 * The default repository: one SQLite file, WAL, `synchronous=FULL` (a rollout's state must
 * survive a power cut as much as a restart), statements prepared once.
 */
export class SqliteRepository implements Repository {
  private readonly db: Db;
  private readonly stmts = new Map<string, Statement>();
  private readonly version: number;

  constructor(path: string, now: number = Date.now()) {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.pragma('foreign_keys = ON');
    this.db.pragma('busy_timeout = 5000');
    this.version = migrateControlPlane(this.db, now);
  }

  private stmt(sql: string): Statement {
    let s = this.stmts.get(sql);
    if (s === undefined) {
      s = this.db.prepare(sql);
      this.stmts.set(sql, s);
    }
    return s;
  }

  private patch(
    table: string,
    columns: Record<string, [string, (v: unknown) => unknown]>,
    where: string,
    whereArgs: unknown[],
    patch: Record<string, unknown>,
  ): void {
    const sets: string[] = [];
    const args: unknown[] = [];
    for (const [key, value] of Object.entries(patch)) {
      const col = columns[key];
      if (col === undefined || value === undefined) continue;
      sets.push(`${col[0]} = ?`);
      args.push(col[1](value));
    }
    if (sets.length === 0) return;
    this.stmt(`UPDATE ${table} SET ${sets.join(', ')} WHERE ${where}`).run(...args, ...whereArgs);
  }

  transaction<T>(fn: () => T): T {
    if (this.db.inTransaction) return fn();
    return this.db.transaction(fn)();
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  schemaVersion(): number {
    return this.version;
  }

  createDevice(d: DeviceRecord): void {
    this.stmt(
      `INSERT INTO devices (id, credential_hash, tags, arch, agent_version, installed, enrolled_at, last_seen_at, online, online_source)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(
      d.id,
      d.credentialHash,
      json(d.tags),
      d.arch,
      d.agentVersion,
      json(d.installed),
      d.enrolledAt,
      d.lastSeenAt,
      d.online ? 1 : 0,
      d.onlineSource,
    );
  }

  getDevice(id: string): DeviceRecord | undefined {
    const r = this.stmt('SELECT * FROM devices WHERE id = ?').get(id) as Row | undefined;
    return r === undefined ? undefined : toDevice(r);
  }

  getDeviceByCredential(hash: string): DeviceRecord | undefined {
    const r = this.stmt('SELECT * FROM devices WHERE credential_hash = ?').get(hash) as Row | undefined;
    return r === undefined ? undefined : toDevice(r);
  }

  listDevices(): DeviceRecord[] {
    return (this.stmt('SELECT * FROM devices ORDER BY id').all() as Row[]).map(toDevice);
  }

  updateDevice(id: string, patch: Partial<Omit<DeviceRecord, 'id'>>): void {
    this.patch('devices', DEVICE_COLUMNS, 'id = ?', [id], patch);
  }

  deleteDevice(id: string): void {
    this.stmt('DELETE FROM devices WHERE id = ?').run(id);
    // desired_versions stays: a device enrolled again under this id must never see its
    // desired-state version go back (the updater refuses an older document).
  }

  createEnrolmentToken(t: EnrolmentTokenRecord): void {
    this.stmt(
      'INSERT INTO enrolment_tokens (token_hash, tags, created_at, expires_at, used_at, used_by) VALUES (?, ?, ?, ?, ?, ?)',
    ).run(t.tokenHash, json(t.tags), t.createdAt, t.expiresAt, t.usedAt, t.usedBy);
  }

  consumeEnrolmentToken(tokenHash: string, deviceId: string, now: number): EnrolmentTokenRecord | undefined {
    // One UPDATE guarded by `used_at IS NULL`: two devices racing with the same token cannot both win.
    const changed = this.stmt(
      'UPDATE enrolment_tokens SET used_at = ?, used_by = ? WHERE token_hash = ? AND used_at IS NULL AND expires_at > ?',
    ).run(now, deviceId, tokenHash, now).changes;
    if (changed !== 1) return undefined;
    const r = this.stmt('SELECT * FROM enrolment_tokens WHERE token_hash = ?').get(tokenHash) as Row;
    return {
      tokenHash,
      tags: parse(r.tags),
      createdAt: Number(r.created_at),
      expiresAt: Number(r.expires_at),
      usedAt: num(r.used_at),
      usedBy: str(r.used_by),
    };
  }

  putBundle(b: BundleRecord): void {
    this.stmt(
      `INSERT INTO bundles (name, version, release_counter, targets, manifest, published_at) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (name, version) DO UPDATE SET release_counter = excluded.release_counter,
         targets = excluded.targets, manifest = excluded.manifest, published_at = excluded.published_at`,
    ).run(b.name, b.version, b.releaseCounter, json(b.targets), json(b.manifest), b.publishedAt);
  }

  private toBundle(r: Row): BundleRecord {
    return {
      name: String(r.name),
      version: String(r.version),
      releaseCounter: Number(r.release_counter),
      targets: parse(r.targets),
      manifest: parse(r.manifest),
      publishedAt: Number(r.published_at),
    };
  }

  getBundle(name: string, version: string): BundleRecord | undefined {
    const r = this.stmt('SELECT * FROM bundles WHERE name = ? AND version = ?').get(name, version) as
      | Row
      | undefined;
    return r === undefined ? undefined : this.toBundle(r);
  }

  listBundles(): BundleRecord[] {
    return (this.stmt('SELECT * FROM bundles ORDER BY name, release_counter').all() as Row[]).map((r) =>
      this.toBundle(r),
    );
  }

  getAssignments(deviceId: string): AssignmentRecord[] {
    return (
      this.stmt('SELECT * FROM assignments WHERE device_id = ? ORDER BY model').all(deviceId) as Row[]
    ).map((r) => ({
      deviceId: String(r.device_id),
      model: String(r.model),
      version: String(r.version),
      rolloutId: str(r.rollout_id),
      assignedAt: Number(r.assigned_at),
    }));
  }

  setAssignment(a: AssignmentRecord): void {
    this.stmt(
      `INSERT INTO assignments (device_id, model, version, rollout_id, assigned_at) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (device_id, model) DO UPDATE SET version = excluded.version,
         rollout_id = excluded.rollout_id, assigned_at = excluded.assigned_at`,
    ).run(a.deviceId, a.model, a.version, a.rolloutId, a.assignedAt);
  }

  clearAssignment(deviceId: string, model: string): void {
    this.stmt('DELETE FROM assignments WHERE device_id = ? AND model = ?').run(deviceId, model);
  }

  desiredVersion(deviceId: string): number {
    const r = this.stmt('SELECT version FROM desired_versions WHERE device_id = ?').get(deviceId) as
      | Row
      | undefined;
    return r === undefined ? 0 : Number(r.version);
  }

  bumpDesiredVersion(deviceId: string): number {
    this.stmt(
      `INSERT INTO desired_versions (device_id, version) VALUES (?, 1)
       ON CONFLICT (device_id) DO UPDATE SET version = version + 1`,
    ).run(deviceId);
    return this.desiredVersion(deviceId);
  }

  createRollout(r: RolloutRecord): void {
    this.stmt(
      `INSERT INTO rollouts (id, bundle, version, selector, waves, max_failure_rate, min_reporting, soak_ms,
         device_timeout_ms, on_failure, state, wave, wave_started_at, soak_started_at, created_at, updated_at, reason)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(
      r.id,
      r.bundle,
      r.version,
      json(r.selector),
      json(r.waves),
      r.maxFailureRate,
      r.minReporting,
      r.soakMs,
      r.deviceTimeoutMs,
      r.onFailure,
      r.state,
      r.wave,
      r.waveStartedAt,
      r.soakStartedAt,
      r.createdAt,
      r.updatedAt,
      r.reason,
    );
  }

  getRollout(id: string): RolloutRecord | undefined {
    const r = this.stmt('SELECT * FROM rollouts WHERE id = ?').get(id) as Row | undefined;
    return r === undefined ? undefined : toRollout(r);
  }

  listRollouts(): RolloutRecord[] {
    return (this.stmt('SELECT * FROM rollouts ORDER BY created_at, id').all() as Row[]).map(toRollout);
  }

  updateRollout(id: string, patch: Partial<Omit<RolloutRecord, 'id'>>): void {
    this.patch('rollouts', ROLLOUT_COLUMNS, 'id = ?', [id], patch);
  }

  addRolloutDevice(d: RolloutDeviceRecord): void {
    this.stmt(
      `INSERT INTO rollout_devices (rollout_id, device_id, wave, previous_version, assigned_at, outcome, outcome_at, detail)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(d.rolloutId, d.deviceId, d.wave, d.previousVersion, d.assignedAt, d.outcome, d.outcomeAt, d.detail);
  }

  listRolloutDevices(rolloutId: string): RolloutDeviceRecord[] {
    return (
      this.stmt('SELECT * FROM rollout_devices WHERE rollout_id = ? ORDER BY wave, device_id').all(
        rolloutId,
      ) as Row[]
    ).map(toRolloutDevice);
  }

  updateRolloutDevice(
    rolloutId: string,
    deviceId: string,
    patch: Partial<Omit<RolloutDeviceRecord, 'rolloutId' | 'deviceId'>>,
  ): void {
    this.patch(
      'rollout_devices',
      ROLLOUT_DEVICE_COLUMNS,
      'rollout_id = ? AND device_id = ?',
      [rolloutId, deviceId],
      patch,
    );
  }

  addEvent(e: Omit<EventRecord, 'id'>): EventRecord {
    const info = this.stmt(
      'INSERT INTO events (ts, rollout_id, device_id, type, from_state, to_state, reason) VALUES (?, ?, ?, ?, ?, ?, ?)',
    ).run(e.ts, e.rolloutId, e.deviceId, e.type, e.from, e.to, e.reason);
    return { ...e, id: Number(info.lastInsertRowid) };
  }

  listEvents(filter: { rolloutId?: string; deviceId?: string; limit?: number }): EventRecord[] {
    const limit = filter.limit ?? 1000;
    let rows: Row[];
    if (filter.rolloutId !== undefined)
      rows = this.stmt('SELECT * FROM events WHERE rollout_id = ? ORDER BY id LIMIT ?').all(
        filter.rolloutId,
        limit,
      ) as Row[];
    else if (filter.deviceId !== undefined)
      rows = this.stmt('SELECT * FROM events WHERE device_id = ? ORDER BY id LIMIT ?').all(
        filter.deviceId,
        limit,
      ) as Row[];
    else rows = this.stmt('SELECT * FROM events ORDER BY id DESC LIMIT ?').all(limit) as Row[];
    return rows.map(toEvent);
  }

  addReport(r: ReportRecord): void {
    this.stmt('INSERT INTO reports (device_id, ts, kind, body) VALUES (?, ?, ?, ?)').run(
      r.deviceId,
      r.ts,
      r.kind,
      json(r.body),
    );
  }

  listReports(deviceId: string, limit: number): ReportRecord[] {
    return (
      this.stmt('SELECT * FROM reports WHERE device_id = ? ORDER BY id DESC LIMIT ?').all(
        deviceId,
        limit,
      ) as Row[]
    ).map((r) => ({
      deviceId: String(r.device_id),
      ts: Number(r.ts),
      kind: String(r.kind),
      body: parse(r.body),
    }));
  }
}
