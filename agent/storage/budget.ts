import { lstat, readdir, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { OutpostError } from '../../shared/errors.ts';
import type { Logger } from '../log.ts';

/**
 * One storage budget for everything the agent writes under its data directory: installed
 * models, staging (downloads in progress) and the outbox database. Anything about to write a
 * known number of bytes calls `ensure(bytes, what)` first; it throws STORAGE_BUDGET rather
 * than let a download fill the disk that the outbox needs to keep results.
 */
export const STORAGE_AREAS = {
  // Where the updater installs bundles and stages downloads (agent/updater/installer.ts).
  models: 'bundles',
  staging: 'updates/staging',
  outbox: ['outbox.db', 'outbox.db-wal', 'outbox.db-shm'],
} as const;

export type StorageArea = keyof typeof STORAGE_AREAS;

export interface StorageUsage {
  models: number;
  staging: number;
  outbox: number;
  total: number;
  maxBytes: number;
  /** Free bytes on the filesystem holding the data directory. */
  filesystemFree: number;
}

export interface StorageBudgetOptions {
  dataDir: string;
  maxBytes: number;
  reserveFreeBytes: number;
  log?: Logger;
}

export class StorageBudget {
  constructor(private readonly options: StorageBudgetOptions) {}

  get dataDir(): string {
    return this.options.dataDir;
  }

  /** Absolute path of an area's directory (`models`, `staging`). */
  dir(area: Exclude<StorageArea, 'outbox'>): string {
    return join(this.options.dataDir, STORAGE_AREAS[area]);
  }

  async usage(): Promise<StorageUsage> {
    const models = await treeSize(this.dir('models'));
    const staging = await treeSize(this.dir('staging'));
    let outbox = 0;
    for (const file of STORAGE_AREAS.outbox) outbox += await treeSize(join(this.options.dataDir, file));
    return {
      models,
      staging,
      outbox,
      total: models + staging + outbox,
      maxBytes: this.options.maxBytes,
      filesystemFree: await filesystemFree(this.options.dataDir),
    };
  }

  /**
   * Throws STORAGE_BUDGET unless `bytes` more fit both in the budget and on the filesystem
   * (leaving `reserveFreeBytes` free). Returns the usage it judged by.
   */
  async ensure(bytes: number, what: string): Promise<StorageUsage> {
    if (!Number.isFinite(bytes) || bytes < 0)
      throw new OutpostError('BAD_REQUEST', `storage ensure for ${what}: bytes must be ≥ 0, got ${bytes}`);
    const usage = await this.usage();
    const after = usage.total + bytes;
    if (after > this.options.maxBytes) {
      const err = new OutpostError(
        'STORAGE_BUDGET',
        `${what} needs ${bytes} bytes but the storage budget has ${Math.max(0, this.options.maxBytes - usage.total)} of ${this.options.maxBytes} left (models ${usage.models}, staging ${usage.staging}, outbox ${usage.outbox})`,
        { details: { what, bytes, ...usage } },
      );
      this.options.log?.warn({ what, bytes, usage }, 'storage budget refused a write');
      throw err;
    }
    if (usage.filesystemFree - bytes < this.options.reserveFreeBytes) {
      const err = new OutpostError(
        'STORAGE_BUDGET',
        `${what} needs ${bytes} bytes but the filesystem has ${usage.filesystemFree} free and ${this.options.reserveFreeBytes} must stay free`,
        { details: { what, bytes, ...usage, reserveFreeBytes: this.options.reserveFreeBytes } },
      );
      this.options.log?.warn(
        { what, bytes, usage },
        'storage budget refused a write: filesystem nearly full',
      );
      throw err;
    }
    return usage;
  }
}

/** Bytes allocated on disk below a path (files counted once; symlinks not followed). */
export async function treeSize(path: string): Promise<number> {
  let info: Awaited<ReturnType<typeof lstat>>;
  try {
    info = await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw err;
  }
  if (!info.isDirectory()) return info.isFile() ? Math.max(info.size, info.blocks * 512) : 0;
  let total = 0;
  for (const name of await readdir(path)) total += await treeSize(join(path, name));
  return total;
}

export async function filesystemFree(path: string): Promise<number> {
  try {
    const fs = await statfs(path);
    return fs.bavail * fs.bsize;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return Number.POSITIVE_INFINITY;
    throw err;
  }
}
