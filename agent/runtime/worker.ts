import { parentPort } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';
import { datatypeToOrtType, ortTypeToDatatype, type TensorData } from '../../shared/tensor.ts';
import type { FromWorker, IoMetadata, SessionOptionsWire, ToWorker, WireTensor } from './protocol.ts';

/**
 * An inference worker. `session.run` blocks its thread for the whole inference, so it runs
 * here and never on the main event loop. Sessions live as long as their model version is
 * loaded: onnxruntime leaks native memory when sessions are created and released in a loop
 * (microsoft/onnxruntime#25325).
 */
const sessions = new Map<string, ort.InferenceSession>();
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

function toWire(t: ort.Tensor): WireTensor {
  const datatype = ortTypeToDatatype(t.type) ?? 'BYTES';
  // Copy out of onnxruntime's buffer: the session may reuse it, and the copy is what we transfer.
  const data = (
    Array.isArray(t.data) ? [...(t.data as string[])] : (t.data as TensorData).slice()
  ) as TensorData;
  return { datatype, shape: [...t.dims], data };
}

function transferList(outputs: Record<string, WireTensor>): ArrayBuffer[] {
  const list: ArrayBuffer[] = [];
  for (const t of Object.values(outputs)) {
    if (!Array.isArray(t.data)) list.push(t.data.buffer as ArrayBuffer);
  }
  return list;
}

async function handle(msg: ToWorker): Promise<void> {
  const port = parentPort;
  if (port === null) return;
  const reply = (m: FromWorker, transfer: ArrayBuffer[] = []) => port.postMessage(m, transfer);
  try {
    switch (msg.op) {
      case 'load': {
        let session = sessions.get(msg.key);
        if (session === undefined) {
          session = await ort.InferenceSession.create(msg.path, sessionOptions(msg.options));
          counts.created++;
          sessions.set(msg.key, session);
        }
        reply({
          op: 'loaded',
          id: msg.id,
          inputs: describe(session.inputMetadata),
          outputs: describe(session.outputMetadata),
        });
        return;
      }
      case 'unload': {
        const session = sessions.get(msg.key);
        sessions.delete(msg.key);
        if (session !== undefined) {
          await session.release();
          counts.released++;
        }
        reply({ op: 'unloaded', id: msg.id });
        return;
      }
      case 'stats': {
        reply({ op: 'stats', id: msg.id, sessions: sessions.size, ...counts });
        return;
      }
      case 'run': {
        const session = sessions.get(msg.key);
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
        const started = process.hrtime.bigint();
        const result =
          msg.outputs === undefined || msg.outputs.length === 0
            ? await session.run(feeds)
            : await session.run(feeds, msg.outputs);
        const computeUs = Number((process.hrtime.bigint() - started) / 1000n);
        const outputs: Record<string, WireTensor> = {};
        for (const [name, t] of Object.entries(result)) {
          outputs[name] = toWire(t);
          t.dispose();
        }
        reply({ op: 'result', id: msg.id, outputs, computeUs }, transferList(outputs));
        return;
      }
    }
  } catch (err) {
    reply({ op: 'error', id: msg.id, message: err instanceof Error ? err.message : String(err) });
  }
}

parentPort?.on('message', (msg: ToWorker) => {
  void handle(msg);
});
