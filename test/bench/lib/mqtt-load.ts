import mqtt, { type MqttClient } from 'mqtt';
import { Histogram } from './histogram.ts';

/**
 * The cloud side of the MQTT benchmarks: one subscriber whose messages go to the handler of
 * their topic. It subscribes at QoS 0 so the broker → cloud hop adds no acknowledgements of
 * its own (mosquitto sends at most 20 unacknowledged QoS 1 messages to a subscriber by
 * default, which would cap every side alike and hide what the device does).
 */
export class CloudSubscriber {
  private readonly handlers = new Map<string, (payload: Buffer) => void>();

  private constructor(readonly client: MqttClient) {
    client.on('message', (topic, payload) => this.handlers.get(topic)?.(payload));
  }

  static async connect(url: string, filters: string[]): Promise<CloudSubscriber> {
    const client = await mqtt.connectAsync(url, { clientId: `bench-cloud-${process.pid}`, clean: true });
    const cloud = new CloudSubscriber(client);
    await client.subscribeAsync(filters, { qos: 0 });
    return cloud;
  }

  route(topic: string, handler: ((payload: Buffer) => void) | undefined): void {
    if (handler === undefined) this.handlers.delete(topic);
    else this.handlers.set(topic, handler);
  }

  close(): Promise<void> {
    return this.client.endAsync(true);
  }
}

/** A sensor: publishes readings at QoS 0, as field sensors on a local bus usually do. */
export function connectSensor(url: string): Promise<MqttClient> {
  return mqtt.connectAsync(url, { clientId: `bench-sensor-${process.pid}`, clean: true });
}

/** The reading payload the linear pipeline bundle reads (`x` = [n, 0, 0]); the relay forwards it as is. */
export function reading(n: number): string {
  return `{"x":[${n},0,0]}`;
}

/** One path through the broker: where readings go in and where their results come out. */
export interface MqttPath {
  sensor: MqttClient;
  cloud: CloudSubscriber;
  inTopic: string;
  outTopic: string;
}

export interface ThroughputResult {
  /** Results that reached the cloud subscriber within the window. */
  arrived: number;
  elapsedMs: number;
  throughput: number;
  /** Readings whose result had not arrived `drainMs` after the window ended. */
  lost: number;
}

/**
 * A closed loop over MQTT: `outstanding` readings are in the pipe at any time, and each result
 * that reaches the cloud subscriber releases the next reading. Throughput is what the path
 * sustains end to end, without a queue of our own making and without drops from overload.
 */
export function closedLoopMqtt(
  path: MqttPath,
  outstanding: number,
  durationMs: number,
  drainMs = 5_000,
): Promise<ThroughputResult> {
  return new Promise((resolve) => {
    let sent = 0;
    let arrived = 0;
    let inWindow = 0;
    let running = true;
    const send = () => {
      path.sensor.publish(path.inTopic, reading(sent % 1_000_000), { qos: 0 });
      sent++;
    };
    let finish: (() => void) | undefined;
    path.cloud.route(path.outTopic, () => {
      arrived++;
      if (running) {
        inWindow++;
        send();
      } else if (arrived === sent) finish?.();
    });
    const started = performance.now();
    for (let i = 0; i < outstanding; i++) send();
    setTimeout(() => {
      running = false;
      const elapsedMs = performance.now() - started;
      const done = () => {
        clearTimeout(timer);
        path.cloud.route(path.outTopic, undefined);
        resolve({
          arrived: inWindow,
          elapsedMs,
          throughput: (inWindow / elapsedMs) * 1000,
          lost: sent - arrived,
        });
      };
      const timer = setTimeout(done, drainMs);
      finish = done;
      if (arrived === sent) done();
    }, durationMs);
  });
}

export interface LatencyResult {
  sent: number;
  received: number;
  /** Reading publish (as scheduled) → result at the cloud subscriber, in µs. */
  latency: Histogram;
  /** The send rate actually achieved, readings/s. */
  rate: number;
}

/**
 * An open loop over MQTT: readings go out at `rate` per second whatever happens downstream,
 * each timed from its scheduled send time (so a stalled sender cannot hide latency), and
 * `readingOf` recovers the reading number from the result's payload.
 */
export function openLoopMqtt(
  path: MqttPath,
  rate: number,
  durationMs: number,
  readingOf: (payload: Buffer) => number,
  drainMs = 5_000,
): Promise<LatencyResult> {
  return new Promise((resolve) => {
    const total = Math.round((rate * durationMs) / 1000);
    const latency = new Histogram();
    const seen = new Uint8Array(total);
    let sent = 0;
    let received = 0;
    const started = performance.now();
    const due = (n: number) => started + (n * 1000) / rate;
    let finished = false;
    let drainTimer: NodeJS.Timeout | undefined;
    const finish = () => {
      if (finished) return;
      finished = true;
      clearInterval(ticker);
      clearTimeout(drainTimer);
      path.cloud.route(path.outTopic, undefined);
      resolve({ sent, received, latency, rate: (sent / (performance.now() - started)) * 1000 });
    };
    path.cloud.route(path.outTopic, (payload) => {
      const now = performance.now();
      const n = readingOf(payload);
      if (!(n >= 0 && n < sent) || seen[n] === 1) return;
      seen[n] = 1;
      received++;
      latency.record((now - due(n)) * 1000);
      if (received === total) finish();
    });
    // Send everything that has come due; a 1 ms timer fires late under load, so it catches up.
    const ticker = setInterval(() => {
      const now = performance.now();
      while (sent < total && due(sent) <= now) {
        path.sensor.publish(path.inTopic, reading(sent), { qos: 0 });
        sent++;
      }
      if (sent === total) {
        clearInterval(ticker);
        drainTimer = setTimeout(finish, drainMs);
      }
    }, 1);
  });
}
