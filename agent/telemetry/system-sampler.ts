import type { Worker } from 'node:worker_threads';
import { startWorkerThread } from '../worker-thread.ts';
import type { SystemFigures } from './system.ts';

type Reply = { ok: true; figures: SystemFigures } | { ok: false; error: string };

/**
 * Takes a system sample in a short-lived worker thread (see system-worker.ts for why). The
 * thread exits after the sample, so systeminformation and its isolate hold no memory between
 * samples (one a minute by default). A sample that has not come back within `timeoutMs` is
 * abandoned and the thread terminated.
 */
const running = new Set<Worker>();

/** Ends samples in flight (their promises reject): an agent that stops leaves no thread behind. */
export async function stopSystemSamples(): Promise<void> {
  await Promise.all([...running].map((w) => w.terminate()));
}

export function sampleSystemOffThread(dataDir: string, timeoutMs = 20_000): Promise<SystemFigures> {
  return new Promise((resolve, reject) => {
    const worker = startWorkerThread(import.meta.url, 'system-worker', 'outpost-telemetry', { dataDir });
    running.add(worker);
    let settled = false;
    const finish = (err: Error | undefined, figures?: SystemFigures) => {
      if (settled) return;
      settled = true;
      running.delete(worker);
      clearTimeout(timer);
      void worker.terminate();
      if (err !== undefined) reject(err);
      else resolve(figures as SystemFigures);
    };
    const timer = setTimeout(
      () => finish(new Error(`the system sample took longer than ${timeoutMs} ms`)),
      timeoutMs,
    );
    worker.once('message', (m: Reply) =>
      m.ok ? finish(undefined, m.figures) : finish(new Error(`system sample failed: ${m.error}`)),
    );
    worker.once('error', (err) => finish(err));
    worker.once('exit', (code) => finish(new Error(`the system sample thread exited with code ${code}`)));
  });
}
