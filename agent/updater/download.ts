import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { OutpostError } from '../../shared/errors.ts';
import type { HttpClient } from './http.ts';
import { HttpStatusError } from './http.ts';
import { PartWriter } from './part-writer.ts';

export interface DownloadSpec {
  url: string;
  /** The partial file; kept across attempts and restarts so a download resumes. */
  dest: string;
  /** Declared by TUF: never more is read, and less is a short transfer to resume. */
  length: number;
  sha256: string;
  /**
   * Whether the file is fsynced before this returns (default). An installer that makes it
   * durable itself, beside other work, passes false: the bytes are then written, not synced.
   */
  sync?: boolean;
}

export interface DownloadHooks {
  onProgress?: (bytes: number, total: number) => void;
  /** Fault injection: called before each write with the file offset; may throw (ENOSPC). */
  beforeWrite?: (offset: number, size: number) => void;
}

export interface DownloadResult {
  /** Bytes taken from an earlier partial file. */
  resumedFrom: number;
  attempts: number;
  /** The server answered 200 to a Range request. */
  rangeIgnored: boolean;
}

interface PartMeta {
  url: string;
  etag?: string;
  sha256: string;
}

async function sizeOf(path: string): Promise<number> {
  return stat(path).then(
    (s) => s.size,
    () => 0,
  );
}

async function hashPrefix(path: string, bytes: number): Promise<Hash> {
  const hash = createHash('sha256');
  if (bytes === 0) return hash;
  for await (const chunk of createReadStream(path, { start: 0, end: bytes - 1 }))
    hash.update(chunk as Buffer);
  return hash;
}

/**
 * Downloads a target into `dest`, capped at its declared length, resuming a partial file with
 * `Range` + `If-Range` (the ETag seen when it started), and verifies the sha256. A server that
 * ignores Range gets the file rewritten from the start; a partial file that turns out corrupt
 * (hash mismatch after a resume) is thrown away and fetched once more from zero.
 */
export async function downloadTarget(
  http: HttpClient,
  spec: DownloadSpec,
  hooks: DownloadHooks = {},
): Promise<DownloadResult> {
  const metaPath = `${spec.dest}.json`;
  const result: DownloadResult = { resumedFrom: 0, attempts: 0, rangeIgnored: false };
  let freshRetryLeft = true;
  for (;;) {
    // The hash is computed as the bytes are written (one pass over a large model, not two);
    // a resume first re-hashes the part already on disk.
    let hash: Hash | undefined;
    await http.withRetries(`download ${spec.url}`, async () => {
      result.attempts++;
      hash = await attempt();
    });
    const digest = (hash ?? (await hashPrefix(spec.dest, spec.length))).digest('hex');
    if (digest === spec.sha256) return result;
    const resumed = result.resumedFrom > 0;
    await discard();
    if (resumed && freshRetryLeft) {
      freshRetryLeft = false;
      result.resumedFrom = 0;
      continue;
    }
    throw new OutpostError(
      'TRUST_FAILED',
      `${spec.url}: sha256 ${digest} is not the ${spec.sha256} TUF vouches for`,
      {
        details: { hashMismatch: true },
      },
    );
  }

  async function discard(): Promise<void> {
    await rm(spec.dest, { force: true });
    await rm(metaPath, { force: true });
  }

  /** One request; returns the running hash when this attempt saw every byte in order. */
  async function attempt(): Promise<Hash | undefined> {
    let have = await sizeOf(spec.dest);
    const meta = await readFile(metaPath, 'utf8')
      .then((t) => JSON.parse(t) as PartMeta)
      .catch(() => undefined);
    if (have > spec.length || (have > 0 && (meta?.url !== spec.url || meta.sha256 !== spec.sha256))) {
      await discard();
      have = 0;
    }
    if (have === spec.length) return undefined;
    if (have > 0 && result.resumedFrom === 0) result.resumedFrom = have;
    const headers: Record<string, string> = {};
    if (have > 0) {
      headers['range'] = `bytes=${have}-`;
      if (meta?.etag !== undefined) headers['if-range'] = meta.etag;
    }
    const res = await http.openFile(spec.url, headers);
    let offset: number;
    if (res.status === 206 && have > 0) {
      const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(String(res.headers['content-range'] ?? ''));
      if (m === null || Number(m[1]) !== have) {
        res.abort();
        await discard();
        throw new OutpostError('DOWNLOAD_FAILED', `${spec.url}: bad Content-Range for a resume from ${have}`);
      }
      offset = have;
    } else if (res.status === 200) {
      if (have > 0) result.rangeIgnored = true;
      offset = 0;
    } else {
      res.abort();
      if (res.status === 416) await discard();
      throw new HttpStatusError(spec.url, res.status);
    }
    const etag = typeof res.headers['etag'] === 'string' ? res.headers['etag'] : undefined;
    const nextMeta: PartMeta = {
      url: spec.url,
      sha256: spec.sha256,
      ...(etag === undefined ? {} : { etag }),
    };
    await writeFile(metaPath, JSON.stringify(nextMeta));
    const hash = offset === 0 ? createHash('sha256') : await hashPrefix(spec.dest, offset);
    const fh = await open(spec.dest, offset === 0 ? 'w' : 'r+');
    const writer = new PartWriter(fh, offset, {
      release: (chunk) => res.release(chunk),
      ...(hooks.beforeWrite === undefined ? {} : { beforeWrite: hooks.beforeWrite }),
      ...(hooks.onProgress === undefined
        ? {}
        : { onWritten: (end: number) => hooks.onProgress?.(end, spec.length) }),
    });
    let tooLong = false;
    try {
      for await (const chunk of res.body) {
        if (offset + chunk.length > spec.length) {
          tooLong = true;
          break;
        }
        hash.update(chunk);
        offset += chunk.length;
        await writer.push(chunk);
      }
      if (!tooLong) await (spec.sync === false ? writer.drain() : writer.finish());
    } catch (err) {
      // What arrived before a reset is kept for the resume: write it out, then rethrow.
      await writer.drain().catch(() => undefined);
      throw err;
    } finally {
      await fh.close().catch(() => undefined);
    }
    if (tooLong) {
      res.abort();
      await discard();
      throw new OutpostError(
        'TRUST_FAILED',
        `${spec.url}: the server sent more than the ${spec.length} bytes TUF declares`,
        { details: { endlessData: true } },
      );
    }
    if (offset < spec.length)
      throw new OutpostError(
        'DOWNLOAD_FAILED',
        `${spec.url}: transfer ended at ${offset} of ${spec.length} bytes`,
      );
    return hash;
  }
}
