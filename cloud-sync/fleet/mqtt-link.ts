import mqtt, { type MqttClient } from 'mqtt';
import { ulid } from 'ulid';
import { parseTopic, topics } from '../../shared/topics.ts';
import type { Logger } from '../log.ts';

export interface MqttLinkOptions {
  url: string;
  username?: string | undefined;
  password?: string | undefined;
  log: Logger;
  /** Each `outpost/v1/{id}/status` message, retained ones included. */
  onStatus: (deviceId: string, status: Record<string, unknown>) => void;
}

/**
 * The control plane's MQTT side: follows the retained status topics (birth and Last Will) for
 * presence and inventory, and sends `cmd/sync` when a device's desired state changed so it
 * does not wait for its next poll. mqtt.js reconnects on its own; a nudge lost while the
 * broker is down costs nothing but latency, because devices poll anyway.
 */
export class MqttLink {
  private client: MqttClient | undefined;

  constructor(private readonly options: MqttLinkOptions) {}

  start(): void {
    const { url, username, password, log } = this.options;
    const client = mqtt.connect(url, {
      clientId: `outpost-control-plane-${ulid().slice(-8)}`,
      protocolVersion: 4,
      reconnectPeriod: 2_000,
      connectTimeout: 10_000,
      ...(username === undefined ? {} : { username }),
      ...(password === undefined ? {} : { password }),
    });
    this.client = client;
    let failures = 0;
    client.on('connect', () => {
      failures = 0;
      log.info({ url }, 'connected to broker');
      client.subscribe(topics.allStatus(), { qos: 1 }, (err) => {
        if (err) log.warn({ err }, 'cannot subscribe to device status topics');
      });
    });
    client.on('error', (err) => {
      if (failures++ === 0) log.warn({ err: err.message, url }, 'broker connection failed; retrying');
    });
    client.on('message', (topic, payload) => {
      const parsed = parseTopic(topic);
      if (parsed === undefined || parsed.kind !== 'status' || parsed.rest.length > 0) return;
      let body: unknown;
      try {
        body = JSON.parse(payload.toString('utf8'));
      } catch {
        return;
      }
      if (typeof body !== 'object' || body === null) return;
      // Status is published as an envelope (`body` holds the status) or bare (a Last Will).
      const env = body as { body?: unknown };
      const status = (typeof env.body === 'object' && env.body !== null ? env.body : body) as Record<
        string,
        unknown
      >;
      try {
        this.options.onStatus(parsed.deviceId, status);
      } catch (err) {
        log.warn({ err, deviceId: parsed.deviceId }, 'status update failed');
      }
    });
  }

  /** Asks a device to poll the director now. */
  nudge(deviceId: string): void {
    const client = this.client;
    if (client === undefined || !client.connected) return;
    client.publish(
      topics.cmd(deviceId, 'sync'),
      JSON.stringify({ id: ulid(), args: {} }),
      { qos: 1 },
      (err) => {
        if (err) this.options.log.debug({ err, deviceId }, 'sync nudge not sent');
      },
    );
  }

  async stop(): Promise<void> {
    const c = this.client;
    this.client = undefined;
    if (c !== undefined) await c.endAsync(true);
  }
}
