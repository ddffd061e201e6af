import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { MANIFEST_FILE } from '../../shared/bundle/manifest.ts';
import type { Logger } from '../log.ts';

/**
 * Garbage collection of installed model versions. Layout: `<modelsDir>/<name>/<version>/`
 * holding a bundle (its `outpost.bundle.json` carries `releaseCounter`). Per model the newest
 * `keep` versions by release counter stay, plus any version the caller protects (the active
 * one and the revert target, whatever their age). A directory without a readable manifest is
 * left alone: it may be an install in progress, and guessing would risk the active model.
 */
export interface InstalledVersion {
  name: string;
  version: string;
  releaseCounter: number;
  dir: string;
}

export interface GcOptions {
  modelsDir: string;
  keep: number;
  /** `name@version` that must survive. */
  protect?: ReadonlySet<string>;
  log?: Logger;
}

export async function listInstalled(modelsDir: string, log?: Logger): Promise<InstalledVersion[]> {
  const out: InstalledVersion[] = [];
  for (const name of await dirNames(modelsDir)) {
    for (const version of await dirNames(join(modelsDir, name))) {
      const dir = join(modelsDir, name, version);
      try {
        const manifest = JSON.parse(await readFile(join(dir, MANIFEST_FILE), 'utf8')) as {
          releaseCounter?: unknown;
        };
        if (typeof manifest.releaseCounter !== 'number') throw new Error('no releaseCounter');
        out.push({ name, version, releaseCounter: manifest.releaseCounter, dir });
      } catch (err) {
        log?.warn({ err, dir }, 'model directory without a readable manifest; gc leaves it');
      }
    }
  }
  return out;
}

/** Removes versions beyond the newest `keep` per model; returns what it removed. */
export async function gcModelVersions(options: GcOptions): Promise<InstalledVersion[]> {
  const installed = await listInstalled(options.modelsDir, options.log);
  const byModel = new Map<string, InstalledVersion[]>();
  for (const v of installed) byModel.set(v.name, [...(byModel.get(v.name) ?? []), v]);
  const removed: InstalledVersion[] = [];
  for (const versions of byModel.values()) {
    versions.sort((a, b) => b.releaseCounter - a.releaseCounter);
    for (const victim of versions.slice(options.keep)) {
      if (options.protect?.has(`${victim.name}@${victim.version}`) === true) continue;
      await rm(victim.dir, { recursive: true, force: true });
      removed.push(victim);
      options.log?.info(
        { model: victim.name, version: victim.version, releaseCounter: victim.releaseCounter },
        'old model version removed',
      );
    }
  }
  return removed;
}

async function dirNames(path: string): Promise<string[]> {
  try {
    const entries = await readdir(path, { withFileTypes: true });
    return entries.filter((e) => e.isDirectory()).map((e) => e.name);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}
