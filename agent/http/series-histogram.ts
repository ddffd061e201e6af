import { Histogram, type MetricType } from 'prom-client';

/** One label set of a SeriesHistogram: observing is a bucket scan and three additions. */
export class HistogramSeries {
  /** Observations per bucket (not cumulative); the last slot is +Inf. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(
    readonly labels: Readonly<Record<string, string>>,
    private readonly bounds: readonly number[],
  ) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    if (!Number.isFinite(value)) return;
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && value > (bounds[i] as number)) i++;
    this.counts[i] = (this.counts[i] as number) + 1;
    this.sum += value;
    this.count++;
  }
}

type Exposition = Awaited<ReturnType<Histogram<string>['get']>>;

/**
 * A prom-client Histogram whose label series are plain arrays held by the caller. prom-client's
 * own `observe` validates and hashes the labels and allocates on every call (~1.5 µs; the
 * inference path observes several per request); here the caller resolves its series once and
 * each observation is a few additions. Exposition is prom-client's: same names, `le` buckets,
 * `_sum` and `_count`, rendered by the same registry.
 */
export class SeriesHistogram<T extends string> extends Histogram<string> {
  private readonly seriesByKey = new Map<string, HistogramSeries>();
  private readonly bounds: number[];
  private readonly exposed: { name: string; help: string };

  constructor(
    config: ConstructorParameters<typeof Histogram<T>>[0] & { buckets: number[]; labelNames: readonly T[] },
  ) {
    super(config);
    this.bounds = [...config.buckets].sort((a, b) => a - b);
    this.exposed = { name: config.name, help: config.help };
  }

  /** The series for a label set, created on first use; callers keep it and observe on it. */
  series(labels: Record<T, string>): HistogramSeries {
    const key = Object.values(labels).join('\u0000');
    let s = this.seriesByKey.get(key);
    if (s === undefined) {
      s = new HistogramSeries({ ...labels }, this.bounds);
      this.seriesByKey.set(key, s);
    }
    return s;
  }

  override reset(): void {
    super.reset();
    this.seriesByKey?.clear();
  }

  private values(): Exposition['values'] {
    const values: Exposition['values'] = [];
    const name = this.exposed.name;
    for (const s of this.seriesByKey.values()) {
      if (s.count === 0) continue;
      let acc = 0;
      for (let i = 0; i < this.bounds.length; i++) {
        acc += s.counts[i] as number;
        values.push({
          labels: { le: this.bounds[i] as number, ...s.labels },
          value: acc,
          metricName: `${name}_bucket`,
        });
      }
      values.push({ labels: { le: '+Inf', ...s.labels }, value: s.count, metricName: `${name}_bucket` });
      values.push({ labels: { ...s.labels }, value: s.sum, metricName: `${name}_sum` });
      values.push({ labels: { ...s.labels }, value: s.count, metricName: `${name}_count` });
    }
    return values;
  }

  // The registry renders through getForPromString when a metric has one, else through get().
  async getForPromString(): Promise<Exposition> {
    const { name, help } = this.exposed;
    // prom-client's typings declare `type` as a numeric enum (the registry prints the string)
    // and want a `collect` on exposition objects; prom-client's own histogram returns neither so.
    const type = 'histogram' as unknown as MetricType;
    return { name, help, type, values: this.values(), aggregator: 'sum', collect: () => undefined };
  }

  override async get(): Promise<Exposition> {
    return this.getForPromString();
  }
}
