import { copyFile, mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Metadata, Root, Snapshot, TargetFile, Targets, Timestamp } from '@tufjs/models';
import { OutpostError } from '../errors.ts';
import { bundleTargetsFromDir } from './bundle-targets.ts';
import { fsyncDir, fsyncDirAsync, type SigningKey } from './keys.ts';
import {
  buildSnapshot,
  buildTargets,
  buildTimestamp,
  DEFAULT_EXPIRY_DAYS,
  expiresIn,
  metadataBytes,
  parseRoot,
  parseSnapshot,
  parseTargets,
  parseTimestamp,
  signMetadata,
} from './metadata.ts';

/** A target path: `/`-separated plain segments, no `.`/`..`, no leading slash, no backslash. */
export function assertSafeTargetPath(path: string): void {
  const segments = path.split('/');
  const ok =
    path.length > 0 &&
    path.length <= 512 &&
    segments.every((s) => /^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$/.test(s) && !s.includes('..'));
  if (!ok) throw new OutpostError('TRUST_FAILED', `unsafe target path ${JSON.stringify(path)}`);
}

/** Where a target is served under the targets base URL: `<dir>/<sha256>.<base>` (consistent snapshots). */
export function targetUrlPath(target: Pick<TargetFile, 'path' | 'hashes'>): string {
  const sha = target.hashes['sha256'];
  if (sha === undefined) throw new OutpostError('TRUST_FAILED', `target ${target.path} has no sha256`);
  const cut = target.path.lastIndexOf('/');
  return cut < 0
    ? `${sha}.${target.path}`
    : `${target.path.slice(0, cut)}/${sha}.${target.path.slice(cut + 1)}`;
}

export interface RepoSigners {
  targets?: readonly SigningKey[];
  snapshot?: readonly SigningKey[];
  timestamp?: readonly SigningKey[];
}

export interface RepoExpiries {
  targetsDays?: number;
  snapshotDays?: number;
  timestampDays?: number;
}

/** Writes a file whole or not at all: temp + fsync + rename + fsync of the directory. */
export async function writeFileAtomic(path: string, data: Uint8Array): Promise<void> {
  await writeFilesAtomic(dirname(path), [[basename(path), data]]);
}

/**
 * writeFileAtomic for several files of one directory: the temps are written and fsynced side
 * by side, then renamed, then the directory is fsynced once. Each file is whole or not replaced;
 * a crash between two renames can leave some replaced and some not.
 */
export async function writeFilesAtomic(
  dir: string,
  files: ReadonlyArray<readonly [name: string, data: Uint8Array]>,
): Promise<void> {
  if (files.length === 0) return;
  await mkdir(dir, { recursive: true });
  const temps = files.map(([name, data]) => ({
    tmp: join(dir, `${name}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`),
    path: join(dir, name),
    data,
  }));
  const written = await Promise.allSettled(
    temps.map(async ({ tmp, data }) => {
      const fh = await open(tmp, 'w', 0o644);
      try {
        await fh.writeFile(data);
        await fh.sync();
      } finally {
        await fh.close();
      }
    }),
  );
  const failed = written.find((r) => r.status === 'rejected');
  if (failed !== undefined) {
    await Promise.all(temps.map(({ tmp }) => rm(tmp, { force: true })));
    throw failed.reason;
  }
  for (const { tmp, path } of temps) await rename(tmp, path);
  await fsyncDirAsync(dir);
}

/**
 * A TUF repository in a directory, laid out the way tuf-js reads it with consistent
 * snapshots: `metadata/N.root.json`, `metadata/N.targets.json`, `metadata/N.snapshot.json`,
 * `metadata/timestamp.json`, targets as `targets/<dir>/<sha256>.<name>`. Unversioned copies
 * (`root.json`, `targets.json`, `snapshot.json`) hold the latest for the signer to load.
 * Signing keys are passed per call: the offline ones never need to be on the server.
 */
export class TufRepository {
  readonly metadataDir: string;
  readonly targetsDir: string;
  #root: Metadata<Root> | undefined;
  #targets: Metadata<Targets> | undefined;
  #snapshot: Metadata<Snapshot> | undefined;
  #timestamp: Metadata<Timestamp> | undefined;

  constructor(readonly dir: string) {
    this.metadataDir = join(dir, 'metadata');
    this.targetsDir = join(dir, 'targets');
  }

  get root(): Metadata<Root> {
    if (this.#root === undefined) throw new OutpostError('INTERNAL', 'repository not loaded');
    return this.#root;
  }
  get targets(): Metadata<Targets> {
    if (this.#targets === undefined) throw new OutpostError('INTERNAL', 'repository not loaded');
    return this.#targets;
  }
  get snapshot(): Metadata<Snapshot> {
    if (this.#snapshot === undefined) throw new OutpostError('INTERNAL', 'repository not loaded');
    return this.#snapshot;
  }
  get timestamp(): Metadata<Timestamp> {
    if (this.#timestamp === undefined) throw new OutpostError('INTERNAL', 'repository not loaded');
    return this.#timestamp;
  }

  /** Starts a repository from a signed root v1: empty targets, snapshot and timestamp. */
  async init(
    root: Metadata<Root>,
    signers: Required<RepoSigners>,
    expiries: RepoExpiries = {},
  ): Promise<void> {
    await mkdir(this.metadataDir, { recursive: true });
    await mkdir(this.targetsDir, { recursive: true });
    await this.writeRoot(root);
    const targets = signMetadata(
      buildTargets({ version: 1, expires: expiresIn(expiries.targetsDays ?? DEFAULT_EXPIRY_DAYS.targets) }),
      signers.targets,
    );
    await this.writeTargets(targets);
    await this.resignSnapshot(signers, expiries);
  }

  /** Reads the latest metadata back from disk. */
  async load(): Promise<this> {
    const read = (name: string) => readFile(join(this.metadataDir, name));
    this.#root = parseRoot(await read('root.json'));
    this.#targets = parseTargets(await read('targets.json'));
    this.#snapshot = parseSnapshot(await read('snapshot.json'));
    this.#timestamp = parseTimestamp(await read('timestamp.json'));
    return this;
  }

  /** Publishes a (signed) root: `N.root.json` for clients walking the chain, `root.json` as latest. */
  async writeRoot(root: Metadata<Root>): Promise<void> {
    const bytes = metadataBytes(root);
    await writeFileAtomic(join(this.metadataDir, `${root.signed.version}.root.json`), bytes);
    await writeFileAtomic(join(this.metadataDir, 'root.json'), bytes);
    this.#root = root;
  }

  async writeTargets(targets: Metadata<Targets>): Promise<void> {
    const bytes = metadataBytes(targets);
    await writeFileAtomic(join(this.metadataDir, `${targets.signed.version}.targets.json`), bytes);
    await writeFileAtomic(join(this.metadataDir, 'targets.json'), bytes);
    this.#targets = targets;
  }

  async writeSnapshot(snapshot: Metadata<Snapshot>): Promise<void> {
    const bytes = metadataBytes(snapshot);
    await writeFileAtomic(join(this.metadataDir, `${snapshot.signed.version}.snapshot.json`), bytes);
    await writeFileAtomic(join(this.metadataDir, 'snapshot.json'), bytes);
    this.#snapshot = snapshot;
  }

  async writeTimestamp(timestamp: Metadata<Timestamp>): Promise<void> {
    await writeFileAtomic(join(this.metadataDir, 'timestamp.json'), metadataBytes(timestamp));
    this.#timestamp = timestamp;
  }

  /** Copies a target's content where clients fetch it. The content is not re-hashed here. */
  async putTargetContent(target: TargetFile, source: string | Uint8Array): Promise<void> {
    assertSafeTargetPath(target.path);
    const dest = join(this.targetsDir, targetUrlPath(target));
    await mkdir(dirname(dest), { recursive: true });
    if (typeof source === 'string') {
      const tmp = `${dest}.${process.pid}.tmp`;
      await copyFile(source, tmp);
      const fh = await open(tmp, 'r+');
      await fh.sync();
      await fh.close();
      await rename(tmp, dest);
      fsyncDir(dirname(dest));
    } else await writeFileAtomic(dest, source);
  }

  /** New snapshot (version + 1) over the current targets, then a new timestamp. */
  async resignSnapshot(
    signers: Pick<Required<RepoSigners>, 'snapshot' | 'timestamp'>,
    expiries: RepoExpiries = {},
  ): Promise<void> {
    const snapshot = signMetadata(
      buildSnapshot({
        version: (this.#snapshot?.signed.version ?? 0) + 1,
        expires: expiresIn(expiries.snapshotDays ?? DEFAULT_EXPIRY_DAYS.snapshot),
        targets: this.targets,
      }),
      signers.snapshot,
    );
    await this.writeSnapshot(snapshot);
    await this.refreshTimestamp(signers, expiries);
  }

  /** New timestamp (version + 1) over the current snapshot: what keeps clients from seeing a freeze. */
  async refreshTimestamp(
    signers: Pick<Required<RepoSigners>, 'timestamp'>,
    expiries: RepoExpiries = {},
  ): Promise<void> {
    const timestamp = signMetadata(
      buildTimestamp({
        version: (this.#timestamp?.signed.version ?? 0) + 1,
        expires: expiresIn(expiries.timestampDays ?? DEFAULT_EXPIRY_DAYS.timestamp),
        snapshot: this.snapshot,
      }),
      signers.timestamp,
    );
    await this.writeTimestamp(timestamp);
  }

  /**
   * Adds (or replaces) targets and publishes new targets, snapshot and timestamp metadata.
   * `sources` gives each new target's content (a file path or bytes) by target path.
   */
  async addTargets(
    files: readonly TargetFile[],
    sources: Record<string, string | Uint8Array>,
    signers: Required<RepoSigners>,
    expiries: RepoExpiries = {},
  ): Promise<Metadata<Targets>> {
    for (const f of files) {
      const src = sources[f.path];
      if (src === undefined) throw new OutpostError('BAD_REQUEST', `no content given for target ${f.path}`);
      await this.putTargetContent(f, src);
    }
    const current = this.targets.signed.targets;
    const next = buildTargets({
      version: this.targets.signed.version + 1,
      expires: expiresIn(expiries.targetsDays ?? DEFAULT_EXPIRY_DAYS.targets),
      targets: [...Object.values(current).filter((t) => !files.some((f) => f.path === t.path)), ...files],
    });
    signMetadata(next, signers.targets);
    await this.writeTargets(next);
    await this.resignSnapshot(signers, expiries);
    return next;
  }

  /** Removes targets from the metadata (their content stays for clients mid-download). */
  async removeTargets(paths: readonly string[], signers: Required<RepoSigners>, expiries: RepoExpiries = {}) {
    const next = buildTargets({
      version: this.targets.signed.version + 1,
      expires: expiresIn(expiries.targetsDays ?? DEFAULT_EXPIRY_DAYS.targets),
      targets: Object.values(this.targets.signed.targets).filter((t) => !paths.includes(t.path)),
    });
    signMetadata(next, signers.targets);
    await this.writeTargets(next);
    await this.resignSnapshot(signers, expiries);
  }

  /** Adds a bundle directory (manifest + model) as two targets. */
  async publishBundle(bundleDir: string, signers: Required<RepoSigners>, expiries: RepoExpiries = {}) {
    const { manifest, targets, sources } = await bundleTargetsFromDir(bundleDir);
    const md = await this.addTargets(targets, sources, signers, expiries);
    return { manifest, targets, metadata: md };
  }
}
