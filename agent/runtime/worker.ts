import { readlinkSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';
import { dirname } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parentPort, workerData } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';
import { LayoutError, weightlessModel } from '../../shared/onnx/weights-layout.ts';
import { datatypeToOrtType, ortTypeToDatatype, type TensorData } from '../../shared/tensor.ts';
import {
  type FromWorker,
  type IoMetadata,
  postable,
  type SessionOptionsWire,
  type ToWorker,
  type WireTensor,
  type WorkerStart,
} from './protocol.ts';

/**
 * An inference worker. `session.run` blocks its thread for the whole inference, so it runs
 * here and never on the main event loop. Sessions live as long as their model version is
 * loaded: onnxruntime leaks native memory when sessions are created and released in a loop
 * (microsoft/onnxruntime#25325).
 */
const sessions = new Map<string, LoadedSession>();
/** Lifetime counts, so tests and diagnostics can see sessions are not churned. */
const counts = { created: 0, released: 0 };

function describe(meta: readonly ort.InferenceSession.ValueMetadata[]): IoMetadata[] {
  return meta.map((m) => {
    if (!m.isTensor) return { name: m.name, datatype: 'BYTES', shape: [], symbolic: [] };
    const shape = m.shape.map((d) => (typeof d === 'number' ? d : -1));
    const symbolic = m.shape.map((d) => (typeof d === 'number' ? '' : String(d)));
    const datatype = ortTypeToDatatype(m.type) ?? 'BYTES';
    return { name: m.name, datatype, shape, symbolic };
  });
}

function sessionOptions(o: SessionOptionsWire): ort.InferenceSession.SessionOptions {
  return {
    intraOpNumThreads: o.intraOpThreads,
    interOpNumThreads: o.interOpThreads,
    graphOptimizationLevel: o.graphOptimizationLevel,
    executionMode: o.executionMode,
  };
}

interface LoadedSession {
  session: ort.InferenceSession;
  mappedBytes: number;
  /** Why weights that were to be mapped were not. */
  mapError?: string;
}

/**
 * A session for the model at `path`. With `mapWeights`, onnxruntime is given the model without
 * its aligned large weights, which name their byte ranges in the file instead: it maps them from
 * the page cache rather than parsing them into the protobuf and copying them into tensors (for a
 * 50 MB model, 100 MB of fresh memory less, and the time to fault it in). Mapping is a way to
 * load, not a condition: a model with nothing aligned, one this cannot walk, and one onnxruntime
 * will not map (say, a model file that is a link out of its directory) load from the file, and
 * the file alone decides whether the model loads.
 */
async function createSession(
  path: string,
  options: SessionOptionsWire,
  mapWeights: boolean,
): Promise<LoadedSession> {
  let weightless: ReturnType<typeof weightlessModel>;
  let mapError: string | undefined;
  if (mapWeights) {
    try {
      weightless = weightlessModel(path);
    } catch (err) {
      if (!(err instanceof LayoutError)) throw err;
      mapError = err.message;
    }
  }
  if (weightless !== undefined) {
    try {
      const session = await ort.InferenceSession.create(weightless.bytes, {
        ...sessionOptions(options),
        extra: { session: { model_external_initializers_file_folder_path: dirname(path) } },
      });
      return { session, mappedBytes: weightless.mappedBytes };
    } catch (err) {
      mapError = err instanceof Error ? err.message : String(err);
    }
  }
  const session = await ort.InferenceSession.create(path, sessionOptions(options));
  return { session, mappedBytes: 0, ...(mapError === undefined ? {} : { mapError }) };
}

/**
 * onnxruntime's output buffer is not ours to give away: a large one is copied and the copy
 * transferred; a small one is copied by postMessage itself, which runs before the tensor is
 * disposed.
 */
function toWire(t: ort.Tensor, transfer: ArrayBuffer[]): WireTensor {
  const datatype = ortTypeToDatatype(t.type) ?? 'BYTES';
  return { datatype, shape: [...t.dims], data: postable(t.data as TensorData, transfer, false) };
}

/**
 * Lowers this thread's scheduling priority. `session.run` is CPU-bound; the main thread does
 * the HTTP and control work and is the one clients wait on, so under CPU contention it should
 * win: then health probes, MQTT and the updater stay responsive while inference saturates the
 * cores. Linux applies setpriority to a single thread when given its thread id, which
 * /proc/thread-self names; threads onnxruntime creates later (intra-op pools) inherit it.
 * Best effort: elsewhere, or where not permitted, the worker runs at the process's priority
 * and says why.
 */
function lowerPriority(nice: number): Extract<FromWorker, { op: 'started' }> {
  let tid: number | undefined;
  try {
    tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
    if (!Number.isInteger(tid) || tid <= 0) throw new Error('/proc/thread-self names no thread id');
    if (nice !== 0) setPriority(tid, nice);
    return { op: 'started', id: 0, tid, nice: getPriority(tid) };
  } catch (err) {
    const error = err instanceof Error ? err.message : String(err);
    return { op: 'started', id: 0, tid, nice: undefined, error };
  }
}

/**
 * onnxruntime-node's `run` defers the inference to a setImmediate, so the runs started in one
 * turn execute back to back in the next, and a timer started at the call would count the runs
 * ahead of it: the compute-time metric and the batcher's depth estimate would grow with the
 * queue. A run's compute starts when the run before it ended, if that was later than its call.
 */
let lastRunEnd = 0;

/** A count of work in progress, and whoever waits for it to reach zero. */
class InProgress {
  private count = 0;
  private waiters: Array<() => void> = [];

  start(): void {
    this.count++;
  }

  end(): void {
    if (--this.count === 0 && this.waiters.length > 0)
      for (const resolve of this.waiters.splice(0)) resolve();
  }

  idle(): Promise<void> {
    return this.count === 0 ? Promise.resolve() : new Promise((resolve) => this.waiters.push(resolve));
  }
}

/** Messages being handled other than `close`, which waits for them. */
const messages = new InProgress();
/** Runs started and not finished, per session key: an unload waits for them. */
const runs = new Map<string, InProgress>();

async function handle(msg: ToWorker): Promise<void> {
  const port = parentPort;
  if (port === null) return;
  const reply = (m: FromWorker, transfer: ArrayBuffer[] = []) => port.postMessage(m, transfer);
  // A close waits for every other message; it does not count itself.
  const counted = msg.op !== 'close';
  if (counted) messages.start();
  try {
    switch (msg.op) {
      case 'load': {
        let loaded = sessions.get(msg.key);
        if (loaded === undefined) {
          loaded = await createSession(msg.path, msg.options, msg.mapWeights === true);
          counts.created++;
          sessions.set(msg.key, loaded);
        }
        reply({
          op: 'loaded',
          id: msg.id,
          inputs: describe(loaded.session.inputMetadata),
          outputs: describe(loaded.session.outputMetadata),
          mappedBytes: loaded.mappedBytes,
          ...(loaded.mapError === undefined ? {} : { mapError: loaded.mapError }),
        });
        return;
      }
      case 'unload': {
        // No run starts on it from now on; the ones already started finish first.
        const loaded = sessions.get(msg.key);
        sessions.delete(msg.key);
        await runs.get(msg.key)?.idle();
        runs.delete(msg.key);
        if (loaded !== undefined) {
          await loaded.session.release();
          counts.released++;
        }
        reply({ op: 'unloaded', id: msg.id });
        return;
      }
      case 'stats': {
        reply({ op: 'stats', id: msg.id, sessions: sessions.size, ...counts });
        return;
      }
      case 'close': {
        // Sessions released here, not by finalizers while the thread is torn down: onnxruntime's
        // binding can throw from those, and an exception there aborts the whole process. Runs
        // still in progress finish first.
        await messages.idle();
        for (const [key, loaded] of sessions) {
          sessions.delete(key);
          await loaded.session.release();
          counts.released++;
        }
        reply({ op: 'closed', id: msg.id });
        return;
      }
      case 'run': {
        const session = sessions.get(msg.key)?.session;
        if (session === undefined) {
          reply({
            op: 'error',
            id: msg.id,
            message: `model ${msg.key} is not loaded`,
            code: 'MODEL_NOT_READY',
          });
          return;
        }
        const feeds: Record<string, ort.Tensor> = {};
        for (const [name, t] of Object.entries(msg.feeds)) {
          feeds[name] = new ort.Tensor(
            datatypeToOrtType(t.datatype) as 'float32',
            t.data as Float32Array,
            t.shape,
          );
        }
        let inProgress = runs.get(msg.key);
        if (inProgress === undefined) {
          inProgress = new InProgress();
          runs.set(msg.key, inProgress);
        }
        inProgress.start();
        let result: ort.InferenceSession.ReturnType;
        let computeUs: number;
        try {
          const called = performance.now();
          result =
            msg.outputs === undefined || msg.outputs.length === 0
              ? await session.run(feeds)
              : await session.run(feeds, msg.outputs);
          const ended = performance.now();
          computeUs = Math.round((ended - Math.max(called, lastRunEnd)) * 1000);
          lastRunEnd = ended;
        } finally {
          inProgress.end();
        }
        const outputs: Record<string, WireTensor> = {};
        const transfer: ArrayBuffer[] = [];
        for (const name in result) outputs[name] = toWire(result[name] as ort.Tensor, transfer);
        reply({ op: 'result', id: msg.id, outputs, computeUs }, transfer);
        for (const name in result) (result[name] as ort.Tensor).dispose();
        return;
      }
    }
  } catch (err) {
    reply({ op: 'error', id: msg.id, message: err instanceof Error ? err.message : String(err) });
  } finally {
    if (counted) messages.end();
  }
}

parentPort?.postMessage(lowerPriority((workerData as WorkerStart | undefined)?.nice ?? 0));
parentPort?.on('message', (msg: ToWorker) => {
  void handle(msg);
});
