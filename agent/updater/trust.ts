import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Metadata, Root, TargetFile, Targets } from '@tufjs/models';
import { type Fetcher, Updater } from 'tuf-js';
import { DownloadHTTPError, DownloadLengthMismatchError } from 'tuf-js/dist/error.js';
import { OutpostError } from '../../shared/errors.ts';
import { parseRoot, parseTargets, writeFileAtomic, writeFilesAtomic } from '../../shared/tuf/index.ts';
import type { Logger } from '../log.ts';
import { type HttpClient, HttpStatusError } from './http.ts';

/** The files tuf-js keeps in its metadata directory (top-level roles only; we use no delegations). */
const TRUST_FILES = ['root.json', 'timestamp.json', 'snapshot.json', 'targets.json'] as const;
const CLOCK_FILE = 'clock.json';
/**
 * The time floor goes to disk with metadata that is committed anyway, and on its own once it has
 * moved this far. Every refresh raises it (every 5 minutes by default), and a durable write of
 * its own each time would be some 300 a day on an idle device's flash. After a restart the floor
 * is at most this far behind the last one in memory, against metadata expiries of a day and more.
 */
export const FLOOR_PERSIST_MS = 60 * 60 * 1000;

/** tuf-js's fetcher interface over our got client, translating errors to the ones tuf-js expects. */
class TufFetcher implements Fetcher {
  constructor(
    private readonly http: HttpClient,
    /** Where downloadFile() (tuf-js's target downloads, which the agent does not use) puts its temp files. */
    private readonly scratchParent: string,
  ) {}

  async downloadBytes(url: string, maxLength: number): Promise<Buffer> {
    try {
      return await this.http.getBytes(url, maxLength);
    } catch (err) {
      // tuf-js ends the root walk on a DownloadHTTPError 403/404, so the status must survive.
      if (err instanceof HttpStatusError) throw new DownloadHTTPError(err.message, err.statusCode);
      if (err instanceof OutpostError && err.details?.['endlessData'] === true)
        throw new DownloadLengthMismatchError(err.message);
      throw err;
    }
  }

  async downloadFile<T>(url: string, maxLength: number, handler: (file: string) => Promise<T>): Promise<T> {
    const bytes = await this.downloadBytes(url, maxLength);
    const dir = await mkdtemp(join(this.scratchParent, '.tuf-download-'));
    const file = join(dir, 'download');
    await writeFile(file, bytes);
    try {
      return await handler(file);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
}

export interface TrustedState {
  root: Metadata<Root>;
  targets: Metadata<Targets>;
  /** The time freshness was judged against. */
  referenceTime: Date;
  target(path: string): TargetFile | undefined;
}

export interface TrustOptions {
  /** Where the trusted metadata lives; survives reboots (rollback protection depends on it). */
  stateDir: string;
  metadataUrl: string;
  http: HttpClient;
  now: () => number;
  log: Logger;
}

/**
 * The device's TUF client. tuf-js does the verification; this replaces its persistence, which
 * writes metadata in place with writeFileSync (a power cut mid-write would leave a torn
 * trusted root). Each refresh reads the trusted files once and runs tuf-js on them in memory:
 * its loads read that copy and its writes (each made only after the metadata verified) are
 * collected, then committed to the state directory together with temp + fsync + rename +
 * one fsync of the directory. Committing after a failed refresh is as safe as tuf-js's own
 * behaviour, and a crash between two renames leaves a mix that tuf-js's next refresh checks
 * against each other anyway.
 *
 * Freshness is judged against max(device clock, time floor). The floor is raised by times
 * signed by the director and by successful refreshes, so a device whose clock was set back
 * still rejects metadata that expired before a time it has seen vouched for.
 */
export class TrustClient {
  private floorMs = 0;
  /** The floor in clock.json. */
  private persistedFloorMs = 0;

  constructor(private readonly o: TrustOptions) {}

  /** Installs the root pinned at provisioning, once; later roots come only through the signed chain. */
  async provision(pinnedRootPath: string): Promise<void> {
    await mkdir(this.o.stateDir, { recursive: true });
    const current = await readFile(join(this.o.stateDir, 'root.json')).catch(() => undefined);
    if (current === undefined) {
      const pinned = await readFile(pinnedRootPath).catch((err: unknown) => {
        throw new OutpostError('CONFIG_INVALID', `cannot read the pinned root ${pinnedRootPath}`, {
          cause: err,
        });
      });
      try {
        parseRoot(pinned);
      } catch (err) {
        throw new OutpostError('CONFIG_INVALID', `${pinnedRootPath} is not TUF root metadata`, {
          cause: err,
        });
      }
      await writeFileAtomic(join(this.o.stateDir, 'root.json'), pinned);
      this.o.log.info({ root: pinnedRootPath }, 'pinned root installed');
    }
    const clock = await readFile(join(this.o.stateDir, CLOCK_FILE), 'utf8').catch(() => undefined);
    if (clock !== undefined) {
      const floor = Number((JSON.parse(clock) as { floorMs?: unknown }).floorMs);
      if (Number.isFinite(floor)) {
        this.floorMs = floor;
        this.persistedFloorMs = floor;
      }
    }
  }

  /** The trusted root on disk (after the last committed refresh). */
  async trustedRoot(): Promise<Metadata<Root>> {
    return parseRoot(await readFile(join(this.o.stateDir, 'root.json')));
  }

  referenceTime(): Date {
    return new Date(Math.max(this.o.now(), this.floorMs));
  }

  get floor(): number {
    return this.floorMs;
  }

  /** Raises the time floor (never lowers it); persists it once it moved FLOOR_PERSIST_MS. */
  async raiseFloor(ms: number): Promise<void> {
    if (!(ms > this.floorMs)) return;
    this.floorMs = ms;
    if (ms - this.persistedFloorMs < FLOOR_PERSIST_MS) return;
    await writeFileAtomic(join(this.o.stateDir, CLOCK_FILE), Buffer.from(JSON.stringify({ floorMs: ms })));
    this.persistedFloorMs = ms;
  }

  /** One TUF client workflow: root chain, timestamp, snapshot, targets. Throws TRUST_FAILED. */
  async refresh(): Promise<TrustedState> {
    const files = new Map<string, Buffer>();
    await Promise.all(
      TRUST_FILES.map(async (f) => {
        const bytes = await readFile(join(this.o.stateDir, f)).catch((err: NodeJS.ErrnoException) => {
          if (err.code !== 'ENOENT') throw err;
          return undefined;
        });
        if (bytes !== undefined) files.set(f, bytes);
      }),
    );
    const referenceTime = this.referenceTime();
    const updater = new Updater({
      metadataDir: this.o.stateDir,
      metadataBaseUrl: this.o.metadataUrl,
      fetcher: new TufFetcher(this.o.http, join(this.o.stateDir, '..')),
    });
    setReferenceTime(updater, referenceTime);
    const written = keepInMemory(updater, files);
    let failure: unknown;
    try {
      await updater.refresh();
    } catch (err) {
      failure = err;
    }
    if (failure !== undefined) {
      await this.commit(written);
      const name = (failure as Error).constructor?.name ?? 'Error';
      throw new OutpostError('TRUST_FAILED', `TUF refresh failed: ${name}: ${(failure as Error).message}`, {
        cause: failure,
        details: { tufError: name },
      });
    }
    // tuf-js found everything fresh at max(clock, floor), so the clock is plausible: keep it,
    // committed with the metadata (one directory fsync for all).
    const floorMs = Math.max(this.floorMs, this.o.now());
    await this.commit(written, floorMs);
    this.floorMs = floorMs;
    const trusted = (f: (typeof TRUST_FILES)[number]) => {
      const bytes = files.get(f);
      if (bytes === undefined) throw new OutpostError('TRUST_FAILED', `TUF refresh left no ${f}`);
      return bytes;
    };
    const root = parseRoot(trusted('root.json'));
    const targets = parseTargets(trusted('targets.json'));
    return {
      root,
      targets,
      referenceTime,
      target: (path) => targets.signed.targets[path],
    };
  }

  /**
   * Commits the trusted files tuf-js wrote to the state directory atomically, and the time floor
   * when given: with those files, or alone once it moved FLOOR_PERSIST_MS.
   */
  private async commit(written: Map<string, Buffer>, floorMs?: number): Promise<void> {
    const changed: Array<[string, Buffer]> = [...written];
    const floor =
      floorMs !== undefined &&
      floorMs > this.persistedFloorMs &&
      (written.size > 0 || floorMs - this.persistedFloorMs >= FLOOR_PERSIST_MS);
    if (floor) changed.push([CLOCK_FILE, Buffer.from(JSON.stringify({ floorMs }))]);
    await writeFilesAtomic(this.o.stateDir, changed);
    if (floor) this.persistedFloorMs = floorMs;
  }
}

/**
 * Points tuf-js's metadata loads and writes (Updater.loadLocalMetadata / persistMetadata,
 * tuf-js 4.1.0 internals) at `files`, and returns the files it writes, by name. tuf-js writes a
 * role's metadata only after it verified; our commit makes the writes durable and atomic. If a
 * tuf-js upgrade moves these methods, this fails loudly instead of writing in place.
 */
function keepInMemory(updater: Updater, files: Map<string, Buffer>): Map<string, Buffer> {
  const u = updater as unknown as {
    loadLocalMetadata?: (name: string) => Buffer;
    persistMetadata?: (name: string, bytes: Buffer) => void;
  };
  if (typeof u.loadLocalMetadata !== 'function' || typeof u.persistMetadata !== 'function')
    throw new OutpostError('INTERNAL', 'tuf-js internals changed: cannot keep its metadata in memory');
  const written = new Map<string, Buffer>();
  u.loadLocalMetadata = (name) => {
    const bytes = files.get(`${name}.json`);
    if (bytes === undefined)
      throw Object.assign(new Error(`${name}.json is not trusted yet`), { code: 'ENOENT' });
    return bytes;
  };
  u.persistMetadata = (name, bytes) => {
    const file = `${encodeURIComponent(name)}.json`;
    if (!(TRUST_FILES as readonly string[]).includes(file))
      throw new OutpostError(
        'TRUST_FAILED',
        `tuf-js wrote unexpected metadata ${file} (delegations are not used)`,
      );
    const copy = Buffer.from(bytes);
    files.set(file, copy);
    written.set(file, copy);
  };
  return written;
}

/**
 * tuf-js judges expiry against `new Date()` taken when the Updater is built, with no way to
 * pass a clock. We set its trusted set's reference time (tuf-js 4.1.0 internals); if a tuf-js
 * upgrade moves it, this fails loudly instead of silently trusting the raw clock.
 */
function setReferenceTime(updater: Updater, at: Date): void {
  const set = (updater as unknown as { trustedSet?: { referenceTime?: unknown } }).trustedSet;
  if (set === undefined || !(set.referenceTime instanceof Date))
    throw new OutpostError('INTERNAL', 'tuf-js internals changed: cannot set the reference time');
  set.referenceTime = at;
}
