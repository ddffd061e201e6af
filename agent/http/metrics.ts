import { Counter, collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import type { InferenceObserver, RequestOutcome } from '../runtime/observer.ts';
import { type HistogramSeries, SeriesHistogram } from './series-histogram.ts';

export interface MetricsSources {
  /** Models and versions with their state and queued+running request counts, read at scrape time. */
  versions: () => Array<{ name: string; version: string; state: string; pending: number }>;
}

/**
 * One model version's figures as plain numbers: the inference path adds to them and the
 * Triton counters read them at scrape time (prom-client's `inc` validates and hashes the
 * labels on every call, several times per request).
 */
interface VersionSeries {
  labels: { model: string; version: string };
  success: number;
  inferenceCount: number;
  requestUs: number;
  queueUs: number;
  computeUs: number;
  execCount: number;
  requestSeconds: HistogramSeries;
  queueSeconds: HistogramSeries;
  batchRows: HistogramSeries;
}

type Totals = 'success' | 'inferenceCount' | 'requestUs' | 'queueUs' | 'computeUs' | 'execCount';

const LATENCY_BUCKETS_S = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
];

/**
 * The agent's Prometheus metrics, on a registry of its own (never prom-client's global one, so
 * two agents in one process — tests — do not collide). Inference counters use Triton's names
 * and labels (`model`, `version`) so existing Triton dashboards work; the `_us` ones are
 * cumulative microseconds as in Triton. Histograms, loaded models, event-loop lag and memory
 * come on top.
 */
export class AgentMetrics implements InferenceObserver {
  readonly registry = new Registry();
  private readonly failure: Counter<'model' | 'version' | 'reason'>;
  private readonly requestSeconds: SeriesHistogram<'model' | 'version'>;
  private readonly queueSeconds: SeriesHistogram<'model' | 'version'>;
  private readonly batchRows: SeriesHistogram<'model' | 'version'>;
  private readonly httpSeconds: SeriesHistogram<'method' | 'route' | 'code'>;
  private started = false;
  /** Series per model version and per HTTP route, resolved once: looking labels up per request costs. */
  private readonly perVersion = new Map<string, VersionSeries>();
  private readonly perRoute = new Map<string, HistogramSeries>();

  constructor(sources: MetricsSources) {
    const registers = [this.registry];
    const mv = ['model', 'version'] as const;
    const perVersion = this.perVersion;
    /** A Triton counter read from the version series when scraped. */
    const total = (name: string, help: string, field: Totals, when: 'requests' | 'executions') =>
      new Counter({
        name,
        help,
        labelNames: mv,
        registers,
        collect() {
          this.reset();
          for (const s of perVersion.values()) {
            // A series shows once it has something to show, as with prom-client's own children.
            if ((when === 'requests' ? s.success : s.execCount) > 0) this.inc(s.labels, s[field]);
          }
        },
      });
    total(
      'nv_inference_request_success',
      'Number of successful inference requests, all batch sizes',
      'success',
      'requests',
    );
    this.failure = new Counter({
      name: 'nv_inference_request_failure',
      help: 'Number of failed inference requests, all batch sizes',
      labelNames: [...mv, 'reason'],
      registers,
    });
    total(
      'nv_inference_count',
      'Number of inferences performed (a request of N rows counts N)',
      'inferenceCount',
      'requests',
    );
    total(
      'nv_inference_exec_count',
      'Number of model executions performed (a batch counts once)',
      'execCount',
      'executions',
    );
    total(
      'nv_inference_request_duration_us',
      'Cumulative inference request duration in microseconds (queue and compute included)',
      'requestUs',
      'requests',
    );
    total(
      'nv_inference_queue_duration_us',
      'Cumulative inference queuing duration in microseconds',
      'queueUs',
      'requests',
    );
    total(
      'nv_inference_compute_infer_duration_us',
      'Cumulative compute inference duration in microseconds',
      'computeUs',
      'requests',
    );
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
    this.requestSeconds = new SeriesHistogram({
      name: 'outpost_inference_request_duration_seconds',
      help: 'Inference request latency inside the runtime',
      labelNames: mv,
      buckets: LATENCY_BUCKETS_S,
      registers,
    });
    this.queueSeconds = new SeriesHistogram({
      name: 'outpost_inference_queue_duration_seconds',
      help: 'Time requests waited in the model queue',
      labelNames: mv,
      buckets: LATENCY_BUCKETS_S,
      registers,
    });
    this.batchRows = new SeriesHistogram({
      name: 'outpost_inference_batch_size',
      help: 'Rows per model execution',
      labelNames: mv,
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
      registers,
    });
    this.httpSeconds = new SeriesHistogram({
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

  /** Starts the process collectors (event-loop lag, RSS, heap, GC); they sample only while scraped. */
  start(): void {
    if (this.started) return;
    this.started = true;
    collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: 10 });
  }

  private series(model: string, version: string): VersionSeries {
    const key = `${model}\u0000${version}`;
    let s = this.perVersion.get(key);
    if (s === undefined) {
      const labels = { model, version };
      s = {
        labels,
        success: 0,
        inferenceCount: 0,
        requestUs: 0,
        queueUs: 0,
        computeUs: 0,
        execCount: 0,
        requestSeconds: this.requestSeconds.series(labels),
        queueSeconds: this.queueSeconds.series(labels),
        batchRows: this.batchRows.series(labels),
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
    s.success++;
    s.inferenceCount += outcome.rows;
    s.requestUs += outcome.totalUs;
    s.queueUs += outcome.queueUs;
    s.computeUs += outcome.computeUs;
    s.requestSeconds.observe(outcome.totalUs / 1e6);
    s.queueSeconds.observe(outcome.queueUs / 1e6);
  }

  execution(model: string, version: string, rows: number): void {
    const s = this.series(model, version);
    s.execCount++;
    s.batchRows.observe(rows);
  }

  http(method: string, route: string, code: number, seconds: number): void {
    const key = `${method} ${route} ${code}`;
    let child = this.perRoute.get(key);
    if (child === undefined) {
      child = this.httpSeconds.series({ method, route, code: String(code) });
      this.perRoute.set(key, child);
    }
    child.observe(seconds);
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
