import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import type { Bundle } from '../../shared/bundle/read.ts';
import type { ModelRef } from '../../shared/envelope.ts';
import { isOutpostError, OutpostError } from '../../shared/errors.ts';
import { allocate, type Tensor } from '../../shared/tensor.ts';
import type { Logger } from '../log.ts';
import { type BatchPolicy, VersionScheduler } from './batcher.ts';
import { checkInputs } from './check-inputs.ts';
import type { FailureReason, InferenceObserver } from './observer.ts';
import type { WorkerPool } from './pool.ts';
import type { IoMetadata } from './protocol.ts';
import { admits, describePolicy, toRetire, type VersionPolicy } from './version-policy.ts';

export type VersionState = 'LOADING' | 'READY' | 'UNLOADING' | 'UNAVAILABLE' | 'FAILED';

export interface ModelVersion {
  name: string;
  version: string;
  releaseCounter: number;
  key: string;
  bundle: Bundle;
  state: VersionState;
  reason?: string;
  inputs: IoMetadata[];
  outputs: IoMetadata[];
  ref: ModelRef;
  /** The batch policy in force, when this version batches. */
  batching?: BatchPolicy | undefined;
  /** Loaded and READY but not yet serving unversioned requests (an update under its sample check). */
  staged?: boolean;
  /** Weight bytes mapped from the model file in each worker rather than copied into memory. */
  mappedBytes?: number;
}

export interface InferResult {
  model: ModelVersion;
  outputs: Record<string, Tensor>;
  computeUs: number;
  queueUs: number;
}

export interface RegistryEvents {
  changed: [name: string];
}

export interface RegistryOptions {
  /** The default policy: keep the newest N ready versions. */
  keepVersions: number;
  /** Per model name, a policy that replaces the default. */
  versionPolicy?: Readonly<Record<string, VersionPolicy>>;
  /** Requests waiting or running per model version before 429. */
  queueLimit?: number;
  requestTimeoutMs?: number;
  /** Off: no model batches, whatever its manifest says (benchmarks compare both). */
  batchingEnabled?: boolean;
  /** For batchable models whose manifest has no `batching`; undefined leaves them unbatched. */
  defaultBatching?: BatchPolicy | undefined;
  observer?: InferenceObserver | undefined;
}

/** Unloaded and failed versions remembered per model (for status answers), beyond which they are forgotten. */
const HISTORY = 8;

function reasonFor(err: unknown): FailureReason {
  if (isOutpostError(err, 'QUEUE_FULL') || isOutpostError(err, 'TIMEOUT')) return 'REJECTED';
  if (isOutpostError(err, 'INFERENCE_FAILED') || isOutpostError(err, 'MODEL_NOT_READY')) return 'BACKEND';
  return 'OTHER';
}

/**
 * The models the agent serves: several names, several versions each. A new version is loaded
 * next to the serving one and only then made the default; the old one stops taking requests,
 * finishes what it has queued and running, and only then releases its sessions, so a swap
 * fails no request. A version that fails to load leaves the old one serving. Sessions live as
 * long as their version is loaded: never one per request.
 */
export class ModelRegistry extends EventEmitter<RegistryEvents> {
  private readonly models = new Map<string, Map<string, ModelVersion>>();
  private readonly schedulers = new Map<string, VersionScheduler>();
  private readonly o: Required<Omit<RegistryOptions, 'defaultBatching' | 'observer'>> &
    Pick<RegistryOptions, 'defaultBatching' | 'observer'>;

  constructor(
    private readonly pool: WorkerPool,
    private readonly log: Logger,
    options: number | RegistryOptions,
  ) {
    super();
    const o = typeof options === 'number' ? { keepVersions: options } : options;
    this.o = {
      versionPolicy: {},
      queueLimit: 1024,
      requestTimeoutMs: 10_000,
      batchingEnabled: true,
      ...o,
    };
  }

  names(): string[] {
    return [...this.models.keys()].sort();
  }

  versions(name: string): ModelVersion[] {
    return [...(this.models.get(name)?.values() ?? [])].sort((a, b) => b.releaseCounter - a.releaseCounter);
  }

  all(): ModelVersion[] {
    return this.names().flatMap((n) => this.versions(n));
  }

  policy(name: string): VersionPolicy {
    return this.o.versionPolicy[name] ?? { latest: this.o.keepVersions };
  }

  /** The version requests without a version go to: the newest READY one that is not staged. */
  current(name: string): ModelVersion | undefined {
    // Every request asks this (twice): one pass, no sorted copy. On equal release counters the
    // first loaded wins, as in versions()' stable order.
    let best: ModelVersion | undefined;
    for (const v of this.models.get(name)?.values() ?? []) {
      if (v.state !== 'READY' || v.staged === true) continue;
      if (best === undefined || v.releaseCounter > best.releaseCounter) best = v;
    }
    return best;
  }

  /** Finds a version by its semver string or its release counter (TF Serving's integer versions). */
  get(name: string, version?: string): ModelVersion | undefined {
    if (version === undefined || version === '') return this.current(name);
    const versions = this.models.get(name);
    if (versions === undefined) return undefined;
    return versions.get(version) ?? [...versions.values()].find((v) => String(v.releaseCounter) === version);
  }

  /** Sessions open and created/released so far across the workers (diagnostics; shows sessions are not churned). */
  sessionStats(): Promise<{ sessions: number; created: number; released: number }> {
    return this.pool.sessionStats();
  }

  /** Requests queued or running for a version. */
  pending(key: string): number {
    return this.schedulers.get(key)?.pending ?? 0;
  }

  private batchPolicy(bundle: Bundle, inputs: IoMetadata[], outputs: IoMetadata[]): BatchPolicy | undefined {
    if (!this.o.batchingEnabled) return undefined;
    const batchable = [...inputs, ...outputs].every((m) => m.shape.length > 0 && m.shape[0] === -1);
    if (!batchable) return undefined;
    const policy = bundle.manifest.batching ?? this.o.defaultBatching;
    return policy !== undefined && policy.maxBatchSize > 1 ? policy : undefined;
  }

  /**
   * Loads a bundle's model in every worker, then retires the versions the policy no longer keeps.
   * With `staged`, the version loads next to the serving one but does not serve unversioned
   * requests (and retires nothing) until activate(). `readFrom` is where the workers read the
   * model file now, when that is not yet `bundle.modelPath` (an install still moving it into place).
   * `mapWeights` is for bundles in the agent's own store, whose files are replaced by rename and
   * never rewritten in place: a mapped file rewritten under a session would change its weights.
   * The pool maps them unless `runtime.mapWeights` is off.
   */
  async load(
    bundle: Bundle,
    options: { staged?: boolean; readFrom?: string; mapWeights?: boolean } = {},
  ): Promise<ModelVersion> {
    const { manifest } = bundle;
    const key = `${manifest.name}@${manifest.version}`;
    const policy = this.policy(manifest.name);
    if (!admits(policy, manifest.version)) {
      throw new OutpostError(
        'CONFLICT',
        `${key} is not allowed by the version policy of ${manifest.name} (${describePolicy(policy)})`,
      );
    }
    let versions = this.models.get(manifest.name);
    if (versions === undefined) {
      versions = new Map();
      this.models.set(manifest.name, versions);
    }
    const existing = versions.get(manifest.version);
    if (existing?.state === 'READY' || existing?.state === 'LOADING' || existing?.state === 'UNLOADING') {
      if (existing.bundle.manifest.model.sha256 !== manifest.model.sha256) {
        throw new OutpostError('CONFLICT', `${key} is already loaded with a different model file`);
      }
      if (existing.state !== 'UNLOADING') return existing;
      throw new OutpostError('CONFLICT', `${key} is unloading; load it again once it is unloaded`);
    }
    const entry: ModelVersion = {
      name: manifest.name,
      version: manifest.version,
      releaseCounter: manifest.releaseCounter,
      key,
      bundle,
      state: 'LOADING',
      inputs: [],
      outputs: [],
      ref: { name: manifest.name, version: manifest.version, sha256: manifest.model.sha256 },
      ...(options.staged === true ? { staged: true } : {}),
    };
    versions.set(manifest.version, entry);
    this.emit('changed', manifest.name);
    try {
      const meta = await this.pool.load(key, bundle.modelPath, {
        readFrom: options.readFrom,
        mapWeights: options.mapWeights,
      });
      entry.inputs = meta.inputs;
      entry.outputs = meta.outputs;
      entry.mappedBytes = meta.mappedBytes;
      if (meta.mapError !== undefined)
        this.log.warn(
          { model: key, reason: meta.mapError },
          'model weights loaded from the file, not mapped',
        );
    } catch (err) {
      entry.state = 'FAILED';
      entry.reason = err instanceof Error ? err.message : String(err);
      this.log.error({ model: key, err }, 'model failed to load; the previous version keeps serving');
      this.prune(manifest.name);
      this.emit('changed', manifest.name);
      throw err;
    }
    entry.batching = this.batchPolicy(bundle, entry.inputs, entry.outputs);
    this.schedulers.set(
      key,
      new VersionScheduler({
        key,
        run: (k, feeds, outputs) => this.pool.run(k, feeds, outputs),
        slots: () => this.pool.workerCount,
        batching: entry.batching,
        queueLimit: this.o.queueLimit,
        timeoutMs: this.o.requestTimeoutMs,
        onExecution: (rows, requests) =>
          this.o.observer?.execution(entry.name, entry.version, rows, requests),
      }),
    );
    // The switch: from here on, requests without a version go to the newest ready version.
    entry.state = 'READY';
    this.log.info(
      { model: key, batching: entry.batching ?? 'off', mappedBytes: entry.mappedBytes },
      'model loaded',
    );
    this.emit('changed', manifest.name);
    if (entry.staged !== true) await this.retire(manifest.name);
    return entry;
  }

  /**
   * Makes a staged version the one unversioned requests go to: one synchronous switch. Resolves
   * once it serves; `retired` resolves when the versions the policy no longer keeps have finished
   * what they had queued and released their sessions.
   */
  async activate(name: string, version: string): Promise<{ retired: Promise<void> }> {
    const entry = this.models.get(name)?.get(version);
    if (entry?.state !== 'READY')
      throw new OutpostError('MODEL_NOT_READY', `model ${name} version ${version} is not ready`);
    delete entry.staged;
    // A lower release than a loaded one would not become current(): retire the higher ones.
    for (const v of this.versions(name))
      if (v !== entry && v.state === 'READY' && v.releaseCounter > entry.releaseCounter)
        await this.unload(name, v.version);
    this.emit('changed', name);
    return { retired: this.retire(name) };
  }

  private async retire(name: string): Promise<void> {
    // A staged candidate is not counted: it is not serving yet and may still be rejected.
    const ready = this.versions(name).filter((v) => v.state === 'READY' && v.staged !== true);
    await Promise.all(toRetire(this.policy(name), ready).map((old) => this.unload(name, old.version)));
  }

  /** Stops new requests to the version, lets queued and running ones finish, then releases its sessions. */
  async unload(name: string, version: string): Promise<void> {
    const entry = this.models.get(name)?.get(version);
    if (entry === undefined)
      throw new OutpostError('MODEL_NOT_FOUND', `model ${name} version ${version} not found`);
    if (entry.state !== 'READY') return;
    entry.state = 'UNLOADING';
    this.emit('changed', name);
    const scheduler = this.schedulers.get(entry.key);
    await scheduler?.drain();
    this.schedulers.delete(entry.key);
    await this.pool.unload(entry.key);
    entry.state = 'UNAVAILABLE';
    this.log.info({ model: entry.key }, 'model unloaded');
    this.prune(name);
    this.emit('changed', name);
  }

  private prune(name: string): void {
    const versions = this.models.get(name);
    if (versions === undefined) return;
    const gone = this.versions(name).filter((v) => v.state === 'UNAVAILABLE' || v.state === 'FAILED');
    for (const old of gone.slice(HISTORY)) versions.delete(old.version);
  }

  /**
   * Checks inputs against the model (names, datatype, shape, element count), queues them on the
   * version (batching them with others where the model allows) and answers with its outputs.
   * Resolving the version and entering its queue happen in one synchronous step, so a swap
   * cannot slip in between.
   */
  infer(
    name: string,
    version: string | undefined,
    inputs: Record<string, Tensor>,
    outputs?: string[],
    options: { timeoutMs?: number } = {},
  ): Promise<InferResult> {
    const started = performance.now();
    const model = this.get(name, version);
    if (model === undefined) {
      return Promise.reject(
        new OutpostError(
          'MODEL_NOT_FOUND',
          version === undefined ? `model ${name} not found` : `model ${name} version ${version} not found`,
        ),
      );
    }
    const scheduler = this.schedulers.get(model.key);
    if (model.state !== 'READY' || scheduler === undefined)
      return this.failed(
        model,
        started,
        new OutpostError('MODEL_NOT_READY', `model ${model.key} is ${model.state}`),
      );
    let feeds: ReturnType<typeof checkInputs>;
    try {
      feeds = checkInputs(model, inputs);
      if (outputs !== undefined) {
        for (const o of outputs) {
          if (!model.outputs.some((m) => m.name === o)) {
            throw new OutpostError('INVALID_INPUT', `model ${model.key} has no output named ${o}`);
          }
        }
      }
    } catch (err) {
      return this.failed(model, started, err);
    }
    // One promise per request, settled from the scheduler's callback.
    return new Promise<InferResult>((resolve, reject) => {
      scheduler.submit(feeds, outputs, options.timeoutMs, (err, result) => {
        if (err !== undefined || result === undefined) {
          const error = err ?? new Error('no result');
          this.countFailure(model, started, error);
          reject(error);
          return;
        }
        this.observe(model, {
          ok: true,
          rows: result.rows,
          queueUs: result.queueUs,
          computeUs: result.computeUs,
          totalUs: Math.round((performance.now() - started) * 1000),
        });
        resolve({ model, outputs: result.outputs, computeUs: result.computeUs, queueUs: result.queueUs });
      });
    });
  }

  /** Counts a failed request and rejects with its error. */
  private failed(model: ModelVersion, started: number, err: unknown): Promise<never> {
    this.countFailure(model, started, err);
    return Promise.reject(err);
  }

  private countFailure(model: ModelVersion, started: number, err: unknown): void {
    this.observe(model, {
      ok: false,
      reason: reasonFor(err),
      rows: 0,
      queueUs: 0,
      computeUs: 0,
      totalUs: Math.round((performance.now() - started) * 1000),
    });
  }

  private observe(model: ModelVersion, outcome: Parameters<InferenceObserver['request']>[2]): void {
    try {
      this.o.observer?.request(model.name, model.version, outcome);
    } catch (err) {
      this.log.warn({ err }, 'inference observer failed');
    }
  }

  /** Refuses what is still queued; used on shutdown before the workers stop. */
  stop(): void {
    for (const s of this.schedulers.values()) s.close(new OutpostError('SHUTTING_DOWN'));
  }
}

export { allocate, checkInputs };
