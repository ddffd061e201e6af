import assert from 'node:assert/strict';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { writeBundle } from '../deploy/examples/example-bundles.ts';
import { MLP_FEATURES, paddedModel } from '../shared/onnx/models.ts';
import { apiAgent, baseUrl, binaryBody } from './helpers/api.ts';
import { tempDir } from './helpers/tmp.ts';

/**
 * The clients (the inference load and the liveness pings) run in a thread of their own, so this
 * thread's event loop is the agent's alone: what is measured is the agent, not its clients.
 */
const CLIENTS = `
const { parentPort, workerData } = require('node:worker_threads');
const { performance } = require('node:perf_hooks');
const { base, model, headerLength, body, clients, pings } = workerData;
let stop = false;
let served = 0;
let failed = [];
const one = async () => {
  while (!stop) {
    const res = await fetch(base + '/v2/models/' + model + '/infer', {
      method: 'POST',
      headers: { 'inference-header-content-length': String(headerLength) },
      body,
    });
    const text = await res.text();
    if (res.status === 200) served++; else failed.push(res.status + ' ' + text);
  }
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
(async () => {
  const load = Array.from({ length: clients }, one);
  while (served < 10 && failed.length === 0) await sleep(10);
  parentPort.postMessage({ phase: 'measuring' });
  const latencies = [];
  for (let i = 0; i < pings && failed.length === 0; i++) {
    const t0 = performance.now();
    const res = await fetch(base + '/v2/health/live');
    await res.json();
    latencies.push(res.status === 200 ? performance.now() - t0 : Infinity);
    await sleep(10);
  }
  parentPort.postMessage({ phase: 'measured' });
  stop = true;
  await Promise.all(load);
  parentPort.postMessage({ phase: 'done', latencies, served, failed });
})();
`;

interface Report {
  phase: 'measuring' | 'measured' | 'done';
  latencies?: number[];
  served?: number;
  failed?: string[];
}

/**
 * A widened MLP (~1 MiB, ~20k hidden units) at 256 rows per request: tens of milliseconds of
 * compute for 8 KiB of input, so the workers are busy while the agent's thread has little to parse.
 */
const ROWS = 256;

/**
 * Inference runs in worker threads, so the main event loop keeps answering while every worker
 * is busy. This is a loose functional bound, not the performance target (that is `npm run bench`).
 */
test('/v2/health/live answers promptly while inference saturates the workers', async (t) => {
  const model = paddedModel(1024 * 1024);
  const bundle = await writeBundle(
    model,
    { name: 'padded', version: '1.0.0', releaseCounter: 1 },
    tempDir('responsive'),
  );
  const agent = await apiAgent([bundle.dir], { runtime: { workers: 2 } });
  let clients: Worker | undefined;
  try {
    const features = (model.sample(ROWS, 3).features as { data: Float32Array }).data;
    const blob = Buffer.from(features.buffer, features.byteOffset, features.byteLength);
    const { body, headerLength } = binaryBody(
      {
        inputs: [
          {
            name: 'features',
            datatype: 'FP32',
            shape: [ROWS, MLP_FEATURES],
            parameters: { binary_data_size: blob.length },
          },
        ],
        outputs: [{ name: 'probabilities' }],
      },
      [blob],
    );
    clients = new Worker(CLIENTS, {
      eval: true,
      workerData: { base: baseUrl(agent), model: 'padded', headerLength, body, clients: 4, pings: 30 },
    });
    const lag = monitorEventLoopDelay({ resolution: 5 });
    let elu0: ReturnType<typeof performance.eventLoopUtilization> | undefined;
    let busy = 0;
    let maxPending = 0;
    const sampler = setInterval(() => {
      if (elu0 !== undefined) maxPending = Math.max(maxPending, agent.registry.pending('padded@1.0.0'));
    }, 5);
    const report = await new Promise<Report>((resolve, reject) => {
      clients?.on('error', reject);
      clients?.on('message', (m: Report) => {
        if (m.phase === 'measuring') {
          lag.enable();
          elu0 = performance.eventLoopUtilization();
        } else if (m.phase === 'measured') {
          busy = performance.eventLoopUtilization(elu0).utilization;
          lag.disable();
          clearInterval(sampler);
        } else {
          resolve(m);
        }
      });
    });
    clearInterval(sampler);
    assert.deepEqual(report.failed, []);

    const latencies = [...(report.latencies ?? [])].sort((a, b) => a - b);
    assert.equal(latencies.length, 30);
    const median = latencies[Math.floor(latencies.length / 2)] as number;
    const p90 = latencies[Math.floor(latencies.length * 0.9)] as number;
    const metrics = await (await fetch(`${baseUrl(agent)}/metrics`)).text();
    const counter = (name: string) =>
      Number(new RegExp(`^${name}\\{[^}]*\\} (\\S+)$`, 'm').exec(metrics)?.[1] ?? Number.NaN);
    const computeMs =
      counter('nv_inference_compute_infer_duration_us') / counter('nv_inference_request_success') / 1000;
    const detail = `ping median ${median.toFixed(1)} ms, p90 ${p90.toFixed(1)} ms; one inference ${computeMs.toFixed(1)} ms; agent loop busy ${(busy * 100).toFixed(0)}%, lag p99 ${(lag.percentile(99) / 1e6).toFixed(1)} ms; pending up to ${maxPending}`;
    t.diagnostic(detail);
    assert.ok(maxPending >= 3, `the workers were not saturated: ${detail}`);
    // Were inference on the agent's thread, that thread would be busy nearly all the time while
    // saturated and every ping would wait behind running inferences. The latency bounds are
    // loose on purpose: the test machine's cores are shared with the workers and other processes.
    assert.ok(busy < 0.5, detail);
    assert.ok(median < 100, detail);
    assert.ok(p90 < 500, detail);
  } finally {
    await clients?.terminate();
    await agent.stop();
  }
});
