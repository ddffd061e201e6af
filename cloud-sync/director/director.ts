import { createHash } from 'node:crypto';
import { canonicalize } from '@tufjs/canonical-json';
import { OutpostError } from '../../shared/errors.ts';
import {
  type DirectorDocument,
  type DirectorTarget,
  type SigningKey,
  signDirectorDocument,
  tufTime,
} from '../../shared/tuf/index.ts';
import type { Logger } from '../log.ts';
import type { AssignmentRecord, Repository } from '../store/repository.ts';
import type { TufHost } from '../tuf/repo-host.ts';

export interface DirectorOptions {
  repo: Repository;
  tuf: TufHost;
  /** The director key(s): as many as root's director threshold asks for. */
  keys: readonly SigningKey[];
  /** A signed document is valid this long; it is re-signed when half of that is gone. */
  expiryMs: number;
  now: () => number;
  log: Logger;
  /** Told after a device's desired state changed (the MQTT `cmd/sync` nudge). */
  onChange?: (deviceId: string) => void;
}

/**
 * The director (Uptane style): what each device should run, signed with the director key.
 * Assignments live in the repository; the signed document is built on demand, cached per
 * device and version so that its ETag stays stable between polls.
 */
export class Director {
  private readonly cache = new Map<
    string,
    { version: number; doc: DirectorDocument; etag: string; signedAt: number }
  >();

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
  desired(deviceId: string): { doc: DirectorDocument; etag: string } {
    const { repo, now, expiryMs } = this.options;
    const version = repo.desiredVersion(deviceId);
    const cached = this.cache.get(deviceId);
    if (cached !== undefined && cached.version === version && now() - cached.signedAt < expiryMs / 2)
      return { doc: cached.doc, etag: cached.etag };
    const targets: DirectorTarget[] = [];
    for (const a of repo.getAssignments(deviceId)) {
      // Copied from the signed targets metadata, so the device can match them against TUF exactly.
      targets.push(...this.options.tuf.directorTargets(a.model, a.version));
    }
    const at = now();
    // Version 0 means "never assigned anything"; the document format starts at 1.
    const doc = signDirectorDocument(
      {
        deviceId,
        version: version + 1,
        expires: tufTime(new Date(at + expiryMs)),
        issuedAt: tufTime(new Date(at)),
        targets,
      },
      this.options.keys,
    );
    const bytes = Buffer.from(canonicalize(doc.signed));
    const etag = `"${version + 1}-${createHash('sha256').update(bytes).digest('hex').slice(0, 20)}"`;
    this.cache.set(deviceId, { version, doc, etag, signedAt: at });
    return { doc, etag };
  }

  forget(deviceId: string): void {
    this.cache.delete(deviceId);
  }
}
