import type { Database } from 'better-sqlite3';

/**
 * Versioned schema migrations, applied in order and recorded in `PRAGMA user_version`.
 * A shipped migration is never edited: changes are new entries at the end.
 */
export const OUTBOX_MIGRATIONS: readonly string[] = [
  // 1: the outbox itself. `lane` orders priority (0 control, 1 prediction, 2 telemetry);
  // `seq` is the send order and, being AUTOINCREMENT, never reused after a delete;
  // `props` holds MQTT 5 publish properties (a command reply's correlation data) as JSON.
  `CREATE TABLE outbox (
     seq        INTEGER PRIMARY KEY AUTOINCREMENT,
     id         TEXT    NOT NULL,
     lane       INTEGER NOT NULL,
     topic      TEXT    NOT NULL,
     payload    BLOB    NOT NULL,
     qos        INTEGER NOT NULL,
     retain     INTEGER NOT NULL,
     boot_id    TEXT    NOT NULL,
     created_ms INTEGER NOT NULL,
     expires_ms INTEGER,
     props      TEXT
   );
   CREATE INDEX outbox_lane_seq ON outbox (lane, seq);
   CREATE INDEX outbox_expires ON outbox (expires_ms) WHERE expires_ms IS NOT NULL;
   CREATE TABLE outbox_counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);`,
];

export function migrate(db: Database, migrations: readonly string[]): number {
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > migrations.length) {
    throw new Error(
      `database schema version ${current} is newer than this agent knows (${migrations.length})`,
    );
  }
  for (let v = current; v < migrations.length; v++) {
    db.transaction(() => {
      db.exec(migrations[v] as string);
      db.pragma(`user_version = ${v + 1}`);
    })();
  }
  return migrations.length;
}
