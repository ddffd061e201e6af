import { createHash } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { dirname, join, posix } from 'node:path';
import { Metadata, MetadataKind, MetaFile, type Root, type Signature, Snapshot, type Targets, Timestamp } from '@tufjs/models';
import type { JSONObject } from '@tufjs/models/dist/utils/types.js';
import { OutpostError } from '../../shared/errors.ts';
import type { Logger } from '../log.ts';

/** What the control plane needs of an online key: the shape of shared/tuf's SigningKey. */
export interface OnlineKey {
  readonly keyId: string;
  signer(): (data: Buffer) => Signature;
  signHex(data: Uint8Array): string;
}

export interface TufHostOptions {
  /** Holds `metadata/` and `targets/`, laid out so any static server or CDN can mirror it. */
  dir: string;
  snapshotKey: OnlineKey;
  timestampKey: OnlineKey;
  /** How long a freshly signed snapshot / timestamp is valid. */
  snapshotExpiryMs: number;
  timestampExpiryMs: number;
  log: Logger;
  now: () => number;
}

/** A TUF target path: relative, `/`-separated, no `.`/`..`/empty segments, safe characters only. */
export function isSafeTargetPath(path: string): boolean {
  if (path.length === 0 || path.length > 512 || path.startsWith('/')) return false;
  return path.split('/').every((seg) => /^[A-Za-z0-9_][A-Za-z0-9._+-]{0,127}$/.test(seg) && seg !== '..');
}

/** Where a consistent-snapshot client fetches a target: `<dir>/<sha256>.<base>`. */
export function hashedTargetPath(path: string, sha256: string): string {
  const { dir, base } = posix.parse(path);
  return dir === '' ? `${sha256}.${base}` : `${dir}/${sha256}.${base}`;
}

function writeAtomic(path: string, data: Buffer | string): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  const fd = openSync(tmp, 'w', 0o644);
  try {
    writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  const dfd = openSync(dirname(path), 'r');
  try {
    fsyncSync(dfd);
  } finally {
    closeSync(dfd);
  }
}

function serialize(md: Metadata<Root | Targets | Snapshot | Timestamp>): Buffer {
  return Buffer.from(JSON.stringify(md.toJSON()));
}

/**
 * The TUF repository the control plane hosts. Root and targets arrive signed offline by the
 * operator; snapshot and timestamp are signed here with the online keys, after every accepted
 * targets upload and whenever the timestamp nears expiry. Consistent snapshots: every version
 * of root, targets and snapshot is kept as `N.<role>.json`, targets as `<sha256>.<name>`, so a
 * mirror can serve a repository mid-update without a client ever seeing a mixed set.
 */
export class TufHost {
  private root: Metadata<Root> | undefined;
  private targets: Metadata<Targets> | undefined;
  private snapshot: Metadata<Snapshot> | undefined;
  private timestamp: Metadata<Timestamp> | undefined;
  private targetsBytes: Buffer | undefined;

  constructor(private readonly options: TufHostOptions) {}

  get metadataDir(): string {
    return join(this.options.dir, 'metadata');
  }

  get targetsDir(): string {
    return join(this.options.dir, 'targets');
  }

  /** Loads the newest of each role from disk and checks the online keys against root. */
  load(): void {
    const rawRoot = this.readLatest('root');
    if (rawRoot === undefined)
      throw new OutpostError(
        'CONFIG_INVALID',
        `no TUF root in ${this.metadataDir}: put the root.json made by \`outpost keys init\` there`,
      );
    this.root = Metadata.fromJSON(MetadataKind.Root, rawRoot);
    const versioned = join(this.metadataDir, `${this.root.signed.version}.root.json`);
    // A bare root.json (as `keys init` writes it) also gets its consistent-snapshot name.
    try {
      readFileSync(versioned);
    } catch {
      writeAtomic(versioned, serialize(this.root));
    }
    this.checkOnlineKeys(this.root);
    const rawTargets = this.readLatest('targets');
    this.targets = rawTargets === undefined ? undefined : Metadata.fromJSON(MetadataKind.Targets, rawTargets);
    if (this.targets !== undefined) this.targetsBytes = serialize(this.targets);
    const rawSnapshot = this.readLatest('snapshot');
    this.snapshot = rawSnapshot === undefined ? undefined : Metadata.fromJSON(MetadataKind.Snapshot, rawSnapshot);
    try {
      const ts = JSON.parse(readFileSync(join(this.metadataDir, 'timestamp.json'), 'utf8')) as JSONObject;
      this.timestamp = Metadata.fromJSON(MetadataKind.Timestamp, ts);
    } catch {
      this.timestamp = undefined;
    }
  }

  /** The newest `N.<role>.json` (or a bare `<role>.json`) as raw JSON. */
  private readLatest(role: string): JSONObject | undefined {
    mkdirSync(this.metadataDir, { recursive: true });
    let best = 0;
    for (const name of readdirSync(this.metadataDir)) {
      const m = new RegExp(`^(\\d+)\\.${role}\\.json$`).exec(name);
      if (m !== null) best = Math.max(best, Number(m[1]));
    }
    const file = best > 0 ? `${best}.${role}.json` : `${role}.json`;
    try {
      return JSON.parse(readFileSync(join(this.metadataDir, file), 'utf8')) as JSONObject;
    } catch {
      return undefined;
    }
  }

  private checkOnlineKeys(root: Metadata<Root>): void {
    for (const [role, key] of [
      ['snapshot', this.options.snapshotKey],
      ['timestamp', this.options.timestampKey],
    ] as const) {
      const keyIds = root.signed.roles[role]?.keyIDs ?? [];
      if (!keyIds.includes(key.keyId))
        throw new OutpostError(
          'CONFIG_INVALID',
          `the ${role} key ${key.keyId.slice(0, 12)}… is not a ${role} key of root v${root.signed.version}`,
        );
    }
    if (!root.signed.consistentSnapshot)
      throw new OutpostError('CONFIG_INVALID', 'the TUF root must set consistent_snapshot: true');
  }

  status(): { root: number; targets: number; snapshot: number; timestamp: number; timestampExpires?: string } {
    return {
      root: this.root?.signed.version ?? 0,
      targets: this.targets?.signed.version ?? 0,
      snapshot: this.snapshot?.signed.version ?? 0,
      timestamp: this.timestamp?.signed.version ?? 0,
      ...(this.timestamp === undefined ? {} : { timestampExpires: this.timestamp.signed.expires }),
    };
  }

  /** The current targets metadata (the operator's CLI extends it and signs the next version). */
  currentTargets(): JSONObject | undefined {
    return this.targets?.toJSON();
  }

  currentRoot(): JSONObject {
    if (this.root === undefined) throw new OutpostError('INTERNAL', 'TUF host not loaded');
    return this.root.toJSON();
  }

  /** A target the upload staged, by its sha256, for `acceptTargets` to check against. */
  stagedPath(sha256: string): string {
    if (!/^[0-9a-f]{64}$/.test(sha256)) throw new OutpostError('BAD_REQUEST', 'not a sha256 hex digest');
    return join(this.options.dir, 'staging', sha256);
  }

  /**
   * Accepts targets metadata signed offline: it must meet root's targets threshold, be newer
   * than what is served, not be expired, and every target it lists must be on disk already
   * (uploaded before, or staged now) with the declared length and sha256.
   */
  acceptTargets(raw: unknown): { version: number; added: string[] } {
    if (this.root === undefined) throw new OutpostError('INTERNAL', 'TUF host not loaded');
    let md: Metadata<Targets>;
    try {
      md = Metadata.fromJSON(MetadataKind.Targets, raw as JSONObject);
    } catch (err) {
      throw new OutpostError('BAD_REQUEST', `not TUF targets metadata: ${String(err)}`, { cause: err });
    }
    try {
      this.root.verifyDelegate('targets', md);
    } catch (err) {
      throw new OutpostError('FORBIDDEN', `targets metadata is not signed by root's targets keys: ${String(err)}`, {
        cause: err,
      });
    }
    const current = this.targets?.signed.version ?? 0;
    if (md.signed.version <= current)
      throw new OutpostError('CONFLICT', `targets version ${md.signed.version} is not above the served ${current}`);
    if (md.signed.isExpired(new Date(this.options.now())))
      throw new OutpostError('BAD_REQUEST', `targets metadata expired at ${md.signed.expires}`);
    const added: string[] = [];
    const moves: Array<[string, string]> = [];
    for (const [path, target] of Object.entries(md.signed.targets)) {
      if (!isSafeTargetPath(path)) throw new OutpostError('BAD_REQUEST', `unsafe target path ${JSON.stringify(path)}`);
      const sha = target.hashes.sha256;
      if (sha === undefined) throw new OutpostError('BAD_REQUEST', `target ${path} has no sha256`);
      const final = join(this.targetsDir, hashedTargetPath(path, sha));
      const known = this.targets?.signed.targets[path];
      if (known !== undefined && known.hashes.sha256 === sha) continue;
      const staged = this.stagedPath(sha);
      let bytes: Buffer;
      try {
        bytes = readFileSync(staged);
      } catch {
        try {
          bytes = readFileSync(final);
        } catch {
          throw new OutpostError('BAD_REQUEST', `target ${path} (sha256 ${sha.slice(0, 12)}…) was not uploaded`);
        }
      }
      if (bytes.length !== target.length || createHash('sha256').update(bytes).digest('hex') !== sha)
        throw new OutpostError('BAD_REQUEST', `uploaded file for ${path} does not match its length and sha256`);
      moves.push([staged, final]);
      added.push(path);
    }
    for (const [staged, final] of moves) {
      mkdirSync(dirname(final), { recursive: true });
      try {
        renameSync(staged, final);
      } catch {
        // Already in place from an earlier upload of the same content.
      }
    }
    const bytes = serialize(md);
    writeAtomic(join(this.metadataDir, `${md.signed.version}.targets.json`), bytes);
    this.targets = md;
    this.targetsBytes = bytes;
    this.signSnapshot();
    this.options.log.info({ version: md.signed.version, added }, 'targets accepted; snapshot and timestamp signed');
    return { version: md.signed.version, added };
  }

  /** Accepts the next root, which must be signed by the thresholds of both the old and the new root. */
  acceptRoot(raw: unknown): number {
    if (this.root === undefined) throw new OutpostError('INTERNAL', 'TUF host not loaded');
    let md: Metadata<Root>;
    try {
      md = Metadata.fromJSON(MetadataKind.Root, raw as JSONObject);
    } catch (err) {
      throw new OutpostError('BAD_REQUEST', `not TUF root metadata: ${String(err)}`, { cause: err });
    }
    if (md.signed.version !== this.root.signed.version + 1)
      throw new OutpostError('CONFLICT', `root version must be ${this.root.signed.version + 1}`);
    try {
      this.root.verifyDelegate('root', md);
      md.verifyDelegate('root', md);
    } catch (err) {
      throw new OutpostError('FORBIDDEN', `root rotation not signed by both thresholds: ${String(err)}`, {
        cause: err,
      });
    }
    this.checkOnlineKeys(md);
    writeAtomic(join(this.metadataDir, `${md.signed.version}.root.json`), serialize(md));
    writeAtomic(join(this.metadataDir, 'root.json'), serialize(md));
    this.root = md;
    return md.signed.version;
  }

  private signSnapshot(): void {
    if (this.targets === undefined || this.targetsBytes === undefined) return;
    const now = this.options.now();
    const snapshot = new Metadata(
      new Snapshot({
        version: (this.snapshot?.signed.version ?? 0) + 1,
        specVersion: '1.0.31',
        expires: new Date(now + this.options.snapshotExpiryMs).toISOString().replace(/\.\d{3}Z$/, 'Z'),
        meta: { 'targets.json': new MetaFile({ version: this.targets.signed.version }) },
      }),
    );
    snapshot.sign(this.options.snapshotKey.signer());
    writeAtomic(join(this.metadataDir, `${snapshot.signed.version}.snapshot.json`), serialize(snapshot));
    this.snapshot = snapshot;
    this.signTimestamp();
  }

  private signTimestamp(): void {
    if (this.snapshot === undefined) return;
    const now = this.options.now();
    const bytes = serialize(this.snapshot);
    const ts = new Metadata(
      new Timestamp({
        version: (this.timestamp?.signed.version ?? 0) + 1,
        specVersion: '1.0.31',
        expires: new Date(now + this.options.timestampExpiryMs).toISOString().replace(/\.\d{3}Z$/, 'Z'),
        snapshotMeta: new MetaFile({
          version: this.snapshot.signed.version,
          length: bytes.length,
          hashes: { sha256: createHash('sha256').update(bytes).digest('hex') },
        }),
      }),
    );
    ts.sign(this.options.timestampKey.signer());
    writeAtomic(join(this.metadataDir, 'timestamp.json'), serialize(ts));
    this.timestamp = ts;
  }

  /**
   * Re-signs what is about to expire: the snapshot when less than half its lifetime is left,
   * the timestamp likewise. Run by the cron job; returns what it re-signed.
   */
  refresh(): { snapshot: boolean; timestamp: boolean } {
    const now = this.options.now();
    const left = (expires: string | undefined) => (expires === undefined ? 0 : Date.parse(expires) - now);
    if (this.snapshot !== undefined && left(this.snapshot.signed.expires) < this.options.snapshotExpiryMs / 2) {
      this.signSnapshot();
      this.options.log.info({ snapshot: this.snapshot.signed.version }, 'snapshot re-signed before expiry');
      return { snapshot: true, timestamp: true };
    }
    if (this.snapshot !== undefined && left(this.timestamp?.signed.expires) < this.options.timestampExpiryMs / 2) {
      this.signTimestamp();
      this.options.log.info({ timestamp: this.timestamp?.signed.version }, 'timestamp re-signed before expiry');
      return { snapshot: false, timestamp: true };
    }
    return { snapshot: false, timestamp: false };
  }

  /** Resolves a request path under metadata/ or targets/ to a file, refusing traversal. */
  resolveFile(kind: 'metadata' | 'targets', path: string): string | undefined {
    if (!isSafeTargetPath(path)) return undefined;
    return join(kind === 'metadata' ? this.metadataDir : this.targetsDir, path);
  }

  /** Finds the TUF target entry for a path in the served targets metadata. */
  target(path: string): { length: number; sha256: string; custom: Record<string, unknown> } | undefined {
    const t = this.targets?.signed.targets[path];
    if (t === undefined || t.hashes.sha256 === undefined) return undefined;
    return { length: t.length, sha256: t.hashes.sha256, custom: t.custom };
  }
}
