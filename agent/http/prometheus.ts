/**
 * Prometheus metrics in the text exposition format 0.0.4: counters, gauges and histograms with
 * labels, on registries of their own. The agent needs only this much of a client library, and a
 * general one costs several MiB of resident memory on a box where the whole agent has a budget
 * of tens. Recording is a Map lookup and a few additions: it sits on every inference request.
 */

export type LabelValues = Record<string, string | number>;
type MetricType = 'counter' | 'gauge' | 'histogram';

export const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

interface Collectable {
  readonly name: string;
  /** Called before rendering, for values read at scrape time. */
  collect?(): void | Promise<void>;
  render(): string;
}

export class Registry {
  readonly contentType = CONTENT_TYPE;
  private readonly items = new Map<string, Collectable>();

  register(metric: Collectable): void {
    if (this.items.has(metric.name)) throw new Error(`metric ${metric.name} is already registered`);
    this.items.set(metric.name, metric);
  }

  get(name: string): Collectable | undefined {
    return this.items.get(name);
  }

  async metrics(): Promise<string> {
    let out = '';
    for (const m of this.items.values()) {
      await m.collect?.();
      out += m.render();
    }
    return out;
  }
}

function escapeHelp(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

function escapeValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function formatNumber(n: number): string {
  if (Number.isNaN(n)) return 'NaN';
  if (n === Number.POSITIVE_INFINITY) return '+Inf';
  if (n === Number.NEGATIVE_INFINITY) return '-Inf';
  return String(n);
}

interface MetricOptions<L extends string> {
  name: string;
  help: string;
  labelNames?: readonly L[];
  registers?: Registry[];
}

abstract class Metric<L extends string, S> implements Collectable {
  readonly name: string;
  readonly help: string;
  protected readonly labelNames: readonly L[];
  /** Series by their rendered label set (`a="x",b="y"`), in first-seen order. */
  protected readonly series = new Map<string, S>();

  constructor(
    private readonly type: MetricType,
    o: MetricOptions<L>,
  ) {
    if (!/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(o.name)) throw new Error(`invalid metric name ${o.name}`);
    this.name = o.name;
    this.help = o.help;
    this.labelNames = o.labelNames ?? [];
    for (const r of o.registers ?? []) r.register(this);
  }

  protected key(labels: Partial<Record<L, string | number>> | undefined): string {
    if (this.labelNames.length === 0) return '';
    return this.labelNames.map((n) => `${n}="${escapeValue(String(labels?.[n] ?? ''))}"`).join(',');
  }

  protected seriesFor(labels: Partial<Record<L, string | number>> | undefined, make: () => S): S {
    const k = this.key(labels);
    let s = this.series.get(k);
    if (s === undefined) {
      s = make();
      this.series.set(k, s);
    }
    return s;
  }

  /** Drops every series (gauges filled at scrape time start from nothing). */
  reset(): void {
    this.series.clear();
  }

  protected header(): string {
    return `# HELP ${this.name} ${escapeHelp(this.help)}\n# TYPE ${this.name} ${this.type}\n`;
  }

  abstract render(): string;
}

export interface CounterChild {
  inc(by?: number): void;
}

export class Counter<L extends string = string> extends Metric<L, { value: number }> {
  constructor(o: MetricOptions<L>) {
    super('counter', o);
  }

  labels(labels: Record<L, string | number>): CounterChild {
    const s = this.seriesFor(labels, () => ({ value: 0 }));
    return {
      inc(by = 1) {
        if (by < 0) throw new Error('a counter only goes up');
        s.value += by;
      },
    };
  }

  inc(labels?: Record<L, string | number>, by = 1): void {
    this.labels(labels ?? ({} as Record<L, string | number>)).inc(by);
  }

  render(): string {
    let out = this.header();
    if (this.series.size === 0 && this.labelNames.length === 0) out += `${this.name} 0\n`;
    for (const [k, s] of this.series)
      out += `${this.name}${k === '' ? '' : `{${k}}`} ${formatNumber(s.value)}\n`;
    return out;
  }
}

export class Gauge<L extends string = string> extends Metric<L, { value: number }> {
  private readonly onCollect: ((this: Gauge<L>) => void | Promise<void>) | undefined;

  /**
   * With `counter`, the value is a total read at scrape time (CPU seconds) rather than
   * accumulated by inc(): it is exposed as a counter.
   */
  constructor(
    o: MetricOptions<L> & { collect?: (this: Gauge<L>) => void | Promise<void>; counter?: boolean },
  ) {
    super(o.counter === true ? 'counter' : 'gauge', o);
    this.onCollect = o.collect;
  }

  collect(): void | Promise<void> {
    return this.onCollect?.call(this);
  }

  /** `set(value)` for an unlabelled gauge, `set(labels, value)` otherwise. */
  set(labelsOrValue: Record<L, string | number> | number, value?: number): void {
    const labels = typeof labelsOrValue === 'number' ? undefined : labelsOrValue;
    const v = typeof labelsOrValue === 'number' ? labelsOrValue : (value ?? 0);
    this.seriesFor(labels, () => ({ value: 0 })).value = v;
  }

  render(): string {
    let out = this.header();
    for (const [k, s] of this.series)
      out += `${this.name}${k === '' ? '' : `{${k}}`} ${formatNumber(s.value)}\n`;
    return out;
  }
}

export interface HistogramChild {
  observe(value: number): void;
}

interface HistogramSeries {
  counts: number[];
  sum: number;
  count: number;
}

export class Histogram<L extends string = string> extends Metric<L, HistogramSeries> {
  private readonly buckets: number[];

  constructor(o: MetricOptions<L> & { buckets: readonly number[] }) {
    super('histogram', o);
    this.buckets = [...o.buckets].sort((a, b) => a - b);
  }

  labels(labels: Record<L, string | number>): HistogramChild {
    const buckets = this.buckets;
    const s = this.seriesFor(labels, () => ({ counts: buckets.map(() => 0), sum: 0, count: 0 }));
    return {
      observe(value: number) {
        // Counts per bucket are not cumulative here; render() adds them up.
        let i = 0;
        while (i < buckets.length && value > (buckets[i] as number)) i++;
        if (i < buckets.length) s.counts[i] = (s.counts[i] ?? 0) + 1;
        s.sum += value;
        s.count++;
      },
    };
  }

  observe(labels: Record<L, string | number> | undefined, value: number): void {
    this.labels(labels ?? ({} as Record<L, string | number>)).observe(value);
  }

  render(): string {
    let out = this.header();
    for (const [k, s] of this.series) {
      const prefix = k === '' ? '' : `${k},`;
      let cumulative = 0;
      this.buckets.forEach((le, i) => {
        cumulative += s.counts[i] ?? 0;
        out += `${this.name}_bucket{${prefix}le="${formatNumber(le)}"} ${cumulative}\n`;
      });
      out += `${this.name}_bucket{${prefix}le="+Inf"} ${s.count}\n`;
      const labels = k === '' ? '' : `{${k}}`;
      out += `${this.name}_sum${labels} ${formatNumber(s.sum)}\n${this.name}_count${labels} ${s.count}\n`;
    }
    return out;
  }
}
