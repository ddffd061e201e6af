import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import {
  buildRoot,
  expiresIn,
  generateKey,
  type RoleName,
  type SigningKey,
  signMetadata,
  TufRepository,
  writeKeyFile,
} from '../../shared/tuf/index.ts';

export interface RepoKeys {
  root: SigningKey[];
  targets: SigningKey[];
  snapshot: SigningKey;
  timestamp: SigningKey;
  director: SigningKey;
}

/**
 * A fresh repository with one key per role (root and targets: `threshold` of as many keys),
 * written where `outpost serve` looks by default: `<dataDir>/tuf` and `<dataDir>/keys`. For the
 * demo and tests; an operator uses `outpost keys init`, which keeps root and targets offline.
 */
export async function bootstrapRepository(
  dataDir: string,
  options: { threshold?: number; writeKeys?: boolean } = {},
): Promise<RepoKeys> {
  const n = options.threshold ?? 1;
  const keys: RepoKeys = {
    root: Array.from({ length: n }, () => generateKey()),
    targets: Array.from({ length: n }, () => generateKey()),
    snapshot: generateKey(),
    timestamp: generateKey(),
    director: generateKey(),
  };
  const roles: Record<RoleName, { keys: SigningKey[]; threshold: number }> = {
    root: { keys: keys.root, threshold: n },
    targets: { keys: keys.targets, threshold: n },
    snapshot: { keys: [keys.snapshot], threshold: 1 },
    timestamp: { keys: [keys.timestamp], threshold: 1 },
    director: { keys: [keys.director], threshold: 1 },
  };
  const root = signMetadata(buildRoot({ version: 1, expires: expiresIn(365), roles }), keys.root);
  await new TufRepository(join(dataDir, 'tuf')).init(root, {
    targets: keys.targets,
    snapshot: [keys.snapshot],
    timestamp: [keys.timestamp],
  });
  if (options.writeKeys !== false) {
    const dir = join(dataDir, 'keys');
    await mkdir(dir, { recursive: true });
    writeKeyFile(join(dir, 'snapshot.key'), keys.snapshot);
    writeKeyFile(join(dir, 'timestamp.key'), keys.timestamp);
    writeKeyFile(join(dir, 'director.key'), keys.director);
    keys.targets.forEach((k, i) => {
      writeKeyFile(join(dir, n === 1 ? 'targets.key' : `targets-${i + 1}.key`), k);
    });
  }
  return keys;
}
