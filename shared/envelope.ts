import { monotonicFactory } from 'ulid';

/** Which model produced a message; absent for messages no model produced (status, telemetry). */
export interface ModelRef {
  name: string;
  version: string;
  sha256: string;
}

export type EnvelopeType = 'prediction' | 'event' | 'telemetry' | 'status' | 'reply';

/**
 * Every message the agent sends upstream is wrapped in this envelope (DESIGN.md). `id` is a
 * ULID, the idempotency key consumers de-duplicate on; `(bootId, seq)` orders messages of one
 * agent run; `historical` is set on messages sent again after a reconnect or a restart.
 */
export interface Envelope<B = unknown> {
  v: 1;
  id: string;
  deviceId: string;
  bootId: string;
  seq: number;
  ts: string;
  type: EnvelopeType;
  model?: ModelRef;
  body: B;
  historical?: true;
}

export interface EnvelopeSource {
  deviceId: string;
  bootId: string;
}

/**
 * Builds envelopes for one agent run. Not a module-level singleton: the agent's composition
 * root owns one, so tests can run several agents in one process.
 */
export class EnvelopeFactory {
  private seq = 0;
  private readonly nextId = monotonicFactory();

  constructor(
    private readonly source: EnvelopeSource,
    private readonly now: () => number = Date.now,
  ) {}

  make<B>(type: EnvelopeType, body: B, model?: ModelRef): Envelope<B> {
    const at = this.now();
    const envelope: Envelope<B> = {
      v: 1,
      id: this.nextId(at),
      deviceId: this.source.deviceId,
      bootId: this.source.bootId,
      seq: ++this.seq,
      ts: new Date(at).toISOString(),
      type,
      body,
    };
    if (model !== undefined) envelope.model = model;
    return envelope;
  }
}

/**
 * Marks a serialized envelope as historical without parsing it again: the outbox stores the
 * exact bytes, and a replay must not cost a JSON round trip per message.
 */
export function markHistorical(payload: Buffer): Buffer {
  if (payload[0] !== 0x7b /* { */) return payload;
  return Buffer.concat([Buffer.from('{"historical":true,'), payload.subarray(1)]);
}
