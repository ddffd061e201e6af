import type { Datatype, TensorData } from '../../shared/tensor.ts';

/** Messages between the runtime and its inference workers. Tensor buffers are transferred, not copied. */
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
  | { op: 'load'; id: number; key: string; path: string; options: SessionOptionsWire }
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
  | { op: 'loaded'; id: number; inputs: IoMetadata[]; outputs: IoMetadata[] }
  | { op: 'unloaded'; id: number }
  | { op: 'closed'; id: number }
  | { op: 'stats'; id: number; sessions: number; created: number; released: number }
  | { op: 'result'; id: number; outputs: Record<string, WireTensor>; computeUs: number }
  | { op: 'error'; id: number; message: string; code?: string };
