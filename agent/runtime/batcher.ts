import { performance } from 'node:perf_hooks';
import { OutpostError } from '../../shared/errors.ts';
import { concatRows, sliceRows, type Tensor } from '../../shared/tensor.ts';
import type { RunResult } from './pool.ts';
import type { WireTensor } from './protocol.ts';

export interface BatchPolicy {
  maxBatchSize: number;
  maxQueueDelayMs: number;
}

export interface SchedulerOptions {
  key: string;
  run: (key: string, feeds: Record<string, WireTensor>, outputs?: string[]) => Promise<RunResult>;
  /** Executions of this version allowed at once (the pool's worker count, read each time). */
  slots: () => number;
  /** Undefined: every request runs on its own. */
  batching: BatchPolicy | undefined;
  /** Requests waiting or running before new ones are refused. */
  queueLimit: number;
  timeoutMs: number;
  onExecution?: (rows: number, requests: number) => void;
}

export interface ScheduledResult {
  outputs: Record<string, Tensor>;
  rows: number;
  queueUs: number;
  computeUs: number;
}

interface Item {
  feeds: Record<string, Tensor>;
  outputs: string[] | undefined;
  rows: number;
  /** Requests batch together only when everything but the first dimension matches. */
  shapeKey: string;
  enqueuedAt: number;
  state: 'queued' | 'running' | 'done';
  timer: NodeJS.Timeout | undefined;
  resolve: (r: ScheduledResult) => void;
  reject: (e: Error) => void;
}

/** Numbers the requests that can only run alone, to give each a batch key of its own. */
let loners = 0;

function rowsOf(feeds: Record<string, Tensor>): { rows: number; shapeKey: string } {
  let rows: number | undefined;
  const parts: string[] = [];
  for (const name of Object.keys(feeds).sort()) {
    const t = feeds[name] as Tensor;
    const first = t.shape[0] ?? 1;
    // Inputs that disagree on their row count cannot be joined with anything.
    if (rows !== undefined && rows !== first) return { rows: first, shapeKey: `alone:${++loners}` };
    rows = first;
    parts.push(`${name}:${t.datatype}:${t.shape.slice(1).join('x')}`);
  }
  return { rows: rows ?? 1, shapeKey: parts.join('|') };
}

/**
 * The request queue of one model version. Every request passes through it, so the queue bound,
 * the per-request timeout and the queue-time figures hold for all models. With a batch policy
 * (the model's first dimension is dynamic), waiting requests with the same row shape are
 * joined into one `session.run` of up to `maxBatchSize` rows: a batch leaves when it is full,
 * or when its oldest request has waited `maxQueueDelayMs` and a worker is free. While every
 * worker is busy, batches keep growing, which is where batching pays off.
 */
export class VersionScheduler {
  private readonly queue: Item[] = [];
  private executing = 0;
  private executingRequests = 0;
  private timer: NodeJS.Timeout | undefined;
  private timerAt = 0;
  private draining = false;
  private idleWaiters: Array<() => void> = [];

  constructor(private readonly o: SchedulerOptions) {}

  /** Requests accepted and not yet answered by the model: waiting plus running. */
  get pending(): number {
    return this.queue.length + this.executingRequests;
  }

  get batching(): BatchPolicy | undefined {
    return this.o.batching;
  }

  submit(feeds: Record<string, Tensor>, outputs?: string[], timeoutMs?: number): Promise<ScheduledResult> {
    if (this.draining)
      return Promise.reject(new OutpostError('MODEL_NOT_READY', `${this.o.key} is unloading`));
    if (this.pending >= this.o.queueLimit) {
      return Promise.reject(
        new OutpostError('QUEUE_FULL', `${this.o.key} has ${this.pending} requests waiting; try again later`),
      );
    }
    const timeout = Math.min(timeoutMs ?? this.o.timeoutMs, this.o.timeoutMs);
    return new Promise<ScheduledResult>((resolve, reject) => {
      const { rows, shapeKey } = rowsOf(feeds);
      const item: Item = {
        feeds,
        outputs,
        rows,
        shapeKey,
        enqueuedAt: performance.now(),
        state: 'queued',
        timer: undefined,
        resolve,
        reject,
      };
      if (timeout > 0) item.timer = setTimeout(() => this.expire(item, timeout), timeout);
      this.queue.push(item);
      this.pump();
    });
  }

  private expire(item: Item, timeout: number): void {
    if (item.state === 'done') return;
    if (item.state === 'queued') {
      const at = this.queue.indexOf(item);
      if (at !== -1) this.queue.splice(at, 1);
    }
    // A running request cannot be taken back from the worker; its answer is dropped.
    item.state = 'done';
    item.reject(new OutpostError('TIMEOUT', `${this.o.key}: no answer within ${timeout} ms`));
    this.checkIdle();
  }

  private pump(): void {
    const batching = this.o.batching;
    const slots = Math.max(1, this.o.slots()) * (batching === undefined ? 2 : 1);
    while (this.executing < slots && this.queue.length > 0) {
      const head = this.queue[0] as Item;
      if (batching === undefined || batching.maxBatchSize <= 1) {
        this.queue.shift();
        this.execute([head]);
        continue;
      }
      const picked: Item[] = [];
      let rows = 0;
      for (const item of this.queue) {
        if (item.shapeKey !== head.shapeKey) continue;
        if (picked.length > 0 && rows + item.rows > batching.maxBatchSize) break;
        picked.push(item);
        rows += item.rows;
        if (rows >= batching.maxBatchSize) break;
      }
      if (rows < batching.maxBatchSize && !this.draining) {
        const waited = performance.now() - head.enqueuedAt;
        if (waited < batching.maxQueueDelayMs) {
          this.wakeIn(batching.maxQueueDelayMs - waited);
          return;
        }
      }
      for (const item of picked) this.queue.splice(this.queue.indexOf(item), 1);
      this.execute(picked);
    }
  }

  private wakeIn(ms: number): void {
    const at = performance.now() + ms;
    if (this.timer !== undefined && this.timerAt <= at) return;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        this.pump();
      },
      Math.max(0, Math.ceil(ms)),
    );
  }

  private execute(items: Item[]): void {
    const started = performance.now();
    for (const item of items) item.state = 'running';
    this.executing++;
    this.executingRequests += items.length;
    const single = items.length === 1 ? items[0] : undefined;
    let feeds: Record<string, WireTensor>;
    let outputs: string[] | undefined;
    if (single !== undefined) {
      feeds = single.feeds;
      outputs = single.outputs;
    } else {
      feeds = {};
      for (const name of Object.keys((items[0] as Item).feeds)) {
        feeds[name] = concatRows(items.map((i) => i.feeds[name] as Tensor));
      }
      // Run every output any request wants; each request then gets only its own.
      outputs = items.some((i) => i.outputs === undefined)
        ? undefined
        : [...new Set(items.flatMap((i) => i.outputs ?? []))];
    }
    const totalRows = items.reduce((n, i) => n + i.rows, 0);
    this.o
      .run(this.o.key, feeds, outputs)
      .then(
        (result) => this.deliver(items, result, started, totalRows),
        (err: unknown) => {
          const error = err instanceof Error ? err : new Error(String(err));
          for (const item of items) this.settle(item, undefined, error);
        },
      )
      .finally(() => {
        this.executing--;
        this.executingRequests -= items.length;
        try {
          this.o.onExecution?.(totalRows, items.length);
        } catch {
          // An observer must not break inference.
        }
        this.pump();
        this.checkIdle();
      });
  }

  private deliver(items: Item[], result: RunResult, started: number, totalRows: number): void {
    let offset = 0;
    for (const item of items) {
      const outputs: Record<string, Tensor> = {};
      let error: Error | undefined;
      for (const [name, t] of Object.entries(result.outputs)) {
        if (item.outputs !== undefined && !item.outputs.includes(name)) continue;
        if (items.length === 1) {
          outputs[name] = t;
        } else if (t.shape[0] === totalRows) {
          outputs[name] = sliceRows(t, offset, item.rows);
        } else {
          error = new OutpostError(
            'INFERENCE_FAILED',
            `${this.o.key}: output ${name} has ${t.shape[0]} rows for a batch of ${totalRows}; it cannot be split`,
          );
        }
      }
      offset += item.rows;
      const queueUs = Math.round((started - item.enqueuedAt) * 1000);
      this.settle(item, { outputs, rows: item.rows, queueUs, computeUs: result.computeUs }, error);
    }
  }

  private settle(item: Item, result: ScheduledResult | undefined, error: Error | undefined): void {
    if (item.state === 'done') return;
    item.state = 'done';
    if (item.timer !== undefined) clearTimeout(item.timer);
    if (error !== undefined || result === undefined) item.reject(error ?? new Error('no result'));
    else item.resolve(result);
  }

  private checkIdle(): void {
    if (this.queue.length > 0 || this.executing > 0) return;
    for (const wake of this.idleWaiters.splice(0)) wake();
  }

  /**
   * Stops taking requests, sends what is queued without waiting for batches to fill, and
   * resolves once nothing of this version is queued or running (then its sessions can go).
   */
  drain(): Promise<void> {
    this.draining = true;
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.pump();
    if (this.queue.length === 0 && this.executing === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Rejects everything still queued (shutdown). */
  close(err: Error): void {
    this.draining = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    for (const item of this.queue.splice(0)) this.settle(item, undefined, err);
    this.checkIdle();
  }
}
