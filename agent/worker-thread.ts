import { Worker } from 'node:worker_threads';

/** A module next to `base` (an import.meta.url): `.ts` under tsx, `.js` when built. */
export function siblingModule(base: string, module: string): { url: URL; fromSource: boolean } {
  const fromSource = base.endsWith('.ts');
  return { url: new URL(`./${module}.${fromSource ? 'ts' : 'js'}`, base), fromSource };
}

/**
 * Starts a worker thread on a module next to the caller (`./name` without extension: `.ts` under
 * tsx, `.js` when built). From TypeScript sources the worker registers tsx's loader itself
 * before importing its module: Node 20 does not carry `--import` loader hooks into worker threads.
 */
export function startWorkerThread(base: string, module: string, name: string, workerData?: unknown): Worker {
  const { url, fromSource } = siblingModule(base, module);
  const options = { name, ...(workerData === undefined ? {} : { workerData }) };
  if (!fromSource) return new Worker(url, options);
  const api = import.meta.resolve('tsx/esm/api');
  const bootstrap = `import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(url.href)}); });`;
  return new Worker(bootstrap, { ...options, eval: true });
}
