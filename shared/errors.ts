/**
 * The error catalogue. Every error Outpost raises on purpose carries a stable code
 * (`OUTPOST_ERR_…`) so that logs, HTTP answers and tests can match on it, plus the HTTP
 * status that fits when it reaches the local API or the control plane.
 */
const catalogue = {
  CONFIG_INVALID: { status: 500, message: 'invalid configuration' },
  BAD_REQUEST: { status: 400, message: 'bad request' },
  UNAUTHORIZED: { status: 401, message: 'unauthorized' },
  FORBIDDEN: { status: 403, message: 'forbidden' },
  NOT_FOUND: { status: 404, message: 'not found' },
  MODEL_NOT_FOUND: { status: 404, message: 'model not found' },
  MODEL_NOT_READY: { status: 503, message: 'model not ready' },
  MODEL_LOAD_FAILED: { status: 500, message: 'model failed to load' },
  INVALID_INPUT: { status: 400, message: 'invalid input' },
  PAYLOAD_TOO_LARGE: { status: 413, message: 'payload too large' },
  QUEUE_FULL: { status: 429, message: 'queue full' },
  TIMEOUT: { status: 504, message: 'timed out' },
  INFERENCE_FAILED: { status: 500, message: 'inference failed' },
  SHUTTING_DOWN: { status: 503, message: 'shutting down' },
  OUTBOX_FULL: { status: 503, message: 'outbox full' },
  NOT_COMMITTED: { status: 503, message: 'not committed; send again later' },
  BUNDLE_INVALID: { status: 400, message: 'invalid bundle' },
  TRUST_FAILED: { status: 400, message: 'trust check failed' },
  DOWNLOAD_FAILED: { status: 502, message: 'download failed' },
  INSTALL_FAILED: { status: 500, message: 'install failed' },
  STORAGE_BUDGET: { status: 507, message: 'storage budget exceeded' },
  CONFLICT: { status: 409, message: 'conflict' },
  INTERNAL: { status: 500, message: 'internal error' },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof catalogue;

export class OutpostError extends Error {
  readonly code: `OUTPOST_ERR_${ErrorCode}`;
  readonly status: number;
  readonly details: Record<string, unknown> | undefined;

  constructor(
    code: ErrorCode,
    message?: string,
    options?: { cause?: unknown; details?: Record<string, unknown> },
  ) {
    super(
      message ?? catalogue[code].message,
      options?.cause === undefined ? undefined : { cause: options.cause },
    );
    this.name = 'OutpostError';
    this.code = `OUTPOST_ERR_${code}`;
    this.status = catalogue[code].status;
    this.details = options?.details;
  }

  is(code: ErrorCode): boolean {
    return this.code === `OUTPOST_ERR_${code}`;
  }
}

export function isOutpostError(err: unknown, code?: ErrorCode): err is OutpostError {
  return err instanceof OutpostError && (code === undefined || err.is(code));
}

/** A message for logs and API answers from anything thrown. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
