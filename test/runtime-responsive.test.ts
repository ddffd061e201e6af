import assert from 'node:assert/strict';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { vibrationBundle } from '../deploy/examples/example-bundles.ts';
import { vibrationAnomaly } from '../shared/onnx/models.ts';
import { apiAgent, baseUrl, binaryBody } from './helpers/api.ts';
import { tempDir } from './helpers/tmp.ts';

/**
 * The load comes from a thread of its own, so this thread's event loop is the agent's alone:
 * what is measured is the agent answering, not the load generator competing with it.
 */
const LOAD = `
const { parentPort, workerData } = require('node:worker_threads');
const { url, headerLength, body, clients } = workerData;
let stop = false;
let served = 0;
let failed = 0;
parentPort.on('message', () => { stop = true; });
const one = async () => {
  while (!stop) {
    const res = await fetch(url, { method: 'POST', headers: { 'inference-header-content-length': String(headerLength) }, body });
    await res.arrayBuffer();
    if (res.status === 200) served++; else failed++;
    if (served % 10 === 0) parentPort.postMessage({ served, failed });
  }
};
Promise.all(Array.from({ length: clients }, one)).then(() => parentPort.postMessage({ served, failed, done: true }));
`;

/**
 * Inference runs in worker threads, so the main event loop keeps answering while every worker
 * is busy. This is a loose functional bound, not the performance target (that is `npm run bench`).
 */
test('/v2/health/live answers promptly while inference saturates the workers', async (t) => {
  const bundle = await vibrationBundle(tempDir('responsive'));
  const agent = await apiAgent([bundle.dir], { runtime: { workers: 2 } });
  try {
    const url = baseUrl(agent);
    const window = (vibrationAnomaly().sample(64, 3).window as { data: Float32Array }).data;
    const blob = Buffer.from(window.buffer, window.byteOffset, window.byteLength);
    const { body, headerLength } = binaryBody(
      {
        inputs: [
          {
            name: 'window',
            datatype: 'FP32',
            shape: [64, 64, 3],
            parameters: { binary_data_size: blob.length },
          },
        ],
        outputs: [{ name: 'score' }],
      },
      [blob],
    );
    const load = new Worker(LOAD, {
      eval: true,
      workerData: { url: `${url}/v2/models/vibration-anomaly/infer`, headerLength, body, clients: 12 },
    });
    let progress = { served: 0, failed: 0, done: false };
    load.on('message', (m: typeof progress) => {
      progress = m;
    });
    const finished = new Promise<void>((resolve) => load.on('exit', () => resolve()));
    while (progress.served < 20) await new Promise((r) => setTimeout(r, 10));

    const lag = monitorEventLoopDelay({ resolution: 5 });
    lag.enable();
    const latencies: number[] = [];
    let maxPending = 0;
    for (let i = 0; i < 40; i++) {
      maxPending = Math.max(maxPending, agent.registry.pending('vibration-anomaly@1.0.0'));
      const t0 = performance.now();
      const res = await fetch(`${url}/v2/health/live`);
      assert.equal(res.status, 200);
      await res.json();
      latencies.push(performance.now() - t0);
      await new Promise((r) => setTimeout(r, 10));
    }
    lag.disable();
    load.postMessage('stop');
    while (!progress.done) await new Promise((r) => setTimeout(r, 10));
    await load.terminate();
    await finished;

    latencies.sort((a, b) => a - b);
    const median = latencies[Math.floor(latencies.length / 2)] as number;
    const p90 = latencies[Math.floor(latencies.length * 0.9)] as number;
    const worst = latencies[latencies.length - 1] as number;
    const detail = `median ${median.toFixed(1)} ms, p90 ${p90.toFixed(1)} ms, worst ${worst.toFixed(1)} ms, loop lag p99 ${(lag.percentile(99) / 1e6).toFixed(1)} ms, pending up to ${maxPending}`;
    t.diagnostic(detail);
    assert.equal(progress.failed, 0);
    assert.ok(maxPending >= 4, `the workers were not saturated: ${detail}`);
    // Loose on purpose: the test machine has two cores shared with the inference workers, the
    // load thread and other processes. Inference on this thread would queue every ping behind
    // ~12 runs of ~20 ms each.
    assert.ok(median < 50, detail);
    assert.ok(p90 < 250, detail);
    assert.ok(worst < 1500, detail);
  } finally {
    await agent.stop();
  }
});
