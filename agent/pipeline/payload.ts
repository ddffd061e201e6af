import type { Payload } from '../../shared/pipeline/schema.ts';

/** One reading: the values of all channels at one instant. */
export type Reading = number[];

export class PayloadError extends Error {}

function at(value: unknown, path: string): unknown {
  let node = value;
  for (const part of path.split('.')) {
    if (typeof node !== 'object' || node === null) return undefined;
    node = (node as Record<string, unknown>)[part];
  }
  return node;
}

function toReadings(value: unknown, channels: number): Reading[] {
  if (typeof value === 'number') return [[value]];
  if (!Array.isArray(value)) throw new PayloadError('expected a number or an array of numbers');
  if (value.every((v) => typeof v === 'number')) {
    const flat = value as number[];
    // A flat array is one reading of `channels` values, or several readings laid end to end.
    if (flat.length === channels) return [flat];
    if (flat.length % channels !== 0)
      throw new PayloadError(`${flat.length} values do not divide into readings of ${channels}`);
    const out: Reading[] = [];
    for (let i = 0; i < flat.length; i += channels) out.push(flat.slice(i, i + channels));
    return out;
  }
  return value.map((row) => {
    if (!Array.isArray(row) || !row.every((v) => typeof v === 'number')) {
      throw new PayloadError('expected an array of arrays of numbers');
    }
    return row as number[];
  });
}

/** Readings that belong to one sensor key. */
export interface KeyedReadings {
  key: string;
  readings: Reading[];
}

/** Decodes a sensor message into readings; throws PayloadError on anything malformed. */
export function decodePayload(payload: Payload, body: Buffer | string, channels: number): Reading[] {
  const out: Reading[] = [];
  for (const r of decodeKeyed(payload, body, channels, undefined, '')) out.push(...r.readings);
  return out;
}

/**
 * Decodes a message that may carry several records, each naming its sensor: a JSON object, a
 * JSON array of objects or NDJSON (the key in `keyField`), or CSV lines (the key in the
 * payload's `keyColumn`). Records without a key go to `defaultKey`. All or nothing: one bad
 * record makes the whole message malformed, so a caller never half-accepts a body.
 */
export function decodeKeyed(
  payload: Payload,
  body: Buffer | string,
  channels: number,
  keyField: string | undefined,
  defaultKey: string,
): KeyedReadings[] {
  let records: KeyedReadings[];
  switch (payload.format) {
    case 'json': {
      const text = typeof body === 'string' ? body : body.toString('utf8');
      records = jsonRecords(text).map((record) => {
        const value = at(record, payload.field);
        if (value === undefined) throw new PayloadError(`field ${payload.field} is missing`);
        return { key: recordKey(record, keyField, defaultKey), readings: toReadings(value, channels) };
      });
      break;
    }
    case 'csv': {
      const text = typeof body === 'string' ? body : body.toString('utf8');
      records = [];
      for (const line of text.split(/\r?\n/)) {
        if (line.trim() === '') continue;
        const cells = line.split(',').map((c) => c.trim());
        const keyColumn = payload.keyColumn;
        const columns =
          payload.columns ?? cells.map((_, i) => i).filter((i) => keyColumn === undefined || i !== keyColumn);
        const picked = columns.map((c) => cells[c] ?? '');
        const row = picked.map(Number);
        if (row.some((v, i) => !Number.isFinite(v) || picked[i] === ''))
          throw new PayloadError(`bad CSV line: ${line.slice(0, 80)}`);
        let key = defaultKey;
        if (keyColumn !== undefined) {
          const cell = cells[keyColumn];
          if (cell === undefined || cell === '')
            throw new PayloadError(`CSV line has no key in column ${keyColumn}`);
          key = cell;
        }
        records.push({ key, readings: [row] });
      }
      break;
    }
    case 'f32le': {
      const buf = typeof body === 'string' ? Buffer.from(body, 'binary') : body;
      if (buf.length % 4 !== 0)
        throw new PayloadError(`f32le payload of ${buf.length} bytes is not a multiple of 4`);
      const values: number[] = [];
      for (let i = 0; i < buf.length; i += 4) values.push(buf.readFloatLE(i));
      records = [{ key: defaultKey, readings: toReadings(values, channels) }];
      break;
    }
  }
  for (const record of records) {
    for (const r of record.readings) {
      if (r.length !== channels)
        throw new PayloadError(`a reading has ${r.length} values, the pipeline expects ${channels}`);
      if (r.some((v) => !Number.isFinite(v)))
        throw new PayloadError('a reading holds a value that is not a finite number');
    }
  }
  return records;
}

const KEY_LEVEL = /^[A-Za-z0-9._:-]{1,128}$/;

function recordKey(record: unknown, keyField: string | undefined, defaultKey: string): string {
  if (keyField === undefined) return defaultKey;
  const key = at(record, keyField);
  if (typeof key === 'number' && Number.isFinite(key)) return String(key);
  if (typeof key !== 'string' || !KEY_LEVEL.test(key))
    throw new PayloadError(`field ${keyField} must name the sensor (1-128 letters, digits, . _ : -)`);
  return key;
}

/** One JSON value, a JSON array of records, or NDJSON (one JSON value per line). */
function jsonRecords(text: string): unknown[] {
  try {
    const parsed: unknown = JSON.parse(text);
    if (
      Array.isArray(parsed) &&
      parsed.length > 0 &&
      parsed.every((p) => typeof p === 'object' && p !== null)
    )
      return parsed;
    return [parsed];
  } catch {
    if (!text.includes('\n')) throw new PayloadError('not valid JSON');
  }
  const out: unknown[] = [];
  for (const line of text.split(/\r?\n/)) {
    if (line.trim() === '') continue;
    try {
      out.push(JSON.parse(line));
    } catch {
      throw new PayloadError(`not valid JSON: ${line.slice(0, 80)}`);
    }
  }
  return out;
}
