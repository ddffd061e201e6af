import type { Logger } from '../log.ts';

/** The outbox's data types: what goes in, what comes out, and what it counts. */
/** Lower lanes are sent first and evicted last; control (status, command replies) is never evicted. */
export const LANES = { control: 0, prediction: 1, telemetry: 2 } as const;
export type Lane = keyof typeof LANES;
export const LANE_NAMES: readonly Lane[] = ['control', 'prediction', 'telemetry'];

export interface OutboxMessage {
  id: string;
  topic: string;
  payload: Buffer;
  lane: Lane;
  qos: 0 | 1;
  retain?: boolean;
  /** Dropped unsent after this long; the lane's default when omitted, never for 0. */
  ttlMs?: number;
  /** MQTT 5 publish properties, e.g. a command reply's correlation data (base64). */
  props?: PublishProps;
}

export interface PublishProps {
  correlationData?: string;
  contentType?: string;
}

export interface StoredMessage {
  seq: number;
  id: string;
  lane: Lane;
  topic: string;
  payload: Buffer;
  qos: 0 | 1;
  retain: boolean;
  bootId: string;
  bytes: number;
  props?: PublishProps;
}

export interface OutboxOptions {
  path: string;
  bootId: string;
  synchronous: 'FULL' | 'NORMAL';
  batchSize: number;
  maxDelayMs: number;
  maxRows: number;
  maxBytes: number;
  ttlMs: { prediction: number; telemetry: number };
  log: Logger;
  now?: () => number;
}

export interface OutboxCounters {
  enqueued: number;
  sent: number;
  expired: number;
  rejected: number;
  /** Refused by the broker for good (MQTT 5 PUBACK reason ≥ 0x80, e.g. not authorized): dropped. */
  refused: number;
  evicted_prediction: number;
  evicted_telemetry: number;
}

export interface OutboxStats extends OutboxCounters {
  rows: number;
  bytes: number;
  pending: number;
  rowsByLane: Record<Lane, number>;
}

export interface OutboxEvents {
  /** Rows just committed, in seq order: a caught-up uplink sends these without reading them back. */
  committed: [rows: StoredMessage[]];
}
