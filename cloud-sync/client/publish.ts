import { OutpostError } from '../../shared/errors.ts';
import {
  buildTargets,
  bundleTargetsFromDir,
  expiresIn,
  parseTargets,
  type SigningKey,
  signMetadata,
} from '../../shared/tuf/index.ts';
import type { AdminClient } from './admin-client.ts';

export interface PublishOptions {
  client: AdminClient;
  bundleDir: string;
  /** The offline targets key(s); as many as root's targets threshold asks for. */
  targetsKeys: readonly SigningKey[];
  expiresDays?: number;
  onProgress?: (file: string, sent: number, total: number) => void;
}

/**
 * Publishes a bundle: uploads its files, then the next targets metadata signed here with the
 * offline targets keys. The served targets are extended only after checking that our own keys
 * signed them, so a tampered server cannot get its additions re-signed by the operator.
 */
export async function publishBundle(
  options: PublishOptions,
): Promise<{ name: string; version: string; targetsVersion: number }> {
  const { client, targetsKeys } = options;
  const { manifest, targets, sources } = await bundleTargetsFromDir(options.bundleDir);
  const current = parseTargets(JSON.stringify(await client.metadata('targets.json')));
  const ours = targetsKeys.some((k) => {
    try {
      k.tufKey().verifySignature(current);
      return true;
    } catch {
      return false;
    }
  });
  if (!ours)
    throw new OutpostError(
      'TRUST_FAILED',
      `the served targets v${current.signed.version} are not signed by the given targets key(s)`,
    );
  const existing = current.signed.targets;
  for (const t of targets) {
    const prior = existing[t.path];
    if (prior !== undefined && prior.hashes.sha256 !== t.hashes.sha256)
      throw new OutpostError(
        'CONFLICT',
        `${t.path} is already published with different content; bump the version`,
      );
    if (prior !== undefined) continue;
    const file = sources[t.path] as string;
    await client.upload(file, t.hashes.sha256 as string, (sent, total) =>
      options.onProgress?.(t.path, sent, total),
    );
  }
  const next = buildTargets({
    version: current.signed.version + 1,
    expires: expiresIn(options.expiresDays ?? 90),
    targets: [...Object.values(existing).filter((e) => !targets.some((t) => t.path === e.path)), ...targets],
  });
  signMetadata(next, targetsKeys);
  await client.post('/v1/admin/publish', { targets: next.toJSON() });
  return { name: manifest.name, version: manifest.version, targetsVersion: next.signed.version };
}
