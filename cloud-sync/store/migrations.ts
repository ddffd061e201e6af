import type { Database } from 'better-sqlite3';

/**
 * The control plane's schema, one entry per version, applied in order inside a transaction and
 * recorded in `schema_migrations` (and `PRAGMA user_version`). A shipped migration is never
 * edited: changes are new entries at the end.
 */
export const CONTROL_PLANE_MIGRATIONS: ReadonlyArray<{ name: string; sql: string }> = [
  {
    name: 'devices, tokens, bundles, desired state, rollouts, events, reports',
    sql: `
      CREATE TABLE devices (
        id              TEXT PRIMARY KEY,
        credential_hash TEXT NOT NULL UNIQUE,
        tags            TEXT NOT NULL,
        arch            TEXT,
        agent_version   TEXT,
        installed       TEXT NOT NULL,
        enrolled_at     INTEGER NOT NULL,
        last_seen_at    INTEGER,
        online          INTEGER NOT NULL DEFAULT 0,
        online_source   TEXT
      );
      CREATE TABLE enrolment_tokens (
        token_hash TEXT PRIMARY KEY,
        tags       TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        used_at    INTEGER,
        used_by    TEXT
      );
      CREATE TABLE bundles (
        name            TEXT NOT NULL,
        version         TEXT NOT NULL,
        release_counter INTEGER NOT NULL,
        targets         TEXT NOT NULL,
        manifest        TEXT NOT NULL,
        published_at    INTEGER NOT NULL,
        PRIMARY KEY (name, version)
      );
      CREATE TABLE assignments (
        device_id   TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
        model       TEXT NOT NULL,
        version     TEXT NOT NULL,
        rollout_id  TEXT,
        assigned_at INTEGER NOT NULL,
        PRIMARY KEY (device_id, model)
      );
      CREATE TABLE desired_versions (
        device_id TEXT PRIMARY KEY,
        version   INTEGER NOT NULL
      );
      CREATE TABLE rollouts (
        id                TEXT PRIMARY KEY,
        bundle            TEXT NOT NULL,
        version           TEXT NOT NULL,
        selector          TEXT NOT NULL,
        waves             TEXT NOT NULL,
        max_failure_rate  REAL NOT NULL,
        min_reporting     INTEGER NOT NULL,
        soak_ms           INTEGER NOT NULL,
        device_timeout_ms INTEGER NOT NULL,
        on_failure        TEXT NOT NULL,
        state             TEXT NOT NULL,
        wave              INTEGER NOT NULL,
        wave_started_at   INTEGER NOT NULL,
        soak_started_at   INTEGER,
        created_at        INTEGER NOT NULL,
        updated_at        INTEGER NOT NULL,
        reason            TEXT
      );
      CREATE TABLE rollout_devices (
        rollout_id       TEXT NOT NULL REFERENCES rollouts(id) ON DELETE CASCADE,
        device_id        TEXT NOT NULL,
        wave             INTEGER NOT NULL,
        previous_version TEXT,
        assigned_at      INTEGER,
        outcome          TEXT NOT NULL,
        outcome_at       INTEGER,
        detail           TEXT,
        PRIMARY KEY (rollout_id, device_id)
      );
      CREATE TABLE events (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        ts         INTEGER NOT NULL,
        rollout_id TEXT,
        device_id  TEXT,
        type       TEXT NOT NULL,
        from_state TEXT,
        to_state   TEXT,
        reason     TEXT NOT NULL
      );
      CREATE INDEX events_rollout ON events (rollout_id, id);
      CREATE INDEX events_device ON events (device_id, id);
      CREATE TABLE reports (
        id        INTEGER PRIMARY KEY AUTOINCREMENT,
        device_id TEXT NOT NULL,
        ts        INTEGER NOT NULL,
        kind      TEXT NOT NULL,
        body      TEXT NOT NULL
      );
      CREATE INDEX reports_device ON reports (device_id, id);`,
  },
];

export function migrateControlPlane(db: Database, now: number): number {
  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`);
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > CONTROL_PLANE_MIGRATIONS.length) {
    throw new Error(
      `database schema version ${current} is newer than this control plane knows (${CONTROL_PLANE_MIGRATIONS.length})`,
    );
  }
  const record = db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)');
  for (let v = current; v < CONTROL_PLANE_MIGRATIONS.length; v++) {
    const m = CONTROL_PLANE_MIGRATIONS[v] as { name: string; sql: string };
    db.transaction(() => {
      db.exec(m.sql);
      record.run(v + 1, m.name, now);
      db.pragma(`user_version = ${v + 1}`);
    })();
  }
  return CONTROL_PLANE_MIGRATIONS.length;
}
