/** One row of `latest.json`. */
export interface Measurement {
  scenario: string;
  metric: string;
  value: number;
  unit: string;
  /** The same figure for the baseline, measured in the same run; null where there is none. */
  baseline: number | null;
  /** value / baseline; null without a baseline. */
  ratio: number | null;
  /** Human-readable, e.g. "ratio ≤ 1.3" or "value ≤ 1500 ms"; null for figures shown for context. */
  target: string | null;
  /** Whether the target was met; null when there is no target. */
  pass: boolean | null;
  /** What drives the figure, or why a target could not be judged. */
  note?: string;
  /** False when the windows never settled within the tolerance: read the figure with care. */
  stable?: boolean;
}

export interface Target {
  on: 'value' | 'ratio';
  op: '<=' | '<' | '>=' | '>';
  limit: number;
}

export interface RecordInput {
  metric: string;
  value: number;
  unit: string;
  baseline?: number | null;
  target?: Target;
  note?: string;
  stable?: boolean;
}

export interface BenchContext {
  quick: boolean;
  /** Directory of the compiled agent and fixtures (built JavaScript, as the service runs). */
  buildDir: string;
  /** A fresh temporary directory for this scenario, removed afterwards. */
  tmpDir: string;
  /** Window length for throughput/latency windows. */
  windowMs: number;
  minWindows: number;
  maxWindows: number;
  record(input: RecordInput): Measurement;
  log(message: string): void;
  /** Registers cleanup run after the scenario, even when it throws (children, servers). */
  defer(cleanup: () => Promise<void> | void): void;
}

export interface Scenario {
  name: string;
  description: string;
  run(ctx: BenchContext): Promise<void>;
}

const SYMBOL = { '<=': '≤', '<': '<', '>=': '≥', '>': '>' } as const;

export function describeTarget(t: Target, unit: string): string {
  return t.on === 'ratio' ? `ratio ${SYMBOL[t.op]} ${t.limit}` : `${SYMBOL[t.op]} ${t.limit} ${unit}`;
}

export function meets(t: Target, value: number | null): boolean {
  if (value === null || !Number.isFinite(value)) return false;
  switch (t.op) {
    case '<=':
      return value <= t.limit;
    case '<':
      return value < t.limit;
    case '>=':
      return value >= t.limit;
    case '>':
      return value > t.limit;
  }
}

export function measurement(scenario: string, input: RecordInput): Measurement {
  const baseline = input.baseline ?? null;
  const ratio = baseline === null || baseline === 0 ? null : input.value / baseline;
  const target = input.target;
  const m: Measurement = {
    scenario,
    metric: input.metric,
    value: input.value,
    unit: input.unit,
    baseline,
    ratio,
    target: target === undefined ? null : describeTarget(target, input.unit),
    pass: target === undefined ? null : meets(target, target.on === 'ratio' ? ratio : input.value),
  };
  if (input.note !== undefined) m.note = input.note;
  if (input.stable !== undefined) m.stable = input.stable;
  return m;
}
