/**
 * Writes the example models as .onnx files.
 *
 *   tsx shared/onnx/make-examples.ts [outDir] [--padded-mb N]
 *
 * outDir defaults to deploy/examples/models/ in this repository. The padded benchmark model is
 * opt-in because tens of megabytes of random weights do not belong next to the demo models.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  brokenMlp,
  type ExampleModel,
  linearRegression,
  logisticRegression,
  mlpClassifier,
  mlpV2,
  paddedModel,
  stringEcho,
  vibrationAnomaly,
} from './models.ts';

export const DEFAULT_OUT_DIR = fileURLToPath(new URL('../../deploy/examples/models/', import.meta.url));

export interface ExampleFile {
  /** File name inside the output directory; versions of one model share `name` but not a file. */
  file: string;
  build: () => ExampleModel;
}

export const EXAMPLE_FILES: readonly ExampleFile[] = [
  { file: 'linear-regression.onnx', build: linearRegression },
  { file: 'logistic-regression.onnx', build: logisticRegression },
  { file: 'mlp-classifier.onnx', build: mlpClassifier },
  { file: 'mlp-classifier-v2.onnx', build: mlpV2 },
  { file: 'mlp-classifier-broken.onnx', build: brokenMlp },
  { file: 'vibration-anomaly.onnx', build: vibrationAnomaly },
  { file: 'string-echo.onnx', build: stringEcho },
];

export interface WrittenModel {
  path: string;
  bytes: number;
  description: string;
}

export async function writeExamples(
  outDir: string = DEFAULT_OUT_DIR,
  options: { paddedMegabytes?: number } = {},
): Promise<WrittenModel[]> {
  const files = [...EXAMPLE_FILES];
  const mb = options.paddedMegabytes;
  if (mb !== undefined) {
    files.push({ file: `mlp-classifier-padded-${mb}mb.onnx`, build: () => paddedModel(mb * 1024 * 1024) });
  }
  await mkdir(outDir, { recursive: true });
  const written: WrittenModel[] = [];
  // Sequential on purpose: the padded model alone can hold a few hundred MB while building.
  for (const { file, build } of files) {
    const model = build();
    const target = path.join(outDir, file);
    await writeFile(target, model.bytes);
    written.push({ path: target, bytes: model.bytes.length, description: model.description });
  }
  return written;
}

export function parseArgs(argv: readonly string[]): { outDir: string; paddedMegabytes?: number } {
  let outDir = DEFAULT_OUT_DIR;
  let paddedMegabytes: number | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    if (arg === '--padded-mb') {
      paddedMegabytes = Number(argv[++i]);
      if (!Number.isFinite(paddedMegabytes) || paddedMegabytes <= 0) {
        throw new Error('--padded-mb needs a positive number');
      }
    } else if (arg.startsWith('-')) {
      throw new Error(`unknown option ${arg}`);
    } else {
      outDir = path.resolve(arg);
    }
  }
  return paddedMegabytes === undefined ? { outDir } : { outDir, paddedMegabytes };
}

function isMain(): boolean {
  const script = process.argv[1];
  return script !== undefined && path.resolve(script) === fileURLToPath(import.meta.url);
}

if (isMain()) {
  try {
    const { outDir, ...options } = parseArgs(process.argv.slice(2));
    for (const model of await writeExamples(outDir, options)) {
      console.log(`${path.relative(process.cwd(), model.path)}  ${model.bytes} B  ${model.description}`);
    }
  } catch (err) {
    console.error(err instanceof Error ? err.message : err);
    process.exitCode = 1;
  }
}
