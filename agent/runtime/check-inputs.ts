import { OutpostError } from '../../shared/errors.ts';
import { elementCount, type Tensor } from '../../shared/tensor.ts';
import type { IoMetadata, WireTensor } from './protocol.ts';

/** Checks request tensors against a model's inputs: every name known and present, datatype, rank, fixed dims, element count. */
export function checkInputs(
  model: { key: string; inputs: readonly IoMetadata[] },
  inputs: Record<string, Tensor>,
): Record<string, WireTensor> {
  const feeds: Record<string, WireTensor> = {};
  for (const name of Object.keys(inputs)) {
    if (!model.inputs.some((m) => m.name === name)) {
      throw new OutpostError('INVALID_INPUT', `model ${model.key} has no input named ${name}`);
    }
  }
  for (const meta of model.inputs) {
    const t = inputs[meta.name];
    if (t === undefined) throw new OutpostError('INVALID_INPUT', `input ${meta.name} is missing`);
    if (t.datatype !== meta.datatype) {
      throw new OutpostError(
        'INVALID_INPUT',
        `input ${meta.name} must be ${meta.datatype}, got ${t.datatype}`,
      );
    }
    if (
      t.shape.length !== meta.shape.length ||
      t.shape.some((d, i) => meta.shape[i] !== -1 && meta.shape[i] !== d)
    ) {
      throw new OutpostError(
        'INVALID_INPUT',
        `input ${meta.name} has shape [${t.shape.join(',')}], model expects [${meta.shape.join(',')}]`,
      );
    }
    const n = elementCount(t.shape);
    if (t.data.length !== n) {
      throw new OutpostError(
        'INVALID_INPUT',
        `input ${meta.name} has ${t.data.length} elements, shape [${t.shape.join(',')}] needs ${n}`,
      );
    }
    feeds[meta.name] = { datatype: t.datatype, shape: t.shape, data: t.data };
  }
  return feeds;
}
