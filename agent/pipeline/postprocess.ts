import type { Postprocess } from '../../shared/pipeline/schema.ts';

export function softmax(values: ArrayLike<number>): number[] {
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < values.length; i++) max = Math.max(max, values[i] as number);
  const exps = Array.from(values, (v) => Math.exp(v - max));
  const sum = exps.reduce((a, b) => a + b, 0);
  return exps.map((e) => e / sum);
}

export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if ((values[i] as number) > (values[best] as number)) best = i;
  return best;
}

export interface ThresholdState {
  active: boolean;
  streak: number;
}

export interface PostprocessResult {
  /** The prediction body published on `pred/{model}`. */
  body: Record<string, unknown>;
  /** Set when a threshold state changed: published on `evt/{event}`. */
  event?: { type: string; body: Record<string, unknown> };
}

/**
 * Turns one window's output row into a prediction body. The threshold postprocessor keeps
 * state per key: it changes only after `debounce` windows in a row agree, and turns off only
 * below `above - hysteresis`, so a noisy score near the line does not flap.
 */
export class Postprocessor {
  private readonly states = new Map<string, ThresholdState>();

  constructor(
    private readonly spec: Postprocess,
    private readonly labels: readonly string[] | undefined,
  ) {}

  apply(key: string, output: readonly number[]): PostprocessResult {
    const spec = this.spec;
    const label = (i: number) => this.labels?.[i] ?? String(i);
    switch (spec.kind) {
      case 'none':
        return { body: { values: output } };
      case 'softmax':
        return { body: { probabilities: softmax(output) } };
      case 'argmax': {
        const p = spec.softmax ? softmax(output) : [...output];
        const i = argmax(p);
        return { body: { class: i, label: label(i), score: p[i] } };
      }
      case 'topk': {
        const p = spec.softmax ? softmax(output) : [...output];
        const top = p
          .map((score, index) => ({ index, label: label(index), score }))
          .sort((a, b) => b.score - a.score)
          .slice(0, spec.k);
        return { body: { top } };
      }
      case 'threshold': {
        const score = output[0] ?? Number.NaN;
        let state = this.states.get(key);
        if (state === undefined) {
          state = { active: false, streak: 0 };
          this.states.set(key, state);
        }
        const wantsOn = score > spec.above;
        const wantsOff = score < spec.above - spec.hysteresis;
        const flipping = (!state.active && wantsOn) || (state.active && wantsOff);
        state.streak = flipping ? state.streak + 1 : 0;
        const body: Record<string, unknown> = { score, threshold: spec.above, active: state.active };
        if (flipping && state.streak >= spec.debounce) {
          state.active = !state.active;
          state.streak = 0;
          body.active = state.active;
          return {
            body,
            event: { type: spec.event, body: { key, active: state.active, score, threshold: spec.above } },
          };
        }
        return { body };
      }
    }
  }
}
