/**
 * Deterministic example models for demos, tests and benchmarks. Every model carries a float64
 * reference implementation so tests check onnxruntime against arithmetic done by hand rather than
 * against outputs recorded from onnxruntime itself.
 */
import { attr, GraphBuilder, ML_DOMAIN } from './builder.ts';
import { MLP_LABELS } from './mlp-models.ts';
import {
  dense,
  type ExampleModel,
  type Feeds,
  floatInput,
  floatTensor,
  seededRandom,
  sigmoid,
  stringInput,
} from './model-math.ts';

export type { Attribute, Dim, ElemType, ValueSpec } from './builder.ts';
export type { MlpLabel } from './mlp-models.ts';
export {
  brokenMlp,
  MLP_FEATURES,
  MLP_HIDDEN,
  MLP_LABELS,
  mlpClassifier,
  mlpV2,
  paddedModel,
  WIDE_MLP_HIDDEN,
  wideMlp,
} from './mlp-models.ts';
export type { ExampleModel, Feeds, RefTensor } from './model-math.ts';
export {
  AXES,
  FUNDAMENTAL_HZ,
  SAMPLE_RATE_HZ,
  simulateVibration,
  VIBRATION_ANOMALY_THRESHOLD,
  type VibrationOptions,
  vibrationAnomaly,
  WINDOW_SAMPLES,
  windowsToFeeds,
} from './vibration-model.ts';

function uniformSample(name: string, width: number, defaultSeed: number) {
  return (batch: number, seed = defaultSeed): Feeds => {
    const next = seededRandom(seed);
    const data = Float32Array.from({ length: batch * width }, () => next() * 4 - 2);
    return { [name]: { type: 'float', data, dims: [batch, width] } };
  };
}

/** Builds a 1-output affine model `y = act(x·W + b)` and its reference. */
function affineModel(spec: {
  name: string;
  description: string;
  input: string;
  output: string;
  weights: number[];
  bias: number;
  sigmoid: boolean;
}): ExampleModel {
  const inDim = spec.weights.length;
  const w = Float32Array.from(spec.weights);
  const b = Float32Array.of(spec.bias);
  const g = new GraphBuilder(spec.name, { docString: spec.description })
    .input(spec.input, 'float', ['batch', inDim])
    .output(spec.output, 'float', ['batch', 1])
    .initializer('weight', w, [inDim, 1])
    .initializer('bias', b, [1])
    .node('MatMul', [spec.input, 'weight'], ['mm'])
    .node('Add', ['mm', 'bias'], [spec.sigmoid ? 'logit' : spec.output]);
  if (spec.sigmoid) g.node('Sigmoid', ['logit'], [spec.output]);
  return {
    name: spec.name,
    description: spec.description,
    bytes: g.toBytes(),
    inputs: g.inputs,
    outputs: g.outputs,
    reference(feeds) {
      const x = floatInput(feeds, spec.input);
      const batch = x.dims[0] ?? 0;
      const y = dense(x.data, batch, w, b, inDim, 1);
      return { [spec.output]: floatTensor(spec.sigmoid ? y.map(sigmoid) : y, [batch, 1]) };
    },
    sample: uniformSample(spec.input, inDim, 3),
  };
}

export function linearRegression(): ExampleModel {
  return affineModel({
    name: 'linear-regression',
    description: 'Linear regression: x [batch,3] → y [batch,1] = 2·x0 - x1 + 0.5·x2 + 0.25',
    input: 'x',
    output: 'y',
    weights: [2, -1, 0.5],
    bias: 0.25,
    sigmoid: false,
  });
}

export function logisticRegression(): ExampleModel {
  return affineModel({
    name: 'logistic-regression',
    description: 'Logistic regression: x [batch,4] → probability [batch,1] = σ(x·[0.8,-1.2,0.5,2] - 0.3)',
    input: 'x',
    output: 'probability',
    weights: [0.8, -1.2, 0.5, 2],
    bias: -0.3,
    sigmoid: true,
  });
}

/**
 * STRING in, STRING/INT64/BOOL out, for the BYTES datatype over the API: `echo` is the input
 * unchanged, `label_id` is the index of the text in MLP_LABELS (-1 when unknown, via ai.onnx.ml
 * LabelEncoder) and `known` says whether it was found. StringNormalizer is avoided on purpose:
 * it needs an OS locale that slim edge images often lack.
 */
export function stringEcho(): ExampleModel {
  const description = `String echo: text [batch] → echo [batch], label_id [batch] (index in ${MLP_LABELS.join('/')} or -1), known [batch]`;
  const g = new GraphBuilder('string-echo', { docString: description })
    .input('text', 'string', ['batch'])
    .output('echo', 'string', ['batch'])
    .output('label_id', 'int64', ['batch'])
    .output('known', 'bool', ['batch'])
    .initializer('zero', BigInt64Array.of(0n), [])
    .node('Identity', ['text'], ['echo'])
    .node('LabelEncoder', ['text'], ['label_id'], {
      domain: ML_DOMAIN,
      attributes: {
        keys_strings: attr.strings([...MLP_LABELS]),
        values_int64s: attr.ints(MLP_LABELS.map((_, i) => i)),
        default_int64: attr.int(-1),
      },
    })
    .node('GreaterOrEqual', ['label_id', 'zero'], ['known']);
  const labels: readonly string[] = MLP_LABELS;
  return {
    name: 'string-echo',
    description,
    bytes: g.toBytes(),
    inputs: g.inputs,
    outputs: g.outputs,
    reference(feeds) {
      const text = stringInput(feeds, 'text');
      const ids = text.data.map((s) => labels.indexOf(s));
      return {
        echo: { type: 'string', data: [...text.data], dims: [...text.dims] },
        label_id: { type: 'int64', data: BigInt64Array.from(ids, BigInt), dims: [...text.dims] },
        known: { type: 'bool', data: Uint8Array.from(ids, (i) => (i >= 0 ? 1 : 0)), dims: [...text.dims] },
      };
    },
    sample(batch) {
      const pool = [...MLP_LABELS, 'hello', '', 'Ünïcødé ✓', 'FAULT'];
      const data = Array.from({ length: batch }, (_, i) => pool[i % pool.length] ?? '');
      return { text: { type: 'string', data, dims: [batch] } };
    },
  };
}
