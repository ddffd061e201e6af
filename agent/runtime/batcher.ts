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

/** Called once per request: with its result, or with why it failed. */
export type Done = (err: Error | undefined, result: ScheduledResult | undefined) => void;

interface Item {
  feeds: Record<string, Tensor>;
  outputs: string[] | undefined;
  rows: number;
  /** Requests batch together only when everything but the first dimension matches. */
  shapeKey: string;
  enqueuedAt: number;
  /** performance.now() past which the request fails with TIMEOUT; Infinity for none. */
  deadline: number;
  timeoutMs: number;
  state: 'queued' | 'running' | 'done';
  done: Done;
}

/**
 * Unbatched, each worker gets requests ahead, as its own message queue, so that it never waits
 * for the main thread between two runs: enough for about this much of its compute time, going
 * by the version's recent run times. A fast model gets many (a 30 µs MLP run is shorter than the
 * main thread's turn around a reply), a slow one few, since what a worker holds can no longer be
 * handed to another worker or dropped before it runs when its deadline passes.
 */
const UNBATCHED_AHEAD_US = 2_000;
const UNBATCHED_DEPTH = { min: 2, max: 32, initial: 4 };

/** Numbers the requests that can only run alone, to give each a batch key of its own. */
let loners = 0;

function rowsOf(feeds: Record<string, Tensor>, keyed: boolean): { rows: number; shapeKey: string } {
  let rows: number | undefined;
  if (!keyed) {
    // Unbatched: only the row count matters (Triton's inference count).
    for (const name in feeds) return { rows: (feeds[name] as Tensor).shape[0] ?? 1, shapeKey: '' };
    return { rows: 1, shapeKey: '' };
  }
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
 *
 * Timeouts share one timer per version, set for the earliest deadline of the requests it
 * holds (a timer per request cost more than the rest of the queueing): when it fires, the
 * requests past their deadline fail and it is set for the next one.
 */
export class VersionScheduler {
  private readonly queue: Item[] = [];
  /** Requests handed to a worker and not answered yet (they can still time out). */
  private readonly running = new Set<Item>();
  private executing = 0;
  /** Requests in flight per worker while unbatched (see UNBATCHED_AHEAD_US). */
  private depth = UNBATCHED_DEPTH.initial;
  /** Moving average of one run's compute time, µs. */
  private computeUs: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private timerAt = 0;
  private deadlineTimer: NodeJS.Timeout | undefined;
  private deadlineAt = Number.POSITIVE_INFINITY;
  private draining = false;
  private idleWaiters: Array<() => void> = [];

  constructor(private readonly o: SchedulerOptions) {}

  /** Requests accepted and not yet answered by the model: waiting plus running. */
  get pending(): number {
    return this.queue.length + this.running.size;
  }

  get batching(): BatchPolicy | undefined {
    return this.o.batching;
  }

  /**
   * Queues a request; `done` is called once, with the result or the error (synchronously when
   * the request is refused at once: unloading, or the queue is full).
   */
  submit(
    feeds: Record<string, Tensor>,
    outputs: string[] | undefined,
    timeoutMs: number | undefined,
    done: Done,
  ): void {
    if (this.draining) {
      done(new OutpostError('MODEL_NOT_READY', `${this.o.key} is unloading`), undefined);
      return;
    }
    if (this.pending >= this.o.queueLimit) {
      done(
        new OutpostError('QUEUE_FULL', `${this.o.key} has ${this.pending} requests waiting; try again later`),
        undefined,
      );
      return;
    }
    const timeout = Math.min(timeoutMs ?? this.o.timeoutMs, this.o.timeoutMs);
    const batching = this.o.batching;
    const { rows, shapeKey } = rowsOf(feeds, batching !== undefined && batching.maxBatchSize > 1);
    const now = performance.now();
    const item: Item = {
      feeds,
      outputs,
      rows,
      shapeKey,
      enqueuedAt: now,
      deadline: timeout > 0 ? now + timeout : Number.POSITIVE_INFINITY,
      timeoutMs: timeout,
      state: 'queued',
      done,
    };
    if (item.deadline < this.deadlineAt) this.armDeadline(item.deadline);
    this.queue.push(item);
    this.pump();
  }

  private armDeadline(at: number): void {
    if (this.deadlineTimer !== undefined) clearTimeout(this.deadlineTimer);
    this.deadlineAt = at;
    // Unref'd: a set timer whose requests are all answered must not keep the process alive.
    this.deadlineTimer = setTimeout(() => this.sweep(), Math.max(0, Math.ceil(at - performance.now())));
    this.deadlineTimer.unref();
  }

  /** Fails the requests past their deadline and sets the timer for the earliest one left. */
  private sweep(): void {
    this.deadlineTimer = undefined;
    this.deadlineAt = Number.POSITIVE_INFINITY;
    const now = performance.now();
    let next = Number.POSITIVE_INFINITY;
    const expired: Item[] = [];
    for (const item of this.queue) {
      if (item.deadline <= now) expired.push(item);
      else if (item.deadline < next) next = item.deadline;
    }
    for (const item of this.running) {
      if (item.deadline <= now) expired.push(item);
      else if (item.deadline < next) next = item.deadline;
    }
    for (const item of expired) {
      if (item.state === 'queued') this.queue.splice(this.queue.indexOf(item), 1);
      // A running request cannot be taken back from the worker; its answer is dropped.
      this.settle(item, new OutpostError('TIMEOUT', `${this.o.key}: no answer within ${item.timeoutMs} ms`));
    }
    if (next !== Number.POSITIVE_INFINITY) this.armDeadline(next);
    if (expired.length > 0) this.checkIdle();
  }

  private pump(): void {
    const batching = this.o.batching;
    // Unbatched, each worker gets requests ahead (see UNBATCHED_AHEAD_US); batched, a batch
    // waits here, growing, until a worker is free.
    const slots = Math.max(1, this.o.slots()) * (batching === undefined ? this.depth : 1);
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
      if (picked.length === this.queue.length) this.queue.length = 0;
      else for (const item of picked) this.queue.splice(this.queue.indexOf(item), 1);
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
    for (const item of items) {
      item.state = 'running';
      this.running.add(item);
    }
    this.executing++;
    const single = items.length === 1 ? items[0] : undefined;
    let feeds: Record<string, WireTensor>;
    let outputs: string[] | undefined;
    let totalRows: number;
    if (single !== undefined) {
      feeds = single.feeds;
      outputs = single.outputs;
      totalRows = single.rows;
    } else {
      feeds = {};
      for (const name of Object.keys((items[0] as Item).feeds)) {
        feeds[name] = concatRows(items.map((i) => i.feeds[name] as Tensor));
      }
      // Run every output any request wants; each request then gets only its own.
      outputs = items.some((i) => i.outputs === undefined)
        ? undefined
        : [...new Set(items.flatMap((i) => i.outputs ?? []))];
      totalRows = items.reduce((n, i) => n + i.rows, 0);
    }
    const finish = () => {
      this.executing--;
      for (const item of items) this.running.delete(item);
      try {
        this.o.onExecution?.(totalRows, items.length);
      } catch {
        // An observer must not break inference.
      }
      this.pump();
      this.checkIdle();
    };
    this.o.run(this.o.key, feeds, outputs).then(
      (result) => {
        this.learnDepth(result.computeUs);
        this.deliver(items, result, started, totalRows);
        finish();
      },
      (err: unknown) => {
        const error = err instanceof Error ? err : new Error(String(err));
        for (const item of items) this.settle(item, error);
        finish();
      },
    );
  }

  private learnDepth(computeUs: number): void {
    this.computeUs = this.computeUs === undefined ? computeUs : 0.9 * this.computeUs + 0.1 * computeUs;
    const wanted = Math.ceil(UNBATCHED_AHEAD_US / Math.max(1, this.computeUs));
    this.depth = Math.min(UNBATCHED_DEPTH.max, Math.max(UNBATCHED_DEPTH.min, wanted));
  }

  /** Requests each worker may hold at once for this version when it runs them unbatched. */
  get workerDepth(): number {
    return this.depth;
  }

  private deliver(items: Item[], result: RunResult, started: number, totalRows: number): void {
    if (items.length === 1) {
      const item = items[0] as Item;
      let outputs = result.outputs as Record<string, Tensor>;
      if (item.outputs !== undefined) {
        outputs = {};
        for (const name of item.outputs) {
          const t = result.outputs[name];
          if (t !== undefined) outputs[name] = t;
        }
      }
      const queueUs = Math.round((started - item.enqueuedAt) * 1000);
      this.settle(item, undefined, { outputs, rows: item.rows, queueUs, computeUs: result.computeUs });
      return;
    }
    let offset = 0;
    for (const item of items) {
      const outputs: Record<string, Tensor> = {};
      let error: Error | undefined;
      for (const [name, t] of Object.entries(result.outputs)) {
        if (item.outputs !== undefined && !item.outputs.includes(name)) continue;
        if (t.shape[0] === totalRows) {
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
      this.settle(item, error, { outputs, rows: item.rows, queueUs, computeUs: result.computeUs });
    }
  }

  private settle(item: Item, error: Error | undefined, result?: ScheduledResult): void {
    if (item.state === 'done') return;
    item.state = 'done';
    if (error !== undefined || result === undefined) item.done(error ?? new Error('no result'), undefined);
    else item.done(undefined, result);
  }

  private checkIdle(): void {
    if (this.queue.length > 0 || this.executing > 0) return;
    // While serving, the deadline timer stays set when the version goes idle for a moment (it
    // finds nothing when it fires): clearing and setting it again per request is the cost it
    // saves. Once the version stops taking requests, nothing more can time out.
    if (this.draining) this.clearDeadline();
    for (const wake of this.idleWaiters.splice(0)) wake();
  }

  private clearDeadline(): void {
    if (this.deadlineTimer !== undefined) clearTimeout(this.deadlineTimer);
    this.deadlineTimer = undefined;
    this.deadlineAt = Number.POSITIVE_INFINITY;
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
    for (const item of this.queue.splice(0)) this.settle(item, err);
    this.checkIdle();
  }
}
