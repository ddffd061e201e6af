/**
 * One system sample, taken on a thread of its own: on Linux systeminformation runs several of
 * its readings (CPU load, temperatures, the mount table) through execSync, which would stall the
 * agent's event loop — and so inference and HTTP — for as long as a shell takes to start.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { sampleSystem } from './system.ts';

const { dataDir } = workerData as { dataDir: string };
sampleSystem(dataDir).then(
  (figures) => parentPort?.postMessage({ ok: true, figures }),
  (err: unknown) =>
    parentPort?.postMessage({ ok: false, error: err instanceof Error ? err.message : String(err) }),
);
