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

/** Decodes a sensor message into readings; throws PayloadError on anything malformed. */
export function decodePayload(payload: Payload, body: Buffer | string, channels: number): Reading[] {
  let readings: Reading[];
  switch (payload.format) {
    case 'json': {
      let parsed: unknown;
      try {
        parsed = JSON.parse(typeof body === 'string' ? body : body.toString('utf8'));
      } catch {
        throw new PayloadError('not valid JSON');
      }
      const value = at(parsed, payload.field);
      if (value === undefined) throw new PayloadError(`field ${payload.field} is missing`);
      readings = toReadings(value, channels);
      break;
    }
    case 'csv': {
      const text = typeof body === 'string' ? body : body.toString('utf8');
      readings = [];
      for (const line of text.split(/\r?\n/)) {
        if (line.trim() === '') continue;
        const cells = line.split(',').map((c) => c.trim());
        const picked = payload.columns === undefined ? cells : payload.columns.map((c) => cells[c] ?? '');
        const row = picked.map(Number);
        if (row.some((v, i) => !Number.isFinite(v) || picked[i] === ''))
          throw new PayloadError(`bad CSV line: ${line.slice(0, 80)}`);
        readings.push(row);
      }
      break;
    }
    case 'f32le': {
      const buf = typeof body === 'string' ? Buffer.from(body, 'binary') : body;
      if (buf.length % 4 !== 0)
        throw new PayloadError(`f32le payload of ${buf.length} bytes is not a multiple of 4`);
      const values: number[] = [];
      for (let i = 0; i < buf.length; i += 4) values.push(buf.readFloatLE(i));
      readings = toReadings(values, channels);
      break;
    }
  }
  for (const r of readings) {
    if (r.length !== channels)
      throw new PayloadError(`a reading has ${r.length} values, the pipeline expects ${channels}`);
    if (r.some((v) => !Number.isFinite(v)))
      throw new PayloadError('a reading holds a value that is not a finite number');
  }
  return readings;
}
