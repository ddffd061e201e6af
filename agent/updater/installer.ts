import { mkdir, open, readdir, rename, rm, statfs } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import type { TargetFile } from '@tufjs/models';
import { MANIFEST_FILE } from '../../shared/bundle/manifest.ts';
import type { Bundle } from '../../shared/bundle/read.ts';
import { parseManifest } from '../../shared/bundle/read.ts';
import { compareSample, sampleInputs } from '../../shared/bundle/sample.ts';
import { errorMessage, OutpostError } from '../../shared/errors.ts';
import { assertSafeTargetPath, fsyncDirAsync, sha256Hex, targetUrlPath } from '../../shared/tuf/index.ts';
import type { Logger } from '../log.ts';
import type { ModelRegistry } from '../runtime/registry.ts';
import { assertCompatible, assertManifestMatchesTargets } from './compat.ts';
import { downloadTarget } from './download.ts';
import { type InstallFaults, injectFault } from './faults.ts';
import type { HttpClient } from './http.ts';
import type { InstalledModel, StateStore, UpdateState } from './state.ts';

/** The named steps of an install, in order (fault injection and progress events use them). */
export const INSTALL_STEPS = [
  'space',
  'manifest',
  'download',
  'loaded',
  'checked',
  'written',
  'committed',
  'activated',
] as const;
export type InstallStep = (typeof INSTALL_STEPS)[number];

export interface InstallRequest {
  manifestTarget: TargetFile;
  modelTarget: TargetFile;
  /** Base URL the targets are served under. */
  targetsUrl: string;
}

export interface InstallerOptions {
  dataDir: string;
  http: HttpClient;
  registry: ModelRegistry;
  store: StateStore;
  log: Logger;
  arch: string;
  agentVersion: string;
  now: () => number;
  /** Called with the bytes an install needs before anything is written; throw to refuse. */
  ensureSpace?: (bytes: number) => Promise<void> | void;
  faults?: InstallFaults;
  onStep?: (step: InstallStep, detail: Record<string, unknown>) => void;
}

/** The partial download of a model, kept across attempts and restarts so that it resumes. */
export function partFileName(name: string, version: string, sha256: string): string {
  return `${name}-${version}-${sha256.slice(0, 16)}.part`;
}

/** Space kept free on top of what an install writes, so the outbox and logs still have room. */
const SPACE_MARGIN = 16 * 1024 * 1024;

/**
 * Installs one bundle: free-space check, manifest (verified against TUF), model download
 * (capped, resumable, verified), then two things side by side: the bundle directory is made
 * durable (model and manifest fsynced, directory fsynced) while the verified model loads next
 * to the serving one and the manifest's sample is checked in a worker. Once both are done the
 * directory is renamed into place (and its parent fsynced), the state committed, then the
 * switch. Any failure before the switch leaves the old version serving and untouched; the new
 * session is released and the new bundle directory removed.
 */
export class Installer {
  /** Release of the superseded session and removal of superseded bundle directories, run after the switch; the next install waits for it. */
  private pruning: Promise<void> = Promise.resolve();
  /** Installs running now: staging is not pruned under one. */
  private active = 0;

  constructor(private readonly o: InstallerOptions) {}

  /** Resolves once work an install left running after its switch is done. */
  settled(): Promise<void> {
    return this.pruning;
  }

  private async step(step: InstallStep, detail: Record<string, unknown> = {}): Promise<void> {
    this.o.onStep?.(step, detail);
    await injectFault(this.o.faults, step);
  }

  bundlesDir(): string {
    return join(this.o.dataDir, 'bundles');
  }

  stagingDir(): string {
    return join(this.o.dataDir, 'updates', 'staging');
  }

  async install(req: InstallRequest, state: UpdateState): Promise<InstalledModel> {
    this.active++;
    try {
      return await this.installNow(req, state);
    } finally {
      this.active--;
    }
  }

  /**
   * Removes partial downloads no wanted target resumes from: one left by an interrupted install
   * of a version the director no longer names would otherwise hold its bytes, and its share of
   * the storage budget, for good. `wanted` is what the director names and is not installed yet.
   */
  async pruneStaging(
    wanted: ReadonlyArray<{ name: string; version: string; sha256: string }>,
  ): Promise<string[]> {
    if (this.active > 0) return [];
    const keep = new Set(wanted.map((w) => partFileName(w.name, w.version, w.sha256)));
    const removed: string[] = [];
    for (const file of await readdir(this.stagingDir()).catch(() => [] as string[])) {
      const part = file.endsWith('.part.json') ? file.slice(0, -'.json'.length) : file;
      // An install that started meanwhile may be resuming one of these: leave the rest.
      if (this.active > 0) break;
      if (keep.has(part)) continue;
      await rm(join(this.stagingDir(), file), { recursive: true, force: true });
      removed.push(file);
    }
    return removed;
  }

  private async installNow(req: InstallRequest, state: UpdateState): Promise<InstalledModel> {
    const { manifestTarget, modelTarget } = req;
    assertSafeTargetPath(manifestTarget.path);
    assertSafeTargetPath(modelTarget.path);
    const staging = this.stagingDir();
    await mkdir(staging, { recursive: true });
    // A prune still running could take the directory this install is about to build.
    await this.pruning;

    const need = manifestTarget.length + modelTarget.length + SPACE_MARGIN;
    const fs = await statfs(this.o.dataDir);
    const free = fs.bavail * fs.bsize;
    if (free < need)
      throw new OutpostError(
        'STORAGE_BUDGET',
        `disk full: an install needs ${need} bytes, ${free} are free`,
        {
          details: { need, free },
        },
      );
    await this.o.ensureSpace?.(need);
    await this.step('space', { need, free });

    const manifestBytes = await this.o.http.getBytes(
      `${req.targetsUrl}/${targetUrlPath(manifestTarget)}`,
      manifestTarget.length,
    );
    if (
      manifestBytes.length !== manifestTarget.length ||
      sha256Hex(manifestBytes) !== manifestTarget.hashes['sha256']
    )
      throw new OutpostError(
        'TRUST_FAILED',
        `manifest ${manifestTarget.path} does not match what TUF vouches for`,
      );
    let raw: unknown;
    try {
      raw = JSON.parse(manifestBytes.toString('utf8'));
    } catch (err) {
      throw new OutpostError('BUNDLE_INVALID', `manifest ${manifestTarget.path} is not JSON`, { cause: err });
    }
    const manifest = parseManifest(raw, manifestTarget.path);
    assertManifestMatchesTargets(manifest, manifestTarget, modelTarget);
    assertCompatible(manifest, this.o.arch, this.o.agentVersion);
    const installed = state.models[manifest.name]?.current;
    if (installed !== undefined && manifest.releaseCounter < installed.releaseCounter)
      throw new OutpostError(
        'TRUST_FAILED',
        `${manifest.name}@${manifest.version} has releaseCounter ${manifest.releaseCounter}, below the installed ${installed.releaseCounter}`,
        { details: { rollback: true } },
      );
    await this.step('manifest', { name: manifest.name, version: manifest.version });

    const part = join(staging, partFileName(manifest.name, manifest.version, manifest.model.sha256));
    const t0 = this.o.now();
    const dl = await downloadTarget(
      this.o.http,
      {
        url: `${req.targetsUrl}/${targetUrlPath(modelTarget)}`,
        dest: part,
        length: modelTarget.length,
        sha256: manifest.model.sha256,
        // Made durable below, while the model loads.
        sync: false,
      },
      {
        ...(this.o.faults?.enospcAfterBytes === undefined
          ? {}
          : {
              beforeWrite: (offset: number, size: number) => {
                if (offset + size > (this.o.faults?.enospcAfterBytes ?? Number.POSITIVE_INFINITY)) {
                  const err = new Error('ENOSPC: no space left on device, write') as NodeJS.ErrnoException;
                  err.code = 'ENOSPC';
                  throw err;
                }
              },
            }),
      },
    ).catch(async (err: unknown) => {
      if ((err as NodeJS.ErrnoException).code === 'ENOSPC') {
        await rm(part, { force: true });
        await rm(`${part}.json`, { force: true });
        throw new OutpostError('STORAGE_BUDGET', `disk full while downloading ${modelTarget.path}`, {
          cause: err,
        });
      }
      throw err;
    });
    await this.step('download', { ...dl, ms: this.o.now() - t0, bytes: modelTarget.length });

    // The bundle directory is built beside its final place and renamed in whole once durable.
    const final = join(
      this.bundlesDir(),
      manifest.name,
      `${manifest.version}-${manifest.model.sha256.slice(0, 12)}`,
    );
    const building = `${final}.building`;
    await rm(building, { recursive: true, force: true });
    await mkdir(building, { recursive: true });
    const modelFile = join(building, manifest.model.file);
    await rename(part, modelFile);
    await rm(`${part}.json`, { force: true });

    const bundle: Bundle = { dir: final, manifest, modelPath: join(final, manifest.model.file) };
    const entry: InstalledModel = {
      name: manifest.name,
      version: manifest.version,
      releaseCounter: manifest.releaseCounter,
      sha256: manifest.model.sha256,
      dir: relative(this.o.dataDir, final),
    };
    const registry = this.o.registry;
    const alreadyServing = registry.current(manifest.name)?.version === manifest.version;
    // Independent of each other: the disk makes the verified bytes durable while a worker
    // parses them. The session reads the file where it is now (the directory is renamed only
    // after both), and nothing is renamed into place or committed unless both succeed.
    const durable = (async () => {
      if (this.o.faults?.syncFails === true)
        throw Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' });
      const model = await open(modelFile, 'r');
      try {
        await model.sync();
      } finally {
        await model.close();
      }
      const fh = await open(join(building, MANIFEST_FILE), 'w');
      try {
        await fh.writeFile(manifestBytes);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await fsyncDirAsync(building);
    })();
    let loaded = false;
    const ready = (async () => {
      if (!alreadyServing) {
        // The store's files are replaced only by rename: their weights may be mapped.
        await registry.load(bundle, { staged: true, readFrom: modelFile, mapWeights: true });
        loaded = true;
      }
      await this.step('loaded');
      const problems = await this.sampleCheck(bundle);
      if (problems.length > 0)
        throw new OutpostError('INSTALL_FAILED', `sample check failed: ${problems.join('; ')}`, {
          details: { sampleFailed: true, problems },
        });
      await this.step('checked');
    })();
    const [checked, synced] = await Promise.allSettled([ready, durable]);
    try {
      // A failed check says more about the bundle than a failed disk write: it is reported first.
      if (checked.status === 'rejected') throw checked.reason;
      if (synced.status === 'rejected') throw synced.reason;
      await rm(final, { recursive: true, force: true });
      await rename(building, final);
      await fsyncDirAsync(dirname(final));
      await this.step('written', { dir: final });
    } catch (err) {
      if (loaded) await registry.unload(manifest.name, manifest.version).catch(() => undefined);
      await rm(building, { recursive: true, force: true });
      throw err;
    }

    const prior = state.models[manifest.name];
    state.models[manifest.name] = {
      current: entry,
      ...(prior?.current === undefined || prior.current.dir === entry.dir ? {} : { previous: prior.current }),
    };
    state.activation = { name: manifest.name, version: manifest.version, at: this.o.now(), uncleanStarts: 0 };
    await this.o.store.save(state);
    await this.step('committed');
    const { retired } = await registry.activate(manifest.name, manifest.version);
    // Releasing the superseded session (its requests finish first) and deleting its 50 MB model
    // file take milliseconds the switch need not wait for; the next install and stop() do.
    this.pruning = Promise.all([
      retired.catch((err: unknown) =>
        this.o.log.warn({ err, model: manifest.name }, 'unloading the superseded version failed'),
      ),
      this.prune(manifest.name, state).catch((err: unknown) =>
        this.o.log.warn({ err, model: manifest.name }, 'removing superseded bundle directories failed'),
      ),
    ]).then(() => undefined);
    await this.step('activated');
    return entry;
  }

  /** The manifest's sample through the registry, so it runs in an inference worker. */
  private async sampleCheck(bundle: Bundle): Promise<string[]> {
    const m = bundle.manifest;
    try {
      const result = await this.o.registry.infer(m.name, m.version, sampleInputs(m));
      return compareSample(result.outputs, m.sample.outputs, m.sample.tolerance);
    } catch (err) {
      return [`the sample did not run: ${errorMessage(err)}`];
    }
  }

  /** Keeps the current and previous bundle directories of a model; removes older ones. */
  private async prune(name: string, state: UpdateState): Promise<void> {
    const m = state.models[name];
    const keep = new Set(
      [m?.current.dir, m?.previous?.dir].map((d) => (d === undefined ? '' : join(this.o.dataDir, d))),
    );
    const base = join(this.bundlesDir(), name);
    for (const d of await readdir(base).catch(() => [] as string[])) {
      const path = join(base, d);
      if (!keep.has(path)) await rm(path, { recursive: true, force: true });
    }
  }
}
