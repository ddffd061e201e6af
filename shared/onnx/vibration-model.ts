/**
 * Vibration anomaly scoring with a linear "autoencoder" whose weights are computed, not trained:
 * the code layer projects onto an orthonormal basis of the sinusoids a healthy machine produces,
 * so healthy windows reconstruct almost perfectly and anything outside that subspace (impacts,
 * broadband noise, new frequencies) shows up as reconstruction error.
 */
import { attr, GraphBuilder } from './builder.ts';
import {
  dense,
  type ExampleModel,
  type Feeds,
  floatInput,
  floatTensor,
  relu,
  seededGaussian,
} from './model-math.ts';

export const SAMPLE_RATE_HZ = 800;
export const WINDOW_SAMPLES = 64;
export const AXES = 3;
/** 50 Hz at 800 Hz sampling is exactly 4 cycles per window, so the basis is leak-free. */
export const FUNDAMENTAL_HZ = 50;
const FLAT = WINDOW_SAMPLES * AXES;
const CODE = 16;

/**
 * Over 500 simulated windows each, healthy ones score 3e-4 to 1.3e-3 (sensor noise plus speed
 * drift) and faulty ones 0.06 to 0.15; 0.02 leaves a wide margin on the healthy side, where false
 * alarms would come from.
 */
export const VIBRATION_ANOMALY_THRESHOLD = 0.02;

/** Accelerometer DC offset in g: gravity on z. The decoder adds it back after projection. */
const GRAVITY = [0, 0, 1] as const;

function basisVectors(): Float64Array[] {
  const wave = (hz: number, axis: number, fn: (a: number) => number): Float64Array => {
    const v = new Float64Array(FLAT);
    for (let t = 0; t < WINDOW_SAMPLES; t++) v[t * AXES + axis] = fn((2 * Math.PI * hz * t) / SAMPLE_RATE_HZ);
    return v;
  };
  const vectors: Float64Array[] = [];
  for (let axis = 0; axis < AXES; axis++) {
    vectors.push(wave(FUNDAMENTAL_HZ, axis, Math.sin), wave(FUNDAMENTAL_HZ, axis, Math.cos));
  }
  // The last two directions cover the second harmonic on x, the axis with the strongest mount resonance.
  vectors.push(wave(2 * FUNDAMENTAL_HZ, 0, Math.sin), wave(2 * FUNDAMENTAL_HZ, 0, Math.cos));
  return gramSchmidt(vectors);
}

function gramSchmidt(vectors: Float64Array[]): Float64Array[] {
  const out: Float64Array[] = [];
  for (const v of vectors) {
    const u = Float64Array.from(v);
    for (const q of out) {
      const d = dot(u, q);
      for (let i = 0; i < u.length; i++) u[i] = (u[i] ?? 0) - d * (q[i] ?? 0);
    }
    const norm = Math.sqrt(dot(u, u));
    if (norm < 1e-9) throw new Error('basis vectors are linearly dependent');
    out.push(u.map((x) => x / norm));
  }
  return out;
}

function dot(a: Float64Array, b: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] ?? 0) * (b[i] ?? 0);
  return s;
}

interface AutoencoderWeights {
  /** Row-major [192, 16]. */
  encW: Float32Array;
  encB: Float32Array;
  /** Row-major [16, 192]. */
  decW: Float32Array;
  decB: Float32Array;
}

/**
 * With c = Bᵀ(x - m), the code is [relu(c), relu(-c)] and the decoder computes
 * B·relu(c) - B·relu(-c) + m = BBᵀ(x - m) + m: a Relu layer that still loses no sign information.
 */
function autoencoderWeights(): AutoencoderWeights {
  const basis = basisVectors();
  const k = basis.length;
  const mean = new Float64Array(FLAT);
  for (let t = 0; t < WINDOW_SAMPLES; t++) {
    for (let a = 0; a < AXES; a++) mean[t * AXES + a] = GRAVITY[a] ?? 0;
  }
  const encW = new Float32Array(FLAT * CODE);
  const encB = new Float32Array(CODE);
  const decW = new Float32Array(CODE * FLAT);
  basis.forEach((q, j) => {
    const shift = dot(q, mean);
    encB[j] = -shift;
    encB[j + k] = shift;
    for (let i = 0; i < FLAT; i++) {
      const w = q[i] ?? 0;
      encW[i * CODE + j] = w;
      encW[i * CODE + j + k] = -w;
      decW[j * FLAT + i] = w;
      decW[(j + k) * FLAT + i] = -w;
    }
  });
  return { encW, encB, decW, decB: Float32Array.from(mean) };
}

export interface VibrationOptions {
  fault?: boolean;
  seed?: number;
  /** Start time in seconds, so consecutive windows continue the same waveform. */
  t0?: number;
}

/**
 * One [64][3] accelerometer window in g. Healthy: ~50 Hz rotation on all axes (per-seed speed,
 * amplitude and phase), a weak second harmonic on x, gravity on z and 0.02 g sensor noise. Faulty adds
 * bearing-defect impacts (decaying 300 Hz ringing every ~12 ms) and 0.25 g broadband noise.
 */
export function simulateVibration(options: VibrationOptions = {}): number[][] {
  const { fault = false, seed = 1, t0 = 0 } = options;
  const gauss = seededGaussian(seed);
  const amplitude = [0.6, 0.45, 0.3].map((a) => a * (1 + 0.15 * gauss()));
  const phase = [0, 1.1, 2.3].map((p) => p + 0.2 * gauss());
  const harmonic = 0.12 * (1 + 0.2 * gauss());
  // Line frequency and load make real machines wander around nominal speed by a fraction of a percent.
  const hz = FUNDAMENTAL_HZ * (1 + 0.004 * gauss());
  const impactPeriodS = 1 / 83;
  const impactGain = 2 + 0.3 * gauss();
  const window: number[][] = [];
  for (let n = 0; n < WINDOW_SAMPLES; n++) {
    const t = t0 + n / SAMPLE_RATE_HZ;
    const w = 2 * Math.PI * hz * t;
    const sinceImpact = t % impactPeriodS;
    const impact = impactGain * Math.exp(-sinceImpact * 900) * Math.sin(2 * Math.PI * 300 * sinceImpact);
    const row: number[] = [];
    for (let a = 0; a < AXES; a++) {
      let v = (amplitude[a] ?? 0) * Math.sin(w + (phase[a] ?? 0)) + (GRAVITY[a] ?? 0);
      if (a === 0) v += harmonic * Math.sin(2 * w + 0.7);
      v += 0.02 * gauss();
      if (fault) v += impact * ([1, 0.6, 0.4][a] ?? 0) + 0.25 * gauss();
      row.push(v);
    }
    window.push(row);
  }
  return window;
}

/** Packs windows into the model's `window` feed. */
export function windowsToFeeds(windows: number[][][]): Feeds {
  return { window: floatTensor(windows.flat(2), [windows.length, WINDOW_SAMPLES, AXES]) };
}

export function vibrationAnomaly(): ExampleModel {
  const weights = autoencoderWeights();
  const description =
    'Vibration anomaly score: window [batch,64,3] (800 Hz, g) → score [batch,1] (reconstruction MSE; ' +
    `anomalous above ${VIBRATION_ANOMALY_THRESHOLD}) and reconstruction [batch,64,3]`;
  const g = new GraphBuilder('vibration-anomaly', { docString: description })
    .input('window', 'float', ['batch', WINDOW_SAMPLES, AXES])
    .output('score', 'float', ['batch', 1])
    .output('reconstruction', 'float', ['batch', WINDOW_SAMPLES, AXES])
    .initializer('encoder.weight', weights.encW, [FLAT, CODE])
    .initializer('encoder.bias', weights.encB, [CODE])
    .initializer('decoder.weight', weights.decW, [CODE, FLAT])
    .initializer('decoder.bias', weights.decB, [FLAT])
    .initializer('window_shape', BigInt64Array.of(0n, BigInt(WINDOW_SAMPLES), BigInt(AXES)), [3])
    .node('Flatten', ['window'], ['flat'], { attributes: { axis: attr.int(1) } })
    .node('MatMul', ['flat', 'encoder.weight'], ['encoder.mm'])
    .node('Add', ['encoder.mm', 'encoder.bias'], ['encoder.pre'])
    .node('Relu', ['encoder.pre'], ['code'])
    .node('MatMul', ['code', 'decoder.weight'], ['decoder.mm'])
    .node('Add', ['decoder.mm', 'decoder.bias'], ['reconstruction.flat'])
    // Shape entry 0 copies the batch dimension through, which also works for an empty batch.
    .node('Reshape', ['reconstruction.flat', 'window_shape'], ['reconstruction'])
    .node('Sub', ['flat', 'reconstruction.flat'], ['error'])
    .node('Mul', ['error', 'error'], ['error.squared'])
    // Opset 17 still takes ReduceMean axes as an attribute (an input only from opset 18).
    .node('ReduceMean', ['error.squared'], ['score'], {
      attributes: { axes: attr.ints([1]), keepdims: attr.int(1) },
    })
    .metadata('anomaly_threshold', String(VIBRATION_ANOMALY_THRESHOLD))
    .metadata('sample_rate_hz', String(SAMPLE_RATE_HZ));

  const reference = (feeds: Feeds): Feeds => {
    const x = floatInput(feeds, 'window');
    const batch = x.dims[0] ?? 0;
    const code = relu(dense(x.data, batch, weights.encW, weights.encB, FLAT, CODE));
    const recon = dense(code, batch, weights.decW, weights.decB, CODE, FLAT);
    const score = new Float64Array(batch);
    for (let b = 0; b < batch; b++) {
      let sum = 0;
      for (let i = b * FLAT; i < (b + 1) * FLAT; i++) sum += ((x.data[i] ?? 0) - (recon[i] ?? 0)) ** 2;
      score[b] = sum / FLAT;
    }
    return {
      score: floatTensor(score, [batch, 1]),
      reconstruction: floatTensor(recon, [batch, WINDOW_SAMPLES, AXES]),
    };
  };

  // Even rows are healthy and odd rows faulty, so any batch of two or more exercises both.
  const sample = (batch: number, seed = 11): Feeds =>
    windowsToFeeds(
      Array.from({ length: batch }, (_, b) =>
        simulateVibration({ fault: b % 2 === 1, seed: seed + b, t0: b * 0.08 }),
      ),
    );

  return {
    name: 'vibration-anomaly',
    description,
    bytes: g.toBytes(),
    inputs: g.inputs,
    outputs: g.outputs,
    reference,
    sample,
  };
}
