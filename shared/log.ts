/**
 * Structured logging for the agent and the control plane: one JSON object a line, in the line
 * format Node services commonly write (numeric `level` 10–60, ISO `time`, `msg`, the bindings
 * and fields beside them), so journald, log shippers and `jq` filters made for it work. It is
 * small on purpose: on a device the logger sits in the agent for its whole life, and the
 * general-purpose logging library it replaced cost some 4 MiB of resident memory.
 */

/** The numeric levels; `silent` logs nothing. */
const LEVELS = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 } as const;

/** Where lines go: anything with `write(line)`. The default is stdout (synchronous on Linux pipes). */
export interface DestinationStream {
  write(line: string): unknown;
}

type LogFn = {
  (message: string): void;
  (fields: object, message?: string): void;
};

export interface Logger {
  trace: LogFn;
  debug: LogFn;
  info: LogFn;
  warn: LogFn;
  error: LogFn;
  fatal: LogFn;
  /** A logger whose lines carry `bindings` too; it shares the level of the logger it came from. */
  child(bindings: Record<string, unknown>): Logger;
  /** The level of this logger's family: setting it on any of them sets it on all. */
  level: string;
}

export interface LoggerOptions {
  level: string;
  /** Fields on every line, first after `time` (e.g. `pid`, `service`). */
  base?: Record<string, unknown>;
  /**
   * Field paths whose values are replaced by `[redacted]`: `token`, `headers.authorization`, and
   * `*` for any one key (`*.password`). Applied to the fields of each line and to bindings.
   */
  redact?: readonly string[];
  destination?: DestinationStream;
}

const CENSOR = '[redacted]';
/** How deep nested objects and error causes are written before `[Object]` stands in. */
const MAX_DEPTH = 6;

interface Family {
  threshold: number;
  name: string;
  redact: string[][];
  destination: DestinationStream;
}

function thresholdOf(level: string): number {
  if (level === 'silent') return Number.POSITIVE_INFINITY;
  const n = (LEVELS as Record<string, number>)[level];
  if (n === undefined)
    throw new Error(`unknown log level "${level}" (one of ${Object.keys(LEVELS).join(', ')}, silent)`);
  return n;
}

/** An Error as written under `err`: type, message, stack, own fields, and its cause. */
function serializeError(err: Error, depth: number): Record<string, unknown> {
  const out: Record<string, unknown> = { type: err.constructor?.name ?? 'Error', message: err.message };
  if (err.stack !== undefined) out['stack'] = err.stack;
  for (const [k, v] of Object.entries(err)) if (!(k in out)) out[k] = v;
  if (err.cause !== undefined && depth < MAX_DEPTH)
    out['cause'] = err.cause instanceof Error ? serializeError(err.cause, depth + 1) : err.cause;
  if (err instanceof AggregateError && depth < MAX_DEPTH)
    out['aggregateErrors'] = err.errors.map((e: unknown) =>
      e instanceof Error ? serializeError(e, depth + 1) : e,
    );
  return out;
}

/**
 * `value` with the path censored, copying only the objects on the way to a censored field, so
 * the caller's objects are never changed and lines without secrets cost no copies. Errors are
 * turned into their serialized form first, so their own fields are censored too.
 */
function censor(value: unknown, path: readonly string[], at: number): unknown {
  if (value === null || typeof value !== 'object') return value;
  const key = path[at];
  if (key === undefined) return value;
  const source = (value instanceof Error ? serializeError(value, 0) : value) as Record<string, unknown>;
  let copy: Record<string, unknown> | undefined;
  for (const k of key === '*' ? Object.keys(source) : Object.hasOwn(source, key) ? [key] : []) {
    const next = at === path.length - 1 ? CENSOR : censor(source[k], path, at + 1);
    if (next === source[k]) continue;
    copy ??= Array.isArray(source) ? ([...source] as never) : { ...source };
    copy[k] = next;
  }
  return copy ?? value;
}

function redacted(fields: Record<string, unknown>, paths: string[][]): Record<string, unknown> {
  let out: unknown = fields;
  for (const p of paths) out = censor(out, p, 0);
  return out as Record<string, unknown>;
}

/** JSON.stringify that survives cycles, BigInt and Errors nested anywhere. */
function stringify(line: Record<string, unknown>): string {
  const seen: object[] = [];
  return JSON.stringify(line, function (this: unknown, _key, value: unknown) {
    if (typeof value === 'bigint') return value.toString();
    if (value === null || typeof value !== 'object') return value;
    // `seen` holds the ancestors of the value being written, so siblings may share objects.
    while (seen.length > 0 && seen[seen.length - 1] !== this) seen.pop();
    if (seen.includes(value)) return '[Circular]';
    if (seen.length >= MAX_DEPTH + 2) return Array.isArray(value) ? '[Array]' : '[Object]';
    const out = value instanceof Error ? serializeError(value, 0) : value;
    // A serialized Error is a new object each time: the depth cap ends a cycle through one.
    seen.push(out);
    return out;
  });
}

class JsonLogger implements Logger {
  /** The base and bindings, already JSON, written after `time`: `,"pid":1,"component":"x"`. */
  private readonly prefix: string;

  constructor(
    private readonly family: Family,
    private readonly bindings: Record<string, unknown>,
  ) {
    const text = stringify(redacted(bindings, family.redact));
    this.prefix = text === '{}' ? '' : `,${text.slice(1, -1)}`;
  }

  get level(): string {
    return this.family.name;
  }

  set level(next: string) {
    this.family.threshold = thresholdOf(next);
    this.family.name = next;
  }

  child(bindings: Record<string, unknown>): Logger {
    return new JsonLogger(this.family, { ...this.bindings, ...bindings });
  }

  private write(level: number, a: object | string, message?: string): void {
    if (level < this.family.threshold) return;
    let fields: Record<string, unknown> | undefined;
    let msg = message;
    if (typeof a === 'string') msg = a;
    else if (a instanceof Error) {
      fields = { err: a };
      msg ??= a.message;
    } else fields = a as Record<string, unknown>;
    let body = '';
    if (fields !== undefined) {
      const text = stringify(redacted(fields, this.family.redact));
      if (text !== '{}') body = `,${text.slice(1, -1)}`;
    }
    const tail = msg === undefined ? '' : `,"msg":${JSON.stringify(msg)}`;
    this.family.destination.write(
      `{"level":${level},"time":"${new Date().toISOString()}"${this.prefix}${body}${tail}}\n`,
    );
  }

  trace: LogFn = (a: object | string, m?: string) => this.write(10, a, m);
  debug: LogFn = (a: object | string, m?: string) => this.write(20, a, m);
  info: LogFn = (a: object | string, m?: string) => this.write(30, a, m);
  warn: LogFn = (a: object | string, m?: string) => this.write(40, a, m);
  error: LogFn = (a: object | string, m?: string) => this.write(50, a, m);
  fatal: LogFn = (a: object | string, m?: string) => this.write(60, a, m);
}

export function createJsonLogger(options: LoggerOptions): Logger {
  const family: Family = {
    threshold: thresholdOf(options.level),
    name: options.level,
    redact: (options.redact ?? []).map((p) => p.split('.')),
    destination: options.destination ?? process.stdout,
  };
  return new JsonLogger(family, options.base ?? {});
}
