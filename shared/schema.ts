/**
 * Declarative validation for configs, manifests, pipelines and API bodies: a schema states
 * the shape, the TypeScript types are inferred from it, and parsing reports every problem with
 * the path of the field it concerns. The surface follows the common `z.object({…}).strict()`
 * style so schemas read as they do elsewhere; the implementation is small on purpose, because
 * the agent validates its config at boot and bundle manifests at install and then keeps every
 * module it loaded for its whole life (a general-purpose validation library cost ~8 MiB of
 * resident memory there).
 */

export type Path = (string | number)[];

export interface Issue {
  path: Path;
  message: string;
}

/** One problem as a line naming its field: `pipeline.window.size: must be ≥ 1`. */
export function describeIssue(issue: Issue, prefix = ''): string {
  const path = [prefix, ...issue.path.map(String)].filter((p) => p !== '').join('.');
  return `${path === '' ? '(root)' : path}: ${issue.message}`;
}

/** What a failed parse throws or returns: every problem found, not just the first. */
export class SchemaError extends Error {
  constructor(readonly issues: Issue[]) {
    super(issues.map((i) => describeIssue(i)).join('; '));
    this.name = 'SchemaError';
  }
}

export type SafeParseResult<T> = { success: true; data: T } | { success: false; error: SchemaError };

/** A check's verdict on a value: `null` when it passes, else what is wrong. */
type Check<T> = (value: T) => string | null;

export interface RefineContext {
  addIssue(issue: { path?: Path; message: string; code?: string }): void;
}

const INVALID: unique symbol = Symbol('invalid');
type Parsed<T> = T | typeof INVALID;

/** A copy of a schema with some fields changed: modifiers return one, so a base schema can be shared. */
function cloneWith<T extends object>(schema: T, change: Record<string, unknown>): T {
  return Object.assign(Object.create(Object.getPrototypeOf(schema) as object) as T, schema, change);
}

function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  return typeof value;
}

function mismatch(expected: string, value: unknown): string {
  return value === undefined ? `required (${expected})` : `expected ${expected}, got ${kindOf(value)}`;
}

export abstract class Schema<Out = unknown, In = Out> {
  /** Type-level only: what parsing gives and what it accepts. */
  declare readonly _output: Out;
  declare readonly _input: In;
  /** Run on the parsed value; typed loosely so a schema of any type is a `Schema<unknown>`. */
  private refinements: ((value: unknown, path: Path, issues: Issue[]) => void)[] = [];

  /** Checks the value itself; refinements run after it, on a valid value only. */
  protected abstract check(value: unknown, path: Path, issues: Issue[]): Parsed<Out>;

  /** A phrase for messages: `a number`, `"uplink"`. */
  abstract describe(): string;

  run(value: unknown, path: Path, issues: Issue[]): Parsed<Out> {
    const before = issues.length;
    const out = this.check(value, path, issues);
    if (out === INVALID || issues.length > before) return INVALID;
    for (const refine of this.refinements) refine(out, path, issues);
    return issues.length > before ? INVALID : out;
  }

  safeParse(value: unknown): SafeParseResult<Out> {
    const issues: Issue[] = [];
    const out = this.run(value, [], issues);
    return out === INVALID
      ? { success: false, error: new SchemaError(issues) }
      : { success: true, data: out };
  }

  parse(value: unknown): Out {
    const result = this.safeParse(value);
    if (!result.success) throw result.error;
    return result.data;
  }

  refine(ok: (value: Out) => boolean, message: string | { message: string; path?: Path }): this {
    const issue = typeof message === 'string' ? { message } : message;
    return this.superRefine((value, ctx) => {
      if (!ok(value)) ctx.addIssue(issue);
    });
  }

  superRefine(fn: (value: Out, ctx: RefineContext) => void): this {
    return cloneWith(this, {
      refinements: [
        ...this.refinements,
        (value: unknown, path: Path, issues: Issue[]) => fn(value as Out, contextAt(path, issues)),
      ],
    });
  }

  optional(): OptionalSchema<this> {
    return new OptionalSchema(this);
  }

  nullable(): NullableSchema<this> {
    return new NullableSchema(this);
  }

  /** Missing (undefined) gives `value` (a copy of it), or what `value()` returns. */
  default(value: Out | (() => Out)): DefaultSchema<this> {
    return new DefaultSchema(this, value);
  }

  /** Missing (undefined) parses `input` instead: `.prefault({})` fills an object's own defaults. */
  prefault(input: In): PrefaultSchema<this> {
    return new PrefaultSchema(this, input);
  }

  /** Maps the parsed value; `fn` may add issues (and return `NEVER`) to reject it. */
  transform<T>(fn: (value: Out, ctx: RefineContext) => T): TransformSchema<this, T> {
    return new TransformSchema(this, fn);
  }

  array(): ArraySchema<this> {
    return new ArraySchema(this);
  }
}

/** Any schema, as generic code sees it (the class's modifiers are left out so types stay flat). */
export interface AnySchema {
  readonly _output: unknown;
  readonly _input: unknown;
  run(value: unknown, path: Path, issues: Issue[]): unknown;
  describe(): string;
  safeParse(value: unknown): SafeParseResult<unknown>;
}
type output<S extends AnySchema> = S['_output'];
type input<S extends AnySchema> = S['_input'];
/** What parsing with `S` gives. */
export type Infer<S extends AnySchema> = output<S>;
/** What parsing with `S` accepts (fields with defaults are optional). */
export type Input<S extends AnySchema> = input<S>;

function contextAt(path: Path, issues: Issue[]): RefineContext {
  return {
    addIssue: (issue) => issues.push({ path: [...path, ...(issue.path ?? [])], message: issue.message }),
  };
}

/** A schema around another one: optional, default, prefault, nullable, transform. */
export abstract class WrapperSchema<S extends AnySchema, Out, In> extends Schema<Out, In> {
  constructor(readonly inner: S) {
    super();
  }

  describe(): string {
    return this.inner.describe();
  }
}

export class OptionalSchema<S extends AnySchema> extends WrapperSchema<
  S,
  output<S> | undefined,
  input<S> | undefined
> {
  protected check(value: unknown, path: Path, issues: Issue[]): Parsed<output<S> | undefined> {
    return value === undefined ? undefined : this.inner.run(value, path, issues);
  }
}

export class NullableSchema<S extends AnySchema> extends WrapperSchema<S, output<S> | null, input<S> | null> {
  protected check(value: unknown, path: Path, issues: Issue[]): Parsed<output<S> | null> {
    return value === null ? null : this.inner.run(value, path, issues);
  }

  override describe(): string {
    return `${this.inner.describe()} or null`;
  }
}

export class DefaultSchema<S extends AnySchema> extends WrapperSchema<S, output<S>, input<S> | undefined> {
  constructor(
    inner: S,
    private readonly fallback: output<S> | (() => output<S>),
  ) {
    super(inner);
  }

  protected check(value: unknown, path: Path, issues: Issue[]): Parsed<output<S>> {
    if (value !== undefined) return this.inner.run(value, path, issues);
    // A copy each time: parsed results may be changed or frozen by their owner.
    return typeof this.fallback === 'function'
      ? (this.fallback as () => output<S>)()
      : structuredClone(this.fallback);
  }
}

export class PrefaultSchema<S extends AnySchema> extends WrapperSchema<S, output<S>, input<S> | undefined> {
  constructor(
    inner: S,
    private readonly fallback: input<S>,
  ) {
    super(inner);
  }

  protected check(value: unknown, path: Path, issues: Issue[]): Parsed<output<S>> {
    return this.inner.run(value === undefined ? structuredClone(this.fallback) : value, path, issues);
  }
}

export class TransformSchema<S extends AnySchema, T> extends WrapperSchema<S, T, input<S>> {
  constructor(
    inner: S,
    private readonly fn: (value: output<S>, ctx: RefineContext) => T,
  ) {
    super(inner);
  }

  protected check(value: unknown, path: Path, issues: Issue[]): Parsed<T> {
    const out = this.inner.run(value, path, issues);
    if (out === INVALID) return INVALID;
    const before = issues.length;
    const mapped = this.fn(out, contextAt(path, issues));
    return issues.length > before ? INVALID : mapped;
  }
}

/** Schemas of one JS type with a list of checks (bounds, patterns) run in order. */
abstract class CheckedSchema<T> extends Schema<T> {
  protected checks: Check<T>[] = [];

  protected with(check: Check<T>): this {
    return cloneWith(this, { checks: [...this.checks, check] });
  }

  protected checked(value: T, path: Path, issues: Issue[]): Parsed<T> {
    for (const check of this.checks) {
      const problem = check(value);
      if (problem !== null) {
        issues.push({ path, message: problem });
        return INVALID;
      }
    }
    return value;
  }
}

export class StringSchema extends CheckedSchema<string> {
  private trimmed = false;

  describe(): string {
    return 'a string';
  }

  protected check(value: unknown, path: Path, issues: Issue[]): Parsed<string> {
    if (typeof value !== 'string') {
      issues.push({ path, message: mismatch('a string', value) });
      return INVALID;
    }
    return this.checked(this.trimmed ? value.trim() : value, path, issues);
  }

  min(n: number, message?: string): this {
    return this.with((s) => (s.length >= n ? null : (message ?? `must be at least ${n} characters`)));
  }

  max(n: number, message?: string): this {
    return this.with((s) => (s.length <= n ? null : (message ?? `must be at most ${n} characters`)));
  }

  regex(pattern: RegExp, message?: string): this {
    return this.with((s) => (pattern.test(s) ? null : (message ?? `must match ${pattern}`)));
  }

  startsWith(prefix: string, message?: string): this {
    return this.with((s) => (s.startsWith(prefix) ? null : (message ?? `must start with "${prefix}"`)));
  }

  url(message?: string): this {
    return this.with((s) => (URL.canParse(s) ? null : (message ?? 'must be a URL')));
  }

  trim(): this {
    return cloneWith(this, { trimmed: true });
  }
}

export class NumberSchema extends CheckedSchema<number> {
  describe(): string {
    return 'a number';
  }

  protected check(value: unknown, path: Path, issues: Issue[]): Parsed<number> {
    if (typeof value !== 'number' || !Number.isFinite(value)) {
      issues.push({
        path,
        message:
          typeof value === 'number' ? `must be a finite number, got ${value}` : mismatch('a number', value),
      });
      return INVALID;
    }
    return this.checked(value, path, issues);
  }

  int(message?: string): this {
    return this.with((n) => (Number.isInteger(n) ? null : (message ?? 'must be an integer')));
  }

  min(n: number, message?: string): this {
    return this.with((v) => (v >= n ? null : (message ?? `must be ≥ ${n}`)));
  }

  max(n: number, message?: string): this {
    return this.with((v) => (v <= n ? null : (message ?? `must be ≤ ${n}`)));
  }

  positive(message?: string): this {
    return this.with((v) => (v > 0 ? null : (message ?? 'must be > 0')));
  }
}

export class BooleanSchema extends Schema<boolean> {
  describe(): string {
    return 'true or false';
  }

  protected check(value: unknown, path: Path, issues: Issue[]): Parsed<boolean> {
    if (typeof value === 'boolean') return value;
    issues.push({ path, message: mismatch('true or false', value) });
    return INVALID;
  }
}

export class UnknownSchema extends Schema<unknown> {
  describe(): string {
    return 'any value';
  }

  protected check(value: unknown): unknown {
    return value;
  }
}

type Primitive = string | number | boolean | null;

export class LiteralSchema<T extends Primitive> extends Schema<T> {
  constructor(readonly value: T) {
    super();
  }

  describe(): string {
    return JSON.stringify(this.value);
  }

  protected check(value: unknown, path: Path, issues: Issue[]): Parsed<T> {
    if (value === this.value) return value as T;
    issues.push({
      path,
      message: value === undefined ? `required (${this.describe()})` : `must be ${this.describe()}`,
    });
    return INVALID;
  }
}

export class EnumSchema<T extends string> extends Schema<T> {
  constructor(readonly options: readonly T[]) {
    super();
  }

  describe(): string {
    return `one of ${this.options.map((o) => JSON.stringify(o)).join(', ')}`;
  }

  protected check(value: unknown, path: Path, issues: Issue[]): Parsed<T> {
    if (typeof value === 'string' && (this.options as readonly string[]).includes(value)) return value as T;
    issues.push({
      path,
      message: value === undefined ? `required (${this.describe()})` : `must be ${this.describe()}`,
    });
    return INVALID;
  }
}

export class ArraySchema<S extends AnySchema> extends Schema<output<S>[], input<S>[]> {
  private minItems = 0;
  private maxItems = Number.POSITIVE_INFINITY;

  constructor(readonly element: S) {
    super();
  }

  describe(): string {
    return 'an array';
  }

  min(n: number): this {
    return cloneWith(this, { minItems: n });
  }

  max(n: number): this {
    return cloneWith(this, { maxItems: n });
  }

  protected check(value: unknown, path: Path, issues: Issue[]): Parsed<output<S>[]> {
    if (!Array.isArray(value)) {
      issues.push({ path, message: mismatch('an array', value) });
      return INVALID;
    }
    if (value.length < this.minItems) {
      issues.push({
        path,
        message: `must have at least ${this.minItems} item${this.minItems === 1 ? '' : 's'}`,
      });
      return INVALID;
    }
    if (value.length > this.maxItems) {
      issues.push({ path, message: `must have at most ${this.maxItems} items` });
      return INVALID;
    }
    const before = issues.length;
    const out = value.map((item, i) => this.element.run(item, [...path, i], issues));
    return issues.length > before ? INVALID : out;
  }
}

export type Shape = Record<string, AnySchema>;
type OptionalKeys<T> = { [K in keyof T]: undefined extends T[K] ? K : never }[keyof T];
type Flatten<T> = { [K in keyof T]: T[K] } & {};
type WithOptionals<T> = Flatten<
  { [K in Exclude<keyof T, OptionalKeys<T>>]: T[K] } & { [K in OptionalKeys<T>]?: T[K] }
>;
export type ObjectOutput<S extends Shape> = WithOptionals<{ [K in keyof S]: output<S[K]> }>;
export type ObjectInput<S extends Shape> = WithOptionals<{ [K in keyof S]: input<S[K]> }>;

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export class ObjectSchema<S extends Shape> extends Schema<ObjectOutput<S>, ObjectInput<S>> {
  /** Unknown keys: dropped from the result, each reported (strict), or kept as they are (loose). */
  private unknownKeys: 'strip' | 'strict' | 'loose' = 'strip';

  constructor(readonly shape: S) {
    super();
  }

  describe(): string {
    return 'an object';
  }

  strict(): this {
    return cloneWith(this, { unknownKeys: 'strict' });
  }

  /** Unknown keys are kept: for signed documents, whose signature covers every field. */
  loose(): this {
    return cloneWith(this, { unknownKeys: 'loose' });
  }

  /** The default: unknown keys are dropped (for bodies from newer peers). */
  strip(): this {
    return cloneWith(this, { unknownKeys: 'strip' });
  }

  protected check(value: unknown, path: Path, issues: Issue[]): Parsed<ObjectOutput<S>> {
    if (!isPlainObject(value)) {
      issues.push({ path, message: mismatch('an object', value) });
      return INVALID;
    }
    const before = issues.length;
    const out: Record<string, unknown> = {};
    for (const [key, schema] of Object.entries(this.shape)) {
      const parsed = schema.run(value[key], [...path, key], issues);
      if (parsed !== undefined && parsed !== INVALID) out[key] = parsed;
    }
    if (this.unknownKeys !== 'strip') {
      for (const key of Object.keys(value)) {
        if (Object.hasOwn(this.shape, key)) continue;
        if (this.unknownKeys === 'loose') out[key] = value[key];
        else
          issues.push({
            path: [...path, key],
            message: `unknown field (expected one of ${Object.keys(this.shape).join(', ')})`,
          });
      }
    }
    return issues.length > before ? INVALID : (out as ObjectOutput<S>);
  }
}

export class RecordSchema<K extends Schema<string>, V extends AnySchema> extends Schema<
  Record<output<K>, output<V>>,
  Record<input<K>, input<V>>
> {
  constructor(
    readonly keys: K,
    readonly values: V,
  ) {
    super();
  }

  describe(): string {
    return 'an object';
  }

  protected check(value: unknown, path: Path, issues: Issue[]): Parsed<Record<output<K>, output<V>>> {
    if (!isPlainObject(value)) {
      issues.push({ path, message: mismatch('an object', value) });
      return INVALID;
    }
    const before = issues.length;
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) {
      this.keys.run(key, [...path, key], issues);
      out[key] = this.values.run(item, [...path, key], issues);
    }
    return issues.length > before ? INVALID : (out as Record<output<K>, output<V>>);
  }
}

export class UnionSchema<O extends readonly AnySchema[]> extends Schema<output<O[number]>, input<O[number]>> {
  constructor(readonly options: O) {
    super();
  }

  describe(): string {
    const forms = this.options.map((o) => o.describe());
    return forms.length < 2 ? (forms[0] ?? 'nothing') : `${forms.slice(0, -1).join(', ')} or ${forms.at(-1)}`;
  }

  protected check(value: unknown, path: Path, issues: Issue[]): Parsed<output<O[number]>> {
    // The first form that takes the value wins. When none does, and exactly one form failed
    // below the top (an object of the right kind with a bad field), its problems are the
    // helpful ones; otherwise the message lists the forms.
    const near: Issue[][] = [];
    for (const option of this.options) {
      const attempt: Issue[] = [];
      const out = option.run(value, path, attempt);
      if (out !== INVALID) return out;
      if (attempt.every((i) => i.path.length > path.length)) near.push(attempt);
    }
    const [only] = near;
    if (near.length === 1 && only !== undefined) issues.push(...only);
    else
      issues.push({
        path,
        message: value === undefined ? `required (${this.describe()})` : `must be ${this.describe()}`,
      });
    return INVALID;
  }
}

/** An object schema whose field `D` is a literal. */
type DiscriminatedOption<D extends string> = AnySchema & {
  readonly shape: { readonly [K in D]: { readonly value: Primitive } };
};

export class DiscriminatedUnionSchema<
  D extends string,
  O extends readonly DiscriminatedOption<D>[],
> extends Schema<output<O[number]>, input<O[number]>> {
  private readonly byTag = new Map<unknown, O[number]>();

  constructor(
    readonly discriminator: D,
    readonly options: O,
  ) {
    super();
    for (const option of options) this.byTag.set(option.shape[discriminator].value, option);
  }

  describe(): string {
    return 'an object';
  }

  protected check(value: unknown, path: Path, issues: Issue[]): Parsed<output<O[number]>> {
    if (!isPlainObject(value)) {
      issues.push({ path, message: mismatch('an object', value) });
      return INVALID;
    }
    const option = this.byTag.get(value[this.discriminator]);
    if (option !== undefined) return option.run(value, path, issues);
    const tags = [...this.byTag.keys()].map((t) => JSON.stringify(t)).join(', ');
    issues.push({ path: [...path, this.discriminator], message: `must be one of ${tags}` });
    return INVALID;
  }
}

export const z = {
  /** What a transform returns after adding an issue: the value is rejected anyway. */
  NEVER: INVALID as never,
  string: () => new StringSchema(),
  number: () => new NumberSchema(),
  boolean: () => new BooleanSchema(),
  unknown: () => new UnknownSchema(),
  literal: <const T extends Primitive>(value: T) => new LiteralSchema(value),
  enum: <const T extends string>(options: readonly T[]) => new EnumSchema<T>(options),
  array: <S extends AnySchema>(element: S) => new ArraySchema(element),
  object: <S extends Shape>(shape: S) => new ObjectSchema(shape),
  record: <K extends Schema<string>, V extends AnySchema>(keys: K, values: V) =>
    new RecordSchema(keys, values),
  union: <const O extends readonly AnySchema[]>(options: O) => new UnionSchema(options),
  discriminatedUnion: <D extends string, const O extends readonly DiscriminatedOption<D>[]>(
    discriminator: D,
    options: O,
  ) => new DiscriminatedUnionSchema(discriminator, options),
};
