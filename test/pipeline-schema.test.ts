import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Postprocessor } from '../agent/pipeline/postprocess.ts';
import { Windower } from '../agent/pipeline/window.ts';
import { pipelineSchema } from '../shared/pipeline/schema.ts';
import { parseOrThrow } from '../shared/validate.ts';
import { linearPipelineBundle, readingOf } from './fixtures/pipeline-bundles.ts';
import { testAgent } from './helpers/agent.ts';
import { tempDir } from './helpers/tmp.ts';

const valid = {
  source: {
    kind: 'mqtt',
    topic: 'sensors/+sensor/accel',
    key: 'sensor',
    payload: { format: 'json', field: 'data.accel' },
  },
  window: { size: 64, hop: 32, channels: 3 },
  scale: { kind: 'standard', mean: [0, 0, 0], std: [1, 1, 1] },
  input: 'window',
  postprocess: { kind: 'threshold', above: 0.5, hysteresis: 0.1, debounce: 2, event: 'anomaly' },
  rateLimit: 10,
};

function problems(value: unknown): string {
  try {
    parseOrThrow(pipelineSchema, value, 'pipeline', 'BUNDLE_INVALID', 'pipeline');
    return '';
  } catch (err) {
    return (err as Error).message;
  }
}

test('pipelines are validated by the schema and every error names its field', () => {
  assert.equal(problems(valid), '');
  assert.match(problems({ ...valid, window: { size: 0, hop: 1 } }), /pipeline\.window\.size/);
  assert.match(problems({ ...valid, source: { kind: 'mqtt' } }), /pipeline\.source\.topic/);
  assert.match(problems({ ...valid, source: { kind: 'ftp' } }), /pipeline\.source\.kind/);
  assert.match(
    problems({ ...valid, source: { ...valid.source, payload: { format: 'xml' } } }),
    /pipeline\.source\.payload\.format/,
  );
  assert.match(problems({ ...valid, postprocess: { kind: 'topk', k: 0 } }), /pipeline\.postprocess\.k/);
  assert.match(problems({ ...valid, scale: { kind: 'standard', mean: 0 } }), /pipeline\.scale\.std/);
  assert.match(problems({ ...valid, rateLimit: -1 }), /pipeline\.rateLimit/);
  // No code: unknown keys are refused rather than ignored.
  assert.match(problems({ ...valid, script: 'process.exit()' }), /script|Unrecognized/);
  assert.match(problems({ ...valid, source: { kind: 'http', name: 'a/b' } }), /pipeline\.source\.name/);
});

test('windows per key with size and hop', () => {
  const w = new Windower(4, 2, 1);
  const out: Array<[string, number[]]> = [];
  for (let i = 1; i <= 8; i++) {
    for (const key of ['a', 'b']) {
      const win = w.push(key, [key === 'a' ? i : -i]);
      if (win !== undefined) out.push([key, [...win]]);
    }
  }
  assert.deepEqual(out, [
    ['a', [1, 2, 3, 4]],
    ['b', [-1, -2, -3, -4]],
    ['a', [3, 4, 5, 6]],
    ['b', [-3, -4, -5, -6]],
    ['a', [5, 6, 7, 8]],
    ['b', [-5, -6, -7, -8]],
  ]);
});

test('postprocessing: softmax, argmax and top-k with labels, threshold with debounce and hysteresis', () => {
  const labels = ['cat', 'dog', 'owl'];
  const soft = new Postprocessor({ kind: 'softmax' }, labels).apply('k', [1, 2, 3]).body
    .probabilities as number[];
  assert.ok(
    Math.abs(soft.reduce((a, b) => a + b, 0) - 1) < 1e-9 && (soft[2] as number) > (soft[1] as number),
  );
  assert.deepEqual(
    new Postprocessor({ kind: 'argmax', softmax: false }, labels).apply('k', [0.1, 0.7, 0.2]).body,
    {
      class: 1,
      label: 'dog',
      score: 0.7,
    },
  );
  const top = new Postprocessor({ kind: 'topk', k: 2, softmax: false }, labels).apply('k', [0.1, 0.7, 0.2])
    .body.top;
  assert.deepEqual(top, [
    { index: 1, label: 'dog', score: 0.7 },
    { index: 2, label: 'owl', score: 0.2 },
  ]);

  const t = new Postprocessor(
    { kind: 'threshold', above: 0.5, hysteresis: 0.2, debounce: 2, event: 'hot' },
    undefined,
  );
  const events: Array<[number, boolean]> = [];
  const scores = [0.6, 0.4, 0.6, 0.6, 0.45, 0.35, 0.6, 0.25, 0.2];
  scores.forEach((s, i) => {
    const r = t.apply('k', [s]);
    if (r.event !== undefined) events.push([i, r.event.body.active as boolean]);
  });
  // On only after two windows in a row above 0.5; off only after two in a row below 0.3.
  assert.deepEqual(events, [
    [3, true],
    [8, false],
  ]);
  // Per key: another sensor has its own state.
  assert.equal(t.apply('other', [0.9]).event, undefined);
});

test('scaling and the per-key rate limit in a running pipeline', async () => {
  const bundle = await linearPipelineBundle(
    tempDir('bundles'),
    { kind: 'http', name: 'feed', payload: { format: 'json', field: 'x' } },
    { scale: { kind: 'standard', mean: [1, 0, 0], std: [0.5, 1, 1] }, rateLimit: 1 },
  );
  const agent = testAgent({
    deviceId: 'scale-dev',
    uplink: { enabled: false },
    sensors: { mqtt: 'off' },
    telemetry: { enabled: false },
    models: { bundles: [bundle.dir] },
  });
  await agent.start();
  try {
    const post = (key: string, x: number) =>
      fetch(`http://127.0.0.1:${agent.httpPort}/v1/sensors/feed?key=${key}`, {
        method: 'POST',
        body: JSON.stringify({ x: [x, 0, 0] }),
      });
    assert.equal((await post('a', 3)).status, 200);
    assert.equal((await post('a', 4)).status, 429, 'a second window within a second for the same key');
    assert.equal((await post('b', 4)).status, 200, 'another key has its own budget');
    const rows = agent.outbox.fetch('prediction', 0, 10);
    const bodies = rows.map(
      (r) => JSON.parse(r.payload.toString()).body as { key: string; values: number[] },
    );
    // (3 - 1) / 0.5 = 4 → y = 2·4 + 0.25; (4 - 1) / 0.5 = 6 → y = 12.25.
    assert.deepEqual(
      bodies.map((b) => [b.key, readingOf(b)]),
      [
        ['a', 4],
        ['b', 6],
      ],
    );
    assert.equal(agent.pipelines.stats()['linear-regression']?.droppedRate, 1);
  } finally {
    await agent.stop();
  }
});
