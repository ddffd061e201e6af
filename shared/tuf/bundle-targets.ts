import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TargetFile, Targets } from '@tufjs/models';
import type { BundleManifest } from '../bundle/manifest.ts';
import { MANIFEST_FILE } from '../bundle/manifest.ts';
import { readBundle } from '../bundle/read.ts';
import { OutpostError } from '../errors.ts';
import type { DirectorTarget } from './director.ts';
import { sha256Hex, targetFile } from './metadata.ts';

/**
 * A bundle is two TUF targets under `<name>/<version>/`: its manifest and its model file.
 * Both carry the same `custom` fields so the director, the dashboard and the device can
 * tell what a target is without downloading it.
 */
export interface BundleTargetCustom {
  kind: 'manifest' | 'model';
  name: string;
  version: string;
  releaseCounter: number;
  arch: string[];
  minAgentVersion: string;
}

export function bundleTargetDir(name: string, version: string): string {
  return `${name}/${version}`;
}

export function bundleCustom(manifest: BundleManifest, kind: BundleTargetCustom['kind']): BundleTargetCustom {
  return {
    kind,
    name: manifest.name,
    version: manifest.version,
    releaseCounter: manifest.releaseCounter,
    arch: [...manifest.compat.arch],
    minAgentVersion: manifest.compat.minAgentVersion,
  };
}

export interface BundleTargetFiles {
  manifest: BundleManifest;
  /** The manifest target and the model target, in that order. */
  targets: [TargetFile, TargetFile];
  /** Where each target's content is on disk, by target path. */
  sources: Record<string, string>;
}

/** Reads (and verifies) a bundle directory and describes it as TUF targets. */
export async function bundleTargetsFromDir(dir: string): Promise<BundleTargetFiles> {
  const bundle = await readBundle(dir);
  const m = bundle.manifest;
  const manifestPath = join(dir, MANIFEST_FILE);
  const manifestBytes = await readFile(manifestPath);
  const base = bundleTargetDir(m.name, m.version);
  const manifestTarget = targetFile(
    `${base}/${MANIFEST_FILE}`,
    { length: manifestBytes.length, sha256: sha256Hex(manifestBytes) },
    { ...bundleCustom(m, 'manifest') },
  );
  const modelTarget = targetFile(
    `${base}/${m.model.file}`,
    { length: m.model.size, sha256: m.model.sha256 },
    { ...bundleCustom(m, 'model') },
  );
  return {
    manifest: m,
    targets: [manifestTarget, modelTarget],
    sources: { [manifestTarget.path]: manifestPath, [modelTarget.path]: bundle.modelPath },
  };
}

export function directorTargetOf(t: TargetFile): DirectorTarget {
  const sha256 = t.hashes['sha256'];
  if (sha256 === undefined) throw new OutpostError('BAD_REQUEST', `target ${t.path} has no sha256`);
  return { name: t.path, length: t.length, hashes: { sha256 }, custom: t.custom };
}

/**
 * The director entries that tell a device to run bundle `name@version`: both of its targets,
 * copied from the signed targets metadata (so they match what TUF vouches for).
 */
export function directorTargetsForBundle(targets: Targets, name: string, version: string): DirectorTarget[] {
  const prefix = `${bundleTargetDir(name, version)}/`;
  const found = Object.values(targets.targets).filter((t) => t.path.startsWith(prefix));
  const manifest = found.find((t) => t.custom['kind'] === 'manifest');
  const model = found.find((t) => t.custom['kind'] === 'model');
  if (manifest === undefined || model === undefined)
    throw new OutpostError('NOT_FOUND', `bundle ${name}@${version} is not in the targets metadata`);
  return [directorTargetOf(manifest), directorTargetOf(model)];
}
