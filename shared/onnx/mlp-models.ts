/**
 * The 8→16→3 health classifier family. Weights are hand-designed rather than random so the model
 * means something in demos: the class follows the mean of the 8 features (normalised health
 * indicators in [0, 1]), with seeded noise units layered on top so versions differ numerically.
 */
import { attr, GraphBuilder } from './builder.ts';
import {
  dense,
  type ExampleModel,
  type Feeds,
  floatInput,
  floatTensor,
  relu,
  seededRandom,
  softmaxRows,
  transpose,
  uniformArray,
} from './model-math.ts';

export const MLP_LABELS = ['normal', 'warning', 'fault'] as const;
export type MlpLabel = (typeof MLP_LABELS)[number];
export const MLP_FEATURES = 8;
export const MLP_HIDDEN = 16;
const CLASSES = MLP_LABELS.length;

interface MlpWeights {
  hidden: number;
  /** Row-major [features, hidden]. */
  w1: Float32Array;
  b1: Float32Array;
  /** An optional second hidden layer, row-major [hidden, hidden], followed by a ReLU. */
  mid?: { w: Float32Array; b: Float32Array };
  /** Row-major [hidden, classes]. */
  w2: Float32Array;
  b2: Float32Array;
}

interface Design {
  seed: number;
  /** Mean feature value where 'normal' hands over to 'warning', and 'warning' to 'fault'. */
  warnAt: number;
  faultAt: number;
  slope: number;
  hidden: number;
  /** Scale of the seeded units' contribution to the logits. */
  noiseScale: number;
}

/**
 * Units 0-3 compute relu(±(mean - threshold)); logit_normal = slope·(warnAt - mean) and
 * logit_fault = slope·(mean - faultAt) follow exactly from them, with logit_warning fixed at 0,
 * so the argmax switches at the two thresholds. Remaining units are seeded noise.
 */
function designedWeights(design: Design): MlpWeights {
  const { hidden, slope } = design;
  const w1 = uniformArray(MLP_FEATURES * hidden, design.seed, 0.5);
  const b1 = uniformArray(hidden, design.seed + 1, 0.1);
  const w2 = uniformArray(hidden * CLASSES, design.seed + 2, design.noiseScale);
  const structured: [sign: number, threshold: number, normal: number, fault: number][] = [
    [1, design.warnAt, -slope, 0],
    [-1, design.warnAt, slope, 0],
    [1, design.faultAt, 0, slope],
    [-1, design.faultAt, 0, -slope],
  ];
  structured.forEach(([sign, threshold, normal, fault], unit) => {
    for (let i = 0; i < MLP_FEATURES; i++) w1[i * hidden + unit] = sign / MLP_FEATURES;
    b1[unit] = -sign * threshold;
    w2.set([normal, 0, fault], unit * CLASSES);
  });
  return { hidden, w1, b1, w2, b2: new Float32Array(CLASSES) };
}

function mlpReference(weights: MlpWeights): (feeds: Feeds) => Feeds {
  return (feeds) => {
    const x = floatInput(feeds, 'features');
    const batch = x.dims[0] ?? 0;
    const h1 = relu(dense(x.data, batch, weights.w1, weights.b1, MLP_FEATURES, weights.hidden));
    const { mid } = weights;
    const h = mid === undefined ? h1 : relu(dense(h1, batch, mid.w, mid.b, weights.hidden, weights.hidden));
    const logits = dense(h, batch, weights.w2, weights.b2, weights.hidden, CLASSES);
    return {
      logits: floatTensor(logits, [batch, CLASSES]),
      probabilities: floatTensor(softmaxRows(logits, CLASSES), [batch, CLASSES]),
    };
  };
}

/** Rows cycle through healthy, degraded and failing severities so every label shows up. */
function mlpSample(batch: number, seed = 7): Feeds {
  const next = seededRandom(seed);
  const data = new Float32Array(batch * MLP_FEATURES);
  for (let b = 0; b < batch; b++) {
    const centre = [0.15, 0.5, 0.85][b % 3] ?? 0.5;
    for (let i = 0; i < MLP_FEATURES; i++) {
      data[b * MLP_FEATURES + i] = Math.min(1, Math.max(0, centre + (next() - 0.5) * 0.2));
    }
  }
  return { features: { type: 'float', data, dims: [batch, MLP_FEATURES] } };
}

function buildMlp(
  name: string,
  description: string,
  weights: MlpWeights,
  modelVersion: number,
): ExampleModel {
  const { hidden } = weights;
  const g = new GraphBuilder(name, { docString: description, modelVersion })
    .input('features', 'float', ['batch', MLP_FEATURES])
    .output('logits', 'float', ['batch', CLASSES])
    .output('probabilities', 'float', ['batch', CLASSES])
    // Gemm's transB lets layer 1 keep the [out, in] layout most training frameworks export.
    .initializer('fc1.weight', transpose(weights.w1, MLP_FEATURES, hidden), [hidden, MLP_FEATURES])
    .initializer('fc1.bias', weights.b1, [hidden])
    .initializer('fc2.weight', weights.w2, [hidden, CLASSES])
    .initializer('fc2.bias', weights.b2, [CLASSES])
    .node('Gemm', ['features', 'fc1.weight', 'fc1.bias'], ['fc1.out'], {
      attributes: { alpha: attr.float(1), beta: attr.float(1), transB: attr.int(1) },
    })
    .node('Relu', ['fc1.out'], [weights.mid === undefined ? 'hidden' : 'hidden1']);
  if (weights.mid !== undefined) {
    g.initializer('fcm.weight', weights.mid.w, [hidden, hidden])
      .initializer('fcm.bias', weights.mid.b, [hidden])
      .node('Gemm', ['hidden1', 'fcm.weight', 'fcm.bias'], ['fcm.out'], {
        attributes: { alpha: attr.float(1), beta: attr.float(1) },
      })
      .node('Relu', ['fcm.out'], ['hidden']);
  }
  g.node('MatMul', ['hidden', 'fc2.weight'], ['fc2.mm'])
    .node('Add', ['fc2.mm', 'fc2.bias'], ['logits'])
    .node('Softmax', ['logits'], ['probabilities'], { attributes: { axis: attr.int(-1) } })
    .metadata('labels', MLP_LABELS.join(','));
  return {
    name,
    description,
    bytes: g.toBytes(),
    inputs: g.inputs,
    outputs: g.outputs,
    reference: mlpReference(weights),
    sample: mlpSample,
  };
}

const V1: Design = {
  seed: 101,
  warnAt: 0.35,
  faultAt: 0.65,
  slope: 12,
  hidden: MLP_HIDDEN,
  noiseScale: 0.05,
};

export function mlpClassifier(): ExampleModel {
  return buildMlp(
    'mlp-classifier',
    `Health classifier: features [batch,8] in [0,1] → logits/probabilities over ${MLP_LABELS.join('/')}`,
    designedWeights(V1),
    1,
  );
}

/** A 'retrained' v1: same signature and mostly the same verdicts, measurably different numbers. */
export function mlpV2(): ExampleModel {
  return buildMlp(
    'mlp-classifier',
    'Health classifier v2: retrained thresholds, same signature as v1',
    designedWeights({ ...V1, seed: 202, warnAt: 0.33, faultAt: 0.68, slope: 10 }),
    2,
  );
}

/**
 * Loads and runs with v1's exact signature but ignores its input: all weights are zero and the
 * bias pins every row to 'fault' (p ≈ 0.998), which a sample check against v1 must reject.
 */
export function brokenMlp(): ExampleModel {
  const weights: MlpWeights = {
    hidden: MLP_HIDDEN,
    w1: new Float32Array(MLP_FEATURES * MLP_HIDDEN),
    b1: new Float32Array(MLP_HIDDEN),
    w2: new Float32Array(MLP_HIDDEN * CLASSES),
    b2: Float32Array.of(-3, -3, 3),
  };
  return buildMlp('mlp-classifier', 'Broken health classifier: zero weights, constant output', weights, 3);
}

/** Width of each of the two hidden layers of `wideMlp`. */
export const WIDE_MLP_HIDDEN = 2048;

/**
 * mlpClassifier's signature and verdicts as a heavier network: two hidden layers of 2048 units
 * (17 MB of weights). The second layer passes the designed units 0-3 through unchanged and mixes
 * the rest with small seeded weights. A batch-1 run streams every weight from memory, so its cost
 * is the weights', not the arithmetic's: the case dynamic batching exists for.
 */
export function wideMlp(): ExampleModel {
  const hidden = WIDE_MLP_HIDDEN;
  const weights = designedWeights({ ...V1, hidden, noiseScale: 0.01 / Math.sqrt(hidden) });
  const w = uniformArray(hidden * hidden, V1.seed + 3, 0.5 / Math.sqrt(hidden));
  for (let unit = 0; unit < 4; unit++) {
    for (let i = 0; i < hidden; i++) w[i * hidden + unit] = i === unit ? 1 : 0;
  }
  const b = uniformArray(hidden, V1.seed + 4, 0.01);
  b.fill(0, 0, 4);
  return buildMlp(
    'mlp-classifier-wide',
    `Health classifier, wide: features [batch,8] → 2×${hidden} hidden → logits/probabilities over ${MLP_LABELS.join('/')}`,
    { ...weights, mid: { w, b } },
    1,
  );
}

/** Bytes of float32 weights each hidden unit adds: 8 inputs, 1 bias, 3 outputs. */
const BYTES_PER_HIDDEN_UNIT = 4 * (MLP_FEATURES + 1 + CLASSES);
/** Rough size of everything but the weights (names, shapes, opset, doc string). */
const FIXED_OVERHEAD_BYTES = 1024;

/**
 * mlpClassifier's signature and verdicts with the hidden layer widened until the file is about
 * `targetBytes`. The extra units carry incompressible random weights so transport compression
 * cannot shrink the download, but their output weights are tiny so predictions match v1 closely.
 */
export function paddedModel(targetBytes = 50 * 1024 * 1024): ExampleModel {
  const hidden = Math.max(
    MLP_HIDDEN,
    Math.round((targetBytes - FIXED_OVERHEAD_BYTES) / BYTES_PER_HIDDEN_UNIT),
  );
  const weights = designedWeights({ ...V1, hidden, noiseScale: 0.01 / Math.sqrt(hidden) });
  return buildMlp(
    'mlp-classifier-padded',
    `Health classifier padded to ~${(targetBytes / 1048576).toFixed(1)} MiB (${hidden} hidden units)`,
    weights,
    1,
  );
}
