import { parseArgs } from 'node:util';
import { OutpostError } from '../../shared/errors.ts';
import {
  buildRoot,
  buildTargets,
  expiresIn,
  generateKey,
  ROLE_NAMES,
  type RoleName,
  rotateRoot,
  type SigningKey,
  signMetadata,
  TufRepository,
} from '../../shared/tuf/index.ts';
import { KeyStore } from './key-store.ts';

export const KEYS_USAGE = `  outpost keys init --dir KEYDIR [--root K/N] [--targets K/N] [--snapshot K/N] [--timestamp K/N]
                   [--director K/N] [--expires-days 365] [--repo REPODIR]
      make Ed25519 keys for every role (K of N must sign; default 1/1 each) and root v1 signed
      by them; private keys are written 0600 and never printed. --repo also starts a TUF repository.
  outpost keys rotate --dir KEYDIR --role ROLE [--keys K/N] [--repo REPODIR]
      replace a role's keys: root v+1 is signed by the old and the new root keys; with --repo the
      new root is published and metadata of the rotated role is re-signed with the new keys
  outpost keys show --dir KEYDIR
      roles, key ids, thresholds and expiry of the latest root
`;

function parseThreshold(value: string | undefined, role: string): { threshold: number; count: number } {
  if (value === undefined) return { threshold: 1, count: 1 };
  const m = /^(\d+)\/(\d+)$/.exec(value);
  const threshold = Number(m?.[1]);
  const count = Number(m?.[2]);
  if (m === null || threshold < 1 || count < threshold || count > 16)
    throw new OutpostError('BAD_REQUEST', `--${role} must be K/N with 1 ≤ K ≤ N ≤ 16, got ${value}`);
  return { threshold, count };
}

function makeKeys(store: KeyStore, role: RoleName, count: number): SigningKey[] {
  const keys = Array.from({ length: count }, () => generateKey());
  for (const k of keys) store.save(role, k);
  return keys;
}

/** `outpost keys …` */
export async function keysCommand(verb: string | undefined, argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      dir: { type: 'string' },
      repo: { type: 'string' },
      role: { type: 'string' },
      keys: { type: 'string' },
      'expires-days': { type: 'string' },
      root: { type: 'string' },
      targets: { type: 'string' },
      snapshot: { type: 'string' },
      timestamp: { type: 'string' },
      director: { type: 'string' },
    },
  });
  if (values.dir === undefined) {
    console.error(`keys ${verb ?? ''} needs --dir`);
    return 2;
  }
  if (verb === 'init') {
    const store = await KeyStore.create(values.dir);
    const roles = {} as Record<RoleName, { keys: SigningKey[]; threshold: number }>;
    for (const role of ROLE_NAMES) {
      const { threshold, count } = parseThreshold(values[role], role);
      roles[role] = { keys: makeKeys(store, role, count), threshold };
    }
    const days = Number(values['expires-days'] ?? 365);
    const root = signMetadata(buildRoot({ version: 1, expires: expiresIn(days), roles }), roles.root.keys);
    await store.writeRoot(root);
    console.log(`root v1 written to ${values.dir}/root.json (expires ${root.signed.expires})`);
    printRoles(store);
    if (values.repo !== undefined) {
      await new TufRepository(values.repo).init(root, {
        targets: roles.targets.keys,
        snapshot: roles.snapshot.keys,
        timestamp: roles.timestamp.keys,
      });
      console.log(`TUF repository started in ${values.repo}`);
    }
    return 0;
  }
  if (verb === 'rotate') {
    const role = values.role as RoleName | undefined;
    if (role === undefined || !ROLE_NAMES.includes(role)) {
      console.error(`keys rotate needs --role (${ROLE_NAMES.join(', ')})`);
      return 2;
    }
    const store = await KeyStore.open(values.dir);
    const old = store.root;
    const oldIds = [...(old.signed.roles[role]?.keyIDs ?? [])];
    const { threshold, count } = parseThreshold(values.keys, 'keys');
    const fresh = makeKeys(store, role, count);
    const oldRootSigners = await store.signers('root', old);
    const next = rotateRoot(
      old,
      {
        roles: { [role]: { keys: fresh, threshold } },
        ...(values['expires-days'] === undefined
          ? {}
          : { expires: expiresIn(Number(values['expires-days'])) }),
      },
      role === 'root' ? [...oldRootSigners, ...fresh] : oldRootSigners,
    );
    await store.writeRoot(next);
    if (values.repo !== undefined) await republish(values.repo, store, role);
    await store.retire(role, oldIds);
    console.log(
      `root v${next.signed.version}: ${role} now ${threshold} of ${count} new keys; old keys moved to retired/`,
    );
    printRoles(store);
    return 0;
  }
  if (verb === 'show') {
    printRoles(await KeyStore.open(values.dir));
    return 0;
  }
  console.error(`unknown keys command: ${verb ?? '(none)'}\n\n${KEYS_USAGE}`);
  return 2;
}

/** Publishes the new root and re-signs what the rotated role signs, so clients see it at once. */
async function republish(dir: string, store: KeyStore, role: RoleName): Promise<void> {
  const repo = await new TufRepository(dir).load();
  await repo.writeRoot(store.root);
  const snapshot = await store.signers('snapshot');
  const timestamp = await store.signers('timestamp');
  if (role === 'targets') {
    const current = repo.targets.signed;
    const next = buildTargets({
      version: current.version + 1,
      expires: expiresIn(90),
      targets: Object.values(current.targets),
    });
    await repo.writeTargets(signMetadata(next, await store.signers('targets')));
  }
  if (role === 'targets' || role === 'snapshot' || role === 'root')
    await repo.resignSnapshot({ snapshot, timestamp });
  else await repo.refreshTimestamp({ timestamp });
}

function printRoles(store: KeyStore): void {
  const root = store.root.signed;
  console.log(`root v${root.version}, expires ${root.expires}`);
  for (const role of ROLE_NAMES) {
    const r = root.roles[role];
    if (r === undefined) continue;
    console.log(
      `  ${role.padEnd(9)} ${r.threshold} of ${r.keyIDs.length}: ${r.keyIDs.map((k) => k.slice(0, 16)).join(' ')}`,
    );
  }
}
