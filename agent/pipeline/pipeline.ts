import { isOutpostError, OutpostError } from '../../shared/errors.ts';
import type { Pipeline as PipelineSpec } from '../../shared/pipeline/schema.ts';
import type { Tensor } from '../../shared/tensor.ts';
import type { Logger } from '../log.ts';
import { RateLimitedLog } from '../log.ts';
import type { Publisher } from '../publisher.ts';
import type { InferResult, ModelRegistry, ModelVersion } from '../runtime/registry.ts';
import { batchRows, inputShape, scaling } from './model-input.ts';
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

/** Tracks one ingest() call: its result settles once every window it completed has. */
interface Tracker {
  result: IngestResult;
  open: number;
  resolve: ((r: IngestResult) => void) | undefined;
}

/** A window waiting for inference, scaled already. */
interface ReadyWindow {
  key: string;
  data: Float32Array;
  track: Tracker | undefined;
}

/**
 * Runs one model's declarative pipeline: readings → per-key windows → scaling → inference →
 * postprocessing → outbox. Malformed input is counted and logged at most once a minute, never
 * thrown; when inference falls behind, windows are dropped and counted, not queued forever.
 *
 * Windows that become ready in the same turn of the event loop (a burst of sensor messages read
 * from one socket chunk) go to the model as one request of many rows where the model batches
 * (its first dimension is a batch dimension and the runtime has a batch policy for it): one
 * worker round trip, one outbox write and one promise for the lot instead of one per window.
 * Chunks are committed to the outbox in the order they were formed, so predictions keep the
 * order of their readings even when two workers finish out of order.
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
  private readonly scaled: boolean;
  private readonly warnOnce: RateLimitedLog;
  private inFlight = 0;
  private readonly lastEmit = new Map<string, number>();
  private readonly now: () => number;
  private stopped = false;
  private readonly idle: Array<() => void> = [];
  private ready: ReadyWindow[] = [];
  private flushing: NodeJS.Immediate | undefined;
  /** The last chunk's commit step: the next chunk commits after it. */
  private tail: Promise<void> = Promise.resolve();

  constructor(private readonly o: PipelineOptions) {
    const { window } = o.spec;
    this.windower = new Windower(window.size, window.hop, window.channels);
    this.post = new Postprocessor(o.spec.postprocess, o.labels);
    this.warnOnce = new RateLimitedLog(o.log, o.logIntervalMs ?? 60_000);
    this.now = o.now ?? Date.now;
    [this.scaleOffset, this.scaleFactor] = scaling(o.spec, window.channels);
    this.scaled = o.spec.scale !== undefined;
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
    const track: Tracker = { result, open: 0, resolve: undefined };
    this.accept(key, body, track);
    if (track.open === 0) return Promise.resolve(result);
    // Windows finish no earlier than the next turn (see schedule()), so this is set in time.
    return new Promise((resolve) => {
      track.resolve = resolve;
    });
  }

  /** Feeds one message whose outcome nobody waits for (the MQTT sensor bus): no result, no promise. */
  feed(key: string, body: Buffer | string): void {
    if (!this.stopped) this.accept(key, body, undefined);
  }

  private accept(key: string, body: Buffer | string, track: Tracker | undefined): void {
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
      if (track !== undefined) track.result.malformed = reason;
      return;
    }
    for (const record of records) {
      for (const r of record.readings) this.push(record.key, r, track);
    }
  }

  /** Adds one reading; a window it completes joins this turn's inference chunk. */
  private push(key: string, reading: readonly number[], track: Tracker | undefined): void {
    this.counters.readings++;
    if (track !== undefined) track.result.readings++;
    const window = this.windower.push(key, reading);
    if (window === undefined) return;
    this.counters.windows++;
    if (track !== undefined) track.result.windows++;
    const limit = this.o.spec.rateLimit;
    if (limit !== undefined) {
      const at = this.now();
      const last = this.lastEmit.get(key);
      if (last !== undefined && at - last < 1000 / limit) {
        this.counters.droppedRate++;
        if (track !== undefined) track.result.dropped++;
        return;
      }
      this.lastEmit.set(key, at);
    }
    if (this.inFlight >= this.o.bufferLimit) {
      this.counters.droppedBuffer++;
      if (track !== undefined) track.result.dropped++;
      this.warnOnce.warn(
        'buffer',
        { model: this.o.model, dropped: this.counters.droppedBuffer },
        'inference is behind; windows dropped',
      );
      return;
    }
    this.inFlight++;
    if (track !== undefined) track.open++;
    if (this.scaled) this.scale(window);
    this.ready.push({ key, data: window, track });
    // setImmediate, not a microtask: it runs after every message read in this turn has been fed.
    this.flushing ??= setImmediate(() => this.flush());
  }

  private scale(window: Float32Array): void {
    const channels = this.o.spec.window.channels;
    for (let i = 0; i < window.length; i++) {
      const c = i % channels;
      window[i] = ((window[i] as number) - (this.scaleOffset[c] as number)) * (this.scaleFactor[c] as number);
    }
  }

  /** Sends this turn's windows to the model, as few requests as its batch policy allows. */
  private flush(): void {
    this.flushing = undefined;
    const windows = this.ready;
    if (windows.length === 0) return;
    this.ready = [];
    const model = this.o.registry.current(this.o.model);
    if (model === undefined) {
      this.counters.errors += windows.length;
      this.warnOnce.warn('no-model', { model: this.o.model }, 'no ready version of the pipeline model');
      this.finish(windows, undefined);
      return;
    }
    let shape: number[];
    try {
      shape = inputShape(model, this.o.spec);
    } catch (err) {
      this.fail(windows, err, performance.now());
      return;
    }
    const rows = batchRows(model, this.o.spec);
    for (let i = 0; i < windows.length; i += rows) this.run(model, shape, windows.slice(i, i + rows));
  }

  /** Infers one chunk of windows (one request), then commits its results after the chunk before it. */
  private run(model: ModelVersion, shape: number[], windows: ReadyWindow[]): void {
    const started = performance.now();
    const n = windows.length;
    let data: Float32Array;
    if (n === 1) data = (windows[0] as ReadyWindow).data;
    else {
      const width = (windows[0] as ReadyWindow).data.length;
      data = new Float32Array(n * width);
      for (let i = 0; i < n; i++) data.set((windows[i] as ReadyWindow).data, i * width);
    }
    const outputName = this.o.spec.output ?? model.outputs[0]?.name ?? '';
    const input: Tensor = { datatype: 'FP32', shape: n === 1 ? shape : [n, ...shape.slice(1)], data };
    const inferred = this.o.registry.infer(model.name, model.version, { [this.o.spec.input]: input }, [
      outputName,
    ]);
    const settled = inferred.then(
      (r) => r,
      (err: unknown) => (err instanceof Error ? err : new Error(String(err))),
    );
    // Only the hand-over to the outbox waits for the previous chunk; the commits to disk of
    // consecutive chunks still share fsyncs.
    this.tail = this.tail.then(() => settled).then((r) => this.conclude(windows, r, outputName, started));
  }

  /** A chunk's outcome: its results go to the outbox, or its failure to the counters. Never throws. */
  private conclude(
    windows: ReadyWindow[],
    r: InferResult | Error,
    outputName: string,
    started: number,
  ): void {
    if (r instanceof Error) {
      this.fail(windows, r, started);
      return;
    }
    try {
      this.o.observe?.(this.o.model, performance.now() - started, true);
      this.commit(windows, r, outputName).catch((err: unknown) => this.fail(windows, err, started, true));
    } catch (err) {
      this.fail(windows, err, started, true);
    }
  }

  /**
   * Postprocesses a chunk's output rows and hands them to the outbox in one call. Returns the
   * promise of the commit (the windows are finished when it settles).
   */
  private commit(windows: ReadyWindow[], result: InferResult, outputName: string): Promise<void> {
    const out = result.outputs[outputName];
    if (out === undefined || Array.isArray(out.data))
      throw new Error(`output ${outputName} is missing or not numeric`);
    const n = windows.length;
    const data = out.data as ArrayLike<number | bigint>;
    if (data.length % n !== 0 || (n > 1 && out.shape[0] !== n))
      throw new Error(`output ${outputName} has shape [${out.shape.join(',')}] for ${n} windows`);
    const width = data.length / n;
    const publishAll = this.o.spec.publish === 'all';
    const bodies: Array<Record<string, unknown>> = [];
    // Threshold events are rare: kept with the window that raised them.
    const events: Array<{ window: number; written: Promise<unknown> }> = [];
    for (let i = 0; i < n; i++) {
      const w = windows[i] as ReadyWindow;
      const values = new Array<number>(width);
      for (let j = 0; j < width; j++) values[j] = Number(data[i * width + j]);
      const { body, event } = this.post.apply(w.key, values);
      if (publishAll) bodies.push({ key: w.key, ...body });
      if (event !== undefined) {
        const written = this.o.publisher.event(event.type, event.body, result.model.ref);
        events.push({ window: i, written: written.then(() => true) });
      }
    }
    const predictions = publishAll ? this.o.publisher.predictions(result.model.ref, bodies) : undefined;
    return Promise.all([predictions, Promise.allSettled(events.map((e) => e.written))]).then(
      ([stored, written]) => {
        const ok = new Array<boolean>(n).fill(true);
        let refused = 0;
        if (stored !== undefined) {
          for (let i = 0; i < n; i++) {
            if (stored[i] === true) this.counters.predictions++;
            else {
              ok[i] = false;
              refused++;
            }
          }
        }
        let lost: unknown;
        for (let e = 0; e < events.length; e++) {
          const r = written[e];
          if (r?.status === 'fulfilled') this.counters.events++;
          else {
            lost = r?.reason;
            ok[(events[e] as { window: number }).window] = false;
          }
        }
        const failed = ok.filter((x) => !x).length;
        if (failed > 0) {
          this.counters.errors += failed;
          const err =
            lost ?? new OutpostError('OUTBOX_FULL', `${refused} predictions did not fit the outbox`);
          const code = isOutpostError(err) ? err.code : 'error';
          this.warnOnce.warn(`run:${code}`, { model: this.o.model, err }, 'pipeline results not stored');
        }
        this.finish(windows, ok);
      },
    );
  }

  private fail(windows: ReadyWindow[], err: unknown, started: number, inferred = false): void {
    // A full inference queue is back-pressure, not a fault: the windows are dropped and counted
    // like ones the pipeline's own buffer refused.
    if (isOutpostError(err, 'QUEUE_FULL')) this.counters.droppedBuffer += windows.length;
    else this.counters.errors += windows.length;
    if (!inferred) this.o.observe?.(this.o.model, performance.now() - started, false);
    const code = isOutpostError(err) ? err.code : 'error';
    this.warnOnce.warn(`run:${code}`, { model: this.o.model, err }, 'pipeline inference failed');
    this.finish(windows, undefined);
  }

  /** Settles windows: `ok[i]` says whether window i was committed; undefined: none was. */
  private finish(windows: ReadyWindow[], ok: boolean[] | undefined): void {
    for (let i = 0; i < windows.length; i++) {
      const track = (windows[i] as ReadyWindow).track;
      if (track === undefined) continue;
      if (ok?.[i] === true) track.result.committed++;
      else track.result.failed++;
      if (--track.open === 0) track.resolve?.(track.result);
    }
    this.inFlight -= windows.length;
    if (this.inFlight === 0) for (const wake of this.idle.splice(0)) wake();
  }

  /** Stops taking readings and waits for windows already in inference. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.inFlight === 0) return;
    await new Promise<void>((resolve) => this.idle.push(resolve));
  }
}
