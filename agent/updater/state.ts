import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../../shared/tuf/index.ts';

/** One installed bundle version on disk. */
export interface InstalledModel {
  name: string;
  version: string;
  releaseCounter: number;
  sha256: string;
  /** Relative to the data dir, so a data dir can be moved or restored from a copy. */
  dir: string;
}

/** The last activation, watched for a crash loop until it has run stably. */
export interface Activation {
  name: string;
  version: string;
  at: number;
  uncleanStarts: number;
}

/**
 * What the updater installed, written whole (temp + fsync + rename) at each switch: which
 * version of each model is current and which is kept for revert, the last director document
 * accepted (rollback protection), and model digests refused after a failed check.
 */
export interface UpdateState {
  v: 1;
  models: Record<string, { current: InstalledModel; previous?: InstalledModel }>;
  directorVersion: number;
  rejected: Record<string, { reason: string; at: number; name: string; version: string }>;
  activation?: Activation;
}

export function emptyState(): UpdateState {
  return { v: 1, models: {}, directorVersion: 0, rejected: {} };
}

export class StateStore {
  readonly path: string;
  readonly bootPath: string;

  constructor(readonly dir: string) {
    this.path = join(dir, 'installed.json');
    this.bootPath = join(dir, 'boot.json');
  }

  async load(): Promise<UpdateState> {
    const text = await readFile(this.path, 'utf8').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    });
    if (text === undefined) return emptyState();
    const parsed = JSON.parse(text) as UpdateState;
    return { ...emptyState(), ...parsed };
  }

  async save(state: UpdateState): Promise<void> {
    await writeFileAtomic(this.path, Buffer.from(JSON.stringify(state, null, 2)));
  }

  /** Whether the last run ended without a clean stop; then marks this run as running. */
  async markBoot(now: number): Promise<{ unclean: boolean }> {
    const text = await readFile(this.bootPath, 'utf8').catch(() => undefined);
    const last = text === undefined ? undefined : (JSON.parse(text) as { running?: boolean });
    await writeFileAtomic(this.bootPath, Buffer.from(JSON.stringify({ running: true, at: now })));
    return { unclean: last?.running === true };
  }

  async markCleanStop(now: number): Promise<void> {
    await writeFileAtomic(this.bootPath, Buffer.from(JSON.stringify({ running: false, at: now })));
  }
}
