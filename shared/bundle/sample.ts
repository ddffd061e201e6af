import type { Tensor } from '../tensor.ts';
import { toJsonArray } from '../tensor.ts';
import { fill } from '../v2-codec.ts';
import type { BundleManifest, TensorSpec } from './manifest.ts';

export type SampleTensors = BundleManifest['sample']['inputs'];

/** The manifest's sample inputs as tensors, typed by the manifest's input signature. */
export function sampleInputs(manifest: Pick<BundleManifest, 'sample' | 'signature'>): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  for (const [name, t] of Object.entries(manifest.sample.inputs)) {
    const spec = manifest.signature.inputs.find((i: TensorSpec) => i.name === name);
    if (spec === undefined) throw new Error(`sample input ${name} is not an input of the model`);
    out[name] = { datatype: spec.datatype, shape: t.shape, data: fill(name, spec.datatype, t.data) };
  }
  return out;
}

/**
 * Compares outputs with the expected sample outputs: numbers within `abs + rel·|expected|`,
 * everything else exactly. Returns the problems found; empty means the check passed.
 */
export function compareSample(
  actual: Record<string, Tensor>,
  expected: SampleTensors,
  tolerance: { abs: number; rel: number },
): string[] {
  const problems: string[] = [];
  for (const [name, want] of Object.entries(expected)) {
    const got = actual[name];
    if (got === undefined) {
      problems.push(`output ${name} is missing`);
      continue;
    }
    if (got.shape.join(',') !== want.shape.join(',')) {
      problems.push(`output ${name} has shape [${got.shape.join(',')}], expected [${want.shape.join(',')}]`);
      continue;
    }
    const values = toJsonArray(got.data);
    for (let i = 0; i < want.data.length; i++) {
      const w = want.data[i];
      const g = values[i];
      if (typeof w === 'number' && typeof g === 'number') {
        if (!(Math.abs(g - w) <= tolerance.abs + tolerance.rel * Math.abs(w))) {
          problems.push(
            `output ${name}[${i}] is ${g}, expected ${w} (abs ${tolerance.abs}, rel ${tolerance.rel})`,
          );
          break;
        }
      } else if (w !== g && !(typeof w === 'boolean' && g === (w ? 1 : 0))) {
        problems.push(`output ${name}[${i}] is ${String(g)}, expected ${String(w)}`);
        break;
      }
    }
  }
  return problems;
}
