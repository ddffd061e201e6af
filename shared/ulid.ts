import { getRandomValues } from 'node:crypto';

/** Crockford's base32, the ULID alphabet. */
const B32 = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
const TIME_MAX = 2 ** 48 - 1;

/**
 * A monotonic ULID generator (github.com/ulid/spec): 48 bits of milliseconds, then 80 random
 * bits that are incremented, not redrawn, for further ids in the same millisecond (or when the
 * clock steps back), so ids of one generator always sort in the order they were made.
 *
 * It replaces the `ulid` package's monotonicFactory on the agent's per-message path: that one
 * encodes the time again and rebuilds the random part through string surgery for every id, and
 * asks the crypto module for one byte per random character; here the time part is encoded once
 * per millisecond and the random bytes come from a pooled buffer (still crypto-strength).
 */
export function monotonicUlid(): (ms: number) => string {
  const pool = new Uint8Array(4096);
  let pooled = pool.length;
  const digits = new Uint8Array(16);
  let lastMs = -1;
  let timePart = '';
  return (ms: number) => {
    if (ms > lastMs) {
      if (!(ms <= TIME_MAX)) throw new RangeError(`ULID time ${ms} is out of range`);
      lastMs = ms;
      timePart = encodeTime(ms);
      if (pooled + 16 > pool.length) {
        getRandomValues(pool);
        pooled = 0;
      }
      for (let i = 0; i < 16; i++) digits[i] = (pool[pooled++] as number) & 31;
    } else {
      let i = 15;
      while (i >= 0 && digits[i] === 31) digits[i--] = 0;
      if (i < 0) throw new RangeError('ULID random part overflowed within one millisecond');
      digits[i] = (digits[i] as number) + 1;
    }
    let random = '';
    for (let i = 0; i < 16; i++) random += B32[digits[i] as number];
    return timePart + random;
  };
}

function encodeTime(ms: number): string {
  let out = '';
  let t = ms;
  for (let i = 0; i < 10; i++) {
    out = B32[t % 32] + out;
    t = Math.floor(t / 32);
  }
  return out;
}
