import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { OutpostError } from '../errors.ts';
import { alignWeights, LayoutError } from '../onnx/weights-layout.ts';
import { type Datatype, datatypeToOrtType, ortTypeToDatatype, type Tensor, toJsonArray } from '../tensor.ts';
import { type BundleManifest, MANIFEST_FILE, type TensorSpec } from './manifest.ts';
import { parseManifest } from './read.ts';
import { compareSample, sampleInputs } from './sample.ts';

/** What an author writes; the builder fills the rest from the model itself. */
export interface ManifestDraft {
  name: string;
  version: string;
  releaseCounter: number;
  description?: string;
  labels?: string[];
  pipeline?: unknown;
  batching?: { maxBatchSize: number; maxQueueDelayMs: number };
  compat?: { arch?: Array<'x64' | 'arm64'>; minAgentVersion?: string };
  sample: {
    inputs: Record<string, { shape: number[]; data: Array<number | string | boolean> }>;
    /** When omitted the builder records what the model answers; when given it must match. */
    outputs?: Record<string, { shape: number[]; data: Array<number | string | boolean> }>;
    tolerance?: { abs?: number; rel?: number };
  };
}

function signatureOf(meta: readonly ort.InferenceSession.ValueMetadata[]): TensorSpec[] {
  return meta.map((m) => {
    if (!m.isTensor)
      throw new OutpostError(
        'BUNDLE_INVALID',
        `${m.name} is not a tensor; only tensor inputs and outputs are supported`,
      );
    const datatype: Datatype | undefined = ortTypeToDatatype(m.type);
    if (datatype === undefined)
      throw new OutpostError('BUNDLE_INVALID', `${m.name} has unsupported type ${m.type}`);
    return { name: m.name, datatype, shape: m.shape.map((d) => (typeof d === 'number' ? d : -1)) };
  });
}

/** Runs the sample inputs through onnxruntime in this process (the CLI, not the agent). */
export async function runSample(
  modelBytes: Uint8Array,
  inputs: Record<string, Tensor>,
): Promise<Record<string, Tensor>> {
  const session = await ort.InferenceSession.create(modelBytes);
  try {
    const feeds: Record<string, ort.Tensor> = {};
    for (const [name, t] of Object.entries(inputs)) {
      feeds[name] = new ort.Tensor(
        datatypeToOrtType(t.datatype) as 'float32',
        t.data as Float32Array,
        t.shape,
      );
    }
    const result = await session.run(feeds);
    const out: Record<string, Tensor> = {};
    for (const [name, t] of Object.entries(result)) {
      out[name] = {
        datatype: ortTypeToDatatype(t.type) ?? 'BYTES',
        shape: [...t.dims],
        data: t.data as Float32Array,
      };
    }
    return out;
  } finally {
    await session.release();
  }
}

export interface BuildOptions {
  /**
   * Lay the model out so a device can map its large weights (`alignWeights`); the default. Off,
   * the bundle holds the model file byte for byte.
   */
  alignWeights?: boolean;
  /** Told how many initializers were aligned, or why the model is bundled as it is. */
  onLayout?: (layout: { aligned: number; error?: string }) => void;
}

/**
 * Makes a bundle directory: the model as `model.onnx` and a complete `outpost.bundle.json`
 * whose digest, size and signature come from the model itself. The sample must run; if the
 * draft gives expected outputs they must match within tolerance. The sample runs on the model
 * as the bundle holds it, after its weights are aligned.
 */
export async function buildBundle(
  modelPath: string,
  draft: ManifestDraft,
  outDir: string,
  options: BuildOptions = {},
): Promise<BundleManifest> {
  const source = await readFile(modelPath);
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(source);
  } catch (err) {
    throw new OutpostError(
      'BUNDLE_INVALID',
      `${modelPath} is not a model onnxruntime can load: ${String(err)}`,
      { cause: err },
    );
  }
  const signature = {
    inputs: signatureOf(session.inputMetadata),
    outputs: signatureOf(session.outputMetadata),
  };
  await session.release();
  let bytes: Uint8Array = source;
  if (options.alignWeights !== false) {
    try {
      const laid = alignWeights(source);
      bytes = laid.bytes;
      options.onLayout?.({ aligned: laid.aligned });
    } catch (err) {
      // onnxruntime loaded it, so it is a model; one this cannot walk is bundled as it is.
      if (!(err instanceof LayoutError)) throw err;
      options.onLayout?.({ aligned: 0, error: err.message });
    }
  }
  const tolerance = { abs: draft.sample.tolerance?.abs ?? 1e-5, rel: draft.sample.tolerance?.rel ?? 1e-4 };
  const partial = {
    schema: 1 as const,
    name: draft.name,
    version: draft.version,
    releaseCounter: draft.releaseCounter,
    ...(draft.description === undefined ? {} : { description: draft.description }),
    model: {
      file: 'model.onnx',
      sha256: createHash('sha256').update(bytes).digest('hex'),
      size: bytes.length,
    },
    signature,
    ...(draft.labels === undefined ? {} : { labels: draft.labels }),
    ...(draft.pipeline === undefined ? {} : { pipeline: draft.pipeline }),
    ...(draft.batching === undefined ? {} : { batching: draft.batching }),
    compat: {
      arch: draft.compat?.arch ?? ['x64', 'arm64'],
      minAgentVersion: draft.compat?.minAgentVersion ?? '0.1.0',
    },
    sample: { inputs: draft.sample.inputs, outputs: draft.sample.outputs ?? {}, tolerance },
  };
  let outputs: Record<string, Tensor>;
  try {
    outputs = await runSample(bytes, sampleInputs(partial as BundleManifest));
  } catch (err) {
    throw new OutpostError('BUNDLE_INVALID', `the sample does not run: ${String(err)}`, { cause: err });
  }
  if (draft.sample.outputs !== undefined) {
    const problems = compareSample(outputs, draft.sample.outputs, tolerance);
    if (problems.length > 0)
      throw new OutpostError('BUNDLE_INVALID', `the sample does not match: ${problems.join('; ')}`);
  } else {
    partial.sample.outputs = Object.fromEntries(
      Object.entries(outputs).map(([name, t]) => [
        name,
        { shape: t.shape, data: toJsonArray(t.data) as Array<number | string | boolean> },
      ]),
    );
  }
  const manifest = parseManifest(partial);
  await mkdir(outDir, { recursive: true });
  await writeFile(join(outDir, 'model.onnx.tmp'), bytes);
  await rename(join(outDir, 'model.onnx.tmp'), join(outDir, 'model.onnx'));
  await writeFile(join(outDir, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`);
  return manifest;
}
