interface KeyWindow {
  data: Float32Array;
  filled: number;
  /** Oldest row once the ring is full. */
  start: number;
  sinceEmit: number;
  emitted: boolean;
}

/**
 * Sliding windows, one per sensor key. A window of `size` readings is emitted as soon as the
 * first `size` readings are in, then every `hop` readings.
 */
export class Windower {
  private readonly buffers = new Map<string, KeyWindow>();

  constructor(
    readonly size: number,
    readonly hop: number,
    readonly channels: number,
    private readonly maxKeys = 10_000,
  ) {}

  /** Adds a reading; returns the window (size × channels, row-major, oldest first) when one is due. */
  push(key: string, reading: readonly number[]): Float32Array | undefined {
    let b = this.buffers.get(key);
    if (b === undefined) {
      if (this.buffers.size >= this.maxKeys) {
        const oldest = this.buffers.keys().next().value;
        if (oldest !== undefined) this.buffers.delete(oldest);
      }
      b = {
        data: new Float32Array(this.size * this.channels),
        filled: 0,
        start: 0,
        sinceEmit: 0,
        emitted: false,
      };
      this.buffers.set(key, b);
    }
    if (b.filled < this.size) {
      b.data.set(reading, b.filled * this.channels);
      b.filled++;
    } else {
      b.data.set(reading, b.start * this.channels);
      b.start = (b.start + 1) % this.size;
    }
    b.sinceEmit++;
    if (b.filled < this.size) return undefined;
    if (b.emitted && b.sinceEmit < this.hop) return undefined;
    b.emitted = true;
    b.sinceEmit = 0;
    const out = new Float32Array(this.size * this.channels);
    const head = b.data.subarray(b.start * this.channels);
    out.set(head, 0);
    out.set(b.data.subarray(0, b.start * this.channels), head.length);
    return out;
  }

  get keys(): number {
    return this.buffers.size;
  }
}
