import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { type FileHandle, open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { PartWriter } from '../agent/updater/part-writer.ts';
import { tempDir } from './helpers/tmp.ts';

const MiB = 1024 * 1024;

/** Socket-sized chunks of random sizes (1 B to 64 KiB) that add up to `total` bytes. */
function chunksOf(data: Buffer): Buffer[] {
  const chunks: Buffer[] = [];
  let at = 0;
  let seed = 7;
  while (at < data.length) {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    const size = Math.min(data.length - at, 1 + (seed % 65536));
    chunks.push(data.subarray(at, at + size));
    at += size;
  }
  return chunks;
}

/** Counts the file handle's fdatasync calls (the real ones still run). */
function countDatasyncs(fh: FileHandle): { count: number } {
  const seen = { count: 0 };
  const real = fh.datasync.bind(fh);
  fh.datasync = () => {
    seen.count++;
    return real();
  };
  return seen;
}

describe('updater: the download writer', () => {
  test('chunks reach the file in order, write-back runs during the transfer, finish() makes them durable', async () => {
    const path = join(tempDir('part'), 'model.part');
    const data = randomBytes(20 * MiB + 12345);
    const fh = await open(path, 'w');
    const datasyncs = countDatasyncs(fh);
    const progress: number[] = [];
    const writer = new PartWriter(fh, 0, { onWritten: (end) => progress.push(end) });
    try {
      for (const c of chunksOf(data)) await writer.push(c);
      assert.equal(writer.offset, data.length);
      await writer.finish();
    } finally {
      await fh.close();
    }
    assert.ok((await readFile(path)).equals(data));
    // 20 MiB with a write-back every 8 MiB: at least one fdatasync before the final fsync.
    assert.ok(datasyncs.count >= 1, `expected write-back during the transfer, saw ${datasyncs.count}`);
    assert.deepEqual(
      progress,
      [...progress].sort((a, b) => a - b),
    );
    assert.equal(progress.at(-1), data.length);
  });

  test('a resume appends at its offset and keeps the prefix on file', async () => {
    const path = join(tempDir('part'), 'model.part');
    const data = randomBytes(3 * MiB);
    const half = 1_500_000;
    const first = await open(path, 'w');
    await first.write(data, 0, half, 0);
    await first.close();
    const fh = await open(path, 'r+');
    const writer = new PartWriter(fh, half);
    try {
      for (const c of chunksOf(data.subarray(half))) await writer.push(c);
      await writer.finish();
    } finally {
      await fh.close();
    }
    assert.ok((await readFile(path)).equals(data));
  });

  test('the receiver waits once 8 MiB wait to be written, and goes on when the disk catches up', async () => {
    const path = join(tempDir('part'), 'model.part');
    const data = randomBytes(24 * MiB);
    const fh = await open(path, 'w');
    // Hold the disk: every write waits until released, as on a slow SD card.
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const realWritev = fh.writev.bind(fh);
    fh.writev = (async (buffers: NodeJS.ArrayBufferView[], position?: number) => {
      await held;
      return realWritev(buffers, position);
    }) as FileHandle['writev'];
    const writer = new PartWriter(fh, 0);
    const chunks = chunksOf(data);
    let taken = 0;
    let next = 0;
    let blocked: Promise<void> | undefined;
    try {
      while (next < chunks.length && blocked === undefined) {
        const c = chunks[next++] as Buffer;
        const p = writer.push(c);
        const done = await Promise.race([
          p.then(() => true),
          new Promise<false>((r) => setImmediate(r, false)),
        ]);
        taken += c.length;
        if (!done) blocked = p;
      }
      assert.ok(blocked !== undefined, 'the writer never made the receiver wait');
      // 8 MiB queued plus the batch being gathered and the chunk that tipped it over.
      assert.ok(taken > 8 * MiB && taken <= 9 * MiB + 65536, `waited after ${taken} bytes`);
      release();
      await blocked;
      for (const c of chunks.slice(next)) await writer.push(c);
      await writer.finish();
    } finally {
      release();
      await fh.close();
    }
    assert.ok((await readFile(path)).equals(data));
  });

  test('a failed write (disk full) is reported by the next push, and nothing past it is written', async () => {
    const path = join(tempDir('part'), 'model.part');
    const data = randomBytes(6 * MiB);
    const fh = await open(path, 'w');
    const writer = new PartWriter(fh, 0, {
      beforeWrite: (offset, size) => {
        if (offset + size > 3 * MiB) {
          const err = new Error('ENOSPC: no space left on device, write') as NodeJS.ErrnoException;
          err.code = 'ENOSPC';
          throw err;
        }
      },
    });
    let failure: unknown;
    try {
      for (const c of chunksOf(data)) await writer.push(c);
      await writer.finish();
    } catch (err) {
      failure = err;
    } finally {
      await fh.close();
    }
    assert.equal((failure as NodeJS.ErrnoException | undefined)?.code, 'ENOSPC');
    await assert.rejects(writer.drain(), { code: 'ENOSPC' });
    const onFile = await readFile(path);
    assert.ok(onFile.length <= 3 * MiB);
    assert.ok(onFile.equals(data.subarray(0, onFile.length)), 'the file is a prefix of the download');
  });
});
