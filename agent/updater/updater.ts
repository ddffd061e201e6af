import { join } from 'node:path';
import type { TargetFile } from '@tufjs/models';
import { errorMessage, isOutpostError, OutpostError } from '../../shared/errors.ts';
import type { AgentConfig } from '../config.ts';
import type { Logger } from '../log.ts';
import type { Publisher } from '../publisher.ts';
import type { ModelRegistry } from '../runtime/registry.ts';
import { Backoff, StoppableTimer } from '../uplink/backoff.ts';
import { assertSameTarget } from './compat.ts';
import { CrashLoopGuard } from './crash-loop.ts';
import { fetchDesiredState, groupBundles } from './director-client.ts';
import type { InstallFaults } from './faults.ts';
import { HttpClient } from './http.ts';
import { Installer, type InstallStep } from './installer.ts';
import { StateStore, type UpdateState } from './state.ts';
import { TrustClient } from './trust.ts';

export type UpdatesConfig = AgentConfig['updates'];

export interface UpdaterOptions {
  config: UpdatesConfig;
  deviceId: string;
  dataDir: string;
  registry: ModelRegistry;
  publisher?: Publisher;
  log: Logger;
  arch: string;
  agentVersion: string;
  now?: () => number;
  ensureSpace?: (bytes: number) => Promise<void> | void;
  faults?: InstallFaults;
}

export interface CheckOutcome {
  directorVersion: number;
  installed: string[];
  failed: Array<{ target: string; error: string }>;
  upToDate: boolean;
}

export interface UpdaterStatus {
  state: 'idle' | 'checking' | 'installing' | 'stopped';
  lastCheckAt?: number;
  lastError?: string;
  lastOutcome?: CheckOutcome;
  directorVersion: number;
  progress?: { target: string; step: InstallStep };
  models: UpdateState['models'];
  rejected: UpdateState['rejected'];
}

/**
 * The update loop: fetch the director's signed desired state, refresh TUF, install what the
 * director names and TUF vouches for, report each step as `evt/update-*` and in status.
 * One check at a time; polls with jitter; stop() ends it and marks a clean shutdown for the
 * crash-loop guard.
 */
export class Updater {
  readonly http: HttpClient;
  readonly trust: TrustClient;
  readonly store: StateStore;
  readonly installer: Installer;
  private readonly guard: CrashLoopGuard;
  private readonly now: () => number;
  private readonly timer = new StoppableTimer();
  private state: UpdateState | undefined;
  private running = false;
  private checking: Promise<CheckOutcome> | undefined;
  private readonly st: UpdaterStatus = { state: 'idle', directorVersion: 0, models: {}, rejected: {} };

  constructor(private readonly o: UpdaterOptions) {
    this.now = o.now ?? Date.now;
    const c = o.config;
    this.http = new HttpClient(
      {
        connectTimeoutMs: c.connectTimeoutMs,
        idleTimeoutMs: c.idleTimeoutMs,
        responseTimeoutMs: c.idleTimeoutMs,
        minBytesPerSec: c.minBytesPerSec,
        rateWindowMs: c.rateWindowMs,
        retries: c.retries,
        backoffMinMs: c.backoffMinMs,
        backoffMaxMs: c.backoffMaxMs,
        ...(c.token === undefined ? {} : { headers: { authorization: `Bearer ${c.token}` } }),
      },
      o.log,
    );
    const dir = join(o.dataDir, 'updates');
    this.store = new StateStore(dir);
    this.trust = new TrustClient({
      stateDir: join(dir, 'trust'),
      metadataUrl: this.metadataUrl(),
      http: this.http,
      now: this.now,
      log: o.log,
    });
    this.installer = new Installer({
      dataDir: o.dataDir,
      http: this.http,
      registry: o.registry,
      store: this.store,
      log: o.log,
      arch: o.arch,
      agentVersion: o.agentVersion,
      now: this.now,
      ...(o.ensureSpace === undefined ? {} : { ensureSpace: o.ensureSpace }),
      ...(o.faults === undefined ? {} : { faults: o.faults }),
      onStep: (step, detail) => this.progress(step, detail),
    });
    this.guard = new CrashLoopGuard(this.store, c.crashLoop, this.now, o.log);
  }

  private metadataUrl(): string {
    return this.o.config.metadataUrl ?? `${this.o.config.repositoryUrl ?? ''}/metadata`;
  }

  private targetsUrl(): string {
    return this.o.config.targetsUrl ?? `${this.o.config.repositoryUrl ?? ''}/targets`;
  }

  private directorUrl(): string {
    return (this.o.config.directorUrl ?? '').replaceAll('{deviceId}', encodeURIComponent(this.o.deviceId));
  }

  /**
   * Runs before the agent loads its models: pins the root on first boot, counts an unclean
   * start against the last activation (reverting it after too many), and returns the bundle
   * directories to load.
   */
  async prepareBoot(): Promise<string[]> {
    if (this.o.config.pinnedRoot !== undefined) await this.trust.provision(this.o.config.pinnedRoot);
    const { state, reverted } = await this.guard.onBoot();
    this.state = state;
    this.syncStatus();
    for (const r of reverted) {
      this.o.log.error(r, 'update reverted after repeated unclean starts');
      void this.event('update-reverted', { ...r, reason: 'crash-loop' });
    }
    return Object.values(state.models).map((m) => join(this.o.dataDir, m.current.dir));
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    if (this.state !== undefined) this.guard.watch(this.state, () => this.syncStatus());
    void this.loop();
  }

  private async loop(): Promise<void> {
    const backoff = new Backoff(this.o.config.backoffMinMs, this.o.config.backoffMaxMs);
    while (this.running) {
      let failed = false;
      try {
        const outcome = await this.checkNow();
        failed = outcome.failed.length > 0;
      } catch (err) {
        failed = true;
        this.o.log.warn({ err }, 'update check failed');
      }
      if (!this.running) break;
      const base = this.o.config.pollIntervalMs;
      // A failed check retries sooner (capped backoff), a good one waits the interval ± 20 %.
      if (!failed) backoff.reset();
      const delay = failed ? Math.min(base, backoff.next()) : Math.round(base * (0.8 + 0.4 * Math.random()));
      await this.timer.sleep(delay);
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    this.timer.cancel();
    this.http.stop();
    this.guard.stop();
    await this.checking?.catch(() => undefined);
    await this.installer.settled();
    await this.store.markCleanStop(this.now());
    this.st.state = 'stopped';
  }

  status(): UpdaterStatus {
    return structuredClone(this.st);
  }

  /** One check; concurrent callers share it. */
  checkNow(): Promise<CheckOutcome> {
    this.checking ??= this.check().finally(() => {
      this.checking = undefined;
      if (this.st.state !== 'stopped') this.st.state = 'idle';
    });
    return this.checking;
  }

  private async check(): Promise<CheckOutcome> {
    const state = this.state ?? (await this.store.load());
    this.state = state;
    this.st.state = 'checking';
    this.st.lastCheckAt = this.now();
    const outcome: CheckOutcome = {
      directorVersion: state.directorVersion,
      installed: [],
      failed: [],
      upToDate: true,
    };
    try {
      const desired = await fetchDesiredState(
        {
          http: this.http,
          trust: this.trust,
          store: this.store,
          deviceId: this.o.deviceId,
          url: this.directorUrl(),
        },
        state,
      );
      outcome.directorVersion = desired.version;
      const tuf = await this.trust.refresh();
      const pending: Array<{ name: string; version: string; sha256: string }> = [];
      for (const bundle of groupBundles(desired)) {
        const key = `${bundle.name}@${bundle.version}`;
        try {
          const manifestTarget = assertSameTarget(bundle.manifest, tuf.target(bundle.manifest.name));
          const modelTarget = assertSameTarget(bundle.model, tuf.target(bundle.model.name));
          const sha = modelTarget.hashes['sha256'] ?? '';
          const current = state.models[bundle.name]?.current;
          if (current !== undefined && current.version === bundle.version && current.sha256 === sha) continue;
          const rejected = state.rejected[sha];
          if (rejected !== undefined) {
            outcome.failed.push({ target: key, error: `refused earlier: ${rejected.reason}` });
            continue;
          }
          outcome.upToDate = false;
          pending.push({ name: bundle.name, version: bundle.version, sha256: sha });
          await this.installOne(manifestTarget, modelTarget, state, key);
          outcome.installed.push(key);
        } catch (err) {
          outcome.failed.push({ target: key, error: errorMessage(err) });
        }
      }
      this.st.lastError = outcome.failed[0]?.error;
      // What the director names and is not installed yet may resume from its partial file;
      // any other partial file in staging is a leftover.
      const stillWanted = pending.filter((p) => state.models[p.name]?.current.sha256 !== p.sha256);
      const removed = await this.installer.pruneStaging(stillWanted);
      if (removed.length > 0) this.o.log.info({ removed }, 'removed partial downloads no target needs');
    } catch (err) {
      this.st.lastError = errorMessage(err);
      outcome.failed.push({ target: '(check)', error: errorMessage(err) });
      void this.event('update-failed', { phase: 'check', error: errorMessage(err), code: codeOf(err) });
    }
    this.st.lastOutcome = outcome;
    this.syncStatus();
    return outcome;
  }

  /**
   * Installs `name@version` straight from the TUF repository (refresh, verify, install, activate),
   * without a director document. For the benchmark and for operators on a device; the normal
   * path is checkNow(), which installs only what the director names.
   */
  async installFromTuf(name: string, version: string): Promise<void> {
    // One install at a time: wait for a running check rather than race it.
    await this.checking?.catch(() => undefined);
    const state = this.state ?? (await this.store.load());
    this.state = state;
    const tuf = await this.trust.refresh();
    const base = `${name}/${version}/`;
    const manifestTarget = tuf.target(`${base}outpost.bundle.json`);
    const modelTarget = Object.values(tuf.targets.signed.targets).find(
      (t) => t.path.startsWith(base) && t.custom['kind'] === 'model',
    );
    if (manifestTarget === undefined || modelTarget === undefined)
      throw new OutpostError('NOT_FOUND', `${name}@${version} is not in the TUF targets metadata`);
    await this.installOne(manifestTarget, modelTarget, state, `${name}@${version}`);
  }

  private async installOne(
    manifestTarget: TargetFile,
    modelTarget: TargetFile,
    state: UpdateState,
    key: string,
  ) {
    this.st.state = 'installing';
    this.st.progress = { target: key, step: 'space' };
    try {
      const entry = await this.installer.install(
        { manifestTarget, modelTarget, targetsUrl: this.targetsUrl() },
        state,
      );
      this.o.log.info({ model: key }, 'update activated');
      this.guard.watch(state, () => this.syncStatus());
      // Enqueued now, in order after the progress events; its commit (the outbox's batch delay
      // and a WAL fsync) need not hold up the caller: a crash before it would lose the event
      // whether or not we waited, and the state file already says what is current.
      void this.event(
        'update-activated',
        {
          name: entry.name,
          version: entry.version,
          releaseCounter: entry.releaseCounter,
          previous: state.models[entry.name]?.previous?.version,
        },
        { name: entry.name, version: entry.version, sha256: entry.sha256 },
      );
    } catch (err) {
      const sampleFailed = isOutpostError(err) && err.details?.['sampleFailed'] === true;
      const incompatible = isOutpostError(err) && err.details?.['incompatible'] === true;
      const sha = modelTarget.hashes['sha256'] ?? '';
      // A model that failed its check or cannot run here is not retried until the director moves on.
      if (sampleFailed || incompatible) {
        state.rejected[sha] = {
          reason: errorMessage(err),
          at: this.now(),
          name: String(modelTarget.custom['name']),
          version: String(modelTarget.custom['version']),
        };
        await this.store.save(state);
      }
      this.o.log.error({ err, model: key }, 'update failed; the serving version is unchanged');
      await this.event(sampleFailed ? 'update-reverted' : 'update-failed', {
        target: key,
        step: this.st.progress?.step,
        error: errorMessage(err),
        code: codeOf(err),
        ...(sampleFailed ? { reason: 'sample-check' } : {}),
      });
      throw err;
    } finally {
      delete this.st.progress;
      this.syncStatus();
    }
  }

  private progress(step: InstallStep, detail: Record<string, unknown>): void {
    if (this.st.progress !== undefined) this.st.progress.step = step;
    void this.event('update-progress', { target: this.st.progress?.target, step, ...detail });
  }

  private syncStatus(): void {
    const s = this.state;
    if (s === undefined) return;
    this.st.directorVersion = s.directorVersion;
    this.st.models = structuredClone(s.models);
    this.st.rejected = structuredClone(s.rejected);
  }

  private async event(
    type: string,
    body: Record<string, unknown>,
    model?: { name: string; version: string; sha256: string },
  ) {
    try {
      await this.o.publisher?.event(type, body, model);
    } catch (err) {
      this.o.log.warn({ err, type }, 'update event not recorded');
    }
  }
}

function codeOf(err: unknown): string | undefined {
  return err instanceof OutpostError ? err.code : (err as NodeJS.ErrnoException).code;
}
