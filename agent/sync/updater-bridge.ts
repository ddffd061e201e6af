import { OutpostError } from '../../shared/errors.ts';
import type { ModelRegistry } from '../runtime/registry.ts';
import type { Updater } from '../updater/updater.ts';
import type { DesiredStateHandler, InstalledModelReport, InstallOutcome } from './sync-client.ts';

/**
 * Hands a changed desired state to the updater and turns its outcome into reports. The
 * updater verifies the director document itself (signature, device, version floor) and
 * re-reads it from the director, so what the sync client saw is only the trigger. What the
 * device runs is read from the registry: the models actually serving, never what was asked.
 */
export class UpdaterBridge implements DesiredStateHandler {
  constructor(
    private readonly updater: () => Updater | undefined,
    private readonly registry: ModelRegistry,
  ) {}

  async apply(_document: unknown): Promise<InstallOutcome[]> {
    const updater = this.updater();
    if (updater === undefined) throw new OutpostError('INTERNAL', 'updates are not enabled on this agent');
    const outcome = await updater.checkNow();
    const check = outcome.failed.find((f) => f.target === '(check)');
    // A failed check (director or TUF unreachable or untrusted) installs nothing: retry later.
    if (check !== undefined) throw new OutpostError('TRUST_FAILED', check.error);
    const split = (key: string) => {
      const at = key.lastIndexOf('@');
      return { model: key.slice(0, at), version: key.slice(at + 1) };
    };
    return [
      ...outcome.installed.map((k) => ({ ...split(k), ok: true, detail: 'installed and activated' })),
      ...outcome.failed.map((f) => ({ ...split(f.target), ok: false, detail: f.error })),
    ];
  }

  installed(): InstalledModelReport[] {
    return this.registry
      .all()
      .filter((m) => m.state === 'READY')
      .map((m) => ({
        name: m.name,
        version: m.version,
        sha256: m.ref.sha256,
        releaseCounter: m.releaseCounter,
        state: m.state,
      }));
  }
}
