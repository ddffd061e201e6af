import { EventEmitter } from 'node:events';
import type { IClientOptions, IClientPublishOptions, MqttClient } from 'mqtt';
import { markHistorical } from '../../shared/envelope.ts';
import { topics } from '../../shared/topics.ts';
import type { Logger } from '../log.ts';
import type { Lane, Outbox, StoredMessage } from '../outbox/outbox.ts';
import { Backoff, StoppableTimer } from './backoff.ts';
import { loadMqtt } from './mqtt-lib.ts';
import { connectionOptions, type MqttConnectionConfig } from './mqtt-options.ts';

export interface UplinkOptions extends MqttConnectionConfig {
  deviceId: string;
  bootId: string;
  protocol: 'auto' | '5' | '3.1.1';
  keepaliveS: number;
  inflight: number;
  backoffMinMs: number;
  backoffMaxMs: number;
  outbox: Outbox;
  log: Logger;
  /** The retained birth message body, asked for at every connect so it is current. */
  birth: () => Record<string, unknown>;
}

export interface IncomingCommand {
  name: string;
  payload: Buffer;
  responseTopic?: string;
  correlationData?: Buffer;
}

export interface UplinkEvents {
  connected: [protocol: 5 | 4];
  disconnected: [reason: string];
  command: [command: IncomingCommand];
}

export type UplinkState = 'stopped' | 'connecting' | 'connected' | 'waiting';

const LANE_ORDER: Lane[] = ['control', 'prediction', 'telemetry'];

/** MQTT 5 PUBACK reasons that will not change on retry: not authorized, bad topic, too large, bad format. */
const PERMANENT_REFUSALS = new Set([0x87, 0x90, 0x95, 0x99]);

const FRESH_LIMIT = 8_192;

/**
 * The MQTT uplink. It owns reconnection (capped, jittered backoff; one fresh mqtt.js client per
 * connection) and reads what to send from the outbox, never from mqtt.js's in-memory queue,
 * which loses messages on disconnect (mqttjs/MQTT.js#2015). A message leaves the outbox only
 * when its PUBACK arrives; after a reconnect everything unacknowledged is sent again, marked
 * historical, so duplicates are confined to the in-flight window and carry the same id.
 */
export class Uplink extends EventEmitter<UplinkEvents> {
  private client: MqttClient | undefined;
  private generation = 0;
  private readonly backoff: Backoff;
  private readonly timer = new StoppableTimer();
  private running = false;
  private protocolVersion: 5 | 4;
  private protocolSettled: boolean;
  private readonly cursors: Record<Lane, number> = { control: 0, prediction: 0, telemetry: 0 };
  private readonly inflight = new Map<number, StoredMessage>();
  /**
   * A lane is caught up when a read from the outbox found nothing more after its cursor. From
   * then on, freshly committed rows are queued here straight from the commit and sent without
   * reading them back: no SELECT per message in steady state. Past FRESH_LIMIT (the window is
   * stuck) the queue is dropped and the lane reads from the outbox again.
   */
  private readonly caughtUp: Record<Lane, boolean> = { control: false, prediction: false, telemetry: false };
  private readonly fresh: Record<Lane, StoredMessage[]> = { control: [], prediction: [], telemetry: [] };
  private readonly freshHead: Record<Lane, number> = { control: 0, prediction: 0, telemetry: 0 };
  /** Messages at or below this seq were handed to an earlier connection: they are replays. */
  private replayUpTo = 0;
  private maxFetched = 0;
  private pumping = false;
  private pumpSoon: NodeJS.Immediate | undefined;
  private fellBack = false;
  state: UplinkState = 'stopped';
  lastError: string | undefined;
  connectedAt: number | undefined;
  readonly counters = { connects: 0, disconnects: 0, published: 0, acked: 0, replayed: 0, refused: 0 };

  constructor(private readonly options: UplinkOptions) {
    super();
    this.backoff = new Backoff(options.backoffMinMs, options.backoffMaxMs);
    this.protocolVersion = options.protocol === '3.1.1' ? 4 : 5;
    this.protocolSettled = options.protocol !== 'auto';
    options.outbox.on('committed', (rows) => this.onCommitted(rows));
  }

  get protocol(): 5 | 4 {
    return this.protocolVersion;
  }

  get inflightCount(): number {
    return this.inflight.size;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    void this.loop();
  }

  private async loop(): Promise<void> {
    while (this.running) {
      const closed = await this.connectOnce();
      if (!this.running) return;
      if (this.fellBack) {
        this.fellBack = false;
        this.options.log.info({ reason: closed }, 'broker refused MQTT 5; using MQTT 3.1.1');
        continue;
      }
      const delay = this.backoff.next();
      this.state = 'waiting';
      this.options.log.warn(
        { reason: closed, retryInMs: delay, attempt: this.backoff.attempts },
        'uplink disconnected',
      );
      await this.timer.sleep(delay);
    }
  }

  /** One connection's life: resolves with the reason it ended. */
  private async connectOnce(): Promise<string> {
    const { connect } = await loadMqtt();
    const generation = ++this.generation;
    const { deviceId } = this.options;
    this.state = 'connecting';
    const version = this.protocolVersion;
    const clientOptions: IClientOptions = {
      ...connectionOptions(this.options),
      clientId: `outpost-${deviceId}`,
      protocolVersion: version,
      clean: true,
      keepalive: this.options.keepaliveS,
      reconnectPeriod: 0,
      connectTimeout: 10_000,
      // Durability is the outbox's job; mqtt.js must not queue anything of its own.
      queueQoSZero: false,
      resubscribe: false,
      will: {
        topic: topics.status(deviceId),
        payload: Buffer.from(JSON.stringify({ state: 'offline', deviceId, bootId: this.options.bootId })),
        qos: 1,
        retain: true,
      },
    };
    return new Promise<string>((resolve) => {
      let settled = false;
      let connected = false;
      const client = connect(this.options.url, clientOptions);
      this.client = client;
      const finish = (reason: string) => {
        if (settled) return;
        settled = true;
        if (connected) {
          this.counters.disconnects++;
          this.emit('disconnected', reason);
        } else if (!this.protocolSettled && version === 5) {
          // The broker may speak only 3.1.1 (aedes refuses a v5 CONNECT): try that next.
          this.protocolVersion = 4;
          this.fellBack = /protocol/i.test(reason);
        } else if (!this.protocolSettled && version === 4) {
          this.protocolVersion = 5;
        }
        this.lastError = reason;
        this.resetWindow();
        // Not removeAllListeners(): mqtt.js's own 'close' listener clears its CONNACK timer,
        // which otherwise keeps the process alive for connectTimeout. The `settled` and
        // generation checks make this connection's later events harmless.
        client.on('error', () => {});
        client.end(true);
        if (this.client === client) this.client = undefined;
        resolve(reason);
      };
      client.on('connect', () => {
        if (generation !== this.generation) return;
        connected = true;
        this.protocolSettled = true;
        this.state = 'connected';
        this.connectedAt = Date.now();
        this.counters.connects++;
        this.backoff.reset();
        this.lastError = undefined;
        this.options.log.info(
          { url: this.options.url, protocol: version === 5 ? '5' : '3.1.1' },
          'uplink connected',
        );
        client.subscribe(topics.cmdFilter(deviceId), { qos: 1 }, (err) => {
          if (err) this.options.log.error({ err }, 'subscribing to commands failed');
        });
        this.publishBirth(client);
        this.emit('connected', version);
        this.pump();
      });
      client.on('message', (topic, payload, packet) => {
        if (settled || generation !== this.generation) return;
        const name = topic.split('/').pop() ?? '';
        const command: IncomingCommand = { name, payload };
        if (packet.properties?.responseTopic !== undefined)
          command.responseTopic = packet.properties.responseTopic;
        if (packet.properties?.correlationData !== undefined)
          command.correlationData = packet.properties.correlationData;
        this.emit('command', command);
      });
      client.on('error', (err) => finish(err.message));
      client.on('close', () => finish('connection closed'));
      client.on('offline', () => finish('offline'));
    });
  }

  private publishBirth(client: MqttClient): void {
    const body = {
      state: 'online',
      deviceId: this.options.deviceId,
      bootId: this.options.bootId,
      ...this.options.birth(),
    };
    client.publish(
      topics.status(this.options.deviceId),
      JSON.stringify(body),
      { qos: 1, retain: true },
      (err) => {
        if (err) this.options.log.warn({ err }, 'birth message not acknowledged');
      },
    );
  }

  /** Re-announces status now (e.g. after a model swap changed the model list). */
  refreshBirth(): void {
    if (this.client !== undefined && this.state === 'connected') this.publishBirth(this.client);
  }

  private resetWindow(): void {
    // What was in flight is sent again on the next connection, from the outbox. Acks still
    // waiting for their batched delete go to disk first, or they would be sent again too.
    this.options.outbox.flushAcks();
    this.replayUpTo = Math.max(this.replayUpTo, this.maxFetched);
    this.inflight.clear();
    for (const lane of LANE_ORDER) {
      this.cursors[lane] = 0;
      this.dropFresh(lane);
    }
  }

  private dropFresh(lane: Lane): void {
    this.caughtUp[lane] = false;
    this.fresh[lane] = [];
    this.freshHead[lane] = 0;
  }

  private onCommitted(rows: StoredMessage[]): void {
    if (this.state === 'connected') {
      for (const m of rows) {
        if (!this.caughtUp[m.lane] || m.seq <= this.cursors[m.lane]) continue;
        const queue = this.fresh[m.lane];
        if (queue.length - this.freshHead[m.lane] >= FRESH_LIMIT) this.dropFresh(m.lane);
        else queue.push(m);
      }
    }
    this.pump();
  }

  /** Up to `limit` messages of a lane after its cursor: from memory when caught up, else from disk. */
  private next(lane: Lane, limit: number): StoredMessage[] {
    if (this.caughtUp[lane]) {
      const queue = this.fresh[lane];
      const head = this.freshHead[lane];
      const end = Math.min(queue.length, head + limit);
      const out = queue.slice(head, end);
      if (end === queue.length) {
        this.fresh[lane] = [];
        this.freshHead[lane] = 0;
      } else this.freshHead[lane] = end;
      return out;
    }
    const batch = this.options.outbox.fetch(lane, this.cursors[lane], limit);
    if (batch.length < limit) this.caughtUp[lane] = true;
    return batch;
  }

  /** One pump at the end of this turn for however many PUBACKs arrive in it. */
  private schedulePump(): void {
    this.pumpSoon ??= setImmediate(() => {
      this.pumpSoon = undefined;
      this.pump();
    });
  }

  /** Fills the in-flight window from the outbox, most important lane first. */
  pump(): void {
    const client = this.client;
    if (this.pumping || client === undefined || this.state !== 'connected') return;
    this.pumping = true;
    try {
      const generation = this.generation;
      for (const lane of LANE_ORDER) {
        while (this.inflight.size < this.options.inflight) {
          const room = this.options.inflight - this.inflight.size;
          const batch = this.next(lane, Math.min(room, 256));
          if (batch.length === 0) break;
          for (const m of batch) {
            if (m.seq <= this.cursors[lane]) continue;
            this.cursors[lane] = m.seq;
            if (m.seq > this.maxFetched) this.maxFetched = m.seq;
            this.send(client, generation, m);
          }
          if (batch.length < Math.min(room, 256)) break;
        }
        if (this.inflight.size >= this.options.inflight) break;
      }
    } finally {
      this.pumping = false;
    }
  }

  private send(client: MqttClient, generation: number, m: StoredMessage): void {
    const historical = m.seq <= this.replayUpTo || m.bootId !== this.options.bootId;
    if (historical) this.counters.replayed++;
    const payload = historical ? markHistorical(m.payload) : m.payload;
    const opts: IClientPublishOptions = { qos: m.qos, retain: m.retain };
    if (this.protocolVersion === 5 && m.props?.correlationData !== undefined) {
      opts.properties = { correlationData: Buffer.from(m.props.correlationData, 'base64') };
    }
    if (this.protocolVersion === 5 && m.props?.contentType !== undefined) {
      opts.properties = { ...opts.properties, contentType: m.props.contentType };
    }
    this.inflight.set(m.seq, m);
    this.counters.published++;
    client.publish(m.topic, payload, opts, (err) => {
      // A callback from a connection that has since closed is stale: the message stays in the
      // outbox and goes out again on the current connection.
      if (generation !== this.generation || !this.inflight.has(m.seq)) return;
      this.inflight.delete(m.seq);
      if (err) {
        const reason = (err as { code?: unknown }).code;
        if (typeof reason === 'number' && PERMANENT_REFUSALS.has(reason)) {
          // Sending it again cannot succeed and would replay it on every reconnect: drop and count.
          this.counters.refused++;
          this.options.log.warn({ topic: m.topic, reason, seq: m.seq }, 'broker refused a message; dropped');
          this.options.outbox.ack(m, true);
          return;
        }
        this.options.log.debug({ err, seq: m.seq }, 'publish failed; it stays in the outbox');
        return;
      }
      this.counters.acked++;
      this.options.outbox.ack(m);
      if (this.inflight.size <= this.options.inflight / 2) this.schedulePump();
    });
  }

  /** Says goodbye (retained offline status), lets in-flight publishes finish briefly, then ends. */
  async stop(graceMs = 1_000): Promise<void> {
    this.running = false;
    this.timer.cancel();
    if (this.pumpSoon !== undefined) clearImmediate(this.pumpSoon);
    this.pumpSoon = undefined;
    const client = this.client;
    if (client === undefined) {
      this.state = 'stopped';
      return;
    }
    if (this.state === 'connected') {
      const deadline = Date.now() + graceMs;
      while (this.inflight.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      const offline = JSON.stringify({
        state: 'offline',
        deviceId: this.options.deviceId,
        bootId: this.options.bootId,
      });
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.max(100, deadline - Date.now()));
        client.publish(topics.status(this.options.deviceId), offline, { qos: 1, retain: true }, () => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    this.generation++;
    this.state = 'stopped';
    await new Promise<void>((resolve) => {
      client.end(false, {}, () => resolve());
      setTimeout(resolve, 500).unref();
    });
    client.on('error', () => {});
    this.client = undefined;
    this.options.outbox.flushAcks();
  }
}
