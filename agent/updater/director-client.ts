import { OutpostError } from '../../shared/errors.ts';
import {
  assertSafeTargetPath,
  type DirectorSigned,
  roleKeysFromRoot,
  verifyDirectorDocument,
} from '../../shared/tuf/index.ts';
import type { HttpClient } from './http.ts';
import type { StateStore, UpdateState } from './state.ts';
import type { TrustClient } from './trust.ts';

export interface DirectorContext {
  http: HttpClient;
  trust: TrustClient;
  store: StateStore;
  deviceId: string;
  /** The desired-state URL for this device. */
  url: string;
}

/**
 * Fetches and verifies this device's desired-state document: signed by a threshold of the
 * director keys the trusted root names, for this device, fresh, and not older than the last one
 * accepted. Its signed `issuedAt` raises the device's time floor (a clock set back cannot make
 * expired TUF metadata look fresh again).
 */
export async function fetchDesiredState(c: DirectorContext, state: UpdateState): Promise<DirectorSigned> {
  const bytes = await c.http.getBytes(c.url, 1024 * 1024);
  let doc: unknown;
  try {
    doc = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new OutpostError('TRUST_FAILED', 'the director document is not JSON', { cause: err });
  }
  const expect = {
    deviceId: c.deviceId,
    now: c.trust.referenceTime(),
    minVersion: state.directorVersion,
  };
  let signed: DirectorSigned;
  try {
    signed = verifyDirectorDocument(doc, roleKeysFromRoot(await c.trust.trustedRoot(), 'director'), expect);
  } catch (first) {
    // The director key may have been rotated in a root we have not fetched yet.
    try {
      const tuf = await c.trust.refresh();
      signed = verifyDirectorDocument(doc, roleKeysFromRoot(tuf.root, 'director'), expect);
    } catch {
      throw first;
    }
  }
  if (signed.issuedAt !== undefined) await c.trust.raiseFloor(Date.parse(signed.issuedAt));
  if (signed.version !== state.directorVersion) {
    state.directorVersion = signed.version;
    await c.store.save(state);
  }
  return signed;
}

export interface DesiredBundle {
  name: string;
  version: string;
  manifest: DirectorSigned['targets'][number];
  model: DirectorSigned['targets'][number];
}

/** Pairs the director's manifest and model entries per bundle (by their custom fields). */
export function groupBundles(desired: DirectorSigned): DesiredBundle[] {
  const by = new Map<string, Partial<DesiredBundle>>();
  for (const t of desired.targets) {
    assertSafeTargetPath(t.name);
    const c = t.custom ?? {};
    const name = String(c['name'] ?? '');
    const version = String(c['version'] ?? '');
    const key = `${name}@${version}`;
    const entry = by.get(key) ?? { name, version };
    if (c['kind'] === 'manifest') entry.manifest = t;
    else if (c['kind'] === 'model') entry.model = t;
    by.set(key, entry);
  }
  const out: DesiredBundle[] = [];
  for (const [key, b] of by) {
    if (b.manifest === undefined || b.model === undefined)
      throw new OutpostError(
        'TRUST_FAILED',
        `director names ${key} without both its manifest and model targets`,
      );
    out.push(b as DesiredBundle);
  }
  return out;
}
