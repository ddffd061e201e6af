import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { AgentMetrics } from '../agent/http/metrics.ts';
import type { Agent } from '../agent/main.ts';
import { exampleBundles } from '../deploy/examples/example-bundles.ts';
import { mlpClassifier } from '../shared/onnx/models.ts';
import { apiAgent, baseUrl, postJson } from './helpers/api.ts';
import { tempDir } from './helpers/tmp.ts';

let agent: Agent;
let url: string;

before(async () => {
  const dir = tempDir('metrics');
  agent = await apiAgent([(await exampleBundles.mlp(dir)).dir], { runtime: { workers: 1 } });
  url = baseUrl(agent);
});

after(async () => {
  await agent?.stop();
});

/** Parses Prometheus text into `name{labels}` → value. */
function parse(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

const MV = 'model="mlp-classifier",version="1.0.0"';

function infer(rows: number, seed: number) {
  const data = (mlpClassifier().sample(rows, seed).features as { data: Float32Array }).data;
  return postJson(`${url}/v2/models/mlp-classifier/infer`, {
    inputs: [{ name: 'features', datatype: 'FP32', shape: [rows, 8], data: Array.from(data) }],
  });
}

test('GET /metrics: Triton counters per model and version, batching visible, failures by reason', async () => {
  for (let i = 0; i < 5; i++) assert.equal((await infer(1, i)).status, 200);
  assert.equal((await infer(3, 9)).status, 200);
  // 24 concurrent one-row requests: the MLP batches (max 32 rows, 2 ms), so fewer executions than requests.
  const burst = await Promise.all(Array.from({ length: 24 }, (_, i) => infer(1, 100 + i)));
  assert.ok(burst.every((r) => r.status === 200));
  const bad = await postJson(`${url}/v2/models/mlp-classifier/infer`, {
    inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 7], data: new Array(7).fill(0) }],
  });
  assert.equal(bad.status, 400);

  const res = await fetch(`${url}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /text\/plain/);
  const m = parse(await res.text());
  const get = (key: string) => {
    const v = m.get(key);
    assert.ok(v !== undefined, `metric ${key} is missing`);
    return v;
  };
  assert.equal(get(`nv_inference_request_success{${MV}}`), 30);
  assert.equal(get(`nv_inference_request_failure{${MV},reason="OTHER"}`), 1);
  assert.equal(get(`nv_inference_count{${MV}}`), 5 + 3 + 24);
  const execs = get(`nv_inference_exec_count{${MV}}`);
  assert.ok(execs >= 7 && execs < 30, `executions ${execs} < requests 30 (batching)`);
  const requestUs = get(`nv_inference_request_duration_us{${MV}}`);
  const computeUs = get(`nv_inference_compute_infer_duration_us{${MV}}`);
  const queueUs = get(`nv_inference_queue_duration_us{${MV}}`);
  assert.ok(computeUs > 0 && queueUs > 0, 'compute and queue time accumulate');
  assert.ok(requestUs >= queueUs, 'request time includes queue time');
  assert.equal(get(`nv_inference_pending_request_count{${MV}}`), 0);
  assert.equal(get(`outpost_inference_request_duration_seconds_count{${MV}}`), 30);
  assert.equal(get(`outpost_inference_batch_size_count{${MV}}`), execs);
  assert.equal(get(`outpost_inference_batch_size_sum{${MV}}`), 32);
  assert.equal(get('outpost_models_loaded'), 1);
  assert.equal(
    get(
      'outpost_http_request_duration_seconds_count{method="POST",route="/v2/models/{model}/infer",code="200"}',
    ),
    30,
  );
  assert.ok(get('process_resident_memory_bytes') > 0);
  assert.ok(get('nodejs_heap_size_used_bytes') > 0);
  assert.ok(m.has('nodejs_eventloop_lag_seconds'));
  assert.ok(m.has('nodejs_eventloop_lag_p99_seconds'));
  assert.ok(get('process_cpu_seconds_total') > 0);
  // GC pauses are observed only when configured (http.gcMetrics): observing costs throughput.
  assert.ok(![...m.keys()].some((k) => k.startsWith('nodejs_gc_duration_seconds')));
  // Each agent's registry is its own: a second one in this process starts from nothing.
  const other = new AgentMetrics({ versions: () => [] });
  assert.doesNotMatch((await other.render()).body, /nv_inference_request_success\{/);
});

test('http.gcMetrics adds GC pauses by kind to /metrics', async () => {
  const dir = tempDir('metrics-gc');
  const withGc = await apiAgent([(await exampleBundles.linear(dir)).dir], {
    runtime: { workers: 1 },
    http: { port: 0, gcMetrics: true },
  });
  try {
    // Garbage to collect: young-generation collections follow within a few MB of allocation.
    let keep = 0;
    for (let i = 0; i < 200_000; i++) keep += new Array(16).fill(i).length;
    assert.ok(keep > 0);
    await new Promise((r) => setTimeout(r, 50));
    const res = await fetch(`${baseUrl(withGc)}/metrics`);
    const m = parse(await res.text());
    assert.ok(
      (m.get('nodejs_gc_duration_seconds_count{kind="minor"}') ?? 0) > 0 ||
        (m.get('nodejs_gc_duration_seconds_count{kind="major"}') ?? 0) > 0,
    );
  } finally {
    await withGc.stop();
  }
});

test('a full queue answers 429 and counts REJECTED failures; a request timeout answers 504', async () => {
  const dir = tempDir('metrics-429');
  const small = await apiAgent([(await exampleBundles.linear(dir)).dir], {
    runtime: {
      workers: 1,
      queueLimit: 2,
      batching: { defaultMaxBatchSize: 64, defaultMaxQueueDelayMs: 1000 },
    },
  });
  try {
    const u = `${baseUrl(small)}/v2/models/linear-regression/infer`;
    const answers = await Promise.all(
      Array.from({ length: 5 }, () =>
        postJson(u, { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 3], data: [1, 2, 3] }] }),
      ),
    );
    const refused = answers.filter((a) => a.status === 429);
    assert.equal(refused.length, 3);
    assert.equal(refused[0]?.headers.get('retry-after'), '1');
    assert.match(refused[0]?.body.error ?? '', /requests waiting/);
    assert.equal(answers.filter((a) => a.status === 200).length, 2);
    const m = parse(await (await fetch(`${baseUrl(small)}/metrics`)).text());
    assert.equal(
      m.get('nv_inference_request_failure{model="linear-regression",version="1.0.0",reason="REJECTED"}'),
      3,
    );
    // Per-request timeout (Triton's `timeout` parameter, µs) → 504.
    const late = await postJson(u, {
      inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 3], data: [1, 2, 3] }],
      parameters: { timeout: 20_000 },
    });
    assert.equal(late.status, 504);
    assert.match(late.body.error ?? '', /within 20 ms/);
  } finally {
    await small.stop();
  }
});
