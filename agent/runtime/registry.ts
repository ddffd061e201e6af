import { EventEmitter } from 'node:events';
import type { Bundle } from '../../shared/bundle/read.ts';
import type { ModelRef } from '../../shared/envelope.ts';
import { OutpostError } from '../../shared/errors.ts';
import { allocate, elementCount, type Tensor } from '../../shared/tensor.ts';
import type { Logger } from '../log.ts';
import type { WorkerPool } from './pool.ts';
import type { IoMetadata, WireTensor } from './protocol.ts';

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
  /** Loaded and READY but not yet serving unversioned requests (an update under its sample check). */
  staged?: boolean;
}

export interface InferResult {
  model: ModelVersion;
  outputs: Record<string, Tensor>;
  computeUs: number;
}

export interface RegistryEvents {
  changed: [name: string];
}

/**
 * The models the agent serves: several names, several versions each. A new version is loaded
 * next to the serving one and only then made the default, so a swap fails no request; a
 * version that fails to load leaves the old one serving.
 */
export class ModelRegistry extends EventEmitter<RegistryEvents> {
  private readonly models = new Map<string, Map<string, ModelVersion>>();

  constructor(
    private readonly pool: WorkerPool,
    private readonly log: Logger,
    private readonly keepVersions: number,
  ) {
    super();
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

  /** The version requests without a version go to: the newest READY one that is not staged. */
  current(name: string): ModelVersion | undefined {
    return this.versions(name).find((v) => v.state === 'READY' && v.staged !== true);
  }

  /** Finds a version by its semver string or its release counter (TF Serving's integer versions). */
  get(name: string, version?: string): ModelVersion | undefined {
    if (version === undefined || version === '') return this.current(name);
    const versions = this.models.get(name);
    if (versions === undefined) return undefined;
    return versions.get(version) ?? [...versions.values()].find((v) => String(v.releaseCounter) === version);
  }

  /**
   * Loads a bundle's model in every worker, then retires versions beyond the ones kept.
   * With `staged`, the version loads next to the serving one but does not serve unversioned
   * requests (and retires nothing) until activate().
   */
  async load(bundle: Bundle, options: { staged?: boolean } = {}): Promise<ModelVersion> {
    const { manifest } = bundle;
    const key = `${manifest.name}@${manifest.version}`;
    let versions = this.models.get(manifest.name);
    if (versions === undefined) {
      versions = new Map();
      this.models.set(manifest.name, versions);
    }
    const existing = versions.get(manifest.version);
    if (existing?.state === 'READY' || existing?.state === 'LOADING') {
      if (existing.bundle.manifest.model.sha256 !== manifest.model.sha256) {
        throw new OutpostError('CONFLICT', `${key} is already loaded with a different model file`);
      }
      return existing;
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
      const meta = await this.pool.load(key, bundle.modelPath);
      entry.inputs = meta.inputs;
      entry.outputs = meta.outputs;
      entry.state = 'READY';
      this.log.info({ model: key }, 'model loaded');
    } catch (err) {
      entry.state = 'FAILED';
      entry.reason = err instanceof Error ? err.message : String(err);
      this.log.error({ model: key, err }, 'model failed to load; previous version keeps serving');
      this.emit('changed', manifest.name);
      throw err;
    }
    this.emit('changed', manifest.name);
    if (entry.staged !== true) await this.retireOld(manifest.name);
    return entry;
  }

  /** Makes a staged version the one unversioned requests go to: one synchronous switch. */
  async activate(name: string, version: string): Promise<void> {
    const entry = this.models.get(name)?.get(version);
    if (entry?.state !== 'READY')
      throw new OutpostError('MODEL_NOT_READY', `model ${name} version ${version} is not ready`);
    delete entry.staged;
    // A lower release than a loaded one would not become current(): retire the higher ones.
    for (const v of this.versions(name))
      if (v !== entry && v.state === 'READY' && v.releaseCounter > entry.releaseCounter)
        await this.unload(name, v.version);
    this.emit('changed', name);
    await this.retireOld(name);
  }

  private async retireOld(name: string): Promise<void> {
    const ready = this.versions(name).filter((v) => v.state === 'READY');
    for (const old of ready.slice(this.keepVersions)) await this.unload(name, old.version);
  }

  async unload(name: string, version: string): Promise<void> {
    const entry = this.models.get(name)?.get(version);
    if (entry === undefined)
      throw new OutpostError('MODEL_NOT_FOUND', `model ${name} version ${version} not found`);
    entry.state = 'UNLOADING';
    this.emit('changed', name);
    await this.pool.unload(entry.key);
    entry.state = 'UNAVAILABLE';
    this.emit('changed', name);
  }

  /** Checks inputs against the model (names, datatype, shape, element count) and runs it. */
  async infer(
    name: string,
    version: string | undefined,
    inputs: Record<string, Tensor>,
    outputs?: string[],
  ): Promise<InferResult> {
    const model = this.get(name, version);
    if (model === undefined) {
      throw new OutpostError(
        'MODEL_NOT_FOUND',
        version === undefined ? `model ${name} not found` : `model ${name} version ${version} not found`,
      );
    }
    if (model.state !== 'READY')
      throw new OutpostError('MODEL_NOT_READY', `model ${model.key} is ${model.state}`);
    const feeds = checkInputs(model, inputs);
    if (outputs !== undefined) {
      for (const o of outputs) {
        if (!model.outputs.some((m) => m.name === o)) {
          throw new OutpostError('INVALID_INPUT', `model ${model.key} has no output named ${o}`);
        }
      }
    }
    const result = await this.pool.run(model.key, feeds, outputs);
    return { model, outputs: result.outputs, computeUs: result.computeUs };
  }
}

export function checkInputs(model: ModelVersion, inputs: Record<string, Tensor>): Record<string, WireTensor> {
  const feeds: Record<string, WireTensor> = {};
  for (const meta of model.inputs) {
    const t = inputs[meta.name];
    if (t === undefined) throw new OutpostError('INVALID_INPUT', `input ${meta.name} is missing`);
    if (t.datatype !== meta.datatype) {
      throw new OutpostError(
        'INVALID_INPUT',
        `input ${meta.name} must be ${meta.datatype}, got ${t.datatype}`,
      );
    }
    if (
      t.shape.length !== meta.shape.length ||
      t.shape.some((d, i) => meta.shape[i] !== -1 && meta.shape[i] !== d)
    ) {
      throw new OutpostError(
        'INVALID_INPUT',
        `input ${meta.name} has shape [${t.shape.join(',')}], model expects [${meta.shape.join(',')}]`,
      );
    }
    const n = elementCount(t.shape);
    if (t.data.length !== n) {
      throw new OutpostError(
        'INVALID_INPUT',
        `input ${meta.name} has ${t.data.length} elements, shape [${t.shape.join(',')}] needs ${n}`,
      );
    }
    feeds[meta.name] = { datatype: t.datatype, shape: t.shape, data: t.data };
  }
  for (const name of Object.keys(inputs)) {
    if (!model.inputs.some((m) => m.name === name)) {
      throw new OutpostError('INVALID_INPUT', `model ${model.key} has no input named ${name}`);
    }
  }
  return feeds;
}

export { allocate };
