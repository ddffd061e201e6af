import { availableParallelism } from 'node:os';
import type { Worker } from 'node:worker_threads';
import { OutpostError } from '../../shared/errors.ts';
import type { Logger } from '../log.ts';
import { startWorkerThread } from '../worker-thread.ts';
import {
  type FromWorker,
  type IoMetadata,
  postable,
  type SessionOptionsWire,
  type ToWorker,
  type WireTensor,
  type WorkerStart,
} from './protocol.ts';

export interface RunResult {
  outputs: Record<string, WireTensor>;
  computeUs: number;
}

/** How long stop() lets a worker release its sessions before ending it anyway. */
const CLOSE_GRACE_MS = 2_000;

/** Called once with the worker's reply, or with the error that ended the worker. */
type Reply = (reply: FromWorker | undefined, err: Error | undefined) => void;

export interface PoolOptions {
  /**
   * Nice value of the inference threads (0–19, 0: the process's own). Above the main thread's,
   * the main thread (HTTP, MQTT, control) wins the CPU while inference saturates the cores.
   */
  workerNice?: number;
  /** `runtime.mapWeights` (default on): off, every model is read as a file. */
  mapWeights?: boolean;
}

type Request = ToWorker extends infer T ? (T extends { id: number } ? Omit<T, 'id'> : never) : never;

class InferenceWorker {
  readonly worker: Worker;
  private readonly pending = new Map<number, Reply>();
  private nextId = 1;
  outstanding = 0;
  private dead: Error | undefined;
  /** The worker's OS thread and the nice value it reported at start (Linux). */
  thread: { tid: number | undefined; nice: number | undefined } | undefined;

  constructor(
    readonly index: number,
    start: WorkerStart,
    private readonly onExit: (w: InferenceWorker, err: Error) => void,
    onStarted: (w: InferenceWorker, m: Extract<FromWorker, { op: 'started' }>) => void,
  ) {
    this.worker = startWorkerThread(import.meta.url, 'worker', `outpost-infer-${index}`, start);
    this.worker.on('message', (m: FromWorker) => {
      if (m.op === 'started') {
        this.thread = { tid: m.tid, nice: m.nice };
        onStarted(this, m);
        return;
      }
      const done = this.pending.get(m.id);
      if (done === undefined) return;
      this.pending.delete(m.id);
      this.outstanding--;
      done(m, undefined);
    });
    this.worker.on('error', (err) => this.fail(err));
    this.worker.on('exit', (code) =>
      this.fail(new Error(`inference worker ${index} exited with code ${code}`)),
    );
  }

  private fail(err: Error): void {
    if (this.dead !== undefined) return;
    this.dead = err;
    for (const done of this.pending.values()) done(undefined, err);
    this.pending.clear();
    this.outstanding = 0;
    this.onExit(this, err);
  }

  get alive(): boolean {
    return this.dead === undefined;
  }

  /**
   * Sends a message built for this call (its id is set here) and calls `done` with the answer.
   * Posted at once: the worker starts on it while this thread parses the next request. Holding
   * the messages of one event-loop turn back for a single post saved a little CPU per request
   * but let the worker sit idle behind the whole turn; throughput at 8 and 32 clients was
   * 6–18% lower that way.
   */
  send(msg: Request, transfer: ArrayBuffer[], done: Reply): void {
    if (this.dead !== undefined) {
      done(undefined, this.dead);
      return;
    }
    const id = this.nextId++;
    (msg as ToWorker).id = id;
    this.outstanding++;
    this.pending.set(id, done);
    this.worker.postMessage(msg, transfer);
  }

  request(msg: Request): Promise<FromWorker> {
    return new Promise<FromWorker>((resolve, reject) => {
      this.send(msg, [], (reply, err) => (reply === undefined ? reject(err) : resolve(reply)));
    });
  }

  async terminate(): Promise<void> {
    this.dead ??= new Error('worker terminated');
    await this.worker.terminate();
  }

  /**
   * Releases the worker's sessions, then ends it. A worker still busy after `graceMs` (a long
   * run) is ended anyway.
   */
  async close(graceMs: number): Promise<void> {
    if (this.dead === undefined) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        this.request({ op: 'close' }).catch(() => undefined),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, graceMs);
        }),
      ]);
      clearTimeout(timer);
    }
    await this.terminate();
  }
}

export interface LoadedModel {
  inputs: IoMetadata[];
  outputs: IoMetadata[];
  /** Weight bytes each worker maps from the model file rather than holds (0: all copied). */
  mappedBytes: number;
  /** Why weights that were to be mapped were loaded from the file instead. */
  mapError?: string;
}

export interface LoadOptions {
  /** Where the workers read the model now, when that is not yet its path (an install moving it into place). */
  readFrom?: string | undefined;
  /**
   * The file is the agent's own, replaced only by rename and never rewritten in place, so its
   * aligned large weights may be mapped (see the worker's `load`) when the pool allows it.
   */
  mapWeights?: boolean | undefined;
}

/**
 * A fixed pool of inference workers. Every loaded model version has one long-lived session in
 * each worker, so any worker can serve any request; a request goes to the least busy worker.
 * A worker that dies is replaced and given the loaded models again.
 */
export class WorkerPool {
  private workers: InferenceWorker[] = [];
  private readonly loaded = new Map<string, { path: string; mapWeights: boolean }>();
  private stopping = false;
  private restarts: number[] = [];

  private readonly workerStart: WorkerStart;
  /** `runtime.mapWeights`: off, no model is mapped whatever its load asks. */
  private readonly mapWeights: boolean;
  private priorityLogged = false;

  constructor(
    private readonly size: number,
    private readonly options: SessionOptionsWire,
    private readonly log: Logger,
    pool: PoolOptions = {},
  ) {
    this.workerStart = { nice: pool.workerNice ?? 0 };
    this.mapWeights = pool.mapWeights !== false;
  }

  /**
   * Without a configured count: one worker per core but one. The main thread (HTTP, MQTT,
   * SQLite, JSON) needs a core of its own; a worker beyond that only competes with it for CPU
   * and costs ~9 MiB (an isolate and a session). A box with one or two cores gets one worker.
   */
  static defaultSize(configured: number, cores = availableParallelism()): number {
    return configured > 0 ? configured : Math.max(1, cores - 1);
  }

  start(): void {
    for (let i = 0; i < this.size; i++) this.workers.push(this.spawn(i));
  }

  private started(m: Extract<FromWorker, { op: 'started' }>): void {
    if (this.workerStart.nice === 0 || this.priorityLogged) return;
    this.priorityLogged = true;
    if (m.error !== undefined || m.nice !== this.workerStart.nice) {
      this.log.warn(
        { wanted: this.workerStart.nice, nice: m.nice, reason: m.error },
        'could not lower the priority of the inference threads; they run at the process priority',
      );
    } else {
      this.log.info({ nice: m.nice }, 'inference threads run at a lower priority than the main thread');
    }
  }

  /** The inference threads' OS thread ids and nice values (diagnostics; undefined until a worker reports). */
  threads(): Array<{ tid: number | undefined; nice: number | undefined } | undefined> {
    return this.workers.map((w) => w.thread);
  }

  private spawn(index: number): InferenceWorker {
    return new InferenceWorker(
      index,
      this.workerStart,
      (w, err) => {
        if (this.stopping) return;
        // A worker that dies at once again (a bad native build, a model that crashes the
        // runtime) must not become a hot respawn loop: back off, and give up after a burst.
        const now = Date.now();
        this.restarts = this.restarts.filter((t) => now - t < 60_000);
        this.restarts.push(now);
        if (this.restarts.length > 5) {
          this.log.fatal({ err, worker: index }, 'inference workers keep dying; not restarting them');
          return;
        }
        const delay = Math.min(10_000, 100 * 2 ** (this.restarts.length - 1));
        this.log.error({ err, worker: index, restartInMs: delay }, 'inference worker died; replacing it');
        setTimeout(() => {
          if (this.stopping) return;
          const replacement = this.spawn(index);
          this.workers[this.workers.indexOf(w)] = replacement;
          for (const [key, { path, mapWeights }] of this.loaded) {
            replacement
              .request({ op: 'load', key, path, options: this.options, mapWeights })
              .catch((e: unknown) => {
                this.log.error({ err: e, key }, 'reloading model in replacement worker failed');
              });
          }
        }, delay).unref();
      },
      (_w, m) => this.started(m),
    );
  }

  get workerCount(): number {
    return this.workers.length;
  }

  /**
   * Loads a session for `key` in every worker; all or nothing. The workers read `readFrom`
   * (the file before its directory is renamed into place) when given; `path` is where the model
   * stays, and what a replacement worker loads.
   */
  async load(key: string, path: string, options: LoadOptions = {}): Promise<LoadedModel> {
    const mapWeights = this.mapWeights && options.mapWeights === true;
    const readFrom = options.readFrom ?? path;
    const replies = await Promise.allSettled(
      this.workers.map((w) =>
        w.request({ op: 'load', key, path: readFrom, options: this.options, mapWeights }),
      ),
    );
    const failure = replies.find((r) => r.status === 'rejected' || r.value.op === 'error');
    if (failure !== undefined) {
      await this.unload(key);
      const message =
        failure.status === 'rejected'
          ? String(failure.reason)
          : failure.value.op === 'error'
            ? failure.value.message
            : 'unknown';
      throw new OutpostError('MODEL_LOAD_FAILED', `loading ${key} failed: ${message}`);
    }
    const first = replies[0];
    if (first === undefined || first.status !== 'fulfilled' || first.value.op !== 'loaded') {
      throw new OutpostError('MODEL_LOAD_FAILED', `loading ${key} failed: no worker answered`);
    }
    this.loaded.set(key, { path, mapWeights });
    const { inputs, outputs, mappedBytes, mapError } = first.value;
    return { inputs, outputs, mappedBytes, ...(mapError === undefined ? {} : { mapError }) };
  }

  async unload(key: string): Promise<void> {
    this.loaded.delete(key);
    await Promise.allSettled(this.workers.map((w) => w.request({ op: 'unload', key })));
  }

  /** Runs on the least busy worker. The feeds' large buffers are transferred: callers must not reuse them. */
  run(key: string, feeds: Record<string, WireTensor>, outputs?: string[]): Promise<RunResult> {
    // One promise per run and no intermediate ones: this is the hot path of every inference.
    return new Promise((resolve, reject) => this.runWith(key, feeds, outputs, resolve, reject));
  }

  private runWith(
    key: string,
    feeds: Record<string, WireTensor>,
    outputs: string[] | undefined,
    resolve: (r: RunResult) => void,
    reject: (e: Error) => void,
  ): void {
    if (this.stopping) {
      reject(new OutpostError('SHUTTING_DOWN'));
      return;
    }
    let best: InferenceWorker | undefined;
    for (const w of this.workers) {
      if (w.alive && (best === undefined || w.outstanding < best.outstanding)) best = w;
    }
    if (best === undefined) {
      reject(new OutpostError('MODEL_NOT_READY', 'no inference worker is running'));
      return;
    }
    const transfer: ArrayBuffer[] = [];
    for (const name in feeds) {
      const t = feeds[name] as WireTensor;
      t.data = postable(t.data, transfer);
    }
    best.send(
      outputs === undefined ? { op: 'run', key, feeds } : { op: 'run', key, feeds, outputs },
      transfer,
      (reply, err) => {
        if (reply === undefined) reject(err ?? new Error('no reply'));
        else if (reply.op === 'result') resolve({ outputs: reply.outputs, computeUs: reply.computeUs });
        else if (reply.op === 'error')
          reject(
            new OutpostError(
              reply.code === 'MODEL_NOT_READY' ? 'MODEL_NOT_READY' : 'INFERENCE_FAILED',
              reply.message,
            ),
          );
        else reject(new OutpostError('INTERNAL', `unexpected worker reply ${reply.op}`));
      },
    );
  }

  /** Sessions open now and created/released over the workers' lifetime, summed over the pool. */
  async sessionStats(): Promise<{ sessions: number; created: number; released: number }> {
    const total = { sessions: 0, created: 0, released: 0 };
    const replies = await Promise.all(
      this.workers.filter((w) => w.alive).map((w) => w.request({ op: 'stats' })),
    );
    for (const r of replies) {
      if (r.op !== 'stats') continue;
      total.sessions += r.sessions;
      total.created += r.created;
      total.released += r.released;
    }
    return total;
  }

  /** Requests in flight across the pool. */
  get outstanding(): number {
    return this.workers.reduce((n, w) => n + w.outstanding, 0);
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.allSettled(this.workers.map((w) => w.close(CLOSE_GRACE_MS)));
    this.workers = [];
  }
}
