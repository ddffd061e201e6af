import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
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

/** tuf-js's fetcher interface over our got client, translating errors to the ones tuf-js expects. */
class TufFetcher implements Fetcher {
  constructor(
    private readonly http: HttpClient,
    private readonly scratch: string,
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
    const file = join(this.scratch, `download-${Date.now()}-${Math.random().toString(36).slice(2)}`);
    await writeFile(file, bytes);
    try {
      return await handler(file);
    } finally {
      await rm(file, { force: true });
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
 * The device's TUF client. tuf-js does the verification; this wraps its persistence, which
 * writes metadata in place with writeFileSync (a power cut mid-write would leave a torn
 * trusted root). Each refresh runs tuf-js on a scratch copy of the trusted files in the same
 * filesystem, then commits every file tuf-js changed with temp + fsync + rename + fsync dir.
 * Each committed file was verified before tuf-js wrote it, so committing after a failed
 * refresh is as safe as tuf-js's own behaviour, and a crash between two commits leaves a
 * mix that tuf-js's next refresh checks against each other anyway.
 *
 * Freshness is judged against max(device clock, time floor). The floor is raised by times
 * signed by the director and by successful refreshes, so a device whose clock was set back
 * still rejects metadata that expired before a time it has seen vouched for.
 */
export class TrustClient {
  private floorMs = 0;

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
      if (Number.isFinite(floor)) this.floorMs = floor;
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

  /** Raises the time floor (never lowers it) and persists it. */
  async raiseFloor(ms: number): Promise<void> {
    if (!(ms > this.floorMs)) return;
    this.floorMs = ms;
    await writeFileAtomic(join(this.o.stateDir, CLOCK_FILE), Buffer.from(JSON.stringify({ floorMs: ms })));
  }

  /** One TUF client workflow: root chain, timestamp, snapshot, targets. Throws TRUST_FAILED. */
  async refresh(): Promise<TrustedState> {
    const work = await mkdtemp(join(this.o.stateDir, '..', '.trust-work-'));
    try {
      await Promise.all(
        TRUST_FILES.map((f) =>
          copyFile(join(this.o.stateDir, f), join(work, f)).catch((err: NodeJS.ErrnoException) => {
            if (err.code !== 'ENOENT') throw err;
          }),
        ),
      );
      const scratch = join(work, '.downloads');
      await mkdir(scratch);
      const referenceTime = this.referenceTime();
      const updater = new Updater({
        metadataDir: work,
        metadataBaseUrl: this.o.metadataUrl,
        fetcher: new TufFetcher(this.o.http, scratch),
      });
      setReferenceTime(updater, referenceTime);
      let failure: unknown;
      try {
        await updater.refresh();
      } catch (err) {
        failure = err;
      }
      if (failure !== undefined) {
        await this.commit(work);
        const name = (failure as Error).constructor?.name ?? 'Error';
        throw new OutpostError('TRUST_FAILED', `TUF refresh failed: ${name}: ${(failure as Error).message}`, {
          cause: failure,
          details: { tufError: name },
        });
      }
      // tuf-js found everything fresh at max(clock, floor), so the clock is plausible: keep it,
      // committed with the metadata (one directory fsync for all).
      const floorMs = Math.max(this.floorMs, this.o.now());
      const files = await this.commit(work, floorMs);
      this.floorMs = floorMs;
      const trusted = async (f: (typeof TRUST_FILES)[number]) =>
        files.get(f) ?? (await readFile(join(this.o.stateDir, f)));
      const root = parseRoot(await trusted('root.json'));
      const targets = parseTargets(await trusted('targets.json'));
      return {
        root,
        targets,
        referenceTime,
        target: (path) => targets.signed.targets[path],
      };
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }

  /**
   * Commits every trusted file tuf-js changed in `work` (and the time floor when given) to the
   * state directory atomically; returns the bytes of every trusted file found in `work`.
   */
  private async commit(work: string, floorMs?: number): Promise<Map<string, Buffer>> {
    const names = new Set(await readdir(work));
    const found = new Map<string, Buffer>();
    const changed: Array<[string, Buffer]> = [];
    await Promise.all(
      TRUST_FILES.filter((f) => names.has(f)).map(async (f) => {
        const next = await readFile(join(work, f));
        found.set(f, next);
        const prev = await readFile(join(this.o.stateDir, f)).catch(() => undefined);
        if (!prev?.equals(next)) changed.push([f, next]);
      }),
    );
    if (floorMs !== undefined && floorMs > this.floorMs)
      changed.push([CLOCK_FILE, Buffer.from(JSON.stringify({ floorMs }))]);
    await writeFilesAtomic(this.o.stateDir, changed);
    return found;
  }
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
