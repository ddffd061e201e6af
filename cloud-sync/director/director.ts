import { createHash } from 'node:crypto';
import { canonicalize } from '@tufjs/canonical-json';
import { OutpostError } from '../../shared/errors.ts';
import type { Logger } from '../log.ts';
import type { AssignmentRecord, Repository } from '../store/repository.ts';
import type { OnlineKey, TufHost } from '../tuf/repo-host.ts';

/** One model the device should run: enough to find and check its TUF targets. */
export interface DesiredTarget {
  model: string;
  version: string;
  releaseCounter: number;
  /** TUF target paths of the bundle's files; the device trusts them only through TUF. */
  targets: Array<{ path: string; length: number; sha256: string }>;
}

export interface DesiredStateSigned {
  _type: 'outpost-desired-state';
  specVersion: 1;
  deviceId: string;
  /** Bumped on every change for this device; a device refuses a lower one than it has seen. */
  version: number;
  issuedAt: string;
  expires: string;
  targets: DesiredTarget[];
}

export interface DesiredStateDocument {
  signed: DesiredStateSigned;
  signatures: Array<{ keyid: string; sig: string }>;
}

export interface DirectorOptions {
  repo: Repository;
  tuf: TufHost;
  key: OnlineKey;
  /** A signed document is valid this long; it is re-signed when half of that is gone. */
  expiryMs: number;
  now: () => number;
  log: Logger;
  /** Told after a device's desired state changed (the MQTT `cmd/sync` nudge). */
  onChange?: (deviceId: string) => void;
}

const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

/**
 * The director (Uptane style): what each device should run, signed with the director key.
 * Assignments live in the repository; the signed document is built on demand, cached per
 * device and version so that its ETag stays stable between polls.
 */
export class Director {
  private readonly cache = new Map<string, { version: number; doc: DesiredStateDocument; etag: string; signedAt: number }>();

  constructor(private readonly options: DirectorOptions) {}

  /** Sets (or, with version null, clears) the model a device should run, bumping its document version. */
  assign(deviceId: string, model: string, version: string | null, rolloutId: string | null): void {
    const { repo, now } = this.options;
    repo.transaction(() => {
      if (version === null) repo.clearAssignment(deviceId, model);
      else {
        if (repo.getBundle(model, version) === undefined)
          throw new OutpostError('NOT_FOUND', `bundle ${model}@${version} has not been published`);
        repo.setAssignment({ deviceId, model, version, rolloutId, assignedAt: now() });
      }
      repo.bumpDesiredVersion(deviceId);
    });
    this.cache.delete(deviceId);
    try {
      this.options.onChange?.(deviceId);
    } catch (err) {
      this.options.log.warn({ err, deviceId }, 'desired-state change listener failed');
    }
  }

  assignments(deviceId: string): AssignmentRecord[] {
    return this.options.repo.getAssignments(deviceId);
  }

  /** The signed document for a device and its ETag. */
  desired(deviceId: string): { doc: DesiredStateDocument; etag: string } {
    const { repo, now, expiryMs } = this.options;
    const version = repo.desiredVersion(deviceId);
    const cached = this.cache.get(deviceId);
    if (cached !== undefined && cached.version === version && now() - cached.signedAt < expiryMs / 2)
      return { doc: cached.doc, etag: cached.etag };
    const targets: DesiredTarget[] = [];
    for (const a of repo.getAssignments(deviceId)) {
      const bundle = repo.getBundle(a.model, a.version);
      if (bundle === undefined) continue;
      const files = bundle.targets.map((path) => {
        const t = this.options.tuf.target(path);
        if (t === undefined)
          throw new OutpostError('INTERNAL', `bundle ${a.model}@${a.version} names target ${path} that TUF does not list`);
        return { path, length: t.length, sha256: t.sha256 };
      });
      targets.push({ model: a.model, version: a.version, releaseCounter: bundle.releaseCounter, targets: files });
    }
    const at = now();
    const signed: DesiredStateSigned = {
      _type: 'outpost-desired-state',
      specVersion: 1,
      deviceId,
      version,
      issuedAt: iso(at),
      expires: iso(at + expiryMs),
      targets,
    };
    const bytes = Buffer.from(canonicalize(signed));
    const doc: DesiredStateDocument = {
      signed,
      signatures: [{ keyid: this.options.key.keyId, sig: this.options.key.signHex(bytes) }],
    };
    const etag = `"${version}-${createHash('sha256').update(bytes).digest('hex').slice(0, 20)}"`;
    this.cache.set(deviceId, { version, doc, etag, signedAt: at });
    return { doc, etag };
  }

  forget(deviceId: string): void {
    this.cache.delete(deviceId);
  }
}
