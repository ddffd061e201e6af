/** Why a request failed, in Triton's `nv_inference_request_failure` reason vocabulary. */
export type FailureReason = 'REJECTED' | 'CANCELED' | 'BACKEND' | 'OTHER';

export interface RequestOutcome {
  ok: boolean;
  reason?: FailureReason;
  /** Rows (the first dimension) this request carried into the model; 0 when it never ran. */
  rows: number;
  queueUs: number;
  computeUs: number;
  totalUs: number;
}

/**
 * What the runtime reports about each request and each model execution; the metrics module
 * implements it. Calls are synchronous and must not throw (the runtime catches and ignores).
 */
export interface InferenceObserver {
  request(model: string, version: string, outcome: RequestOutcome): void;
  /** One `session.run`; `rows` is its batch size and `requests` how many requests it served. */
  execution(model: string, version: string, rows: number, requests: number): void;
}
