import type { MqttClient } from 'mqtt';
import { SAMPLE_RATE_HZ, simulateVibration, WINDOW_SAMPLES } from '../../shared/onnx/models.ts';

export interface SensorSimOptions {
  client: MqttClient;
  sensors: string[];
  /** Readings per MQTT message; 16 at 800 Hz is a message every 20 ms per sensor. */
  chunk?: number;
  /** Chance per window that a healthy sensor starts a fault burst. */
  faultChance?: number;
  random?: () => number;
}

/**
 * A simulated 3-axis accelerometer per sensor, published on `sensors/{id}/accel` in real time.
 * Now and then a sensor develops a bearing fault for a few seconds.
 */
export class SensorSimulator {
  private timer: NodeJS.Timeout | undefined;
  private readonly state = new Map<string, { t: number; faultWindowsLeft: number; pending: number[][] }>();
  readonly published = { messages: 0, faults: 0 };

  constructor(private readonly o: SensorSimOptions) {
    for (const s of o.sensors) this.state.set(s, { t: 0, faultWindowsLeft: 0, pending: [] });
  }

  isFaulty(sensor: string): boolean {
    return (this.state.get(sensor)?.faultWindowsLeft ?? 0) > 0;
  }

  start(): void {
    const chunk = this.o.chunk ?? 16;
    const periodMs = (chunk / SAMPLE_RATE_HZ) * 1000;
    const random = this.o.random ?? Math.random;
    this.timer = setInterval(() => {
      for (const [sensor, s] of this.state) {
        if (s.pending.length === 0) {
          if (s.faultWindowsLeft > 0) s.faultWindowsLeft--;
          else if (random() < (this.o.faultChance ?? 0.004)) {
            // About three seconds of trouble: 40 windows of 80 ms.
            s.faultWindowsLeft = 40;
            this.published.faults++;
          }
          const seed = sensor.split('').reduce((a, c) => a * 31 + c.charCodeAt(0), 7) >>> 0;
          s.pending = simulateVibration({ seed, fault: s.faultWindowsLeft > 0, t0: s.t });
          s.t += WINDOW_SAMPLES / SAMPLE_RATE_HZ;
        }
        const readings = s.pending.splice(0, chunk);
        this.o.client.publish(`sensors/${sensor}/accel`, JSON.stringify({ accel: readings }), { qos: 0 });
        this.published.messages++;
      }
    }, periodMs);
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }
}
