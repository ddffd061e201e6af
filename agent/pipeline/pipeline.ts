import { isOutpostError } from '../../shared/errors.ts';
import type { Pipeline as PipelineSpec } from '../../shared/pipeline/schema.ts';
import type { Tensor } from '../../shared/tensor.ts';
import type { Logger } from '../log.ts';
import { RateLimitedLog } from '../log.ts';
import type { Publisher } from '../publisher.ts';
import type { ModelRegistry, ModelVersion } from '../runtime/registry.ts';
import { decodeKeyed, type KeyedReadings, PayloadError } from './payload.ts';
import { Postprocessor } from './postprocess.ts';
import { Windower } from './window.ts';

export interface PipelineCounters {
  readings: number;
  windows: number;
  predictions: number;
  events: number;
  malformed: number;
  droppedBuffer: number;
  droppedRate: number;
  errors: number;
}

export interface PipelineOptions {
  model: string;
  spec: PipelineSpec;
  labels: readonly string[] | undefined;
  registry: ModelRegistry;
  publisher: Publisher;
  log: Logger;
  /** Windows waiting for inference before new ones are dropped (and counted). */
  bufferLimit: number;
  /** A repeating warning (malformed input, drops) is logged at most once per this interval. */
  logIntervalMs?: number;
  /** Told of every inference this pipeline runs, for the runtime telemetry. */
  observe?: InferenceObserver;
  now?: () => number;
}

export type InferenceObserver = (model: string, latencyMs: number, ok: boolean) => void;

/** What became of one ingested message, once every window it completed is committed (or not). */
export interface IngestResult {
  readings: number;
  windows: number;
  /** Windows whose prediction (and event) are committed to the outbox. */
  committed: number;
  /** Windows dropped by the rate limit or because inference is behind. */
  dropped: number;
  /** Windows whose inference or commit failed. */
  failed: number;
  malformed?: string;
  /** The pipeline is stopping (shutdown or a model swap): nothing was taken. */
  stopped?: true;
}

/**
 * Runs one model's declarative pipeline: readings → per-key windows → scaling → inference →
 * postprocessing → outbox. Malformed input is counted and logged at most once a minute, never
 * thrown; when inference falls behind, windows are dropped and counted, not queued forever.
 */
export class PipelineRunner {
  readonly counters: PipelineCounters = {
    readings: 0,
    windows: 0,
    predictions: 0,
    events: 0,
    malformed: 0,
    droppedBuffer: 0,
    droppedRate: 0,
    errors: 0,
  };
  private readonly windower: Windower;
  private readonly post: Postprocessor;
  private readonly scaleOffset: Float32Array;
  private readonly scaleFactor: Float32Array;
  private readonly warnOnce: RateLimitedLog;
  private inFlight = 0;
  private readonly lastEmit = new Map<string, number>();
  private readonly now: () => number;
  private stopped = false;
  private readonly idle: Array<() => void> = [];

  constructor(private readonly o: PipelineOptions) {
    const { window } = o.spec;
    this.windower = new Windower(window.size, window.hop, window.channels);
    this.post = new Postprocessor(o.spec.postprocess, o.labels);
    this.warnOnce = new RateLimitedLog(o.log, o.logIntervalMs ?? 60_000);
    this.now = o.now ?? Date.now;
    [this.scaleOffset, this.scaleFactor] = scaling(o.spec, window.channels);
  }

  get spec(): PipelineSpec {
    return this.o.spec;
  }

  /**
   * Feeds one raw message (an MQTT payload, a pushed body or a line). Never throws: a malformed
   * message is counted and reported in the result. The promise settles once every window the
   * message completed has been committed to the outbox or has failed.
   */
  ingest(key: string, body: Buffer | string): Promise<IngestResult> {
    const result: IngestResult = { readings: 0, windows: 0, committed: 0, dropped: 0, failed: 0 };
    if (this.stopped) {
      result.stopped = true;
      return Promise.resolve(result);
    }
    const source = this.o.spec.source;
    let records: KeyedReadings[];
    try {
      records = decodeKeyed(
        source.payload,
        body,
        this.o.spec.window.channels,
        source.kind === 'mqtt' ? undefined : source.keyField,
        key,
      );
    } catch (err) {
      this.counters.malformed++;
      const reason = err instanceof PayloadError ? err.message : `decoder failed: ${String(err)}`;
      // One key per pipeline, not per sensor: sensor keys come from outside and must not grow the map.
      this.warnOnce.warn(
        'malformed',
        { model: this.o.model, key, reason, malformed: this.counters.malformed },
        'malformed sensor payload dropped',
      );
      result.malformed = reason;
      return Promise.resolve(result);
    }
    const runs: Array<Promise<void>> = [];
    for (const record of records) {
      for (const r of record.readings) {
        result.readings++;
        const run = this.push(record.key, r, result);
        if (run !== undefined) runs.push(run);
      }
    }
    if (runs.length === 0) return Promise.resolve(result);
    return Promise.all(runs).then(() => result);
  }

  /** Adds one reading; returns the window's run when the reading completed a window. */
  push(key: string, reading: readonly number[], result?: IngestResult): Promise<void> | undefined {
    if (this.stopped) return undefined;
    this.counters.readings++;
    const window = this.windower.push(key, reading);
    if (window === undefined) return undefined;
    this.counters.windows++;
    if (result !== undefined) result.windows++;
    const limit = this.o.spec.rateLimit;
    if (limit !== undefined) {
      const at = this.now();
      const last = this.lastEmit.get(key);
      if (last !== undefined && at - last < 1000 / limit) {
        this.counters.droppedRate++;
        if (result !== undefined) result.dropped++;
        return undefined;
      }
      this.lastEmit.set(key, at);
    }
    if (this.inFlight >= this.o.bufferLimit) {
      this.counters.droppedBuffer++;
      if (result !== undefined) result.dropped++;
      this.warnOnce.warn(
        'buffer',
        { model: this.o.model, dropped: this.counters.droppedBuffer },
        'inference is behind; windows dropped',
      );
      return undefined;
    }
    this.inFlight++;
    return this.run(key, window).then((ok) => {
      if (result !== undefined) {
        if (ok) result.committed++;
        else result.failed++;
      }
      this.inFlight--;
      if (this.inFlight === 0) for (const wake of this.idle.splice(0)) wake();
    });
  }

  /** Scales, infers, postprocesses and commits one window; false when any step failed. */
  private async run(key: string, window: Float32Array): Promise<boolean> {
    for (let i = 0; i < window.length; i++) {
      const c = i % this.o.spec.window.channels;
      window[i] = ((window[i] as number) - (this.scaleOffset[c] as number)) * (this.scaleFactor[c] as number);
    }
    const model = this.o.registry.current(this.o.model);
    if (model === undefined) {
      this.counters.errors++;
      this.warnOnce.warn('no-model', { model: this.o.model }, 'no ready version of the pipeline model');
      return false;
    }
    const started = performance.now();
    let inferred = false;
    try {
      const input: Tensor = { datatype: 'FP32', shape: inputShape(model, this.o.spec), data: window };
      const outputName = this.o.spec.output ?? model.outputs[0]?.name ?? '';
      const result = await this.o.registry.infer(model.name, model.version, { [this.o.spec.input]: input }, [
        outputName,
      ]);
      inferred = true;
      this.o.observe?.(this.o.model, performance.now() - started, true);
      const out = result.outputs[outputName];
      if (out === undefined || Array.isArray(out.data))
        throw new Error(`output ${outputName} is missing or not numeric`);
      const values = Array.from(out.data as ArrayLike<number | bigint>, Number);
      const { body, event } = this.post.apply(key, values);
      const full = { key, ...body };
      const writes: Array<Promise<void>> = [];
      if (this.o.spec.publish === 'all') writes.push(this.o.publisher.prediction(result.model.ref, full));
      if (event !== undefined) writes.push(this.o.publisher.event(event.type, event.body, result.model.ref));
      await Promise.all(writes);
      // Counted once committed: the counters say what the outbox holds, not what was attempted.
      if (this.o.spec.publish === 'all') this.counters.predictions++;
      if (event !== undefined) this.counters.events++;
      return true;
    } catch (err) {
      // A full inference queue is back-pressure, not a fault: the window is dropped and counted
      // like one the pipeline's own buffer refused.
      if (isOutpostError(err, 'QUEUE_FULL')) this.counters.droppedBuffer++;
      else this.counters.errors++;
      if (!inferred) this.o.observe?.(this.o.model, performance.now() - started, false);
      const code = isOutpostError(err) ? err.code : 'error';
      this.warnOnce.warn(`run:${code}`, { model: this.o.model, err }, 'pipeline inference failed');
      return false;
    }
  }

  /** Stops taking readings and waits for windows already in inference. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.inFlight === 0) return;
    await new Promise<void>((resolve) => this.idle.push(resolve));
  }
}

/** The model input's shape for one window: the batch dimension 1, the rest size × channels. */
export function inputShape(model: ModelVersion, spec: PipelineSpec): number[] {
  const meta = model.inputs.find((i) => i.name === spec.input);
  const elements = spec.window.size * spec.window.channels;
  if (meta === undefined) throw new Error(`model ${model.key} has no input ${spec.input}`);
  const shape = meta.shape.map((d, i) => (d === -1 && i === 0 ? 1 : d));
  const known = shape.filter((d) => d !== -1).reduce((a, b) => a * b, 1);
  const dynamic = shape.filter((d) => d === -1).length;
  if (dynamic === 1) return shape.map((d) => (d === -1 ? elements / known : d));
  if (dynamic > 1 || known !== elements) {
    throw new Error(
      `input ${spec.input} [${meta.shape.join(',')}] cannot take a window of ${spec.window.size}×${spec.window.channels}`,
    );
  }
  return shape;
}

function perChannel(value: number | number[], channels: number, name: string): number[] {
  if (typeof value === 'number') return new Array<number>(channels).fill(value);
  if (value.length !== channels)
    throw new Error(`scale.${name} has ${value.length} values for ${channels} channels`);
  return value;
}

function scaling(spec: PipelineSpec, channels: number): [Float32Array, Float32Array] {
  const offset = new Float32Array(channels);
  const factor = new Float32Array(channels).fill(1);
  const s = spec.scale;
  if (s === undefined) return [offset, factor];
  const a = s.kind === 'standard' ? perChannel(s.mean, channels, 'mean') : perChannel(s.min, channels, 'min');
  const b = s.kind === 'standard' ? perChannel(s.std, channels, 'std') : perChannel(s.max, channels, 'max');
  for (let c = 0; c < channels; c++) {
    offset[c] = a[c] as number;
    const span = s.kind === 'standard' ? (b[c] as number) : (b[c] as number) - (a[c] as number);
    factor[c] = span === 0 ? 1 : 1 / span;
  }
  return [offset, factor];
}
