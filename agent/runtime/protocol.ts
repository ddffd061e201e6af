import type { Datatype, TensorData } from '../../shared/tensor.ts';

/**
 * Messages between the runtime and its inference workers. Large tensor buffers are transferred,
 * small ones copied with the message (see `postable`).
 */
export interface SessionOptionsWire {
  intraOpThreads: number;
  interOpThreads: number;
  graphOptimizationLevel: 'disabled' | 'basic' | 'extended' | 'all';
  executionMode: 'sequential' | 'parallel';
}

export interface WireTensor {
  datatype: Datatype;
  shape: number[];
  data: TensorData;
}

export interface IoMetadata {
  name: string;
  datatype: Datatype;
  /** -1 where the dimension is dynamic. */
  shape: number[];
  /** The symbolic names of dynamic dimensions ('' when unnamed), for diagnostics. */
  symbolic: string[];
}

export type ToWorker =
  | {
      op: 'load';
      id: number;
      key: string;
      path: string;
      options: SessionOptionsWire;
      /**
       * Map the model's aligned large weights from its file instead of copying them
       * (`weightlessModel`). Only for files never rewritten in place while loaded.
       */
      mapWeights?: boolean;
    }
  | { op: 'unload'; id: number; key: string }
  | { op: 'stats'; id: number }
  /** Releases every session: the last message before the worker is stopped. */
  | { op: 'close'; id: number }
  | { op: 'run'; id: number; key: string; feeds: Record<string, WireTensor>; outputs?: string[] };

/** What a worker is started with (`workerData`). */
export interface WorkerStart {
  /** Nice value for the worker's OS thread; 0 leaves it as the process's. */
  nice: number;
}

export type FromWorker =
  /** Sent once at start: the worker's OS thread id and the nice value it runs at (Linux). */
  | { op: 'started'; id: 0; tid: number | undefined; nice: number | undefined; error?: string }
  | {
      op: 'loaded';
      id: number;
      inputs: IoMetadata[];
      outputs: IoMetadata[];
      mappedBytes: number;
      /** Why weights that were to be mapped were loaded from the file instead. */
      mapError?: string;
    }
  | { op: 'unloaded'; id: number }
  | { op: 'closed'; id: number }
  | { op: 'stats'; id: number; sessions: number; created: number; released: number }
  | { op: 'result'; id: number; outputs: Record<string, WireTensor>; computeUs: number }
  | { op: 'error'; id: number; message: string; code?: string };

/**
 * Below this size a tensor's bytes are copied with the message rather than transferred.
 * Transferring detaches and re-wraps the buffer, a fixed cost several times that of copying a
 * few hundred bytes (measured on this project's 2-core bench machine: a 32-byte tensor posts
 * in about 3 µs copied and 7-17 µs transferred; from about 1 KiB on, transferring wins).
 */
export const TRANSFER_MIN_BYTES = 1024;

/**
 * Tensor data as it should go into a postMessage: typed arrays of at least TRANSFER_MIN_BYTES
 * have their buffer added to `transfer`; a view onto part of a larger buffer is first copied
 * out, so neither a transfer nor a copy takes the rest of that buffer along. `owned: false`
 * copies a large buffer before transferring it, for memory the sender must not give away.
 */
export function postable(data: TensorData, transfer: ArrayBuffer[], owned = true): TensorData {
  if (Array.isArray(data)) return data;
  const whole = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength;
  if (data.byteLength < TRANSFER_MIN_BYTES) return whole ? data : (data.slice() as TensorData);
  const own = whole && owned ? data : (data.slice() as TensorData);
  transfer.push((own as Exclude<TensorData, string[]>).buffer as ArrayBuffer);
  return own;
}
