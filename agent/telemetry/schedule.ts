import cron from 'node-cron';

/** A running schedule; `stop` cancels what has not fired yet. */
export interface Schedule {
  stop(): void;
}

export interface ScheduleOptions {
  name: string;
  /** Called with whatever a run throws or rejects with. */
  onError: (err: unknown) => void;
}

/** The seconds a cron field of the clock-only kind lets through, or undefined for any other field. */
function clockField(field: string, size: number): Set<number> | undefined {
  if (field === '*') return new Set(Array.from({ length: size }, (_, i) => i));
  const step = /^\*\/(\d+)$/.exec(field);
  if (step !== null) {
    const n = Number(step[1]);
    if (n < 1) return undefined;
    return new Set(Array.from({ length: Math.ceil(size / n) }, (_, i) => i * n));
  }
  if (!/^\d+(,\d+)*$/.test(field)) return undefined;
  const values = field.split(',').map(Number);
  return values.every((v) => v < size) ? new Set(values) : undefined;
}

/**
 * When an expression only names seconds (`*`, `*\/N`, numbers) and leaves every other field at
 * `*`, the times it fires at are the same in every time zone, since zone offsets are whole
 * minutes: a match on the clock's seconds. Minutes are not (Nepal is UTC+5:45, so `*\/2` minutes
 * there are not UTC's). Returns that match, or undefined for any other expression.
 */
export function clockOnly(expression: string): ((date: Date) => boolean) | undefined {
  const fields = expression.trim().split(/\s+/);
  if (fields.length === 5) fields.unshift('0');
  if (fields.length !== 6 || fields.slice(1).some((f) => f !== '*')) return undefined;
  const seconds = clockField(fields[0] as string, 60);
  if (seconds === undefined) return undefined;
  return (date) => seconds.has(date.getUTCSeconds());
}

/** The first whole second after `from` that `matches`; a minute holds every clock-only pattern. */
function nextMatch(matches: (date: Date) => boolean, from: number): number {
  const first = Math.floor(from / 1000) * 1000 + 1000;
  for (let t = first; t < first + 60_000; t += 1000) if (matches(new Date(t))) return t;
  throw new Error('a clock-only schedule that never fires');
}

/**
 * Runs `run` on a cron schedule, never overlapping itself (a run still going when the next is
 * due skips that one). Expressions node-cron accepts are accepted here. The clock-only ones,
 * which is what telemetry schedules are (`*\/60 * * * * *`, every minute), run on a plain timer: node-cron
 * reads every time through `Intl.DateTimeFormat`, and loading ICU's date and zone data for it
 * costs the process about 8 MiB of memory, which a clock-only schedule has no use for. Every
 * other expression (hours, days, months, weekdays) is node-cron's.
 */
export function schedule(expression: string, run: () => Promise<unknown>, o: ScheduleOptions): Schedule {
  if (!cron.validate(expression)) throw new Error(`not a valid cron expression: ${expression}`);
  let busy = false;
  const fire = () => {
    if (busy) return;
    busy = true;
    run()
      .catch(o.onError)
      .finally(() => {
        busy = false;
      });
  };
  const matches = clockOnly(expression);
  if (matches === undefined) {
    const task = cron.createTask(expression, () => fire(), { name: o.name });
    void task.start();
    return { stop: () => void task.destroy() };
  }
  let timer: NodeJS.Timeout | undefined;
  // Armed from the time it was due, not the time it fired: a timer that fires a millisecond
  // early by the wall clock must not match the same second twice.
  const arm = (after: number) => {
    const due = nextMatch(matches, Math.max(Date.now(), after));
    timer = setTimeout(() => {
      fire();
      arm(due);
    }, due - Date.now());
  };
  arm(0);
  return { stop: () => clearTimeout(timer) };
}
