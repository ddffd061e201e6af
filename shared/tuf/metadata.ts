import { createHash } from 'node:crypto';
import {
  Metadata,
  MetadataKind,
  MetaFile,
  Root,
  Snapshot,
  TargetFile,
  Targets,
  Timestamp,
} from '@tufjs/models';
// Role is not re-exported from the package index.
import { Role } from '@tufjs/models/dist/role.js';
import type { JSONObject } from '@tufjs/models/dist/utils/types.js';
import { OutpostError } from '../errors.ts';
import { keyIdOf, type PublicKeyJson, SigningKey, toTufKey } from './keys.ts';

/** The TUF top-level roles plus `director`, whose keys root also carries (so root rotation rotates it). */
export const ROLE_NAMES = ['root', 'targets', 'snapshot', 'timestamp', 'director'] as const;
export type RoleName = (typeof ROLE_NAMES)[number];

export interface RoleKeys {
  keys: ReadonlyArray<SigningKey | PublicKeyJson>;
  threshold: number;
}

/** Default lifetimes: offline roles long, online roles short (the control plane re-signs them). */
export const DEFAULT_EXPIRY_DAYS: Record<Exclude<RoleName, 'director'>, number> = {
  root: 365,
  targets: 90,
  snapshot: 7,
  timestamp: 1,
};

/** TUF wants `YYYY-MM-DDTHH:MM:SSZ` (no milliseconds). */
export function tufTime(at: Date): string {
  return at.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export function expiresIn(days: number, from: Date = new Date()): string {
  return tufTime(new Date(from.getTime() + days * 86_400_000));
}

function publicOf(k: SigningKey | PublicKeyJson): PublicKeyJson {
  return k instanceof SigningKey ? k.publicJson : k;
}

export interface RootSpec {
  version: number;
  expires: string;
  roles: Record<RoleName, RoleKeys>;
  consistentSnapshot?: boolean;
}

/** An unsigned root naming the keys and k-of-n threshold of every role. */
export function buildRoot(spec: RootSpec): Metadata<Root> {
  const keys: Root['keys'] = {};
  const roles: Root['roles'] = {};
  for (const name of ROLE_NAMES) {
    const r = spec.roles[name];
    if (r === undefined) throw new OutpostError('BAD_REQUEST', `root: role ${name} has no keys`);
    const ids = [...new Set(r.keys.map((k) => keyIdOf(publicOf(k))))];
    if (!Number.isInteger(r.threshold) || r.threshold < 1 || r.threshold > ids.length)
      throw new OutpostError(
        'BAD_REQUEST',
        `root: role ${name} threshold ${r.threshold} must be between 1 and its ${ids.length} keys`,
      );
    for (const k of r.keys) {
      const key = toTufKey(publicOf(k));
      keys[key.keyID] = key;
    }
    roles[name] = new Role({ keyIDs: ids, threshold: r.threshold });
  }
  return new Metadata(
    new Root({
      version: spec.version,
      specVersion: '1.0.31',
      expires: spec.expires,
      keys,
      roles,
      consistentSnapshot: spec.consistentSnapshot ?? true,
    }),
  );
}

/** Adds one signature per key (replacing an older signature by the same key). */
export function signMetadata<T extends Root | Targets | Snapshot | Timestamp>(
  md: Metadata<T>,
  keys: readonly SigningKey[],
): Metadata<T> {
  for (const k of keys) md.sign(k.signer(), true);
  return md;
}

/** How many of a role's keys (as `root` names them) made valid signatures on `md`. */
export function countValidSignatures(
  root: Metadata<Root>,
  role: RoleName,
  md: Metadata<Root | Targets | Snapshot | Timestamp>,
): { valid: number; threshold: number } {
  const r = root.signed.roles[role];
  if (r === undefined) return { valid: 0, threshold: Number.POSITIVE_INFINITY };
  let valid = 0;
  for (const id of r.keyIDs) {
    const key = root.signed.keys[id];
    if (key === undefined) continue;
    try {
      key.verifySignature(md);
      valid++;
    } catch {
      // not signed by this key: keep counting the others
    }
  }
  return { valid, threshold: r.threshold };
}

/** The key set and threshold root gives a role, as plain public keys. */
export function roleKeysFromRoot(
  root: Metadata<Root>,
  role: RoleName,
): { keys: Record<string, PublicKeyJson>; threshold: number } {
  const r = root.signed.roles[role];
  if (r === undefined) throw new OutpostError('TRUST_FAILED', `the trusted root has no ${role} role`);
  const keys: Record<string, PublicKeyJson> = {};
  for (const id of r.keyIDs) {
    const k = root.signed.keys[id];
    if (k === undefined || k.keyType !== 'ed25519' || k.scheme !== 'ed25519') continue;
    const pub = k.keyVal['public'];
    if (pub === undefined) continue;
    const json: PublicKeyJson = { keytype: 'ed25519', scheme: 'ed25519', keyval: { public: pub } };
    // Root's keyid is only a label; we index by the id we compute so a mislabelled key cannot count twice.
    keys[keyIdOf(json)] = json;
  }
  return { keys, threshold: r.threshold };
}

/**
 * The next root: version + 1, the given roles replaced. TUF requires it to be signed by a
 * threshold of the *old* root keys and a threshold of the *new* ones; this signs with every
 * key given and refuses to return a root that does not meet both.
 */
export function rotateRoot(
  previous: Metadata<Root>,
  change: { roles?: Partial<Record<RoleName, RoleKeys>>; expires?: string },
  signers: readonly SigningKey[],
): Metadata<Root> {
  const roles = {} as Record<RoleName, RoleKeys>;
  for (const name of ROLE_NAMES) {
    const given = change.roles?.[name];
    if (given !== undefined) {
      roles[name] = given;
      continue;
    }
    const { keys, threshold } = roleKeysFromRoot(previous, name);
    roles[name] = { keys: Object.values(keys), threshold };
  }
  const next = buildRoot({
    version: previous.signed.version + 1,
    expires: change.expires ?? expiresIn(DEFAULT_EXPIRY_DAYS.root),
    roles,
    consistentSnapshot: previous.signed.consistentSnapshot,
  });
  signMetadata(next, signers);
  for (const [label, trusted] of [
    ['old', previous],
    ['new', next],
  ] as const) {
    const { valid, threshold } = countValidSignatures(trusted, 'root', next);
    if (valid < threshold)
      throw new OutpostError(
        'TRUST_FAILED',
        `root v${next.signed.version} has ${valid} of the ${threshold} signatures the ${label} root keys need`,
      );
  }
  return next;
}

export function sha256Hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** A target entry. `custom` goes where TUF keeps application fields (`custom`). */
export function targetFile(
  path: string,
  content: { length: number; sha256: string },
  custom?: Record<string, unknown>,
): TargetFile {
  return new TargetFile({
    path,
    length: content.length,
    hashes: { sha256: content.sha256 },
    ...(custom === undefined ? {} : { unrecognizedFields: { custom: custom as never } }),
  });
}

export function buildTargets(spec: {
  version: number;
  expires: string;
  targets?: Iterable<TargetFile>;
}): Metadata<Targets> {
  const t = new Targets({ version: spec.version, specVersion: '1.0.31', expires: spec.expires });
  for (const f of spec.targets ?? []) t.addTarget(f);
  return new Metadata(t);
}

/** The exact bytes a metadata file is served as; snapshot and timestamp hash these. */
export function metadataBytes(md: Metadata<Root | Targets | Snapshot | Timestamp>): Buffer {
  return Buffer.from(JSON.stringify(md.toJSON()));
}

function metaFileFor(md: Metadata<Targets | Snapshot>): MetaFile {
  const bytes = metadataBytes(md);
  return new MetaFile({
    version: md.signed.version,
    length: bytes.length,
    hashes: { sha256: sha256Hex(bytes) },
  });
}

/** Snapshot over the (signed) targets metadata, with its length and hash to stop mix-and-match. */
export function buildSnapshot(spec: {
  version: number;
  expires: string;
  targets: Metadata<Targets>;
}): Metadata<Snapshot> {
  return new Metadata(
    new Snapshot({
      version: spec.version,
      specVersion: '1.0.31',
      expires: spec.expires,
      meta: { 'targets.json': metaFileFor(spec.targets) },
    }),
  );
}

export function buildTimestamp(spec: {
  version: number;
  expires: string;
  snapshot: Metadata<Snapshot>;
}): Metadata<Timestamp> {
  return new Metadata(
    new Timestamp({
      version: spec.version,
      specVersion: '1.0.31',
      expires: spec.expires,
      snapshotMeta: metaFileFor(spec.snapshot),
    }),
  );
}

/** Parses served metadata bytes of a known kind (throws @tufjs/models errors on bad shape). */
export function parseRoot(bytes: Uint8Array | string): Metadata<Root> {
  const json = JSON.parse(
    typeof bytes === 'string' ? bytes : Buffer.from(bytes).toString('utf8'),
  ) as JSONObject;
  return Metadata.fromJSON(MetadataKind.Root, json);
}

export function parseTargets(bytes: Uint8Array | string): Metadata<Targets> {
  const json = JSON.parse(
    typeof bytes === 'string' ? bytes : Buffer.from(bytes).toString('utf8'),
  ) as JSONObject;
  return Metadata.fromJSON(MetadataKind.Targets, json);
}

export function parseSnapshot(bytes: Uint8Array | string): Metadata<Snapshot> {
  const json = JSON.parse(
    typeof bytes === 'string' ? bytes : Buffer.from(bytes).toString('utf8'),
  ) as JSONObject;
  return Metadata.fromJSON(MetadataKind.Snapshot, json);
}

export function parseTimestamp(bytes: Uint8Array | string): Metadata<Timestamp> {
  const json = JSON.parse(
    typeof bytes === 'string' ? bytes : Buffer.from(bytes).toString('utf8'),
  ) as JSONObject;
  return Metadata.fromJSON(MetadataKind.Timestamp, json);
}
