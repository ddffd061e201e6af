import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Metadata, Root, Targets } from '@tufjs/models';
import type { JSONObject } from '@tufjs/models/dist/utils/types.js';
import { OutpostError } from '../../shared/errors.ts';
import {
  assertSafeTargetPath,
  buildSnapshot,
  buildTimestamp,
  countValidSignatures,
  type DirectorTarget,
  directorTargetsForBundle,
  expiresIn,
  parseRoot,
  parseTargets,
  type SigningKey,
  signMetadata,
  TufRepository,
  targetUrlPath,
} from '../../shared/tuf/index.ts';
import type { Logger } from '../log.ts';

export interface TufHostOptions {
  /** Holds `metadata/` and `targets/`, laid out so any static server or CDN can mirror it. */
  dir: string;
  /** Online keys: as many as root's snapshot / timestamp threshold asks for. */
  snapshotKeys: readonly SigningKey[];
  timestampKeys: readonly SigningKey[];
  /** How long a freshly signed snapshot / timestamp is valid. */
  snapshotExpiryMs: number;
  timestampExpiryMs: number;
  log: Logger;
  now: () => number;
}

const DAY = 86_400_000;

/**
 * The TUF repository the control plane hosts (over shared/tuf's on-disk TufRepository). Root
 * and targets arrive signed offline by the operator; snapshot and timestamp are signed here
 * with the online keys after every accepted targets upload and when they near expiry. Every
 * signature is made against the injected clock, so tests can run a week in a second.
 */
export class TufHost {
  readonly repo: TufRepository;

  constructor(private readonly options: TufHostOptions) {
    this.repo = new TufRepository(options.dir);
  }

  /** Loads the repository and checks that the online keys are the ones root names. */
  async load(): Promise<void> {
    if (!existsSync(join(this.repo.metadataDir, 'root.json')))
      throw new OutpostError(
        'CONFIG_INVALID',
        `no TUF repository in ${this.options.dir}: run \`outpost keys init\` and put its repository there`,
      );
    await this.repo.load();
    for (const [role, keys] of [
      ['snapshot', this.options.snapshotKeys],
      ['timestamp', this.options.timestampKeys],
    ] as const) {
      const r = this.repo.root.signed.roles[role];
      const known = keys.filter((k) => (r?.keyIDs ?? []).includes(k.keyId));
      if (known.length < (r?.threshold ?? 1))
        throw new OutpostError(
          'CONFIG_INVALID',
          `${known.length} of the configured ${role} keys are ${role} keys of root v${this.repo.root.signed.version}; it needs ${r?.threshold ?? 1}`,
        );
    }
    if (!this.repo.root.signed.consistentSnapshot)
      throw new OutpostError('CONFIG_INVALID', 'the TUF root must use consistent snapshots');
  }

  status(): { root: number; targets: number; snapshot: number; timestamp: number; timestampExpires: string } {
    return {
      root: this.repo.root.signed.version,
      targets: this.repo.targets.signed.version,
      snapshot: this.repo.snapshot.signed.version,
      timestamp: this.repo.timestamp.signed.version,
      timestampExpires: this.repo.timestamp.signed.expires,
    };
  }

  get root(): Metadata<Root> {
    return this.repo.root;
  }

  get targets(): Metadata<Targets> {
    return this.repo.targets;
  }

  /** Where an upload of content with this sha256 is staged until targets metadata names it. */
  stagedPath(sha256: string): string {
    if (!/^[0-9a-f]{64}$/.test(sha256)) throw new OutpostError('BAD_REQUEST', 'not a sha256 hex digest');
    return join(this.options.dir, 'staging', sha256);
  }

  /**
   * Accepts targets metadata signed offline: it must meet root's targets threshold, be newer
   * than what is served and unexpired, and every new target must have been uploaded with the
   * declared length and sha256. Then snapshot and timestamp are re-signed online.
   */
  async acceptTargets(raw: unknown): Promise<{ version: number; added: string[] }> {
    let md: Metadata<Targets>;
    try {
      md = parseTargets(JSON.stringify(raw));
    } catch (err) {
      throw new OutpostError('BAD_REQUEST', `not TUF targets metadata: ${String(err)}`, { cause: err });
    }
    const { valid, threshold } = countValidSignatures(this.repo.root, 'targets', md);
    if (valid < threshold)
      throw new OutpostError(
        'FORBIDDEN',
        `targets metadata has ${valid} of the ${threshold} targets signatures root requires`,
      );
    const current = this.repo.targets.signed.version;
    if (md.signed.version <= current)
      throw new OutpostError(
        'CONFLICT',
        `targets version ${md.signed.version} is not above the served ${current}`,
      );
    if (md.signed.isExpired(new Date(this.options.now())))
      throw new OutpostError('BAD_REQUEST', `targets metadata expired at ${md.signed.expires}`);
    const added: string[] = [];
    const staged: string[] = [];
    for (const target of Object.values(md.signed.targets)) {
      assertSafeTargetPath(target.path);
      const sha = target.hashes.sha256;
      if (sha === undefined) throw new OutpostError('BAD_REQUEST', `target ${target.path} has no sha256`);
      const served = join(this.repo.targetsDir, targetUrlPath(target));
      if (existsSync(served)) continue;
      const path = this.stagedPath(sha);
      let bytes: Buffer;
      try {
        bytes = await readFile(path);
      } catch {
        throw new OutpostError(
          'BAD_REQUEST',
          `target ${target.path} (sha256 ${sha.slice(0, 12)}…) was not uploaded`,
        );
      }
      if (bytes.length !== target.length || createHash('sha256').update(bytes).digest('hex') !== sha)
        throw new OutpostError(
          'BAD_REQUEST',
          `the upload for ${target.path} does not match its length and sha256`,
        );
      await this.repo.putTargetContent(target, path);
      added.push(target.path);
      staged.push(path);
    }
    await this.repo.writeTargets(md);
    await this.signSnapshot();
    for (const p of staged) await rm(p, { force: true });
    this.options.log.info(
      { version: md.signed.version, added },
      'targets accepted; snapshot and timestamp signed',
    );
    return { version: md.signed.version, added };
  }

  /** Accepts the next root; it must carry signatures of both the old and the new root threshold. */
  async acceptRoot(raw: unknown): Promise<number> {
    let md: Metadata<Root>;
    try {
      md = parseRoot(JSON.stringify(raw));
    } catch (err) {
      throw new OutpostError('BAD_REQUEST', `not TUF root metadata: ${String(err)}`, { cause: err });
    }
    const prev = this.repo.root;
    if (md.signed.version !== prev.signed.version + 1)
      throw new OutpostError('CONFLICT', `the next root must be version ${prev.signed.version + 1}`);
    for (const trusted of [prev, md]) {
      const { valid, threshold } = countValidSignatures(trusted, 'root', md);
      if (valid < threshold)
        throw new OutpostError(
          'FORBIDDEN',
          `root v${md.signed.version} is not signed by both the old and the new root keys`,
        );
    }
    await this.repo.writeRoot(md);
    return md.signed.version;
  }

  private async signSnapshot(): Promise<void> {
    const now = new Date(this.options.now());
    const snapshot = signMetadata(
      buildSnapshot({
        version: this.repo.snapshot.signed.version + 1,
        expires: expiresIn(this.options.snapshotExpiryMs / DAY, now),
        targets: this.repo.targets,
      }),
      this.options.snapshotKeys,
    );
    await this.repo.writeSnapshot(snapshot);
    await this.signTimestamp();
  }

  private async signTimestamp(): Promise<void> {
    const now = new Date(this.options.now());
    const timestamp = signMetadata(
      buildTimestamp({
        version: this.repo.timestamp.signed.version + 1,
        expires: expiresIn(this.options.timestampExpiryMs / DAY, now),
        snapshot: this.repo.snapshot,
      }),
      this.options.timestampKeys,
    );
    await this.repo.writeTimestamp(timestamp);
  }

  /**
   * Re-signs what is about to expire: snapshot (and so timestamp) when less than half its
   * lifetime is left, else the timestamp alone likewise. The cron job runs this.
   */
  async refresh(): Promise<{ snapshot: boolean; timestamp: boolean }> {
    const now = this.options.now();
    const left = (expires: string) => Date.parse(expires) - now;
    if (left(this.repo.snapshot.signed.expires) < this.options.snapshotExpiryMs / 2) {
      await this.signSnapshot();
      this.options.log.info(
        { snapshot: this.repo.snapshot.signed.version },
        'snapshot re-signed before expiry',
      );
      return { snapshot: true, timestamp: true };
    }
    if (left(this.repo.timestamp.signed.expires) < this.options.timestampExpiryMs / 2) {
      await this.signTimestamp();
      this.options.log.info(
        { timestamp: this.repo.timestamp.signed.version },
        'timestamp re-signed before expiry',
      );
      return { snapshot: false, timestamp: true };
    }
    return { snapshot: false, timestamp: false };
  }

  /** The file behind a request path under metadata/ or targets/, or undefined (traversal is refused). */
  async resolveFile(
    kind: 'metadata' | 'targets',
    path: string,
  ): Promise<{ file: string; size: number; mtimeMs: number } | undefined> {
    try {
      assertSafeTargetPath(path);
    } catch {
      return undefined;
    }
    const file = join(kind === 'metadata' ? this.repo.metadataDir : this.repo.targetsDir, path);
    try {
      const s = await stat(file);
      return s.isFile() ? { file, size: s.size, mtimeMs: s.mtimeMs } : undefined;
    } catch {
      return undefined;
    }
  }

  /** The director entries for a bundle, copied from the served targets metadata. */
  directorTargets(name: string, version: string): DirectorTarget[] {
    return directorTargetsForBundle(this.repo.targets.signed, name, version);
  }

  /** The bundles the targets metadata lists (from the manifest targets' custom fields). */
  bundles(): Array<{ name: string; version: string; releaseCounter: number; targets: string[] }> {
    const out = new Map<
      string,
      { name: string; version: string; releaseCounter: number; targets: string[] }
    >();
    for (const t of Object.values(this.repo.targets.signed.targets)) {
      const c = t.custom as { name?: unknown; version?: unknown; releaseCounter?: unknown; kind?: unknown };
      if (typeof c.name !== 'string' || typeof c.version !== 'string') continue;
      const key = `${c.name}@${c.version}`;
      const entry = out.get(key) ?? {
        name: c.name,
        version: c.version,
        releaseCounter: Number(c.releaseCounter ?? 0),
        targets: [],
      };
      if (c.kind === 'manifest') entry.targets.unshift(t.path);
      else entry.targets.push(t.path);
      out.set(key, entry);
    }
    return [...out.values()];
  }
}

export type { JSONObject };
