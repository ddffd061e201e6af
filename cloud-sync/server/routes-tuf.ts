import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { FastifyInstance } from 'fastify';
import { MANIFEST_FILE } from '../../shared/bundle/manifest.ts';
import { OutpostError } from '../../shared/errors.ts';
import { targetUrlPath } from '../../shared/tuf/index.ts';
import { checkOperator } from './auth.ts';
import { sendFile } from './send-file.ts';
import type { Services } from './services.ts';

/** Public TUF files (TUF makes the mirror untrusted, so no auth) and the operator's publish path. */
export function registerTufRoutes(app: FastifyInstance, s: Services): void {
  app.get<{ Params: { '*': string } }>('/tuf/metadata/*', async (req, reply) => {
    const f = await s.tuf.resolveFile('metadata', req.params['*']);
    if (f === undefined) throw new OutpostError('NOT_FOUND', `no metadata ${req.params['*']}`);
    return sendFile(req, reply, f, 'application/json', 'no-cache');
  });

  app.get<{ Params: { '*': string } }>('/tuf/targets/*', async (req, reply) => {
    const f = await s.tuf.resolveFile('targets', req.params['*']);
    if (f === undefined) throw new OutpostError('NOT_FOUND', `no target ${req.params['*']}`);
    // Consistent-snapshot names carry their hash: the content behind a name never changes.
    return sendFile(req, reply, f, 'application/octet-stream', 'public, max-age=31536000, immutable');
  });

  app.register(async (admin) => {
    admin.addHook('onRequest', async (req) => checkOperator(req, s.operatorToken));
    // Uploads stream to disk; the body is never held in memory.
    admin.addContentTypeParser('application/octet-stream', (_req, payload, done) => done(null, payload));

    admin.get('/v1/admin/tuf', async () => s.tuf.status());

    admin.put<{ Params: { sha256: string } }>('/v1/admin/uploads/:sha256', async (req, reply) => {
      const target = s.tuf.stagedPath(req.params.sha256);
      const tmp = `${target}.${process.pid}.part`;
      await mkdir(dirname(target), { recursive: true });
      const hash = createHash('sha256');
      let bytes = 0;
      const counter = new Transform({
        transform(chunk: Buffer, _enc, cb) {
          bytes += chunk.length;
          if (bytes > s.maxUploadBytes) {
            cb(new OutpostError('PAYLOAD_TOO_LARGE', `upload exceeds ${s.maxUploadBytes} bytes`));
            return;
          }
          hash.update(chunk);
          cb(null, chunk);
        },
      });
      try {
        await pipeline(req.body as NodeJS.ReadableStream, counter, createWriteStream(tmp));
      } catch (err) {
        await rm(tmp, { force: true });
        throw err;
      }
      const digest = hash.digest('hex');
      if (digest !== req.params.sha256) {
        await rm(tmp, { force: true });
        throw new OutpostError(
          'BAD_REQUEST',
          `upload has sha256 ${digest}, the URL says ${req.params.sha256}`,
        );
      }
      await rename(tmp, target);
      return reply.code(201).send({ sha256: digest, bytes });
    });

    admin.post<{ Body: { targets?: unknown } }>('/v1/admin/publish', async (req) => {
      const body = req.body as { targets?: unknown } | undefined;
      if (body?.targets === undefined)
        throw new OutpostError('BAD_REQUEST', 'body must be {"targets": <signed targets metadata>}');
      const result = await s.tuf.acceptTargets(body.targets);
      // Bundles come from the signed metadata itself: what the operator signed is what is listed.
      const published: string[] = [];
      for (const b of s.tuf.bundles()) {
        if (s.repo.getBundle(b.name, b.version) !== undefined) continue;
        const manifestPath = b.targets.find((t) => t.endsWith(`/${MANIFEST_FILE}`));
        let manifest: Record<string, unknown> = {};
        if (manifestPath !== undefined) {
          const t = s.tuf.targets.signed.targets[manifestPath];
          const f = t === undefined ? undefined : await s.tuf.resolveFile('targets', targetUrlPath(t));
          if (f !== undefined)
            manifest = JSON.parse(await readFile(f.file, 'utf8')) as Record<string, unknown>;
        }
        s.repo.putBundle({ ...b, manifest, publishedAt: s.now() });
        published.push(`${b.name}@${b.version}`);
      }
      s.repo.addEvent({
        ts: s.now(),
        rolloutId: null,
        deviceId: null,
        type: 'published',
        from: null,
        to: `targets v${result.version}`,
        reason: `published ${published.join(', ') || 'no new bundle'}`,
      });
      return { ...result, bundles: published };
    });

    admin.post('/v1/admin/tuf/root', async (req) => ({ version: await s.tuf.acceptRoot(req.body) }));

    admin.get('/v1/admin/bundles', async () => s.repo.listBundles());
  });
}
