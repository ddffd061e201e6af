import { createHash } from 'node:crypto';
import { OutpostError } from '../../shared/errors.ts';
import type { DeviceRecord } from '../store/repository.ts';

/** `tag=value,site=x` → `{tag:'value', site:'x'}`; `*` or empty selects every device. */
export function parseSelector(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  if (text.trim() === '' || text.trim() === '*') return out;
  for (const part of text.split(',')) {
    const [key, ...rest] = part.split('=');
    const value = rest.join('=');
    if (key === undefined || key.trim() === '' || value.trim() === '')
      throw new OutpostError('BAD_REQUEST', `selector part "${part}" must be key=value`);
    out[key.trim()] = value.trim();
  }
  return out;
}

export function matches(device: DeviceRecord, selector: Record<string, string>): boolean {
  return Object.entries(selector).every(([k, v]) => device.tags[k] === v);
}

/** `1,10,50,100` → cumulative percentages, strictly ascending, ending at 100. */
export function parseWaves(value: string | number[]): number[] {
  const waves =
    typeof value === 'string' ? value.split(',').map((s) => Number(s.trim().replace(/%$/, ''))) : value;
  if (waves.length === 0 || waves.some((w) => !Number.isFinite(w) || w <= 0 || w > 100))
    throw new OutpostError('BAD_REQUEST', 'waves must be percentages in (0, 100], e.g. 1,10,50,100');
  for (let i = 1; i < waves.length; i++)
    if ((waves[i] as number) <= (waves[i - 1] as number))
      throw new OutpostError('BAD_REQUEST', 'waves must be ascending cumulative percentages');
  if (waves[waves.length - 1] !== 100) throw new OutpostError('BAD_REQUEST', 'the last wave must be 100');
  return waves;
}

/** `5%` or `0.05` → 0.05. */
export function parseRate(value: string | number): number {
  const n =
    typeof value === 'number'
      ? value
      : value.trim().endsWith('%')
        ? Number(value.trim().slice(0, -1)) / 100
        : Number(value);
  if (!Number.isFinite(n) || n < 0 || n > 1)
    throw new OutpostError('BAD_REQUEST', `failure rate ${value} must be 0%-100%`);
  return n;
}

/** `10m`, `30s`, `2h`, `500ms` or a number of milliseconds. */
export function parseDuration(value: string | number): number {
  if (typeof value === 'number') return value;
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$/.exec(value.trim());
  if (m === null)
    throw new OutpostError('BAD_REQUEST', `duration "${value}" must look like 500ms, 30s, 10m, 2h`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[(m[2] ?? 'ms') as 'ms'];
  return Math.round(Number(m[1]) * unit);
}

/**
 * Splits the selected devices into waves: wave i holds devices up to ceil(p_i% of n), at least
 * one more than the wave before while devices remain. The order is a hash of rollout id and
 * device id: stable across restarts, not biased by enrolment order.
 */
export function planWaves(rolloutId: string, deviceIds: string[], waves: number[]): string[][] {
  const order = [...deviceIds].sort((a, b) => {
    const ha = createHash('sha256').update(`${rolloutId}/${a}`).digest('hex');
    const hb = createHash('sha256').update(`${rolloutId}/${b}`).digest('hex');
    return ha < hb ? -1 : ha > hb ? 1 : 0;
  });
  const out: string[][] = [];
  let taken = 0;
  for (const pct of waves) {
    let upto = Math.min(order.length, Math.max(Math.ceil((order.length * pct) / 100), taken + 1));
    if (pct === 100) upto = order.length;
    out.push(order.slice(taken, upto));
    taken = upto;
  }
  return out;
}
