import { createReadStream } from 'node:fs';
import type { FastifyReply, FastifyRequest } from 'fastify';

/**
 * Serves a file the way a CDN mirror would: a strong ETag from size and mtime, and a single
 * `Range` (`bytes=a-`, `bytes=a-b`) honoured only while `If-Range` still matches, so a device
 * resuming a download never splices two versions of a file.
 */
export function sendFile(
  req: FastifyRequest,
  reply: FastifyReply,
  f: { file: string; size: number; mtimeMs: number },
  contentType: string,
  cacheControl: string,
): FastifyReply {
  const etag = `"${f.size.toString(16)}-${Math.floor(f.mtimeMs).toString(16)}"`;
  reply
    .header('etag', etag)
    .header('accept-ranges', 'bytes')
    .header('cache-control', cacheControl)
    .type(contentType);
  const range = req.headers.range;
  const ifRange = req.headers['if-range'];
  const m = typeof range === 'string' ? /^bytes=(\d+)-(\d*)$/.exec(range) : null;
  if (m !== null && (ifRange === undefined || ifRange === etag)) {
    const start = Number(m[1]);
    const end = m[2] === '' ? f.size - 1 : Math.min(Number(m[2]), f.size - 1);
    if (start >= f.size || start > end) {
      return reply.code(416).header('content-range', `bytes */${f.size}`).send();
    }
    reply
      .code(206)
      .header('content-range', `bytes ${start}-${end}/${f.size}`)
      .header('content-length', end - start + 1);
    return reply.send(createReadStream(f.file, { start, end }));
  }
  reply.header('content-length', f.size);
  return reply.send(createReadStream(f.file));
}
