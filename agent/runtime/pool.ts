import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { OutpostError } from '../../shared/errors.ts';
import type { Logger } from '../log.ts';
import type { FromWorker, IoMetadata, SessionOptionsWire, ToWorker, WireTensor } from './protocol.ts';

export interface RunResult {
  outputs: Record<string, WireTensor>;
  computeUs: number;
}

interface Pending {
  resolve: (m: FromWorker) => void;
  reject: (e: Error) => void;
}

type Request = ToWorker extends infer T ? (T extends { id: number } ? Omit<T, 'id'> : never) : never;

/** The compiled file sits beside this one; under tsx (dev, tests) it is the .ts source. */
function workerUrl(): URL {
  const ext = import.meta.url.endsWith('.ts') ? 'ts' : 'js';
  return new URL(`./worker.${ext}`, import.meta.url);
}

/**
 * Running from TypeScript sources (tsx: dev, tests, the demo), the worker registers tsx's
 * loader itself before importing its .ts module: Node 20 does not carry `--import` loader
 * hooks into worker threads. Built JavaScript starts the worker file directly.
 */
function createWorker(name: string): Worker {
  const url = workerUrl();
  if (!url.pathname.endsWith('.ts')) return new Worker(url, { name });
  const api = import.meta.resolve('tsx/esm/api');
  const bootstrap = `import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(url.href)}); });`;
  return new Worker(bootstrap, { name, eval: true });
}

class InferenceWorker {
  readonly worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  outstanding = 0;
  private dead: Error | undefined;

  constructor(
    readonly index: number,
    private readonly onExit: (w: InferenceWorker, err: Error) => void,
  ) {
    this.worker = createWorker(`outpost-infer-${index}`);
    this.worker.on('message', (m: FromWorker) => {
      const p = this.pending.get(m.id);
      if (p === undefined) return;
      this.pending.delete(m.id);
      p.resolve(m);
    });
    this.worker.on('error', (err) => this.fail(err));
    this.worker.on('exit', (code) =>
      this.fail(new Error(`inference worker ${index} exited with code ${code}`)),
    );
  }

  private fail(err: Error): void {
    if (this.dead !== undefined) return;
    this.dead = err;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    this.onExit(this, err);
  }

  get alive(): boolean {
    return this.dead === undefined;
  }

  request(msg: Request, transfer: ArrayBuffer[] = []): Promise<FromWorker> {
    if (this.dead !== undefined) return Promise.reject(this.dead);
    const id = this.nextId++;
    this.outstanding++;
    return new Promise<FromWorker>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ ...msg, id } as ToWorker, transfer);
    }).finally(() => {
      this.outstanding--;
    });
  }

  async terminate(): Promise<void> {
    this.dead ??= new Error('worker terminated');
    await this.worker.terminate();
  }
}

export interface LoadedModel {
  inputs: IoMetadata[];
  outputs: IoMetadata[];
}

/**
 * A fixed pool of inference workers. Every loaded model version has one long-lived session in
 * each worker, so any worker can serve any request; a request goes to the least busy worker.
 * A worker that dies is replaced and given the loaded models again.
 */
export class WorkerPool {
  private workers: InferenceWorker[] = [];
  private readonly loaded = new Map<string, { path: string }>();
  private stopping = false;
  private restarts: number[] = [];

  constructor(
    private readonly size: number,
    private readonly options: SessionOptionsWire,
    private readonly log: Logger,
  ) {}

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

  private spawn(index: number): InferenceWorker {
    return new InferenceWorker(index, (w, err) => {
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
        for (const [key, { path }] of this.loaded) {
          replacement.request({ op: 'load', key, path, options: this.options }).catch((e: unknown) => {
            this.log.error({ err: e, key }, 'reloading model in replacement worker failed');
          });
        }
      }, delay).unref();
    });
  }

  get workerCount(): number {
    return this.workers.length;
  }

  /** Loads a session for `key` in every worker; all or nothing. */
  async load(key: string, path: string): Promise<LoadedModel> {
    const replies = await Promise.allSettled(
      this.workers.map((w) => w.request({ op: 'load', key, path, options: this.options })),
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
    this.loaded.set(key, { path });
    return { inputs: first.value.inputs, outputs: first.value.outputs };
  }

  async unload(key: string): Promise<void> {
    this.loaded.delete(key);
    await Promise.allSettled(this.workers.map((w) => w.request({ op: 'unload', key })));
  }

  /** Runs on the least busy worker. The feeds' buffers are transferred: callers must not reuse them. */
  async run(key: string, feeds: Record<string, WireTensor>, outputs?: string[]): Promise<RunResult> {
    if (this.stopping) throw new OutpostError('SHUTTING_DOWN');
    let best: InferenceWorker | undefined;
    for (const w of this.workers) {
      if (w.alive && (best === undefined || w.outstanding < best.outstanding)) best = w;
    }
    if (best === undefined) throw new OutpostError('MODEL_NOT_READY', 'no inference worker is running');
    const transfer: ArrayBuffer[] = [];
    for (const t of Object.values(feeds)) {
      if (
        !Array.isArray(t.data) &&
        t.data.byteOffset === 0 &&
        t.data.byteLength === t.data.buffer.byteLength
      ) {
        transfer.push(t.data.buffer as ArrayBuffer);
      }
    }
    const reply = await best.request(
      outputs === undefined ? { op: 'run', key, feeds } : { op: 'run', key, feeds, outputs },
      transfer,
    );
    if (reply.op === 'error') {
      throw new OutpostError(
        reply.code === 'MODEL_NOT_READY' ? 'MODEL_NOT_READY' : 'INFERENCE_FAILED',
        reply.message,
      );
    }
    if (reply.op !== 'result') throw new OutpostError('INTERNAL', `unexpected worker reply ${reply.op}`);
    return { outputs: reply.outputs, computeUs: reply.computeUs };
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
    await Promise.allSettled(this.workers.map((w) => w.terminate()));
    this.workers = [];
  }
}
