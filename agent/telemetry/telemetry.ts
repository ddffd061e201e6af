import type { Logger } from '../log.ts';
import type { Publisher } from '../publisher.ts';
import type { InferenceStats } from './inference-stats.ts';
import { type Schedule, schedule } from './schedule.ts';
import { SystemSampler } from './system-sampler.ts';

export type TelemetryKind = 'system' | 'runtime' | 'outbox';

export interface TelemetryOptions {
  /** A node-cron expression per kind; kinds with the same expression go out in one message. */
  schedules: Record<TelemetryKind, string>;
  qos: 0 | 1;
  dataDir: string;
  publisher: Publisher;
  inference: InferenceStats;
  /** Outbox and uplink figures (depth, counters of expired, evicted, rejected…). */
  outbox: () => Record<string, unknown>;
  /** Extra runtime figures next to the per-model ones (e.g. pipeline counters). */
  runtime?: () => Record<string, unknown>;
  log: Logger;
}

/**
 * Operators see a box's health without asking: system, runtime and outbox figures sampled on
 * cron schedules and sent as envelopes on the telemetry lane (`outpost/v1/{id}/telemetry`),
 * through the outbox like everything else, so they survive an outage until their TTL and
 * are the first thing evicted when space runs out.
 */
export class Telemetry {
  private tasks: Schedule[] = [];
  readonly counters = { sent: 0, failed: 0 };
  private readonly system: SystemSampler;

  constructor(private readonly o: TelemetryOptions) {
    this.system = new SystemSampler(o.dataDir);
  }

  start(): void {
    const byExpression = new Map<string, TelemetryKind[]>();
    for (const [kind, expression] of Object.entries(this.o.schedules) as Array<[TelemetryKind, string]>) {
      byExpression.set(expression, [...(byExpression.get(expression) ?? []), kind]);
    }
    for (const [expression, kinds] of byExpression) {
      // A slow sample (a hung filesystem, a busy box) does not pile up behind itself: schedule()
      // skips a run while the one before is still going.
      const task = schedule(expression, () => this.report(kinds), {
        name: `telemetry:${kinds.join('+')}`,
        onError: (err) => this.o.log.warn({ err, kinds }, 'telemetry sample failed'),
      });
      this.tasks.push(task);
    }
    this.o.log.info({ schedules: Object.fromEntries(byExpression) }, 'telemetry scheduled');
  }

  /** Samples the given kinds and commits one telemetry envelope; also callable on demand. */
  async report(
    kinds: readonly TelemetryKind[] = ['system', 'runtime', 'outbox'],
  ): Promise<Record<string, unknown>> {
    const body: Record<string, unknown> = {};
    if (kinds.includes('system')) {
      // A failed sample leaves `system` out; the other figures are still worth sending.
      const system = await this.system.sample().catch((err: unknown) => {
        this.o.log.warn({ err }, 'system sample failed');
        return undefined;
      });
      if (system !== undefined) body.system = system;
    }
    if (kinds.includes('runtime'))
      body.runtime = { models: this.o.inference.snapshot(), ...this.o.runtime?.() };
    if (kinds.includes('outbox')) body.outbox = this.o.outbox();
    try {
      await this.o.publisher.telemetry(body, this.o.qos);
      this.counters.sent++;
    } catch (err) {
      // The outbox refused it (full of more important messages, or closing): counted there too.
      this.counters.failed++;
      this.o.log.debug({ err }, 'telemetry not committed');
    }
    return body;
  }

  async stop(): Promise<void> {
    for (const t of this.tasks) t.stop();
    this.tasks = [];
    await this.system.stop();
  }
}
