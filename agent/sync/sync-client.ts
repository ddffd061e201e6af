import { EventEmitter } from 'node:events';
import { OutpostError } from '../../shared/errors.ts';
import type { Logger } from '../log.ts';
import { Backoff, StoppableTimer } from '../uplink/backoff.ts';
import { type DeviceCredential, readCredential, writeCredential } from './credentials.ts';

export type { DeviceCredential };

export interface InstalledModelReport {
  name: string;
  version: string;
  sha256?: string;
  releaseCounter?: number;
  state?: string;
}

export interface InstallOutcome {
  model: string;
  version: string;
  ok: boolean;
  detail: string;
}

/**
 * What the sync client hands the desired state to: the updater. It verifies the document
 * (director signature, TUF), installs or reverts, and says what the device now runs.
 */
export interface DesiredStateHandler {
  apply(document: unknown): Promise<InstallOutcome[]>;
  /** What the device runs right now (its own registry), reported as the truth. */
  installed(): InstalledModelReport[];
}

export interface SyncClientOptions {
  deviceId: string;
  url: string;
  /** Single-use; needed only until the device holds a credential. */
  enrolmentToken?: string | undefined;
  credentialPath: string;
  pollIntervalMs: number;
  backoffMinMs: number;
  backoffMaxMs: number;
  requestTimeoutMs: number;
  arch: string;
  agentVersion: string;
  handler: DesiredStateHandler;
  /** Awaited once the device has a credential (at first enrolment): the updater needs it. */
  onEnrolled?: (credential: DeviceCredential) => Promise<void> | void;
  log: Logger;
  random?: () => number;
}

export interface SyncResult {
  changed: boolean;
  desiredVersion: number | undefined;
  outcomes: InstallOutcome[];
}

export interface SyncEvents {
  synced: [SyncResult];
  failed: [Error];
}

/**
 * The device's link to the director: enrols once with a single-use token, then polls its
 * signed desired state with If-None-Match, hands changes to the updater and reports what the
 * device actually runs. Failures back off exponentially (capped, full jitter); while the
 * control plane is unreachable nothing changes on the device: it keeps running its last
 * verified state. `syncNow()` (MQTT `cmd/sync`) cuts the wait short.
 */
export class SyncClient extends EventEmitter<SyncEvents> {
  private running = false;
  private readonly timer = new StoppableTimer();
  private readonly backoff: Backoff;
  private cred: DeviceCredential | undefined;
  private etag: string | undefined;
  private lastReported = '';
  private pendingOutcomes: InstallOutcome[] = [];
  private inflight: Promise<SyncResult> | undefined;
  private queued: Promise<SyncResult> | undefined;
  private stopped = false;
  private loop: Promise<void> | undefined;
  lastError: string | undefined;
  lastSyncAt: number | undefined;
  desiredVersion: number | undefined;

  constructor(private readonly o: SyncClientOptions) {
    super();
    this.backoff = new Backoff(o.backoffMinMs, o.backoffMaxMs, o.random);
  }

  get enrolled(): boolean {
    return this.cred !== undefined;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.stopped = false;
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.stopped = true;
    this.timer.cancel();
    await this.loop;
    await this.queued?.catch(() => undefined);
    await this.inflight?.catch(() => undefined);
  }

  /**
   * A sync that starts now (the `sync` command). While one is under way, a request is not
   * joined to it: that sync may have read the desired state before the change this request
   * announces. One more sync is queued to start when it ends; further requests meanwhile
   * share the queued one.
   */
  syncNow(): Promise<SyncResult> {
    if (this.inflight === undefined) {
      this.inflight = this.syncOnce().finally(() => {
        this.inflight = undefined;
      });
      return this.inflight;
    }
    this.queued ??= this.inflight
      .catch(() => undefined)
      .then(() => {
        this.queued = undefined;
        if (this.stopped) throw new OutpostError('SHUTTING_DOWN', 'the sync client stopped');
        return this.syncNow();
      });
    return this.queued;
  }

  private async run(): Promise<void> {
    while (this.running) {
      let wait: number;
      try {
        // The poll joins a sync already under way (one the `sync` command started).
        await (this.queued ?? this.inflight ?? this.syncNow());
        this.backoff.reset();
        // ±10 % so a fleet started together does not poll in step.
        const r = this.o.random ?? Math.random;
        wait = Math.round(this.o.pollIntervalMs * (0.9 + 0.2 * r()));
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        wait = this.backoff.next();
        // Log the first failure of a streak and then every tenth, not every retry.
        if (this.backoff.attempts === 1 || this.backoff.attempts % 10 === 0)
          this.o.log.warn(
            { err: message, attempt: this.backoff.attempts, retryInMs: wait },
            'sync failed; keeping the current models',
          );
        this.lastError = message;
        this.emit('failed', err instanceof Error ? err : new Error(message));
      }
      if (!this.running) break;
      await this.timer.sleep(wait);
    }
  }

  private async http(
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<Response> {
    const base = this.cred?.url ?? this.o.url;
    try {
      return await fetch(`${base}${path}`, {
        method,
        headers: {
          ...(this.cred === undefined ? {} : { authorization: `Bearer ${this.cred.credential}` }),
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          ...headers,
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(this.o.requestTimeoutMs),
      });
    } catch (err) {
      throw new OutpostError(
        'DOWNLOAD_FAILED',
        `${method} ${base}${path}: ${err instanceof Error ? err.message : String(err)}`,
        {
          cause: err,
        },
      );
    }
  }

  private async ensureEnrolled(): Promise<void> {
    if (this.cred !== undefined) return;
    const stored = readCredential(this.o.credentialPath);
    if (stored !== undefined && stored.deviceId === this.o.deviceId) {
      this.cred = stored;
      return;
    }
    if (this.o.enrolmentToken === undefined)
      throw new OutpostError('UNAUTHORIZED', 'not enrolled and no sync.enrolmentToken configured');
    const res = await this.http('POST', '/v1/enrol', {
      token: this.o.enrolmentToken,
      deviceId: this.o.deviceId,
      arch: this.o.arch,
      agentVersion: this.o.agentVersion,
    });
    const body = (await res.json().catch(() => ({}))) as { credential?: string; error?: string };
    if (res.status !== 201 || typeof body.credential !== 'string')
      throw new OutpostError('UNAUTHORIZED', `enrolment refused: ${res.status} ${body.error ?? ''}`.trim());
    this.cred = { deviceId: this.o.deviceId, credential: body.credential, url: this.o.url };
    writeCredential(this.o.credentialPath, this.cred);
    this.o.log.info({ url: this.o.url }, 'enrolled with the control plane');
    await this.o.onEnrolled?.(this.cred);
  }

  private async syncOnce(): Promise<SyncResult> {
    await this.ensureEnrolled();
    const id = encodeURIComponent(this.o.deviceId);
    const res = await this.http(
      'GET',
      `/v1/devices/${id}/desired`,
      undefined,
      this.etag === undefined ? {} : { 'if-none-match': this.etag },
    );
    if (res.status === 401) {
      // The credential was revoked (device deleted): forget it so a new token can enrol again.
      this.cred = undefined;
      throw new OutpostError('UNAUTHORIZED', 'the control plane no longer accepts this device credential');
    }
    let changed = false;
    let outcomes: InstallOutcome[] = [];
    if (res.status === 200) {
      const doc = (await res.json()) as { signed?: { version?: unknown } };
      outcomes = await this.o.handler.apply(doc);
      this.pendingOutcomes.push(...outcomes);
      this.etag = res.headers.get('etag') ?? undefined;
      this.desiredVersion = typeof doc.signed?.version === 'number' ? doc.signed.version : undefined;
      changed = true;
    } else if (res.status !== 304) {
      const text = await res.text().catch(() => '');
      throw new OutpostError('DOWNLOAD_FAILED', `desired state: ${res.status} ${text.slice(0, 200)}`);
    }
    await this.report();
    this.lastSyncAt = Date.now();
    this.lastError = undefined;
    const result = { changed, desiredVersion: this.desiredVersion, outcomes };
    this.emit('synced', result);
    return result;
  }

  /** Reports installed state when it changed and any outcomes not yet delivered. */
  private async report(): Promise<void> {
    const installed = this.o.handler.installed();
    const snapshot = JSON.stringify(installed);
    if (snapshot === this.lastReported && this.pendingOutcomes.length === 0) return;
    const outcomes = this.pendingOutcomes.slice();
    const res = await this.http('POST', `/v1/devices/${encodeURIComponent(this.o.deviceId)}/report`, {
      agentVersion: this.o.agentVersion,
      arch: this.o.arch,
      installed,
      outcomes,
      ...(this.desiredVersion === undefined ? {} : { desiredVersion: this.desiredVersion }),
    });
    if (res.status !== 204)
      throw new OutpostError(
        'DOWNLOAD_FAILED',
        `report refused: ${res.status} ${await res.text().catch(() => '')}`,
      );
    this.pendingOutcomes.splice(0, outcomes.length);
    this.lastReported = snapshot;
  }
}
