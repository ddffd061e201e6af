import type { MqttClient } from 'mqtt';
import { matchTopic, subscriptionFilter } from '../../shared/topics.ts';
import type { Logger } from '../log.ts';
import { loadMqtt } from '../uplink/mqtt-lib.ts';
import { connectionOptions, type MqttConnectionConfig } from '../uplink/mqtt-options.ts';

export interface BusRoute {
  /** Topic filter with optional `+name` captures. */
  filter: string;
  /** The capture that keys windows; '' when readings share one window. */
  keyCapture: string | undefined;
  deliver: (key: string, payload: Buffer) => void;
}

interface Target {
  route: BusRoute;
  key: string;
}

/** Topics whose routes are remembered (see targets()). */
const TOPIC_MEMORY = 4_096;

/**
 * The local sensor bus: one MQTT connection that pipelines subscribe through. It is separate
 * from the uplink so that sensors keep flowing to the outbox while the uplink is down.
 */
export class MqttSensorBus {
  private client: MqttClient | undefined;
  private readonly routes = new Set<BusRoute>();
  private readonly matched = new Map<string, Target[]>();
  readonly counters = { messages: 0, unrouted: 0 };

  constructor(
    private readonly connection: MqttConnectionConfig,
    private readonly clientId: string,
    private readonly log: Logger,
  ) {}

  private stopped = false;

  async start(): Promise<void> {
    const { connect } = await loadMqtt();
    if (this.stopped) return;
    const client = connect(this.connection.url, {
      ...connectionOptions(this.connection),
      clientId: this.clientId,
      // The sensor bus is best effort by nature: readings are not stored before windowing.
      reconnectPeriod: 2_000,
      queueQoSZero: false,
      protocolVersion: 4,
      clean: true,
    });
    this.client = client;
    client.on('connect', () => {
      this.log.info({ url: this.connection.url }, 'sensor bus connected');
      for (const r of this.routes) this.subscribe(r);
    });
    client.on('error', (err) => this.log.warn({ err: err.message }, 'sensor bus error'));
    client.on('message', (topic, payload) => {
      this.counters.messages++;
      const targets = this.targets(topic);
      if (targets.length === 0) {
        this.counters.unrouted++;
        return;
      }
      for (const { route, key } of targets) {
        try {
          route.deliver(key, payload);
        } catch (err) {
          this.log.error({ err, topic }, 'sensor route failed');
        }
      }
    });
  }

  /**
   * The routes a topic goes to, with the key each captures. A sensor publishes on the same topic
   * again and again: the match is remembered per topic (up to TOPIC_MEMORY topics, which come
   * from outside, so the memory starts over when full) and forgotten when the routes change.
   */
  private targets(topic: string): Target[] {
    const known = this.matched.get(topic);
    if (known !== undefined) return known;
    const found: Target[] = [];
    for (const route of this.routes) {
      const captures = matchTopic(route.filter, topic);
      if (captures === undefined) continue;
      const key = route.keyCapture === undefined ? '' : (captures[route.keyCapture] ?? '');
      found.push({ route, key });
    }
    if (this.matched.size >= TOPIC_MEMORY) this.matched.clear();
    this.matched.set(topic, found);
    return found;
  }

  private subscribe(route: BusRoute): void {
    this.client?.subscribe(subscriptionFilter(route.filter), { qos: 0 }, (err) => {
      if (err) this.log.error({ err, filter: route.filter }, 'sensor subscription failed');
    });
  }

  add(route: BusRoute): () => void {
    this.routes.add(route);
    this.matched.clear();
    if (this.client?.connected) this.subscribe(route);
    return () => {
      this.routes.delete(route);
      this.matched.clear();
      const filter = subscriptionFilter(route.filter);
      if (![...this.routes].some((r) => subscriptionFilter(r.filter) === filter))
        this.client?.unsubscribe(filter);
    };
  }

  /** Resolves once connected (or after `timeoutMs`), for callers that must not miss readings. */
  async waitConnected(timeoutMs = 5_000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (this.client !== undefined && !this.client.connected && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    return this.client?.connected === true;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    const client = this.client;
    this.client = undefined;
    if (client === undefined) return;
    await new Promise<void>((resolve) => {
      client.end(false, {}, () => resolve());
      setTimeout(resolve, 500).unref();
    });
  }
}
