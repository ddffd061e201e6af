import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeTime } from 'ulid';
import { EnvelopeFactory } from '../shared/envelope.ts';
import { monotonicUlid } from '../shared/ulid.ts';

const ULID = /^[0-7][0-9A-HJKMNP-TV-Z]{25}$/;

test('encode() gives the bytes JSON.stringify(make()) gives, with ids and seqs in step', () => {
  let clock = Date.parse('2026-11-29T23:50:23.569Z');
  const source = { deviceId: 'dev "quoted" ü', bootId: 'c16cf2ff-0aa8-429a-9fae-a637731db0d3' };
  const encoder = new EnvelopeFactory(source, () => clock);
  const maker = new EnvelopeFactory(source, () => clock);
  const model = { name: 'linear-regression', version: '1.0.0', sha256: 'a'.repeat(64) };
  const bodies: unknown[] = [
    { key: 's1', values: [12345.25, -0.5, 1e-7] },
    { key: 'x\n"y"', label: 'ç', top: [{ index: 0, score: 0.25 }] },
    [],
    'text',
    null,
  ];
  for (const body of bodies) {
    for (const m of [model, undefined]) {
      clock += 1;
      const { id, json } = encoder.encode('prediction', body, m);
      const envelope = maker.make('prediction', body, m);
      // Two factories at the same clock draw different random parts: compare with the id swapped in.
      assert.equal(json, JSON.stringify({ ...envelope, id }));
      assert.deepEqual(JSON.parse(json), { ...envelope, id });
      assert.match(id, ULID);
    }
  }
  // A body JSON cannot encode (undefined) leaves it out, exactly as JSON.stringify does.
  const { json } = encoder.encode('event', undefined);
  assert.equal((JSON.parse(json) as { body?: unknown }).body, undefined);
});

test('ULIDs are valid, carry their millisecond, and sort in creation order within one', () => {
  const next = monotonicUlid();
  const ms = Date.parse('2026-11-29T23:50:23.569Z');
  const ids = [next(ms), next(ms), next(ms), next(ms - 5), next(ms + 1), next(ms + 1)];
  for (const id of ids) assert.match(id, ULID);
  assert.deepEqual([...ids].sort(), ids);
  assert.equal(new Set(ids).size, ids.length);
  assert.equal(decodeTime(ids[0] as string), ms);
  // A clock stepping back keeps the last millisecond, so order holds.
  assert.equal(decodeTime(ids[3] as string), ms);
  assert.equal(decodeTime(ids[4] as string), ms + 1);
  // Many ids in one millisecond carry through the random part's digits.
  const burst = Array.from({ length: 5_000 }, () => next(ms + 2));
  assert.deepEqual([...burst].sort(), burst);
  assert.equal(new Set(burst).size, burst.length);
});
