/**
 * One system sample, taken in a short-lived child process (see system-sampler.ts for why): it
 * gets the data directory and whether to measure CPU load itself, sends one message, and exits.
 */
import { sampleSystem } from './system.ts';

const [dataDir = '/', measureLoad] = process.argv.slice(2);
const send = (message: unknown) => process.send?.(message, () => process.exit(0));
sampleSystem(dataDir, measureLoad === 'measure-load').then(
  (figures) => send({ ok: true, figures }),
  (err: unknown) => send({ ok: false, error: err instanceof Error ? err.message : String(err) }),
);
