export interface ModelFigures {
  /** Inferences since the agent started. */
  count: number;
  errors: number;
  /** Over the inferences since the previous report (at most the last `sampleLimit`). */
  p50Ms: number | null;
  p99Ms: number | null;
  samples: number;
}

interface ModelSamples {
  count: number;
  errors: number;
  ring: Float64Array;
  filled: number;
  next: number;
}

/**
 * Per-model inference figures for telemetry: totals, and latency percentiles over a bounded
 * ring of recent samples, so recording is O(1) on the hot path and memory does not grow with
 * traffic.
 */
export class InferenceStats {
  private readonly models = new Map<string, ModelSamples>();

  constructor(private readonly sampleLimit = 4096) {}

  record(model: string, latencyMs: number, ok: boolean): void {
    let m = this.models.get(model);
    if (m === undefined) {
      m = { count: 0, errors: 0, ring: new Float64Array(this.sampleLimit), filled: 0, next: 0 };
      this.models.set(model, m);
    }
    m.count++;
    if (!ok) {
      m.errors++;
      return;
    }
    m.ring[m.next] = latencyMs;
    m.next = (m.next + 1) % this.sampleLimit;
    if (m.filled < this.sampleLimit) m.filled++;
  }

  /** The figures per model; `reset` starts a new percentile window (totals keep counting). */
  snapshot(reset = true): Record<string, ModelFigures> {
    const out: Record<string, ModelFigures> = {};
    for (const [name, m] of this.models) {
      const sorted = m.ring.slice(0, m.filled).sort();
      out[name] = {
        count: m.count,
        errors: m.errors,
        p50Ms: percentile(sorted, 0.5),
        p99Ms: percentile(sorted, 0.99),
        samples: m.filled,
      };
      if (reset) {
        m.filled = 0;
        m.next = 0;
      }
    }
    return out;
  }
}

/** Nearest-rank percentile of an ascending array; null when there are no samples. */
export function percentile(sorted: Float64Array, q: number): number | null {
  if (sorted.length === 0) return null;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return Math.round((sorted[rank] as number) * 1000) / 1000;
}
