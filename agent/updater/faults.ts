import { OutpostError } from '../../shared/errors.ts';

/**
 * Fault injection for the install path, so tests can cut power (SIGKILL) or fill the disk at a
 * named step of a real install in a real child process. Off unless configured; the agent reads
 * it from `OUTPOST_UPDATER_FAULT` (e.g. `kill:written`, `pause:loaded:5000`, `enospc:4096`, `eio:sync`).
 */
export interface InstallFaults {
  killAt?: string;
  pauseAt?: string;
  pauseMs?: number;
  /** Writes past this many bytes of a download fail with ENOSPC. */
  enospcAfterBytes?: number;
  /** Making the new bundle directory durable fails with EIO (while the model loads beside it). */
  syncFails?: boolean;
}

export function faultsFromEnv(value: string | undefined): InstallFaults | undefined {
  if (value === undefined || value === '') return undefined;
  const [kind, arg, ms] = value.split(':');
  if (kind === 'kill' && arg !== undefined) return { killAt: arg };
  if (kind === 'pause' && arg !== undefined) return { pauseAt: arg, pauseMs: Number(ms ?? 60_000) };
  if (kind === 'enospc' && arg !== undefined && Number.isFinite(Number(arg)))
    return { enospcAfterBytes: Number(arg) };
  if (kind === 'eio' && arg === 'sync') return { syncFails: true };
  throw new OutpostError('CONFIG_INVALID', `OUTPOST_UPDATER_FAULT: cannot parse ${JSON.stringify(value)}`);
}

export async function injectFault(faults: InstallFaults | undefined, step: string): Promise<void> {
  if (faults === undefined) return;
  if (faults.pauseAt === step) await new Promise((r) => setTimeout(r, faults.pauseMs ?? 60_000));
  if (faults.killAt === step) {
    process.kill(process.pid, 'SIGKILL');
    // Nothing after the "power cut" may run, even if the signal is delivered a moment late.
    await new Promise(() => undefined);
  }
}
