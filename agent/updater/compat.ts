import type { TargetFile } from '@tufjs/models';
import type { BundleManifest } from '../../shared/bundle/manifest.ts';
import { OutpostError } from '../../shared/errors.ts';
import type { DirectorTarget } from '../../shared/tuf/index.ts';

/** Compares two semver strings by major.minor.patch, then a release above any pre-release. */
export function compareSemver(a: string, b: string): number {
  const parse = (v: string) => {
    const [core = '', pre] = v.split('+')[0]?.split(/-(.*)/s) ?? [];
    return { nums: core.split('.').map((n) => Number(n)), pre };
  };
  const x = parse(a);
  const y = parse(b);
  for (let i = 0; i < 3; i++) {
    const d = (x.nums[i] ?? 0) - (y.nums[i] ?? 0);
    if (d !== 0) return Math.sign(d);
  }
  if (x.pre === y.pre) return 0;
  if (x.pre === undefined) return 1;
  if (y.pre === undefined) return -1;
  return x.pre < y.pre ? -1 : 1;
}

function refuse(message: string, details: Record<string, unknown> = {}): never {
  throw new OutpostError('TRUST_FAILED', message, { details });
}

/** The director's entry and TUF's must name the same bytes: same length, same sha256. */
export function assertSameTarget(director: DirectorTarget, tuf: TargetFile | undefined): TargetFile {
  if (tuf === undefined)
    refuse(`target ${director.name} is named by the director but not vouched for by TUF`);
  if (tuf.length !== director.length || tuf.hashes['sha256'] !== director.hashes.sha256)
    refuse(
      `target ${director.name}: the director says ${director.length} bytes sha256 ${director.hashes.sha256}, TUF says ${tuf.length} bytes sha256 ${tuf.hashes['sha256']}`,
    );
  return tuf;
}

/** Architecture and minimum agent version, from the manifest TUF vouched for. */
export function assertCompatible(manifest: BundleManifest, arch: string, agentVersion: string): void {
  if (!(manifest.compat.arch as string[]).includes(arch))
    refuse(
      `${manifest.name}@${manifest.version} is built for ${manifest.compat.arch.join(', ')}, not ${arch}`,
      {
        incompatible: true,
      },
    );
  if (compareSemver(agentVersion, manifest.compat.minAgentVersion) < 0)
    refuse(
      `${manifest.name}@${manifest.version} needs agent ${manifest.compat.minAgentVersion} or newer, this is ${agentVersion}`,
      { incompatible: true },
    );
}

/** The manifest must be the release the targets metadata describes (its custom fields). */
export function assertManifestMatchesTargets(
  manifest: BundleManifest,
  manifestTarget: TargetFile,
  modelTarget: TargetFile,
): void {
  const c = manifestTarget.custom;
  if (
    c['name'] !== manifest.name ||
    c['version'] !== manifest.version ||
    c['releaseCounter'] !== manifest.releaseCounter
  )
    refuse(`manifest ${manifestTarget.path} does not describe the release its target names`);
  const dir = manifestTarget.path.slice(0, manifestTarget.path.lastIndexOf('/') + 1);
  if (modelTarget.path !== `${dir}${manifest.model.file}`)
    refuse(`model target ${modelTarget.path} is not the manifest's model file ${manifest.model.file}`);
  if (modelTarget.length !== manifest.model.size || modelTarget.hashes['sha256'] !== manifest.model.sha256)
    refuse(`model target ${modelTarget.path} does not match the manifest's size and sha256`);
}
