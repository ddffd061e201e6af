import { isOutpostError } from '../../shared/errors.ts';
import type { Pipeline as PipelineSpec } from '../../shared/pipeline/schema.ts';
import type { Tensor } from '../../shared/tensor.ts';
import type { Logger } from '../log.ts';
import { RateLimitedLog } from '../log.ts';
import type { Publisher } from '../publisher.ts';
import type { ModelRegistry, ModelVersion } from '../runtime/registry.ts';
import { decodePayload, PayloadError, type Reading } from './payload.ts';
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
  now?: () => number;
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
    this.warnOnce = new RateLimitedLog(o.log);
    this.now = o.now ?? Date.now;
    [this.scaleOffset, this.scaleFactor] = scaling(o.spec, window.channels);
  }

  get spec(): PipelineSpec {
    return this.o.spec;
  }

  /** Feeds one raw message (an MQTT payload, a pushed body or a line). */
  ingest(key: string, body: Buffer | string): void {
    let readings: Reading[];
    try {
      readings = decodePayload(this.o.spec.source.payload, body, this.o.spec.window.channels);
    } catch (err) {
      this.counters.malformed++;
      if (!(err instanceof PayloadError)) throw err;
      this.warnOnce.warn(
        `malformed:${key}`,
        { model: this.o.model, key, reason: err.message, malformed: this.counters.malformed },
        'malformed sensor payload dropped',
      );
      return;
    }
    for (const r of readings) this.push(key, r);
  }

  push(key: string, reading: readonly number[]): void {
    if (this.stopped) return;
    this.counters.readings++;
    const window = this.windower.push(key, reading);
    if (window === undefined) return;
    this.counters.windows++;
    const limit = this.o.spec.rateLimit;
    if (limit !== undefined) {
      const at = this.now();
      const last = this.lastEmit.get(key);
      if (last !== undefined && at - last < 1000 / limit) {
        this.counters.droppedRate++;
        return;
      }
      this.lastEmit.set(key, at);
    }
    if (this.inFlight >= this.o.bufferLimit) {
      this.counters.droppedBuffer++;
      this.warnOnce.warn(
        'buffer',
        { model: this.o.model, dropped: this.counters.droppedBuffer },
        'inference is behind; windows dropped',
      );
      return;
    }
    this.inFlight++;
    void this.run(key, window).finally(() => {
      this.inFlight--;
      if (this.inFlight === 0) for (const wake of this.idle.splice(0)) wake();
    });
  }

  private async run(key: string, window: Float32Array): Promise<void> {
    for (let i = 0; i < window.length; i++) {
      const c = i % this.o.spec.window.channels;
      window[i] = ((window[i] as number) - (this.scaleOffset[c] as number)) * (this.scaleFactor[c] as number);
    }
    const model = this.o.registry.current(this.o.model);
    if (model === undefined) {
      this.counters.errors++;
      this.warnOnce.warn('no-model', { model: this.o.model }, 'no ready version of the pipeline model');
      return;
    }
    try {
      const input: Tensor = { datatype: 'FP32', shape: inputShape(model, this.o.spec), data: window };
      const outputName = this.o.spec.output ?? model.outputs[0]?.name ?? '';
      const result = await this.o.registry.infer(model.name, model.version, { [this.o.spec.input]: input }, [
        outputName,
      ]);
      const out = result.outputs[outputName];
      if (out === undefined || Array.isArray(out.data))
        throw new Error(`output ${outputName} is missing or not numeric`);
      const values = Array.from(out.data as ArrayLike<number | bigint>, Number);
      const { body, event } = this.post.apply(key, values);
      const full = { key, ...body };
      const writes: Array<Promise<void>> = [];
      if (this.o.spec.publish === 'all') {
        this.counters.predictions++;
        writes.push(this.o.publisher.prediction(result.model.ref, full));
      }
      if (event !== undefined) {
        this.counters.events++;
        writes.push(this.o.publisher.event(event.type, event.body, result.model.ref));
      }
      await Promise.all(writes);
    } catch (err) {
      this.counters.errors++;
      const code = isOutpostError(err) ? err.code : 'error';
      this.warnOnce.warn(`run:${code}`, { model: this.o.model, err }, 'pipeline inference failed');
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
