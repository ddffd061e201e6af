import type { Pipeline as PipelineSpec } from '../../shared/pipeline/schema.ts';
import type { ModelVersion } from '../runtime/registry.ts';

/** How a pipeline's windows become the model's input tensor: shape, batch rows and scaling. */

/**
 * Windows per request: the model's batch size when it batches (every input and output has a
 * dynamic first dimension and the runtime has a batch policy for it), else one.
 */
export function batchRows(model: ModelVersion, spec: PipelineSpec): number {
  const policy = model.batching;
  if (policy === undefined || policy.maxBatchSize <= 1) return 1;
  const meta = model.inputs.find((i) => i.name === spec.input);
  return meta !== undefined && meta.shape[0] === -1 ? policy.maxBatchSize : 1;
}

/** The model input's shape for one window: the batch dimension 1, the rest size × channels. */
export function inputShape(model: ModelVersion, spec: PipelineSpec): number[] {
  const meta = model.inputs.find((i) => i.name === spec.input);
  const elements = spec.window.size * spec.window.channels;
  if (meta === undefined) throw new Error(`model ${model.key} has no input ${spec.input}`);
  const shape = meta.shape.map((d, i) => (d === -1 && i === 0 ? 1 : d));
  const known = shape.filter((d) => d !== -1).reduce((a, b) => a * b, 1);
  const dynamic = shape.filter((d) => d === -1).length;
  if (dynamic === 1) return shape.map((d) => (d === -1 ? elements / known : d));
  if (dynamic > 1 || known !== elements) {
    throw new Error(
      `input ${spec.input} [${meta.shape.join(',')}] cannot take a window of ${spec.window.size}×${spec.window.channels}`,
    );
  }
  return shape;
}

function perChannel(value: number | number[], channels: number, name: string): number[] {
  if (typeof value === 'number') return new Array<number>(channels).fill(value);
  if (value.length !== channels)
    throw new Error(`scale.${name} has ${value.length} values for ${channels} channels`);
  return value;
}

export function scaling(spec: PipelineSpec, channels: number): [Float32Array, Float32Array] {
  const offset = new Float32Array(channels);
  const factor = new Float32Array(channels).fill(1);
  const s = spec.scale;
  if (s === undefined) return [offset, factor];
  const a = s.kind === 'standard' ? perChannel(s.mean, channels, 'mean') : perChannel(s.min, channels, 'min');
  const b = s.kind === 'standard' ? perChannel(s.std, channels, 'std') : perChannel(s.max, channels, 'max');
  for (let c = 0; c < channels; c++) {
    offset[c] = a[c] as number;
    const span = s.kind === 'standard' ? (b[c] as number) : (b[c] as number) - (a[c] as number);
    factor[c] = span === 0 ? 1 : 1 / span;
  }
  return [offset, factor];
}
