import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { buildBundle, type ManifestDraft } from '../../shared/bundle/build.ts';
import type { BundleManifest } from '../../shared/bundle/manifest.ts';
import {
  brokenMlp,
  type ExampleModel,
  linearRegression,
  logisticRegression,
  MLP_LABELS,
  mlpClassifier,
  mlpV2,
  simulateVibration,
  stringEcho,
  VIBRATION_ANOMALY_THRESHOLD,
  vibrationAnomaly,
} from '../../shared/onnx/models.ts';

/** The sensor topic the example anomaly pipeline listens on; `+sensor` keys one window per sensor. */
export const VIBRATION_TOPIC = 'sensors/+sensor/accel';

export const vibrationPipeline = {
  source: {
    kind: 'mqtt',
    topic: VIBRATION_TOPIC,
    payload: { format: 'json', field: 'accel' },
    key: 'sensor',
  },
  window: { size: 64, hop: 64, channels: 3 },
  input: 'window',
  output: 'score',
  postprocess: {
    kind: 'threshold',
    above: VIBRATION_ANOMALY_THRESHOLD,
    hysteresis: 0.005,
    debounce: 1,
    event: 'anomaly',
  },
  publish: 'all',
} as const;

function flatSample(model: ExampleModel, batch = 1): ManifestDraft['sample'] {
  const feeds = model.sample(batch);
  const inputs: ManifestDraft['sample']['inputs'] = {};
  for (const [name, t] of Object.entries(feeds)) {
    inputs[name] = { shape: t.dims, data: Array.from(t.data as ArrayLike<number | string | boolean>) };
  }
  return { inputs, tolerance: { abs: 1e-4, rel: 1e-3 } };
}

export interface ExampleBundle {
  dir: string;
  manifest: BundleManifest;
}

/** Builds one example bundle from an in-memory model into `outDir/<name>-<version>`. */
export async function writeBundle(
  model: ExampleModel,
  draft: Omit<ManifestDraft, 'sample'> & { sample?: ManifestDraft['sample'] },
  outDir: string,
): Promise<ExampleBundle> {
  const dir = join(outDir, `${draft.name}-${draft.version}`);
  await mkdir(dir, { recursive: true });
  const src = join(dir, 'source.onnx');
  await writeFile(src, model.bytes);
  const manifest = await buildBundle(src, { ...draft, sample: draft.sample ?? flatSample(model) }, dir);
  const { rm } = await import('node:fs/promises');
  await rm(src, { force: true });
  return { dir, manifest };
}

/** The vibration anomaly bundle the demo runs, with its MQTT pipeline. */
export function vibrationBundle(
  outDir: string,
  version = '1.0.0',
  releaseCounter = 1,
): Promise<ExampleBundle> {
  const window = simulateVibration({ seed: 7 });
  return writeBundle(
    vibrationAnomaly(),
    {
      name: 'vibration-anomaly',
      version,
      releaseCounter,
      description: 'Scores 64-sample windows of 3-axis accelerometer data; high scores mean bearing trouble.',
      pipeline: vibrationPipeline,
      sample: {
        inputs: { window: { shape: [1, 64, 3], data: window.flat() } },
        tolerance: { abs: 1e-4, rel: 1e-3 },
      },
    },
    outDir,
  );
}

export const exampleBundles = {
  vibration: vibrationBundle,
  linear: (outDir: string) =>
    writeBundle(
      linearRegression(),
      { name: 'linear-regression', version: '1.0.0', releaseCounter: 1 },
      outDir,
    ),
  logistic: (outDir: string) =>
    writeBundle(
      logisticRegression(),
      { name: 'logistic-regression', version: '1.0.0', releaseCounter: 1 },
      outDir,
    ),
  mlp: (outDir: string, version = '1.0.0', releaseCounter = 1) =>
    writeBundle(
      mlpClassifier(),
      {
        name: 'mlp-classifier',
        version,
        releaseCounter,
        labels: [...MLP_LABELS],
        batching: { maxBatchSize: 32, maxQueueDelayMs: 2 },
      },
      outDir,
    ),
  mlpV2: (outDir: string, version = '2.0.0', releaseCounter = 2) =>
    writeBundle(
      mlpV2(),
      {
        name: 'mlp-classifier',
        version,
        releaseCounter,
        labels: [...MLP_LABELS],
        batching: { maxBatchSize: 32, maxQueueDelayMs: 2 },
      },
      outDir,
    ),
  /** Loads, but its sample check fails against the v1 expectations: for revert tests. */
  mlpBroken: async (outDir: string, version = '3.0.0', releaseCounter = 3) => {
    const good = flatSample(mlpClassifier());
    const expected = await import('../../shared/bundle/build.ts').then(async ({ runSample }) => {
      const { sampleInputs } = await import('../../shared/bundle/sample.ts');
      const inputs = sampleInputs({
        sample: { inputs: good.inputs, outputs: {}, tolerance: { abs: 1e-4, rel: 1e-3 } },
        signature: { inputs: [{ name: 'features', datatype: 'FP32', shape: [-1, 8] }], outputs: [] },
      });
      return runSample(mlpClassifier().bytes, inputs);
    });
    const outputs: NonNullable<ManifestDraft['sample']['outputs']> = {};
    for (const [name, t] of Object.entries(expected)) {
      outputs[name] = { shape: t.shape, data: Array.from(t.data as Float32Array) };
    }
    return writeBrokenBundle(outDir, version, releaseCounter, { ...good, outputs });
  },
  string: (outDir: string) =>
    writeBundle(stringEcho(), { name: 'string-echo', version: '1.0.0', releaseCounter: 1 }, outDir),
};

/** The builder refuses a bundle whose sample fails, so the broken one gets its manifest written by hand. */
async function writeBrokenBundle(
  outDir: string,
  version: string,
  releaseCounter: number,
  sample: ManifestDraft['sample'],
): Promise<ExampleBundle> {
  const built = await writeBundle(
    brokenMlp(),
    { name: 'mlp-classifier', version, releaseCounter, labels: [...MLP_LABELS] },
    outDir,
  );
  const manifest = { ...built.manifest, sample: { ...built.manifest.sample, outputs: sample.outputs ?? {} } };
  await writeFile(join(built.dir, 'outpost.bundle.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  return { dir: built.dir, manifest };
}
