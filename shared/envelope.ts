import { monotonicUlid } from './ulid.ts';

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
  private readonly nextId = monotonicUlid();
  private stampMs = Number.NaN;
  private stampIso = '';
  /** `,"deviceId":…,"bootId":…,"seq":` — the same for every envelope of this run. */
  private readonly head: string;
  private readonly modelJson = new WeakMap<ModelRef, string>();

  constructor(
    private readonly source: EnvelopeSource,
    private readonly now: () => number = Date.now,
  ) {
    this.head = `,"deviceId":${JSON.stringify(source.deviceId)},"bootId":${JSON.stringify(source.bootId)},"seq":`;
  }

  make<B>(type: EnvelopeType, body: B, model?: ModelRef): Envelope<B> {
    const at = this.now();
    const envelope: Envelope<B> = {
      v: 1,
      id: this.nextId(at),
      deviceId: this.source.deviceId,
      bootId: this.source.bootId,
      seq: ++this.seq,
      ts: this.timestamp(at),
      type,
      body,
    };
    if (model !== undefined) envelope.model = model;
    return envelope;
  }

  /**
   * make() and JSON.stringify in one step: the same bytes, but the parts that never change (the
   * device, the boot, the model) are encoded once, not for every message. For the prediction
   * path, where this was a large share of the agent's CPU per message.
   */
  encode(type: EnvelopeType, body: unknown, model?: ModelRef): { id: string; json: string } {
    const bodyJson = JSON.stringify(body);
    if (bodyJson === undefined) {
      const envelope = this.make(type, body, model);
      return { id: envelope.id, json: JSON.stringify(envelope) };
    }
    const at = this.now();
    const id = this.nextId(at);
    let json = `{"v":1,"id":"${id}"${this.head}${++this.seq},"ts":"${this.timestamp(at)}","type":"${type}","body":${bodyJson}`;
    if (model !== undefined) {
      let m = this.modelJson.get(model);
      if (m === undefined) {
        m = JSON.stringify(model);
        this.modelJson.set(model, m);
      }
      json += `,"model":${m}`;
    }
    return { id, json: `${json}}` };
  }

  /** ISO time of a millisecond; many messages share one, so the last is kept. */
  private timestamp(at: number): string {
    if (at !== this.stampMs) {
      this.stampMs = at;
      this.stampIso = new Date(at).toISOString();
    }
    return this.stampIso;
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
