/**
 * A log-bucketed latency histogram: every bucket is 1% wider than the one before, so a
 * percentile read from it is within 1% of the true value whatever the scale, and recording is
 * O(1) with fixed memory (no array of every sample kept, no sort).
 */
const GROWTH = 1.01;
const LOG_GROWTH = Math.log(GROWTH);
/** Values are clamped to [MIN, MAX]: 0.01 µs … ~1e9 µs (about 17 minutes) when recording µs. */
const MIN = 0.01;
const BUCKETS = Math.ceil(Math.log(1e11) / LOG_GROWTH) + 1;

export interface HistogramSnapshot {
  buckets: Array<[number, number]>;
  count: number;
  sum: number;
  min: number;
  max: number;
}

export class Histogram {
  private readonly counts = new Uint32Array(BUCKETS);
  count = 0;
  sum = 0;
  min = Number.POSITIVE_INFINITY;
  max = 0;

  record(value: number): void {
    const v = Math.max(MIN, value);
    const index = Math.min(BUCKETS - 1, Math.ceil(Math.log(v / MIN) / LOG_GROWTH));
    this.counts[index] = (this.counts[index] ?? 0) + 1;
    this.count++;
    this.sum += value;
    if (value < this.min) this.min = value;
    if (value > this.max) this.max = value;
  }

  merge(other: Histogram): this {
    for (let i = 0; i < BUCKETS; i++) this.counts[i] = (this.counts[i] ?? 0) + (other.counts[i] ?? 0);
    this.count += other.count;
    this.sum += other.sum;
    this.min = Math.min(this.min, other.min);
    this.max = Math.max(this.max, other.max);
    return this;
  }

  get mean(): number {
    return this.count === 0 ? Number.NaN : this.sum / this.count;
  }

  /** The value at quantile q (0..1): the upper edge of the bucket holding it, clamped to the observed range. */
  quantile(q: number): number {
    if (this.count === 0) return Number.NaN;
    const rank = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i] ?? 0;
      if (seen >= rank) return Math.min(this.max, Math.max(this.min, MIN * GROWTH ** i));
    }
    return this.max;
  }

  /** A compact form for crossing a process boundary: only the non-empty buckets. */
  snapshot(): HistogramSnapshot {
    const buckets: Array<[number, number]> = [];
    this.counts.forEach((c, i) => {
      if (c > 0) buckets.push([i, c]);
    });
    return { buckets, count: this.count, sum: this.sum, min: this.min, max: this.max };
  }

  static from(s: HistogramSnapshot): Histogram {
    const h = new Histogram();
    for (const [i, c] of s.buckets) h.counts[i] = c;
    h.count = s.count;
    h.sum = s.sum;
    h.min = s.count === 0 ? Number.POSITIVE_INFINITY : s.min;
    h.max = s.max;
    return h;
  }

  static merged(list: readonly Histogram[]): Histogram {
    const out = new Histogram();
    for (const h of list) out.merge(h);
    return out;
  }
}
