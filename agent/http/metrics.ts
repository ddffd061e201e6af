import type { InferenceObserver, RequestOutcome } from '../runtime/observer.ts';
import { ProcessMetrics } from './process-metrics.ts';
import { Counter, type CounterChild, Gauge, Histogram, type HistogramChild, Registry } from './prometheus.ts';

export interface MetricsSources {
  /** Models and versions with their state and queued+running request counts, read at scrape time. */
  versions: () => Array<{ name: string; version: string; state: string; pending: number }>;
}

interface VersionSeries {
  success: CounterChild;
  inferenceCount: CounterChild;
  requestUs: CounterChild;
  queueUs: CounterChild;
  computeUs: CounterChild;
  requestSeconds: HistogramChild;
  queueSeconds: HistogramChild;
  execCount: CounterChild;
  batchRows: HistogramChild;
}

const LATENCY_BUCKETS_S = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
];

/**
 * The agent's Prometheus metrics, on a registry of its own (two agents in one process — tests —
 * do not collide). Inference counters use Triton's names
 * and labels (`model`, `version`) so existing Triton dashboards work; the `_us` ones are
 * cumulative microseconds as in Triton. Histograms, loaded models, event-loop lag and memory
 * come on top.
 */
export class AgentMetrics implements InferenceObserver {
  readonly registry = new Registry();
  private readonly success: Counter<'model' | 'version'>;
  private readonly failure: Counter<'model' | 'version' | 'reason'>;
  private readonly inferenceCount: Counter<'model' | 'version'>;
  private readonly execCount: Counter<'model' | 'version'>;
  private readonly requestUs: Counter<'model' | 'version'>;
  private readonly queueUs: Counter<'model' | 'version'>;
  private readonly computeUs: Counter<'model' | 'version'>;
  private readonly requestSeconds: Histogram<'model' | 'version'>;
  private readonly queueSeconds: Histogram<'model' | 'version'>;
  private readonly batchRows: Histogram<'model' | 'version'>;
  private readonly httpSeconds: Histogram<'method' | 'route' | 'code'>;
  private started = false;
  private readonly process: ProcessMetrics;
  /** Label children per model version and per HTTP route: resolving labels on every request costs. */
  private readonly perVersion = new Map<string, VersionSeries>();
  private readonly perRoute = new Map<string, HistogramChild>();

  constructor(sources: MetricsSources, options: { gcPauses?: boolean } = {}) {
    const registers = [this.registry];
    this.process = new ProcessMetrics(this.registry, options);
    const mv = ['model', 'version'] as const;
    this.success = new Counter({
      name: 'nv_inference_request_success',
      help: 'Number of successful inference requests, all batch sizes',
      labelNames: mv,
      registers,
    });
    this.failure = new Counter({
      name: 'nv_inference_request_failure',
      help: 'Number of failed inference requests, all batch sizes',
      labelNames: [...mv, 'reason'],
      registers,
    });
    this.inferenceCount = new Counter({
      name: 'nv_inference_count',
      help: 'Number of inferences performed (a request of N rows counts N)',
      labelNames: mv,
      registers,
    });
    this.execCount = new Counter({
      name: 'nv_inference_exec_count',
      help: 'Number of model executions performed (a batch counts once)',
      labelNames: mv,
      registers,
    });
    this.requestUs = new Counter({
      name: 'nv_inference_request_duration_us',
      help: 'Cumulative inference request duration in microseconds (queue and compute included)',
      labelNames: mv,
      registers,
    });
    this.queueUs = new Counter({
      name: 'nv_inference_queue_duration_us',
      help: 'Cumulative inference queuing duration in microseconds',
      labelNames: mv,
      registers,
    });
    this.computeUs = new Counter({
      name: 'nv_inference_compute_infer_duration_us',
      help: 'Cumulative compute inference duration in microseconds',
      labelNames: mv,
      registers,
    });
    new Gauge({
      name: 'nv_inference_pending_request_count',
      help: 'Instantaneous number of pending requests awaiting execution per model',
      labelNames: mv,
      registers,
      collect() {
        this.reset();
        for (const v of sources.versions()) {
          if (v.state === 'READY' || v.state === 'UNLOADING')
            this.set({ model: v.name, version: v.version }, v.pending);
        }
      },
    });
    this.requestSeconds = new Histogram({
      name: 'outpost_inference_request_duration_seconds',
      help: 'Inference request latency inside the runtime',
      labelNames: mv,
      buckets: LATENCY_BUCKETS_S,
      registers,
    });
    this.queueSeconds = new Histogram({
      name: 'outpost_inference_queue_duration_seconds',
      help: 'Time requests waited in the model queue',
      labelNames: mv,
      buckets: LATENCY_BUCKETS_S,
      registers,
    });
    this.batchRows = new Histogram({
      name: 'outpost_inference_batch_size',
      help: 'Rows per model execution',
      labelNames: mv,
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
      registers,
    });
    this.httpSeconds = new Histogram({
      name: 'outpost_http_request_duration_seconds',
      help: 'Local HTTP API latency by route pattern and status code',
      labelNames: ['method', 'route', 'code'],
      buckets: LATENCY_BUCKETS_S,
      registers,
    });
    new Gauge({
      name: 'outpost_models_loaded',
      help: 'Model versions loaded and ready',
      registers,
      collect() {
        this.set(sources.versions().filter((v) => v.state === 'READY').length);
      },
    });
    new Gauge({
      name: 'outpost_model_version_state',
      help: 'Known model versions by state (1 for the version state)',
      labelNames: [...mv, 'state'],
      registers,
      collect() {
        this.reset();
        for (const v of sources.versions())
          this.set({ model: v.name, version: v.version, state: v.state }, 1);
      },
    });
  }

  /** Starts the process collectors (event-loop delay histogram, GC observer); the rest is read at scrape time. */
  start(): void {
    if (this.started) return;
    this.started = true;
    this.process.start();
  }

  stop(): void {
    if (!this.started) return;
    this.started = false;
    this.process.stop();
  }

  private series(model: string, version: string): VersionSeries {
    const key = `${model}\u0000${version}`;
    let s = this.perVersion.get(key);
    if (s === undefined) {
      const labels = { model, version };
      s = {
        success: this.success.labels(labels),
        inferenceCount: this.inferenceCount.labels(labels),
        requestUs: this.requestUs.labels(labels),
        queueUs: this.queueUs.labels(labels),
        computeUs: this.computeUs.labels(labels),
        requestSeconds: this.requestSeconds.labels(labels),
        queueSeconds: this.queueSeconds.labels(labels),
        execCount: this.execCount.labels(labels),
        batchRows: this.batchRows.labels(labels),
      };
      this.perVersion.set(key, s);
    }
    return s;
  }

  request(model: string, version: string, outcome: RequestOutcome): void {
    if (!outcome.ok) {
      this.failure.inc({ model, version, reason: outcome.reason ?? 'OTHER' });
      return;
    }
    const s = this.series(model, version);
    s.success.inc();
    s.inferenceCount.inc(outcome.rows);
    s.requestUs.inc(outcome.totalUs);
    s.queueUs.inc(outcome.queueUs);
    s.computeUs.inc(outcome.computeUs);
    s.requestSeconds.observe(outcome.totalUs / 1e6);
    s.queueSeconds.observe(outcome.queueUs / 1e6);
  }

  execution(model: string, version: string, rows: number): void {
    const s = this.series(model, version);
    s.execCount.inc();
    s.batchRows.observe(rows);
  }

  http(method: string, route: string, code: number, seconds: number): void {
    const key = `${method} ${route} ${code}`;
    let child = this.perRoute.get(key);
    if (child === undefined) {
      child = this.httpSeconds.labels({ method, route, code: String(code) });
      this.perRoute.set(key, child);
    }
    child.observe(seconds);
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
