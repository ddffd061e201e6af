import { canonicalize } from '@tufjs/canonical-json';
import { OutpostError } from '../errors.ts';
import { type Infer, z } from '../schema.ts';
import { parseOrThrow } from '../validate.ts';
import { keyIdOf, type PublicKeyJson, type SigningKey, verifyHex } from './keys.ts';
import { tufTime } from './metadata.ts';

/**
 * The director's desired-state document (Uptane style): which targets one device should
 * run. Signed with the director key(s) over the canonical JSON of `signed`. The device
 * checks every target here against what the TUF image repository vouches for.
 */
const directorTarget = z
  .object({
    name: z.string().min(1).max(512),
    length: z.number().int().min(0),
    hashes: z.object({ sha256: z.string().regex(/^[0-9a-f]{64}$/) }).loose(),
    custom: z.record(z.string(), z.unknown()).optional(),
  })
  .strict();

const directorSigned = z
  .object({
    deviceId: z.string().min(1),
    version: z.number().int().min(1),
    expires: z.string().refine((s) => !Number.isNaN(Date.parse(s)), 'must be an ISO date'),
    /** When the director signed it: devices use it as a trusted lower bound for their clock. */
    issuedAt: z
      .string()
      .refine((s) => !Number.isNaN(Date.parse(s)), 'must be an ISO date')
      .optional(),
    targets: z.array(directorTarget),
  })
  .loose();

const directorDocument = z
  .object({
    signed: directorSigned,
    signatures: z.array(z.object({ keyid: z.string(), sig: z.string().regex(/^[0-9a-f]*$/) }).strict()),
  })
  .strict();

export type DirectorTarget = Infer<typeof directorTarget>;
export type DirectorSigned = Infer<typeof directorSigned>;
export type DirectorDocument = Infer<typeof directorDocument>;

/** The keys allowed to sign director documents and how many must sign. */
export interface DirectorTrust {
  keys: Record<string, PublicKeyJson>;
  threshold: number;
}

function signedBytes(signed: DirectorSigned): Buffer {
  return Buffer.from(canonicalize(signed));
}

/** Signs `signed`; fills `issuedAt` with the signer's clock when absent. */
export function signDirectorDocument(signed: DirectorSigned, keys: readonly SigningKey[]): DirectorDocument {
  const checked = parseOrThrow(
    directorSigned,
    { ...signed, issuedAt: signed.issuedAt ?? tufTime(new Date()) },
    'director document',
    'BAD_REQUEST',
  );
  const bytes = signedBytes(checked);
  return { signed: checked, signatures: keys.map((k) => ({ keyid: k.keyId, sig: k.signHex(bytes) })) };
}

/**
 * Verifies a director document: shape, a threshold of distinct trusted keys, the device it
 * is for, expiry against `now`, and that its version is not below `minVersion` (the last
 * one the device accepted). Returns the signed part; throws TRUST_FAILED otherwise.
 */
export function verifyDirectorDocument(
  value: unknown,
  trust: DirectorTrust,
  expect: { deviceId: string; now: Date; minVersion?: number },
): DirectorSigned {
  const doc = parseOrThrow(directorDocument, value, 'director document', 'TRUST_FAILED');
  const bytes = signedBytes(doc.signed);
  const good = new Set<string>();
  for (const s of doc.signatures) {
    const key = trust.keys[s.keyid];
    // keyids are recomputed, never believed: a key only counts under its own id.
    if (key === undefined || keyIdOf(key) !== s.keyid) continue;
    if (verifyHex(key, bytes, s.sig)) good.add(s.keyid);
  }
  if (good.size < trust.threshold)
    throw new OutpostError(
      'TRUST_FAILED',
      `director document is signed by ${good.size} of the ${trust.threshold} director keys it needs`,
    );
  if (doc.signed.deviceId !== expect.deviceId)
    throw new OutpostError(
      'TRUST_FAILED',
      `director document is for device ${doc.signed.deviceId}, not ${expect.deviceId}`,
    );
  if (expect.now.getTime() >= Date.parse(doc.signed.expires))
    throw new OutpostError('TRUST_FAILED', `director document expired at ${doc.signed.expires}`);
  if (expect.minVersion !== undefined && doc.signed.version < expect.minVersion)
    throw new OutpostError(
      'TRUST_FAILED',
      `director document version ${doc.signed.version} is older than the accepted ${expect.minVersion}`,
    );
  return doc.signed;
}
