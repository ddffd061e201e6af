import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { OutpostError } from '../errors.ts';
import { parseOrThrow } from '../validate.ts';
import { type BundleManifest, MANIFEST_FILE, manifestSchema } from './manifest.ts';

export interface Bundle {
  dir: string;
  manifest: BundleManifest;
  modelPath: string;
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

export function parseManifest(value: unknown, where = MANIFEST_FILE): BundleManifest {
  return parseOrThrow(manifestSchema, value, where, 'BUNDLE_INVALID');
}

/** Reads a bundle directory and checks the model file against the manifest's size and digest. */
export async function readBundle(dir: string): Promise<Bundle> {
  const manifestPath = join(dir, MANIFEST_FILE);
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(manifestPath, 'utf8'));
  } catch (err) {
    throw new OutpostError('BUNDLE_INVALID', `cannot read ${manifestPath}: ${String(err)}`, { cause: err });
  }
  const manifest = parseManifest(raw, manifestPath);
  const modelPath = join(dir, manifest.model.file);
  let size: number;
  try {
    size = (await stat(modelPath)).size;
  } catch (err) {
    throw new OutpostError('BUNDLE_INVALID', `model file ${modelPath} is missing`, { cause: err });
  }
  if (size !== manifest.model.size) {
    throw new OutpostError(
      'BUNDLE_INVALID',
      `model file ${modelPath} is ${size} bytes, manifest says ${manifest.model.size}`,
    );
  }
  const digest = await sha256File(modelPath);
  if (digest !== manifest.model.sha256) {
    throw new OutpostError(
      'BUNDLE_INVALID',
      `model file ${modelPath} has sha256 ${digest}, manifest says ${manifest.model.sha256}`,
    );
  }
  return { dir, manifest, modelPath };
}
