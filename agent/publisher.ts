import type { EnvelopeFactory, EnvelopeType, ModelRef } from '../shared/envelope.ts';
import { topics } from '../shared/topics.ts';
import type { Lane, Outbox, OutboxMessage, PublishProps } from './outbox/outbox.ts';

/**
 * Everything the agent reports goes through here: wrapped in an envelope, committed to the
 * outbox, and only then (by the uplink) published. The promise resolves once it is on disk.
 */
export class Publisher {
  constructor(
    private readonly deviceId: string,
    private readonly envelopes: EnvelopeFactory,
    private readonly outbox: Outbox,
  ) {}

  private put(
    topic: string,
    type: EnvelopeType,
    lane: Lane,
    body: unknown,
    model?: ModelRef,
    extra?: { qos?: 0 | 1; props?: PublishProps },
  ): Promise<void> {
    const envelope = this.envelopes.make(type, body, model);
    const msg = {
      id: envelope.id,
      topic,
      payload: Buffer.from(JSON.stringify(envelope)),
      lane,
      qos: extra?.qos ?? 1,
      ...(extra?.props === undefined ? {} : { props: extra.props }),
    };
    return this.outbox.enqueue(msg);
  }

  /**
   * Several predictions of one model, committed together: one outbox call and one promise for
   * the lot. Resolves with whether each was stored (false: the outbox was full).
   */
  predictions(model: ModelRef, bodies: readonly unknown[]): Promise<boolean[]> {
    const topic = topics.pred(this.deviceId, model.name);
    const msgs: OutboxMessage[] = new Array(bodies.length);
    for (let i = 0; i < bodies.length; i++) {
      const { id, json } = this.envelopes.encode('prediction', bodies[i], model);
      msgs[i] = {
        id,
        topic,
        payload: Buffer.from(json),
        lane: 'prediction',
        qos: 1,
      };
    }
    return this.outbox.enqueueMany(msgs);
  }

  prediction(model: ModelRef, body: unknown): Promise<void> {
    return this.put(topics.pred(this.deviceId, model.name), 'prediction', 'prediction', body, model);
  }

  event(type: string, body: unknown, model?: ModelRef): Promise<void> {
    return this.put(topics.evt(this.deviceId, type), 'event', 'control', body, model);
  }

  telemetry(body: unknown, qos: 0 | 1 = 1): Promise<void> {
    return this.put(topics.telemetry(this.deviceId), 'telemetry', 'telemetry', body, undefined, { qos });
  }

  /** A command reply: to the MQTT 5 response topic with its correlation data, or the fallback topic. */
  reply(name: string, body: unknown, responseTopic?: string, correlationData?: Buffer): Promise<void> {
    const topic = responseTopic ?? topics.reply(this.deviceId, name);
    const props: PublishProps | undefined =
      correlationData === undefined ? undefined : { correlationData: correlationData.toString('base64') };
    return this.put(topic, 'reply', 'control', body, undefined, props === undefined ? undefined : { props });
  }
}
