/**
 * The measurement method: warm-up excluded, then measurement windows repeated until the last
 * three of every side agree within a tolerance (at most `maxWindows`). With several sides
 * (the subject and its baseline) the windows are interleaved A, B, A, B… so that a noisy
 * neighbour on a shared machine hits both alike and the ratio stays meaningful.
 */
export interface Side<T> {
  name: string;
  window(): Promise<T>;
}

export interface StableOptions<T> {
  /** The figure whose agreement decides stability (throughput, a percentile, RSS…). */
  metric: (result: T) => number;
  minWindows: number;
  maxWindows: number;
  /** Relative spread allowed among the last three: (max − min) / min. */
  tolerance?: number;
  /** Runs once per side before any window counts. */
  warmup?: (side: string) => Promise<void>;
  /**
   * How many of each side's last windows are returned to be read together (default 3, the
   * judged ones); at least this many are run. A tail percentile wants more than three: on a
   * 2-core machine one window in which the host or a collector stalls the process moves a
   * p99 pooled from three windows by a third.
   */
  pool?: number;
}

export interface StableResult<T> {
  /** Per side (same order as given), the last `pool` windows (the last three were judged). */
  last: T[][];
  windows: number;
  stable: boolean;
  /** The relative spread of each side's last three windows. */
  spread: number[];
}

export function spreadOf(values: readonly number[]): number {
  const min = Math.min(...values);
  const max = Math.max(...values);
  if (min === max) return 0;
  return min <= 0 ? Number.POSITIVE_INFINITY : (max - min) / min;
}

export async function interleaved<T>(
  sides: Array<Side<T>>,
  options: StableOptions<T>,
): Promise<StableResult<T>> {
  const tolerance = options.tolerance ?? 0.1;
  const pool = Math.max(3, options.pool ?? 3);
  const minWindows = Math.max(pool, options.minWindows);
  const maxWindows = Math.max(minWindows, options.maxWindows);
  if (options.warmup !== undefined) for (const side of sides) await options.warmup(side.name);
  const history: T[][] = sides.map(() => []);
  let windows = 0;
  let spread = sides.map(() => Number.POSITIVE_INFINITY);
  while (windows < maxWindows) {
    for (let i = 0; i < sides.length; i++) {
      const side = sides[i] as Side<T>;
      (history[i] as T[]).push(await side.window());
    }
    windows++;
    if (windows < minWindows) continue;
    spread = history.map((h) => spreadOf(h.slice(-3).map(options.metric)));
    if (spread.every((s) => s <= tolerance)) break;
  }
  return {
    last: history.map((h) => h.slice(-pool)),
    windows,
    stable: spread.every((s) => s <= tolerance),
    spread,
  };
}

export function mean(values: readonly number[]): number {
  return values.reduce((a, b) => a + b, 0) / values.length;
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}
