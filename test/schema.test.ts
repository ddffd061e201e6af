import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type Infer, type Input, z } from '../shared/schema.ts';
import { describeIssues, parseOrThrow } from '../shared/validate.ts';

const problems = (
  schema: { safeParse(v: unknown): { success: boolean; error?: unknown } },
  value: unknown,
) => {
  const r = schema.safeParse(value);
  assert.equal(r.success, false, `expected ${JSON.stringify(value)} to be refused`);
  return describeIssues(r.error as never);
};

const point = z
  .object({
    x: z.number().int().min(0).max(10),
    label: z
      .string()
      .min(1)
      .regex(/^[a-z]+$/, 'lowercase letters only'),
    tags: z.array(z.string()).min(1).optional(),
    mode: z.enum(['a', 'b']).default('a'),
  })
  .strict();

test('every problem is reported with its path, and the inferred types follow the schema', () => {
  const ok: Infer<typeof point> = point.parse({ x: 3, label: 'abc' });
  assert.deepEqual(ok, { x: 3, label: 'abc', mode: 'a' });
  const input: Input<typeof point> = { x: 1, label: 'q' };
  assert.equal(point.parse(input).mode, 'a');
  assert.deepEqual(problems(point, { x: 11.5, label: 'ABC', tags: [], mode: 'c', extra: 1 }), [
    'x: must be an integer',
    'label: lowercase letters only',
    'tags: must have at least 1 item',
    'mode: must be one of "a", "b"',
    'extra: unknown field (expected one of x, label, tags, mode)',
  ]);
  assert.deepEqual(problems(point, { label: 7 }), [
    'x: required (a number)',
    'label: expected a string, got number',
  ]);
  assert.deepEqual(problems(point, []), ['(root): expected an object, got array']);
  assert.deepEqual(problems(z.number(), Number.NaN), ['(root): must be a finite number, got NaN']);
  assert.deepEqual(problems(z.array(z.number().positive()), [1, -2]), ['1: must be > 0']);
  assert.throws(
    () => parseOrThrow(point, { x: -1, label: 'a' }, 'point', 'BAD_REQUEST', 'body'),
    /point: body\.x: must be ≥ 0/,
  );
});

test('unknown keys are dropped by default, refused by strict() and kept by loose()', () => {
  const shape = { a: z.number() };
  assert.deepEqual(z.object(shape).parse({ a: 1, b: 2 }), { a: 1 });
  assert.deepEqual(problems(z.object(shape).strict(), { a: 1, b: 2 }), [
    'b: unknown field (expected one of a)',
  ]);
  assert.deepEqual(z.object(shape).loose().parse({ a: 1, b: 2 }), { a: 1, b: 2 });
});

test('modifiers return new schemas: a shared base is never changed', () => {
  const base = z.number().int();
  const small = base.max(5);
  assert.equal(base.parse(100), 100);
  assert.deepEqual(problems(small, 6), ['(root): must be ≤ 5']);
  const strict = z.object({ a: z.number() });
  strict.strict();
  assert.deepEqual(strict.parse({ a: 1, b: 1 }), { a: 1 });
});

test('defaults are copies, prefaults are parsed, optionals stay absent', () => {
  const s = z
    .object({
      list: z.array(z.number()).default([]),
      inner: z.object({ n: z.number().default(4) }).prefault({}),
      note: z.string().optional(),
      id: z.string().default(() => 'made'),
    })
    .strict();
  const a = s.parse({});
  const b = s.parse({});
  a.list.push(1);
  assert.deepEqual(b, { list: [], inner: { n: 4 }, id: 'made' }, 'each parse gets its own default');
  assert.ok(!('note' in b));
  assert.deepEqual(problems(s, { inner: { n: 'x' } }), ['inner.n: expected a number, got string']);
});

test('unions take the first form that fits and explain a near miss; discriminated unions name the tag', () => {
  const mqtt = z.union([
    z.literal('uplink'),
    z.literal('off'),
    z.object({ url: z.string().min(3) }).strict(),
  ]);
  assert.equal(mqtt.parse('off'), 'off');
  assert.deepEqual(mqtt.parse({ url: 'mqtt://x' }), { url: 'mqtt://x' });
  assert.deepEqual(problems(mqtt, { url: 'x' }), ['url: must be at least 3 characters']);
  assert.deepEqual(problems(mqtt, 'on'), ['(root): must be "uplink", "off" or an object']);
  const shape = z.discriminatedUnion('kind', [
    z.object({ kind: z.literal('circle'), r: z.number().positive() }).strict(),
    z.object({ kind: z.literal('square'), side: z.number() }).strict(),
  ]);
  assert.deepEqual(shape.parse({ kind: 'circle', r: 2 }), { kind: 'circle', r: 2 });
  assert.deepEqual(problems(shape, { kind: 'circle', r: 0 }), ['r: must be > 0']);
  assert.deepEqual(problems(shape, { kind: 'hexagon' }), ['kind: must be one of "circle", "square"']);
});

test('records check keys and values; refinements and transforms add their own issues', () => {
  const streams = z.record(z.string().regex(/^[a-z]+$/), z.number());
  assert.deepEqual(streams.parse({ ab: 1 }), { ab: 1 });
  assert.deepEqual(problems(streams, { 'A/B': 'x' }), [
    'A/B: must match /^[a-z]+$/',
    'A/B: expected a number, got string',
  ]);
  const window = z
    .object({ size: z.number(), hop: z.number() })
    .refine((w) => w.hop <= w.size, { message: 'must not exceed size', path: ['hop'] });
  assert.deepEqual(problems(window, { size: 1, hop: 2 }), ['hop: must not exceed size']);
  assert.deepEqual(problems(window, { size: 'x', hop: 2 }), ['size: expected a number, got string']);
  const budget = z.object({ a: z.number(), b: z.number() }).superRefine((v, ctx) => {
    if (v.a > v.b) ctx.addIssue({ path: ['a'], message: 'must not exceed b' });
  });
  assert.deepEqual(problems(budget, { a: 2, b: 1 }), ['a: must not exceed b']);
  const seconds = z.union([z.number(), z.string()]).transform((v, ctx) => {
    const n = Number(v);
    if (Number.isNaN(n)) ctx.addIssue({ message: 'not a duration' });
    return n * 1000;
  });
  assert.equal(seconds.parse('2'), 2000);
  assert.deepEqual(problems(seconds, 'soon'), ['(root): not a duration']);
  assert.deepEqual(problems(z.string().url().nullable(), 'not a url'), ['(root): must be a URL']);
  assert.equal(z.string().url().nullable().parse(null), null);
  assert.equal(z.string().trim().min(1).parse('  a '), 'a');
});
