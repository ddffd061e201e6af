import assert from 'node:assert/strict';
import { test } from 'node:test';
import { VersionScheduler } from '../agent/runtime/batcher.ts';
import type { RunResult } from '../agent/runtime/pool.ts';
import type { Tensor } from '../shared/tensor.ts';

/** A scheduler over a fake worker whose runs report `computeUs`; returns the in-flight counts seen. */
async function inFlightSeen(
  computeUs: number,
  requests: number,
): Promise<{ scheduler: VersionScheduler; seen: number[] }> {
  let inFlight = 0;
  const seen: number[] = [];
  const scheduler = new VersionScheduler({
    key: 'm@1',
    slots: () => 1,
    batching: undefined,
    queueLimit: 10_000,
    timeoutMs: 10_000,
    run: () =>
      new Promise<RunResult>((resolve) => {
        inFlight++;
        seen.push(inFlight);
        setImmediate(() => {
          inFlight--;
          resolve({
            outputs: { y: { datatype: 'FP32', shape: [1, 1], data: Float32Array.of(1) } },
            computeUs,
          });
        });
      }),
  });
  const feeds: Record<string, Tensor> = { x: { datatype: 'FP32', shape: [1, 1], data: Float32Array.of(0) } };
  await Promise.all(
    Array.from(
      { length: requests },
      () =>
        new Promise<void>((resolve, reject) =>
          scheduler.submit(feeds, undefined, undefined, (err) =>
            err === undefined ? resolve() : reject(err),
          ),
        ),
    ),
  );
  return { scheduler, seen };
}

test('unbatched, a worker is given about 2 ms of work ahead: many runs of a fast model, few of a slow one', async () => {
  const fast = await inFlightSeen(30, 400);
  assert.equal(fast.scheduler.workerDepth, 32);
  assert.equal(Math.max(...fast.seen), 32, 'a 30 µs model keeps 32 requests at its worker');

  const slow = await inFlightSeen(5_000, 40);
  assert.equal(slow.scheduler.workerDepth, 2);
  assert.equal(Math.max(...slow.seen.slice(0, 4)), 4, 'before any run time is known: 4');
  assert.equal(
    Math.max(...slow.seen.slice(8)),
    2,
    'a 5 ms model: 2, so the rest stay where they can time out',
  );
});
